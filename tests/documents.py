"""GraphQL documents shared by the tests, as constants."""

EVENT_FIELDS = "id orgId message severity timestamp receivedAt code source context fingerprint position"

LOG_ERROR = f"""
mutation Log($orgId: ID!, $error: LogErrorInput!, $key: String) {{
  logError(orgId: $orgId, error: $error, idempotencyKey: $key) {{
    message errorId replayed error {{ {EVENT_FIELDS} }}
  }}
}}"""

ORG_ERRORS = f"""
query List($orgId: ID!, $filter: ErrorFilter, $first: Int, $after: String, $sortOrder: SortOrder) {{
  orgErrors(orgId: $orgId, filter: $filter, first: $first, after: $after, sortOrder: $sortOrder) {{
    totalCount
    edges {{ cursor node {{ id }} }}
    nodes {{ {EVENT_FIELDS} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}"""

PAGE_IDS = """
query Page($orgId: ID!, $first: Int, $after: String, $sortOrder: SortOrder, $filter: ErrorFilter) {
  orgErrors(orgId: $orgId, first: $first, after: $after, sortOrder: $sortOrder, filter: $filter) {
    nodes { id timestamp }
    pageInfo { hasNextPage endCursor }
  }
}"""

ERROR_EVENT = f"""
query One($orgId: ID!, $id: ID!) {{ errorEvent(orgId: $orgId, id: $id) {{ {EVENT_FIELDS} }} }}"""

SERVICE_STATUS = "{ serviceStatus { status timestamp services { name status description updatedAt } } }"

SET_SERVICE_STATUS = """
mutation Set($service: String!, $status: ServiceState!, $description: String) {
  setServiceStatus(service: $service, status: $status, description: $description) {
    status services { name status description }
  }
}"""

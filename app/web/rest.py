"""REST compatibility routes of the original API, as thin adapters over the same services.

    GET  /orgs/{org_id}/errors   limit, cursor, sortOrder=asc|desc, severity (comma list), from, to
    POST /orgs/{org_id}/errors   the original REST API's body; honours X-Idempotency-Key
    GET  /service_status         the original REST API's shape, with human labels

Same credentials, same rules, same codes as GraphQL; errors in the envelope of docs/errors.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from app.auth.service import credential_from_headers
from app.core.clock import format_datetime
from app.core.errors import AppError, FieldProblem, InternalError, InvalidRequest, RateLimited
from app.core.principal import Principal
from app.core.wire import rest_error_body
from app.events.inputs import validate_org_errors
from app.events.model import ErrorEventRecord, event_cursor
from app.graphql.context import Services
from app.ratelimit.service import Resource
from app.web.middleware import json_response
from app.web.state import request_state, services_of

log = logging.getLogger("app.web.rest")
Handler = Callable[[Request, Services, Principal], Awaitable[Response]]

# GraphQL argument paths -> the REST parameter the client wrote.
_LIST_FIELDS = {
    "first": "limit",
    "after": "cursor",
    "filter.severities": "severity",
    "filter.from": "from",
    "filter.to": "to",
    "filter": "to",
    "orgId": "org_id",
}


def _rename(
    error: AppError, names: dict[str, str], strip: str = "", more: list[FieldProblem] | None = None
) -> AppError:
    """The details' GraphQL argument paths as the REST client wrote them, plus REST-only problems."""
    error.details = [
        FieldProblem(names.get(d.field) or d.field.removeprefix(strip), d.message) for d in error.details
    ] + (more or [])
    return error


def _event_json(e: ErrorEventRecord) -> dict[str, Any]:
    return {
        "error_id": e.id,
        "org_id": e.org_id,
        "message": e.message,
        "severity": e.severity.value,
        "timestamp": format_datetime(e.timestamp),
        "received_at": format_datetime(e.received_at),
        "code": e.code,
        "source": e.source,
        "context": e.context,
        "fingerprint": e.fingerprint,
        "environment": e.environment,
        "release": e.release,
        "level": e.level,
        "tags": e.tags or {},
        "project_id": e.project_id,
    }


def endpoint(handler: Handler, resource: Resource) -> Callable[[Request], Awaitable[Response]]:
    """Authenticates, charges the budget, runs the handler, and answers any failure in the REST envelope."""

    async def run(request: Request) -> Response:
        state = request_state(request.scope)
        request_id = state.request_id
        services = services_of(request)
        state.org_id = request.path_params.get("org_id")
        budget = None
        try:
            principal = await services.auth.authenticate(credential_from_headers(request.headers))
            budget = await services.rate_limiter.spend(principal.key_id, resource)
            response = await handler(request, services, principal)
        except AppError as error:
            state.outcome = error.code.value
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
            if isinstance(error, RateLimited) and error.budget is not None:
                headers.update(error.budget.headers())
            return json_response(rest_error_body(error, request_id), error.code.status, headers)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            state.outcome = "INTERNAL_ERROR"
            return json_response(rest_error_body(InternalError(), request_id), 500)
        response.headers.update(budget.headers())
        return response

    return run


async def _list_errors(request: Request, services: Services, principal: Principal) -> Response:
    params = request.query_params
    org_id = request.path_params["org_id"]
    problems = []
    raw: dict[str, Any] = {"orgId": org_id, "filter": {}}
    if "limit" in params:
        raw["first"] = params["limit"]
    if "cursor" in params:
        raw["after"] = params["cursor"]
    if "sortOrder" in params:
        if params["sortOrder"].lower() not in ("asc", "desc"):
            problems.append(FieldProblem("sortOrder", "Sort order must be 'asc' or 'desc'"))
        else:
            raw["sortOrder"] = params["sortOrder"].upper()
    if "severity" in params:
        raw["filter"]["severities"] = [s.strip().upper() for s in params["severity"].split(",") if s.strip()]
    for name in ("from", "to"):
        if name in params:
            raw["filter"][name] = params[name]
    try:
        query = validate_org_errors(raw)
    except AppError as error:
        raise _rename(error, _LIST_FIELDS, more=problems) from None
    if problems:
        raise InvalidRequest(details=problems)
    page = await services.events.page(principal, query)
    body: dict[str, Any] = {"errors": [_event_json(e) for e in page.events], "next_cursor": None}
    headers = {}
    if page.has_next_page and page.events:
        next_cursor = event_cursor(page.events[-1].id)
        body["next_cursor"] = next_cursor
        headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return json_response(body, 200, headers)


async def _log_error(request: Request, services: Services, principal: Principal) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "Request body must be JSON", details=[FieldProblem("body", "Not valid JSON")]
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest(details=[FieldProblem("body", "Must be a JSON object")])
    if isinstance(body.get("severity"), str):
        body["severity"] = body["severity"].upper()
    raw: dict[str, Any] = {"orgId": request.path_params["org_id"], "error": body}
    if request.headers.get("x-idempotency-key") is not None:
        raw["idempotencyKey"] = request.headers["x-idempotency-key"]
    try:
        org_id, new, key = services.events.validate_log_error(raw)
    except AppError as error:
        raise _rename(error, {"orgId": "org_id"}, strip="error.") from None
    logged = await services.events.log(principal, org_id, new, key)
    payload = {
        "message": "Error logged successfully",
        "error_id": logged.event.id,
        "replayed": logged.replayed,
        "new_group": logged.new_group,
    }
    return json_response(payload, 200 if logged.replayed else 201)


async def _service_status(request: Request, services: Services, principal: Principal) -> Response:
    snapshot = services.status.snapshot()
    return json_response(
        {
            "status": snapshot.status.label,
            "services": {c.name: c.status.label for c in snapshot.services},
            "timestamp": format_datetime(snapshot.timestamp),
        },
        200,
    )


list_errors = endpoint(_list_errors, Resource.READ)
log_error = endpoint(_log_error, Resource.WRITE)
service_status = endpoint(_service_status, Resource.READ)

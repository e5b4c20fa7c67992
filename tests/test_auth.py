"""Credentials: who may call, and what each credential may see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import ERROR_EVENT, LOG_ERROR, ORG_ERRORS, SERVICE_STATUS, SET_SERVICE_STATUS
from tests.helpers import log_error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-KEY": "nope"},
        {"X-API-KEY": "etk_AAAAAAAAAAAA_" + "a" * 43},  # well-formed, unknown
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_unknown_credentials_answer_401_before_execution(
    gql: GraphQLClient, headers: dict[str, str]
) -> None:
    response = await gql.http.post("/graphql", json={"query": SERVICE_STATUS}, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"errors"}  # nothing executed: no data key at all
    assert body["errors"][0]["extensions"]["code"] == "INVALID_API_KEY"
    assert body["errors"][0]["extensions"]["status"] == 401
    assert body["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]


async def test_bearer_and_header_credentials_both_work(gql: GraphQLClient, org: Org) -> None:
    for headers in ({"X-API-KEY": org.key}, {"Authorization": f"Bearer {org.key}"}):
        response = await gql.http.post("/graphql", json={"query": SERVICE_STATUS}, headers=headers)
        assert response.status_code == 200
        assert response.json()["data"]["serviceStatus"]["status"]


async def test_expired_key_is_token_expired(gql: GraphQLClient, server: LiveServer) -> None:
    expired = make_org(server, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = await gql.post(SERVICE_STATUS, key=expired.key)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "TOKEN_EXPIRED"


async def test_revoked_key_is_rejected(gql: GraphQLClient, server: LiveServer, org: Org) -> None:
    assert (await gql.post(SERVICE_STATUS, key=org.key)).status_code == 200
    server.call(lambda s: s.auth.revoke(org.key[:16]))  # the public prefix etk_XXXXXXXXXXXX
    response = await gql.post(SERVICE_STATUS, key=org.key)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "INVALID_API_KEY"


async def test_a_tampered_secret_is_rejected(gql: GraphQLClient, org: Org) -> None:
    tampered = org.key[:-1] + ("A" if org.key[-1] != "A" else "B")
    response = await gql.post(SERVICE_STATUS, key=tampered)
    assert response.status_code == 401


async def test_organizations_are_isolated(gql: GraphQLClient, server: LiveServer, org: Org) -> None:
    other = make_org(server)
    event = await log_error(gql, other.id, other.key, message="other's secret")

    # Another organization's data and a missing organization look the same: NOT_FOUND.
    for org_id in (other.id, "no-such-org"):
        listed = await gql.error(ORG_ERRORS, {"orgId": org_id}, key=org.key)
        assert listed["extensions"]["code"] == "NOT_FOUND"
        fetched = await gql.error(ERROR_EVENT, {"orgId": org_id, "id": event["id"]}, key=org.key)
        assert fetched["extensions"]["code"] == "NOT_FOUND"
        logged = await gql.error(
            LOG_ERROR, {"orgId": org_id, "error": {"message": "x", "severity": "LOW"}}, key=org.key
        )
        assert logged["extensions"]["code"] == "NOT_FOUND"
    assert logged["message"] == listed["message"]

    # Asking for the other organization's event id under one's own organization finds nothing.
    mine = await gql.data(ERROR_EVENT, {"orgId": org.id, "id": event["id"]}, key=org.key)
    assert mine["errorEvent"] is None
    mine_listed = await gql.data(ORG_ERRORS, {"orgId": org.id}, key=org.key)
    assert mine_listed["orgErrors"]["totalCount"] == 0


async def test_admin_keys_reach_every_existing_organization(
    gql: GraphQLClient, admin_key: str, org: Org
) -> None:
    event = await log_error(gql, org.id, admin_key, message="logged by an operator")
    listed = await gql.data(ORG_ERRORS, {"orgId": org.id}, key=admin_key)
    assert [n["id"] for n in listed["orgErrors"]["nodes"]] == [event["id"]]
    missing = await gql.error(ORG_ERRORS, {"orgId": "no-such-org"}, key=admin_key)
    assert missing["extensions"]["code"] == "NOT_FOUND"


async def test_admin_mutation_needs_an_admin_key(gql: GraphQLClient, org: Org, admin_key: str) -> None:
    variables = {"service": "storage", "status": "UNDER_MAINTENANCE", "description": "Upgrading"}
    forbidden = await gql.error(SET_SERVICE_STATUS, variables, key=org.key)
    assert forbidden["extensions"]["code"] == "FORBIDDEN"
    assert forbidden["extensions"]["status"] == 403
    try:
        data = await gql.data(SET_SERVICE_STATUS, variables, key=admin_key)
        storage = next(s for s in data["setServiceStatus"]["services"] if s["name"] == "storage")
        assert storage == {"name": "storage", "status": "UNDER_MAINTENANCE", "description": "Upgrading"}
        assert data["setServiceStatus"]["status"] == "UNDER_MAINTENANCE"
    finally:
        await gql.data(SET_SERVICE_STATUS, {"service": "storage", "status": "OPERATIONAL"}, key=admin_key)

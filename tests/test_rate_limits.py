"""Request budgets per credential: headers, the rateLimit field, 429 before execution, windows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from app.ratelimit.service import RateLimiter
from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import LOG_ERROR, SERVICE_STATUS

RATE = "{ rateLimit { resource limit remaining resetAt cost } }"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # the start of a 60 s window

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(server: LiveServer) -> Iterator[FakeClock]:
    """Small budgets on a clock the test moves, so no test depends on where a real minute falls."""
    fake = FakeClock()
    original = server.services.rate_limiter
    server.services.rate_limiter = RateLimiter(reads=3, writes=2, window_seconds=60, clock=fake)
    yield fake
    server.services.rate_limiter = original


def log_vars(org: Org) -> dict:
    return {"orgId": org.id, "error": {"message": "m", "severity": "LOW"}}


async def test_budget_headers_and_the_rate_limit_field(
    gql: GraphQLClient, org: Org, clock: FakeClock
) -> None:
    first = await gql.post(RATE, key=org.key)
    assert first.headers["x-ratelimit-limit"] == "3"
    assert first.headers["x-ratelimit-remaining"] == "2"
    assert first.headers["x-ratelimit-reset"] == str(int(clock.now + 60))
    assert first.json()["data"]["rateLimit"] == {
        "resource": "READ",
        "limit": 3,
        "remaining": 2,
        "resetAt": "2027-01-15T08:01:00.000Z",
        "cost": 1,
    }
    second = await gql.post(SERVICE_STATUS, key=org.key)
    assert second.headers["x-ratelimit-remaining"] == "1"


async def test_spent_budget_answers_429_before_execution(
    gql: GraphQLClient, org: Org, clock: FakeClock
) -> None:
    for _ in range(3):
        assert (await gql.post(SERVICE_STATUS, key=org.key)).status_code == 200
    clock.now += 15
    refused = await gql.post(SERVICE_STATUS, key=org.key)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    body = refused.json()
    assert set(body) == {"errors"}
    ext = body["errors"][0]["extensions"]
    assert (ext["code"], ext["status"], ext["retryAfter"]) == ("RATE_LIMITED", 429, 45)

    clock.now += 45  # the next window
    assert (await gql.post(SERVICE_STATUS, key=org.key)).status_code == 200


async def test_writes_have_their_own_budget(gql: GraphQLClient, org: Org, clock: FakeClock) -> None:
    for _ in range(2):
        response = await gql.post(LOG_ERROR, log_vars(org), key=org.key)
        assert response.status_code == 200 and response.headers["x-ratelimit-resource"] == "write"
    assert (await gql.post(LOG_ERROR, log_vars(org), key=org.key)).status_code == 429
    # Reads are untouched, and nothing was stored by the refused write.
    data = await gql.data(
        "query($o: ID!) { orgErrors(orgId: $o) { totalCount } }", {"o": org.id}, key=org.key
    )
    assert data["orgErrors"]["totalCount"] == 2


async def test_each_logError_of_a_document_is_charged(gql: GraphQLClient, org: Org, clock: FakeClock) -> None:
    three = """mutation($o: ID!) {
      a: logError(orgId: $o, error: {message: "a", severity: LOW}) { errorId }
      b: logError(orgId: $o, error: {message: "b", severity: LOW}) { errorId }
      c: logError(orgId: $o, error: {message: "c", severity: LOW}) { errorId } }"""
    assert (await gql.post(three, {"o": org.id}, key=org.key)).status_code == 429


async def test_budgets_are_per_credential(
    gql: GraphQLClient, server: LiveServer, org: Org, clock: FakeClock
) -> None:
    other = make_org(server)
    for _ in range(3):
        await gql.post(SERVICE_STATUS, key=org.key)
    assert (await gql.post(SERVICE_STATUS, key=org.key)).status_code == 429
    assert (await gql.post(SERVICE_STATUS, key=other.key)).status_code == 200


async def test_rest_routes_share_the_budgets(http: httpx.AsyncClient, org: Org, clock: FakeClock) -> None:
    headers = {"X-API-KEY": org.key}
    for _ in range(3):
        ok = await http.get("/service_status", headers=headers)
        assert ok.status_code == 200 and "x-ratelimit-remaining" in ok.headers
    refused = await http.get(f"/orgs/{org.id}/errors", headers=headers)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert refused.json()["error"]["code"] == "RATE_LIMITED"


async def test_websocket_operations_spend_the_read_budget(
    server: LiveServer, org: Org, clock: FakeClock
) -> None:
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": org.key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { serviceStatusChanged { status } }"
        for op in ("1", "2", "3", "4", "5"):  # the first is free, the next three spend the budget
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query}}))
        seen: dict[str, str] = {}
        while len(seen) < 5:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message.get("id") and message["id"] not in seen:
                seen[message["id"]] = message["type"]
                if message["type"] == "error":
                    ext = message["payload"][0]["extensions"]
                    assert ext["code"] == "RATE_LIMITED" and ext["retryAfter"] >= 1
        assert seen == {"1": "next", "2": "next", "3": "next", "4": "next", "5": "error"}

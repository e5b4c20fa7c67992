"""An acknowledged event is never silently lost: a timestamp older than the retention window is refused
(VALIDATION_ERROR on the timestamp, naming the retention) on GraphQL and on the REST route, and nothing
is stored; an event inside the window is stored and readable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import LiveServer, make_org, settings_for, start_server
from tests.documents import LOG_ERROR

RETENTION_DAYS = 30


@pytest.fixture(scope="module")
def short_retention(mongo_uri: str) -> Iterator[LiveServer]:
    live, stop = start_server(settings_for(mongo_uri, retention_days=RETENTION_DAYS))
    try:
        yield live
    finally:
        stop()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _count(client: httpx.AsyncClient, org_id: str, key: str) -> int:
    query = "query C($orgId: ID!) { orgErrors(orgId: $orgId) { totalCount } }"
    response = await client.post(
        "/graphql", json={"query": query, "variables": {"orgId": org_id}}, headers={"X-API-KEY": key}
    )
    return int(response.json()["data"]["orgErrors"]["totalCount"])


async def test_graphql_refuses_an_event_older_than_the_retention(short_retention: LiveServer) -> None:
    org = make_org(short_retention)
    too_old = datetime.now(UTC) - timedelta(days=RETENTION_DAYS, hours=1)
    error = {"message": "from long ago", "severity": "HIGH", "timestamp": _iso(too_old)}
    async with httpx.AsyncClient(base_url=short_retention.url, timeout=30) as client:
        response = await client.post(
            "/graphql",
            json={"query": LOG_ERROR, "variables": {"orgId": org.id, "error": error, "key": "old-1"}},
            headers={"X-API-KEY": org.key},
        )
        body = response.json()
        assert body["data"] is None
        ext = body["errors"][0]["extensions"]
        assert ext["code"] == "VALIDATION_ERROR" and ext["status"] == 422
        assert [d["field"] for d in ext["details"]] == ["error.timestamp"]
        assert f"retention window of {RETENTION_DAYS} days" in ext["details"][0]["message"]
        assert await _count(client, org.id, org.key) == 0


async def test_every_problem_is_reported_with_the_retention_one(short_retention: LiveServer) -> None:
    org = make_org(short_retention)
    too_old = datetime.now(UTC) - timedelta(days=RETENTION_DAYS + 5)
    error = {"message": " ", "severity": "HIGH", "timestamp": _iso(too_old)}
    async with httpx.AsyncClient(base_url=short_retention.url, timeout=30) as client:
        response = await client.post(
            "/graphql",
            json={"query": LOG_ERROR, "variables": {"orgId": org.id, "error": error}},
            headers={"X-API-KEY": org.key},
        )
    fields = sorted(d["field"] for d in response.json()["errors"][0]["extensions"]["details"])
    assert fields == ["error.message", "error.timestamp"]


async def test_rest_refuses_it_too_and_accepts_one_inside_the_window(short_retention: LiveServer) -> None:
    org = make_org(short_retention)
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=short_retention.url, timeout=30) as client:
        refused = await client.post(
            f"/orgs/{org.id}/errors",
            json={
                "message": "too old",
                "severity": "low",
                "timestamp": _iso(now - timedelta(days=RETENTION_DAYS + 1)),
            },
            headers={"X-API-KEY": org.key, "X-Idempotency-Key": "rest-old"},
        )
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert [d["field"] for d in error["details"]] == ["timestamp"]
        assert "retention" in error["details"][0]["message"]

        inside = await client.post(
            f"/orgs/{org.id}/errors",
            json={
                "message": "recent enough",
                "severity": "low",
                "timestamp": _iso(now - timedelta(days=RETENTION_DAYS - 1)),
            },
            headers={"X-API-KEY": org.key},
        )
        assert inside.status_code == 201
        event_id = inside.json()["error_id"]
        read = await client.post(
            "/graphql",
            json={
                "query": "query E($o: ID!, $id: ID!) { errorEvent(orgId: $o, id: $id) { id message } }",
                "variables": {"o": org.id, "id": event_id},
            },
            headers={"X-API-KEY": org.key},
        )
        assert read.json()["data"]["errorEvent"] == {"id": event_id, "message": "recent enough"}
        assert await _count(client, org.id, org.key) == 1

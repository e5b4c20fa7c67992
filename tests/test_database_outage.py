"""The database goes away and comes back: fail fast, never hang or crash, recover alone, lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.storage.embedded import EmbeddedMongo
from tests.conftest import LiveServer, make_org, server_on_own_database
from tests.documents import LOG_ERROR, ORG_ERRORS

STATUS = "{ serviceStatus { status services { name status cause } } }"


@pytest.fixture
def outage_server(tmp_path: Path) -> Iterator[tuple[LiveServer, EmbeddedMongo]]:
    # File-backed: data must survive the restart.
    with server_on_own_database(
        tmp_path / "db.sqlite",
        "outage",
        auth_cache_ttl_seconds=300,
        mongodb_timeout_ms=500,
        breaker_threshold=2,
        breaker_cooldown_seconds=1,
        status_probe_interval_seconds=3600,
        status_damping_probes=1,
        retention_days=3650,
    ) as running:
        yield running


async def post(client: httpx.AsyncClient, key: str, query: str, variables: dict) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"X-API-KEY": key}
    )


async def test_outage_and_recovery(outage_server: tuple[LiveServer, EmbeddedMongo]) -> None:
    server, database = outage_server
    org = make_org(server)
    event = {"message": "before the outage", "severity": "HIGH"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        acknowledged = await post(client, org.key, LOG_ERROR, {"orgId": org.id, "error": event, "key": "k-0"})
        assert acknowledged.json()["data"]["logError"]["replayed"] is False

        await asyncio.to_thread(database.stop)

        # Every request fails fast with SERVICE_UNAVAILABLE and a retryAfter: the first ones after the
        # driver's bounded timeout, the rest at once because the breaker opened.
        retried = {
            "orgId": org.id,
            "error": {"message": "during the outage", "severity": "LOW"},
            "key": "k-1",
        }
        for attempt in range(4):
            response = await post(client, org.key, LOG_ERROR, retried)
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", error
            assert error["extensions"]["status"] == 503 and error["extensions"]["retryAfter"] >= 1
            # The whole result is that error: HTTP says so too, with when to retry.
            assert response.status_code == 503
            assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"]
            if attempt == 0:  # unhealthy from the first failed call, before any probe has run
                assert (await client.get("/health")).status_code == 503
        server.call(lambda s: s.status.probe())
        # serviceStatus still answers (from memory; the key is in the verification cache) and says why.
        status = await post(client, org.key, STATUS, {})
        components = {c["name"]: c for c in status.json()["data"]["serviceStatus"]["services"]}
        assert components["storage"]["status"] == "MAJOR_OUTAGE" and components["storage"]["cause"] == "PROBE"
        assert components["authentication"]["status"] == "PARTIAL_OUTAGE"
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert health.json()["checks"]["database"] is False
        assert (await client.get("/livez")).status_code == 200  # the process itself is fine

        await asyncio.to_thread(database.start)

        # It recovers by itself: the next probe closes the breaker; no restart of the server.
        async def recovered() -> httpx.Response:
            while True:
                server.call(lambda s: s.status.probe())
                response = await post(client, org.key, LOG_ERROR, retried)
                if "errors" not in response.json():
                    return response
                await asyncio.sleep(0.2)

        first_success = await asyncio.wait_for(recovered(), 30)
        assert first_success.json()["data"]["logError"]["replayed"] is False
        assert (await client.get("/health")).json()["status"] == "healthy"
        status = await post(client, org.key, STATUS, {})
        assert status.json()["data"]["serviceStatus"]["status"] == "OPERATIONAL"

        # Both transitions are stored once the database is back: the one it could not store during the
        # outage (kept in memory) by the next probe that reaches the database, then the recovery.
        async def stored_history() -> list[tuple[str, str]]:
            while True:
                history = await post(
                    client,
                    org.key,
                    '{ statusHistory(service: "storage", first: 2) { nodes { from to } } }',
                    {},
                )
                nodes = [(n["from"], n["to"]) for n in history.json()["data"]["statusHistory"]["nodes"]]
                if nodes == [("MAJOR_OUTAGE", "OPERATIONAL"), ("OPERATIONAL", "MAJOR_OUTAGE")]:
                    return nodes
                server.call(lambda s: s.status.probe())  # a write the database refused is retried here
                await asyncio.sleep(0.1)

        await asyncio.wait_for(stored_history(), 30)

        # Nothing acknowledged was lost, and the retried write is stored exactly once.
        again = await post(client, org.key, LOG_ERROR, retried)
        assert again.json()["data"]["logError"]["replayed"] is True
        listed = await post(client, org.key, ORG_ERRORS, {"orgId": org.id})
        messages = sorted(n["message"] for n in listed.json()["data"]["orgErrors"]["nodes"])
        assert messages == ["before the outage", "during the outage"]

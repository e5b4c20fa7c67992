"""Storms of clients with valid keys are served, never refused as bad credentials: one credential
lookup in flight per key, a short negative cache, admission control in front of the database, and a
busy or absent database answered as SERVICE_UNAVAILABLE (503, WebSocket close 1013). Also the socket
hygiene that comes with it: a cap per key, a revoked key's sockets closed, the legacy init deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.core.errors import ServiceUnavailable
from app.runtime.settings import Settings
from app.storage.admission import Admission
from app.storage.breaker import BreakerState, CircuitBreaker
from app.storage.embedded import EmbeddedMongo
from app.storage.mongo import translate_errors
from tests.conftest import LiveServer, Org, _free_port, make_org, server_on_own_database, start_server
from tests.documents import SET_SERVICE_STATUS

STATUS_SUB = "subscription { serviceStatusChanged { status } }"
STORM = 1000


async def receive(ws: ClientConnection, wait: float = 30) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), wait))
        if message["type"] not in ("ping", "pong", "ka"):
            return message


async def subscriber(url: str, key: str) -> tuple[ClientConnection, float]:
    """Open, init, subscribe to the status; the socket and the seconds until its first status."""
    started = time.perf_counter()
    ws = await connect(url, subprotocols=["graphql-transport-ws"], open_timeout=60)  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
    ack = await receive(ws)
    assert ack["type"] == "connection_ack", ack
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": STATUS_SUB}}))
    first = await receive(ws)
    assert first["type"] == "next" and first["payload"]["data"]["serviceStatusChanged"]["status"], first
    return ws, time.perf_counter() - started


@pytest.fixture
def storm_server(server: LiveServer) -> Iterator[LiveServer]:
    """A server with production's WebSocket init deadline (the suite's is 1 s) and no credential cache
    (AUTH_CACHE_TTL_SECONDS=0, the worst case for the database), on the suite's database."""
    settings = Settings(
        mongodb_uri=server.settings.mongodb_uri,
        mongodb_db=server.settings.mongodb_db,
        port=_free_port(),
        demo_data=False,
        auth_cache_ttl_seconds=0,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=server.settings.retention_days,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings)
    try:
        yield live
    finally:
        stop()


async def test_a_reconnect_storm_on_one_key_is_served_with_the_admin_meanwhile(
    storm_server: LiveServer, org: Org, admin_key: str
) -> None:
    """1,000 subscribers on one key open within about a second (what follows a deploy); every one gets
    its first status, none is refused, an admin is served meanwhile."""
    server = storm_server
    lookups_before = server.services.auth.lookups
    sockets: list[ClientConnection] = []

    async def wave(index: int) -> tuple[ClientConnection, float]:
        await asyncio.sleep(index / STORM)  # spread over one second
        return await subscriber(server.ws_url, org.key)

    async def admin() -> httpx.Response:
        await asyncio.sleep(0.5)  # in the middle of the storm
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await client.post(
                "/graphql",
                json={
                    "query": SET_SERVICE_STATUS,
                    "variables": {"service": "api", "status": "OPERATIONAL", "description": None},
                },
                headers={"X-API-KEY": admin_key},
            )

    try:
        storm = asyncio.gather(*(wave(i) for i in range(STORM)), return_exceptions=True)
        results, admin_response = await asyncio.gather(storm, admin())
        failures = [r for r in results if isinstance(r, BaseException)]
        sockets = [r[0] for r in results if not isinstance(r, BaseException)]
        assert not failures, failures[:3]
        assert len(sockets) == STORM
        assert admin_response.status_code == 200 and "errors" not in admin_response.json(), (
            admin_response.text
        )
        # Concurrent verifications of the one key shared their lookups.
        assert server.services.auth.lookups - lookups_before < STORM / 2
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def test_one_lookup_in_flight_per_key_and_a_negative_cache(server: LiveServer, org: Org) -> None:
    async def verify(services: Any, key: str, times: int) -> list[Any]:
        return await asyncio.gather(
            *(services.auth.authenticate(key) for _ in range(times)), return_exceptions=True
        )

    before = server.services.auth.lookups
    principals = server.call(lambda s: verify(s, org.key, 200))
    assert {p.key_id for p in principals} == {principals[0].key_id}
    assert server.services.auth.lookups - before == 1  # 200 concurrent misses, one database read

    unknown = org.key[:-4] + "AAAA"  # a well-formed key id with the wrong secret
    before = server.services.auth.lookups
    refused = server.call(lambda s: verify(s, unknown, 50))
    refused += server.call(lambda s: verify(s, unknown, 50))  # after the first wave: the negative cache
    assert all(type(r).__name__ == "InvalidApiKey" for r in refused)
    assert server.services.auth.lookups - before == 1


async def test_admission_refuses_early_and_spares_the_breaker() -> None:
    admission = Admission(limit=2, max_wait=0.05, max_waiting=1)
    breaker = CircuitBreaker(threshold=1, cooldown=60, admission=admission)
    release = asyncio.Event()

    async def hold() -> None:
        async with translate_errors("test", breaker):
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.in_flight == 2
    waiter = asyncio.create_task(hold())  # waits for a slot, up to max_wait
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable) as busy:  # a second waiter is one too many: refused at once
        async with translate_errors("test", breaker):
            pass
    assert busy.value.retry_after == 1 and "busy" in busy.value.message
    with pytest.raises(ServiceUnavailable):
        await waiter  # its wait ran out
    assert admission.refused == 2
    assert breaker.state is BreakerState.CLOSED and breaker.healthy  # the server's queue, not the database
    release.set()
    await asyncio.gather(*holders)
    assert admission.in_flight == 0
    async with translate_errors("test", breaker):  # slots are free again
        pass


@pytest.fixture
def away_database(tmp_path: Path) -> Iterator[tuple[LiveServer, EmbeddedMongo]]:
    with server_on_own_database(
        tmp_path / "db.sqlite",
        "storms",
        auth_cache_ttl_seconds=0,
        mongodb_timeout_ms=500,
        status_probe_interval_seconds=3600,
    ) as running:
        yield running


async def test_an_absent_database_is_503_and_1013_never_a_bad_key(
    away_database: tuple[LiveServer, EmbeddedMongo],
) -> None:
    server, database = away_database
    org, verified = make_org(server), make_org(server)
    server.call(lambda s: s.auth.authenticate(verified.key))  # verified before the outage
    await asyncio.to_thread(database.stop)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # A key verified recently keeps working while the database cannot say otherwise.
        response = await client.post(
            "/graphql", json={"query": "{ serviceStatus { status } }"}, headers={"X-API-KEY": verified.key}
        )
    assert response.status_code == 200 and response.json()["data"]["serviceStatus"]["status"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/graphql", json={"query": "{ serviceStatus { status } }"}, headers={"X-API-KEY": org.key}
        )
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    for protocol in ("graphql-transport-ws", "graphql-ws"):
        async with connect(server.ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": org.key}}))
            with pytest.raises(ConnectionClosed) as closed:
                message = await receive(ws, 10)
                if protocol == "graphql-ws":  # the legacy protocol says why first
                    assert message["type"] == "connection_error", message
                    assert message["payload"]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                    await receive(ws, 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert closed.value.rcvd.reason.startswith("SERVICE_UNAVAILABLE")


async def test_websockets_per_key_are_capped(server: LiveServer, org: Org) -> None:
    registry = server.app.state.graphql_view.sockets
    registry.max_per_key = 2
    try:
        first, _ = await subscriber(server.ws_url, org.key)
        second, _ = await subscriber(server.ws_url, org.key)
        async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as third:  # type: ignore[list-item]
            await third.send(json.dumps({"type": "connection_init", "payload": {"apiKey": org.key}}))
            with pytest.raises(ConnectionClosed) as closed:
                await receive(third, 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        assert closed.value.rcvd.reason.startswith("RATE_LIMITED")
        await first.close()
        await second.close()
    finally:
        registry.max_per_key = server.settings.ws_max_per_key
    other = make_org(server)  # another key is not affected
    ws, _ = await subscriber(server.ws_url, other.key)
    await ws.close()


async def test_a_revoked_keys_sockets_are_closed(server: LiveServer) -> None:
    here, elsewhere = make_org(server), make_org(server)
    ws_here, _ = await subscriber(server.ws_url, here.key)
    ws_elsewhere, _ = await subscriber(server.ws_url, elsewhere.key)
    # Revoked through this process: closed at once.
    server.call(lambda s: s.auth.revoke(here.key))
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws_here, 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    # Revoked by another instance (straight in the database): the next sweep closes it.
    key_id = elsewhere.key.split("_")[1]

    async def revoke_elsewhere(services: Any) -> None:
        from datetime import UTC, datetime

        await services.auth._store.revoke(key_id, datetime.now(UTC))
        await server.app.state.graphql_view.sockets.sweep(services.auth)

    server.call(revoke_elsewhere)
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws_elsewhere, 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_legacy_socket_that_never_initialises_is_closed(server: LiveServer) -> None:
    async with connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws, server.settings.ws_init_timeout_seconds + 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408

"""Live service status: causes, history, expiring overrides, error rate, damping, WebSocket rules."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.core.errors import ServiceUnavailable
from app.core.pubsub import PubSub
from app.runtime.container import Services
from app.status.model import ServiceState, StatusCause, Transition
from app.status.service import StatusService, StatusSettings
from app.status.store import StatusStore
from tests.conftest import GraphQLClient, LiveServer, _free_port, make_org, server_process, start_server
from tests.documents import SET_SERVICE_STATUS
from tests.test_subscriptions import STATUS_SUB, receive, session, subscribe

HISTORY = """query($s: String, $first: Int, $after: String) {
  statusHistory(service: $s, first: $first, after: $after) {
    nodes { position service from to cause description instance }
    pageInfo { hasNextPage endCursor } } }"""
COMPONENTS = "{ serviceStatus { position services { name status cause description } } }"
RESUMABLE_STATUS = "subscription($after: String) { serviceStatusChanged(after: $after) { status position } }"


async def set_status(gql: GraphQLClient, key: str, service: str, status: str, **extra: Any) -> dict:
    data = await gql.data(
        SET_SERVICE_STATUS.replace("$description: String", "$description: String, $until: DateTime").replace(
            "description: $description", "description: $description, until: $until"
        ),
        {"service": service, "status": status, **extra},
        key=key,
    )
    return data["setServiceStatus"]


async def test_overrides_are_recorded_transitions_with_their_cause(
    gql: GraphQLClient, admin_key: str
) -> None:
    await set_status(gql, admin_key, "authentication", "UNDER_MAINTENANCE", description="Rotating keys")
    try:
        components = (await gql.data(COMPONENTS, key=admin_key))["serviceStatus"]["services"]
        auth = next(c for c in components if c["name"] == "authentication")
        assert auth == {
            "name": "authentication",
            "status": "UNDER_MAINTENANCE",
            "cause": "MANUAL",
            "description": "Rotating keys",
        }
    finally:
        await set_status(gql, admin_key, "authentication", "OPERATIONAL")
    history = (await gql.data(HISTORY, {"s": "authentication", "first": 2}, key=admin_key))["statusHistory"]
    back, away = history["nodes"]
    assert (away["from"], away["to"], away["cause"]) == ("OPERATIONAL", "UNDER_MAINTENANCE", "MANUAL")
    assert (back["from"], back["to"], back["cause"]) == ("UNDER_MAINTENANCE", "OPERATIONAL", "MANUAL")
    assert away["description"] == "Rotating keys" and back["instance"]
    older = (
        await gql.data(HISTORY, {"s": "authentication", "first": 1, "after": back["position"]}, key=admin_key)
    )["statusHistory"]
    assert older["nodes"][0]["position"] == away["position"]


async def test_a_declared_storage_outage_keeps_the_instance_healthy(
    gql: GraphQLClient, http: httpx.AsyncClient, admin_key: str
) -> None:
    """/health answers for the database itself: an operator's override (or an incident) on `storage` is
    shown to everyone, but must not make orchestrators pull a working instance out of service."""
    await set_status(gql, admin_key, "storage", "MAJOR_OUTAGE", description="Declared by the on-call")
    try:
        health = await http.get("/health")
        assert health.status_code == 200
        assert health.json()["checks"]["database"] is True
        assert health.json()["status"] == "degraded"  # the roll-up shows the declared outage
    finally:
        await set_status(gql, admin_key, "storage", "OPERATIONAL")


async def test_an_override_ends_by_itself(gql: GraphQLClient, server: LiveServer, admin_key: str) -> None:
    until = (datetime.now(UTC) + timedelta(milliseconds=400)).isoformat()
    status = await set_status(gql, admin_key, "api", "UNDER_MAINTENANCE", until=until)
    assert status["status"] == "UNDER_MAINTENANCE"

    async def cleared() -> None:
        while True:  # the expiry is a time, not an event: probe until it has passed (bounded below)
            server.call(lambda s: s.status.probe())
            api = next(c for c in server.services.status.snapshot().services if c.name == "api")
            if api.status is ServiceState.OPERATIONAL:
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(cleared(), 10)
    past = await gql.error(
        SET_SERVICE_STATUS.replace("$description: String", "$description: String, $until: DateTime").replace(
            "description: $description", "description: $description, until: $until"
        ),
        {"service": "api", "status": "PARTIAL_OUTAGE", "until": "2020-01-01T00:00:00Z"},
        key=admin_key,
    )
    assert past["extensions"]["code"] == "INVALID_REQUEST"


async def test_failing_requests_degrade_the_api(
    server: LiveServer, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an instance of its own, so its error rate is its own."""
    live, stop = start_server(
        server.settings.model_copy(update={"port": _free_port(), "status_damping_probes": 1})
    )
    try:
        org = make_org(live)

        async def explode(*_: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(live.services.events, "get", explode)
        query = 'query($o: ID!) { errorEvent(orgId: $o, id: "error-x") { id } }'
        async with __import__("httpx").AsyncClient(base_url=live.url) as http:
            for _ in range(25):
                await http.post(
                    "/graphql",
                    json={"query": query, "variables": {"o": org.id}},
                    headers={"X-API-KEY": org.key},
                )
        live.call(lambda s: s.status.probe())
        api = next(c for c in live.services.status.snapshot().services if c.name == "api")
        assert (api.status, api.cause) == (ServiceState.DEGRADED_PERFORMANCE, StatusCause.ERROR_RATE)
        assert api.observed == 1.0 and "100.0%" in (api.description or "")
    finally:
        stop()


def test_probe_states_are_damped() -> None:
    service = StatusService(None, None, StatusSettings(damping_probes=3))  # type: ignore[arg-type]
    down = (ServiceState.MAJOR_OUTAGE, "down", None, StatusCause.PROBE)
    up = (ServiceState.OPERATIONAL, None, 0.001, StatusCause.PROBE)
    for candidate in (down, down, up, down, down):
        service._damp("storage", candidate)
        assert service._computed["storage"].status is ServiceState.OPERATIONAL  # never 3 in a row
    service._damp("storage", down)
    assert service._computed["storage"].status is ServiceState.MAJOR_OUTAGE


class _GatedStore(StatusStore):
    """The real store on the real database, with two switches for the test: `down` makes the probe's
    ping and the history writes fail as an unreachable database does; `gate`, while set up, holds every
    history write until released (`entered` says one is waiting)."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self.down = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def ping(self) -> None:
        if self.down:
            raise ServiceUnavailable()
        await super().ping()

    async def record(self, transition: Transition) -> Transition:
        if self.down:
            raise ServiceUnavailable()
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        return await super().record(transition)


def test_a_recovery_is_recorded_when_another_derivation_runs_during_the_probe(server: LiveServer) -> None:
    """The database returns; the probe first stores the outage it kept in memory, and while that write
    is in flight the status page's tick re-derives the components (recording only what it changed
    itself). The recovery must still be recorded, after the outage."""

    async def scenario(_: Services) -> list[tuple[ServiceState, ServiceState]]:
        store = _GatedStore(server.app.state.runtime.client[f"status-race-{uuid.uuid4().hex[:8]}"])
        status = StatusService(store, PubSub(), StatusSettings(damping_probes=1))

        def storage() -> ServiceState:
            return next(c.status for c in status.snapshot().services if c.name == "storage")

        store.down = True
        await status.probe()  # the outage: shown, not stored
        assert storage() is ServiceState.MAJOR_OUTAGE
        store.down, store.gate = False, asyncio.Event()
        probe = asyncio.create_task(status.probe())
        await store.entered.wait()  # the kept outage is being written
        await status.reconcile({}, {}, record=frozenset())  # a status page tick, in between
        store.gate.set()
        await probe
        assert storage() is ServiceState.OPERATIONAL
        await status.probe()  # a later probe changes nothing more
        rows, _ = await store.history("storage", 10, None)
        return [(t.from_state, t.to_state) for t in rows]

    assert server.call(scenario) == [
        (ServiceState.MAJOR_OUTAGE, ServiceState.OPERATIONAL),
        (ServiceState.OPERATIONAL, ServiceState.MAJOR_OUTAGE),
    ]


async def test_status_subscription_resumes_from_a_position(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    latest = (await gql.data(HISTORY, {"first": 1}, key=admin_key))["statusHistory"]["nodes"]
    start = latest[0]["position"] if latest else None
    await set_status(gql, admin_key, "storage", "PARTIAL_OUTAGE")
    await set_status(gql, admin_key, "storage", "OPERATIONAL")
    async with session(server, {"apiKey": admin_key}) as ws:
        await subscribe(ws, "r", RESUMABLE_STATUS, {"after": start})
        first = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
        second = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
        assert (first["status"], second["status"]) == ("PARTIAL_OUTAGE", "OPERATIONAL")
        await set_status(gql, admin_key, "api", "DEGRADED_PERFORMANCE")
        try:
            live = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
            assert live["status"] == "DEGRADED_PERFORMANCE" and live["position"] != second["position"]
        finally:
            await set_status(gql, admin_key, "api", "OPERATIONAL")


async def test_an_override_reaches_subscribers_of_another_process(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    with server_process(server) as other:  # default intervals: the override arrives by its poll
        async with session(other, {"apiKey": admin_key}) as ws:
            await subscribe(ws, "s", STATUS_SUB)
            assert (await receive(ws))["payload"]["data"]["serviceStatusChanged"]["status"] == "OPERATIONAL"
            await set_status(gql, admin_key, "storage", "UNDER_MAINTENANCE", description="Upgrade")
            try:
                changed = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
                assert changed["status"] == "UNDER_MAINTENANCE"
            finally:
                await set_status(gql, admin_key, "storage", "OPERATIONAL")


async def test_no_connection_init_closes_with_4408(server: LiveServer) -> None:
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_a_credential_expiring_while_connected_closes_with_4403(server: LiveServer) -> None:
    org = make_org(server, expires_at=datetime.now(UTC) + timedelta(milliseconds=1500))
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": org.key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_subscriptions_per_connection_are_limited(server: LiveServer, admin_key: str) -> None:
    from app.web.view import MAX_SUBSCRIPTIONS_PER_CONNECTION as LIMIT

    async with session(server, {"apiKey": admin_key}) as ws:
        for i in range(LIMIT):
            await subscribe(ws, f"s{i}", STATUS_SUB)
            assert (await receive(ws))["type"] == "next"
        await subscribe(ws, "one-too-many", STATUS_SUB)
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "one-too-many"
        ext = refused["payload"][0]["extensions"]
        assert (
            ext["code"] == "INVALID_REQUEST"
            and ext["requestId"]
            and ext["details"][0]["field"] == "subscription"
        )


async def test_shutdown_closes_subscriptions_with_1001(server: LiveServer, admin_key: str) -> None:
    live, stop = start_server(server.settings.model_copy(update={"port": _free_port()}))
    try:
        async with session(live, {"apiKey": admin_key}) as ws:
            await subscribe(ws, "s", STATUS_SUB)
            assert (await receive(ws))["type"] == "next"
            await asyncio.to_thread(stop)
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert not live.services.feed.running  # and the lifespan stopped the feed afterwards
    finally:
        stop()

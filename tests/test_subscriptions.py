"""Live updates over WebSocket: serviceStatusChanged and errorLogged, both sub-protocols."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import GraphQLClient, LiveServer, Org, make_org, server_process
from tests.documents import SET_SERVICE_STATUS
from tests.helpers import log_error

STATUS_SUB = "subscription { serviceStatusChanged { status services { name status description } } }"
ERRORS_SUB = (
    "subscription($o: ID!, $s: Severity) { errorLogged(orgId: $o, minSeverity: $s) "
    "{ id orgId message severity } }"
)
TIMEOUT = 10


async def receive(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] not in ("ping", "pong", "ka"):
            return message


@asynccontextmanager
async def session(
    server: LiveServer, payload: dict[str, Any], protocol: str = "graphql-transport-ws"
) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = await receive(ws)
        assert ack["type"] == "connection_ack", ack
        yield ws


async def subscribe(ws: ClientConnection, op_id: str, query: str, variables: dict | None = None) -> None:
    await ws.send(
        json.dumps(
            {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}}
        )
    )


async def test_status_emits_at_once_then_on_change(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    async with session(server, {"apiKey": admin_key}) as ws:
        await subscribe(ws, "s1", STATUS_SUB)
        first = await receive(ws)
        assert first["type"] == "next" and first["id"] == "s1"
        assert {s["name"] for s in first["payload"]["data"]["serviceStatusChanged"]["services"]} >= {
            "api",
            "storage",
            "authentication",
        }

        try:
            await gql.data(
                SET_SERVICE_STATUS,
                {"service": "api", "status": "DEGRADED_PERFORMANCE", "description": "Deploy in progress"},
                key=admin_key,
            )
            changed = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
            assert changed["status"] == "DEGRADED_PERFORMANCE"
            api = next(s for s in changed["services"] if s["name"] == "api")
            assert api == {
                "name": "api",
                "status": "DEGRADED_PERFORMANCE",
                "description": "Deploy in progress",
            }
        finally:
            await gql.data(SET_SERVICE_STATUS, {"service": "api", "status": "OPERATIONAL"}, key=admin_key)
        cleared = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]
        assert next(s for s in cleared["services"] if s["name"] == "api")["status"] == "OPERATIONAL"


async def test_error_feed_is_filtered_and_isolated(server: LiveServer, gql: GraphQLClient, org: Org) -> None:
    other = make_org(server)
    async with session(server, {"headers": {"X-API-KEY": org.key}}) as ws:
        await subscribe(ws, "e1", ERRORS_SUB, {"o": org.id, "s": "HIGH"})
        # The subscription is live once the server has registered it; an event logged before that
        # would not be delivered, so wait for the registration rather than sleeping.
        await wait_for_subscribers(server, 1)
        await log_error(gql, other.id, other.key, message="not yours", severity="CRITICAL")
        await log_error(gql, org.id, org.key, message="too low", severity="MEDIUM")
        wanted = await log_error(gql, org.id, org.key, message="yours", severity="CRITICAL")
        message = await receive(ws)
        assert message["payload"]["data"]["errorLogged"] == {
            "id": wanted["id"],
            "orgId": org.id,
            "message": "yours",
            "severity": "CRITICAL",
        }


async def test_feed_of_another_organization_is_refused(server: LiveServer, org: Org) -> None:
    other = make_org(server)
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "e1", ERRORS_SUB, {"o": other.id})
        message = await receive(ws)
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("payload", [{}, {"apiKey": "bogus"}, {"headers": {"X-API-KEY": "bogus"}}])
async def test_bad_credentials_close_with_4403(server: LiveServer, payload: dict) -> None:
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_legacy_graphql_ws_protocol(server: LiveServer, gql: GraphQLClient, org: Org) -> None:
    async with session(server, {"apiKey": org.key}, protocol="graphql-ws") as ws:
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": {"query": STATUS_SUB}}))
        message = await receive(ws)
        assert message["type"] == "data" and message["id"] == "1"
        assert message["payload"]["data"]["serviceStatusChanged"]["status"]


async def wait_for_subscribers(server: LiveServer, at_least: int) -> None:
    from app.events.feed import EVENTS_TOPIC

    async def registered() -> None:
        # The server's registry lives on the server thread's loop: nothing there can be awaited from the
        # test's loop, so this watches it at a short interval, bounded by TIMEOUT.
        while server.services.pubsub.subscriber_count(EVENTS_TOPIC) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(registered(), TIMEOUT)


RESUMABLE = (
    "subscription($o: ID!, $after: String) { errorLogged(orgId: $o, after: $after) { id message position } }"
)


async def test_resume_after_a_reconnect_without_gap_or_duplicate(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "live", RESUMABLE, {"o": org.id})
        await wait_for_subscribers(server, 1)
        first = await log_error(gql, org.id, org.key, message="seen live")
        seen = (await receive(ws))["payload"]["data"]["errorLogged"]
        assert seen["id"] == first["id"] and seen["position"]
    # Disconnected: these are missed.
    missed = [await log_error(gql, org.id, org.key, message=f"missed {i}") for i in range(3)]
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "resume", RESUMABLE, {"o": org.id, "after": seen["position"]})
        replayed = [(await receive(ws))["payload"]["data"]["errorLogged"]["id"] for _ in missed]
        assert replayed == [e["id"] for e in missed]
        live = await log_error(gql, org.id, org.key, message="after the seam")
        assert (await receive(ws))["payload"]["data"]["errorLogged"]["id"] == live["id"]


async def test_a_malformed_position_is_refused(server: LiveServer, org: Org) -> None:
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "bad", RESUMABLE, {"o": org.id, "after": "nonsense"})
        message = await receive(ws)
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "INVALID_REQUEST"


@pytest.fixture
def second_process(server: LiveServer) -> Iterator[LiveServer]:
    with server_process(server) as other:
        yield other


async def test_a_second_server_process_on_the_same_database_delivers_too(
    second_process: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    anchor = await log_error(gql, org.id, org.key, message="anchor")
    missed = await log_error(gql, org.id, org.key, message="missed")
    async with session(second_process, {"apiKey": org.key}) as ws:
        await subscribe(ws, "x", RESUMABLE, {"o": org.id, "after": anchor["position"]})
        # The replay arrives once the subscription is listening (it listens before it reads).
        assert (await receive(ws))["payload"]["data"]["errorLogged"]["id"] == missed["id"]
        event = await log_error(gql, org.id, org.key, message="through the first instance")
        assert (await receive(ws))["payload"]["data"]["errorLogged"]["id"] == event["id"]


async def test_with_change_streams_delivery_does_not_wait_for_the_poll(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    """A second process that streams (FEED_MODE=stream) and polls only once a minute: an event logged
    through the first instance reaches its subscriber well before any poll could."""
    with server_process(server, FEED_MODE="stream", FEED_POLL_SECONDS="60") as other:
        anchor = await log_error(gql, org.id, org.key, message="anchor")
        missed = await log_error(gql, org.id, org.key, message="missed")
        async with session(other, {"apiKey": org.key}) as ws:
            await subscribe(ws, "x", RESUMABLE, {"o": org.id, "after": anchor["position"]})
            # The replay proves the subscription listens; what follows can only come by the stream.
            assert (await receive(ws))["payload"]["data"]["errorLogged"]["id"] == missed["id"]
            event = await log_error(gql, org.id, org.key, message="streamed")
            delivered = (await asyncio.wait_for(receive(ws), 10))["payload"]["data"]["errorLogged"]
            assert delivered["id"] == event["id"]


async def test_no_per_socket_compression_by_default(server: LiveServer, org: Org) -> None:
    """permessage-deflate costs tens of KiB per idle subscriber; status messages are tiny."""
    async with session(server, {"apiKey": org.key}) as ws:
        assert ws.protocol.extensions == []

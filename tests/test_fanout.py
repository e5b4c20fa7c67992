"""A published event is executed once per distinct subscription document and variables
(app.graphql.execution.fanout), yet every subscriber receives exactly what its own selection asked for, under
its own operation id."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import SET_SERVICE_STATUS
from tests.helpers import log_error
from tests.test_subscriptions import TIMEOUT, receive, session, subscribe, wait_for_subscribers

ALL_STATUS = (
    "subscription { serviceStatusChanged { status position timestamp "
    "services { name status description updatedAt cause observed } } }"
)
ROLL_UP = "subscription { serviceStatusChanged { status } }"
COMPONENTS = "subscription { serviceStatusChanged { services { name status description } } }"
ALIASED = "subscription { s: serviceStatusChanged { state: status position } }"
OPTIONAL = "subscription($t: Boolean!) { serviceStatusChanged { status timestamp @include(if: $t) } }"


async def executions(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    match = re.search(r"^error_tracker_subscription_executions_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def next_text_frame(ws: ClientConnection) -> dict[str, Any]:
    """The next message, which must arrive as a text frame (browser clients cannot parse binary ones)."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(frame, str), f"binary frame: {frame!r}"
        message = json.loads(frame)
        if message["type"] not in ("ping", "pong", "ka"):
            return message


async def test_status_change_reaches_each_selection(
    server: LiveServer, gql: GraphQLClient, http: httpx.AsyncClient, admin_key: str, org: Org
) -> None:
    # (connection, operation id, document, variables); two operations share one connection, and the
    # last two differ only by their variables.
    plan = [
        ("full", "all", ALL_STATUS, None),
        ("a", "roll-up", ROLL_UP, None),
        ("b", "roll-up", ROLL_UP, None),
        ("b", "components", COMPONENTS, None),
        ("c", "aliased", ALIASED, None),
        ("d", "with", OPTIONAL, {"t": True}),
        ("e", "without", OPTIONAL, {"t": False}),
    ]
    names = sorted({conn for conn, *_ in plan})
    sessions = [session(server, {"apiKey": admin_key if name == "full" else org.key}) for name in names]
    sockets = dict(zip(names, [await s.__aenter__() for s in sessions], strict=True))
    try:
        for conn, op_id, document, variables in plan:
            await subscribe(sockets[conn], op_id, document, variables)
        for conn, _op_id, _document, _variables in plan:
            assert (await next_text_frame(sockets[conn]))["type"] == "next"  # the current status
        before = await executions(http)
        change = {"service": "storage", "status": "UNDER_MAINTENANCE"}
        await gql.data(SET_SERVICE_STATUS, change, key=admin_key)
        received: dict[str, dict[str, Any]] = {}
        for conn in names:
            for _ in range(sum(1 for c, *_ in plan if c == conn)):
                message = await next_text_frame(sockets[conn])
                assert message["type"] == "next"
                received[message["id"]] = message["payload"]
        after = await executions(http)
    finally:
        await gql.data(SET_SERVICE_STATUS, {"service": "storage", "status": "OPERATIONAL"}, key=admin_key)
        for s in sessions:
            await s.__aexit__(None, None, None)

    full = received["all"]["data"]["serviceStatusChanged"]
    assert full["status"] == "UNDER_MAINTENANCE"
    assert next(c for c in full["services"] if c["name"] == "storage")["status"] == "UNDER_MAINTENANCE"
    assert received["roll-up"] == {"data": {"serviceStatusChanged": {"status": full["status"]}}}
    assert received["components"] == {
        "data": {
            "serviceStatusChanged": {
                "services": [{k: c[k] for k in ("name", "status", "description")} for c in full["services"]]
            }
        }
    }
    assert received["aliased"] == {"data": {"s": {"state": full["status"], "position": full["position"]}}}
    assert received["with"] == {
        "data": {"serviceStatusChanged": {"status": full["status"], "timestamp": full["timestamp"]}}
    }
    assert received["without"] == {"data": {"serviceStatusChanged": {"status": full["status"]}}}
    # Seven subscriptions, six distinct (document, variables): "roll-up" on connections a and b shares.
    assert after - before == 6


ERRORS = (
    "subscription($o: ID!, $s: Severity) { errorLogged(orgId: $o, minSeverity: $s) { id message severity } }"
)
ERROR_IDS = "subscription($o: ID!) { errorLogged(orgId: $o) { id } }"


async def test_error_event_reaches_each_selection_of_its_organization_only(
    server: LiveServer, gql: GraphQLClient, http: httpx.AsyncClient, org: Org
) -> None:
    other = make_org(server)
    plan = [  # (organization, operation id, document, variables)
        (org, "x1", ERRORS, {"o": org.id}),
        (org, "x2", ERRORS, {"o": org.id}),
        (org, "high", ERRORS, {"o": org.id, "s": "HIGH"}),
        (org, "ids", ERROR_IDS, {"o": org.id}),
        (other, "elsewhere", ERRORS, {"o": other.id}),
    ]
    sessions = [session(server, {"apiKey": o.key}) for o, *_ in plan]
    sockets = [await s.__aenter__() for s in sessions]
    try:
        for ws, (_o, op_id, document, variables) in zip(sockets, plan, strict=True):
            await subscribe(ws, op_id, document, variables)
        await wait_for_subscribers(server, len(plan))
        before = await executions(http)
        logged = await log_error(gql, org.id, org.key, message="disk full", severity="CRITICAL")
        messages = [await next_text_frame(ws) for ws in sockets[:4]]
        after = await executions(http)
        mine = await log_error(gql, other.id, other.key, message="theirs", severity="LOW")
        elsewhere = await receive(sockets[4])  # the other organization's first event is its own
    finally:
        for s in sessions:
            await s.__aexit__(None, None, None)

    full = {"id": logged["id"], "message": "disk full", "severity": "CRITICAL"}
    assert [(m["id"], m["payload"]) for m in messages] == [
        ("x1", {"data": {"errorLogged": full}}),
        ("x2", {"data": {"errorLogged": full}}),
        ("high", {"data": {"errorLogged": full}}),
        ("ids", {"data": {"errorLogged": {"id": logged["id"]}}}),
    ]
    assert after - before == 3  # x1 and x2 share; "high" has other variables, "ids" another document
    assert elsewhere["payload"]["data"]["errorLogged"]["id"] == mine["id"]


async def test_a_legacy_graphql_ws_subscriber_gets_the_shared_result_too(
    server: LiveServer, gql: GraphQLClient, admin_key: str, org: Org
) -> None:
    async with (
        session(server, {"apiKey": org.key}, protocol="graphql-ws") as legacy,
        session(server, {"apiKey": org.key}) as modern,
    ):
        await legacy.send(json.dumps({"id": "old", "type": "start", "payload": {"query": ROLL_UP}}))
        await subscribe(modern, "new", ROLL_UP)
        assert (await next_text_frame(legacy))["type"] == "data"  # the current status
        assert (await next_text_frame(modern))["type"] == "next"
        try:
            await gql.data(SET_SERVICE_STATUS, {"service": "api", "status": "PARTIAL_OUTAGE"}, key=admin_key)
            old, new = await next_text_frame(legacy), await next_text_frame(modern)
        finally:
            await gql.data(SET_SERVICE_STATUS, {"service": "api", "status": "OPERATIONAL"}, key=admin_key)
    expected = {"data": {"serviceStatusChanged": {"status": "PARTIAL_OUTAGE"}}}
    assert (old["type"], old["id"], old["payload"]) == ("data", "old", expected)
    assert (new["type"], new["id"], new["payload"]) == ("next", "new", expected)

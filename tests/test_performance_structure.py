"""What keeps the server fast, asserted structurally (no timing): caches and executor shortcuts installed,
an index read in order for every list query, one database round trip per list page, none for
serviceStatus. Timings live in bench/ (docs/performance.md)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo import AsyncMongoClient, monitoring
from uvicorn.server import ServerState

from app.events.model import EventFilter, Severity
from app.events.store import TIMELINE_FILTERS, _match
from app.graphql.execution import document_cache as parse_cache
from app.graphql.execution.compiled import CompiledExecutor
from app.graphql.execution.document_cache import DocumentCache
from app.graphql.execution.fanout import SharedResultsExecutor
from app.graphql.execution.leaf_fields import LeafFieldsExecutor
from app.graphql.schema import build_schema
from app.runtime.protocol import guarded_protocol
from app.status.service import StatusService
from app.web.middleware import GraphQLRoute
from app.web.view import DirectLane, GraphQLView
from tests.conftest import GraphQLClient, LiveServer, _free_port, make_org, start_server
from tests.helpers import log_error


class Commands(monitoring.CommandListener):
    """Every command the driver sends while `active` (pymongo listeners cannot be unregistered)."""

    def __init__(self) -> None:
        self.active = False
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.active:
            self.seen.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    def of_request(self, org_id: str) -> list[str]:
        """Commands about one organization's data (background probes and feed polls left out)."""
        names = []
        for name, command in self.seen:
            text = repr(command)
            if org_id in text:
                names.append(f"{name}:{command.get(name)}")
        return names


@pytest.fixture(scope="module")
def monitored(server: LiveServer) -> Iterator[tuple[LiveServer, Commands]]:
    listener = Commands()
    monitoring.register(listener)  # applies to clients created from now on: this server's
    live, stop = start_server(
        server.settings.model_copy(update={"port": _free_port(), "auth_cache_ttl_seconds": 30})
    )
    try:
        yield live, listener
    finally:
        stop()


async def test_a_repeated_document_is_parsed_and_validated_once() -> None:
    schema = build_schema()
    built = [factory() for factory in schema.extensions]  # type: ignore[operator]
    assert any(isinstance(e, DocumentCache) for e in built)
    query = "{ __typename again: __typename }"
    context = SimpleNamespace(request_id="req_test")  # what the error formatter records on
    await schema.execute(query, context_value=context)
    before = parse_cache.sizes()
    assert (await schema.execute(query, context_value=context)).errors is None
    after = parse_cache.sizes()
    assert (after["parsed"], after["validated"]) == (before["parsed"], before["validated"])


def test_the_executor_shortcuts_leaves_and_shares_subscription_results() -> None:
    executor = build_schema().execution_context_class
    assert issubclass(executor, LeafFieldsExecutor) and issubclass(executor, SharedResultsExecutor)
    assert issubclass(executor, CompiledExecutor)


def test_a_graphql_request_passes_the_documented_layers(server: LiveServer) -> None:
    """The request floor (docs/performance.md): Starlette's error middleware, the request id and log
    line, the WebSocket shortcut, the SDK ingestion routes, the body limit and the GraphQL route, then
    the view; no router. CORS adds one layer only when origins are allowed (not in production by
    default), tracing one when it is on."""
    layers: list[str] = []
    layer: Any = server.app.build_middleware_stack()
    while not isinstance(layer, GraphQLView):
        layers.append(type(layer).__name__)
        layer = layer.endpoint if isinstance(layer, GraphQLRoute) else layer.app
    cors = ["CORSMiddleware"] if server.settings.allowed_origins else []
    assert layers == [
        "ServerErrorMiddleware",
        "RequestIdMiddleware",
        "WebSocketShortcut",
        "IngestRoutes",
        *cors,
        "BodySizeLimit",
        "GraphQLRoute",
    ]


async def test_the_benchmark_documents_are_answered_by_compiled_plans(server: LiveServer) -> None:
    """Each benchmark document, sent over HTTP, completes its root field from a plan (counted)."""
    from bench.run import WORKLOADS

    org = make_org(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        gql = GraphQLClient(http)
        event = await log_error(gql, org.id, org.key)
        for query, _mode in WORKLOADS.values():
            query = query.replace('"bench"', f'"{org.id}"').replace("EVENT_ID", event["id"])
            before = (CompiledExecutor.compiled, CompiledExecutor.fallbacks, CompiledExecutor.uncovered)
            await gql.data(query, {"k": "structure"} if "$k" in query else None, key=org.key)
            after = (CompiledExecutor.compiled, CompiledExecutor.fallbacks, CompiledExecutor.uncovered)
            assert after == (before[0] + 1, before[1], before[2]), query


async def test_database_round_trips_per_request(monitored: tuple[LiveServer, Commands]) -> None:
    live, commands = monitored
    org = make_org(live)
    async with httpx.AsyncClient(base_url=live.url) as http:
        from tests.conftest import GraphQLClient

        gql = GraphQLClient(http)
        await log_error(gql, org.id, org.key)  # warms the credential and organization caches
        page = "query($o: ID!) { orgErrors(orgId: $o, first: 20) { nodes { id message } } }"

        async def commands_of(query: str, variables: dict) -> list[str]:
            commands.seen.clear()
            commands.active = True
            try:
                body = (await gql.post(query, variables, key=org.key)).json()
            finally:
                commands.active = False
            assert "errors" not in body, body
            return commands.of_request(org.id)

        assert await commands_of(page, {"o": org.id}) == ["aggregate:error_events"]
        counted = page.replace("nodes {", "totalCount nodes {")
        assert await commands_of(counted, {"o": org.id}) == [
            "aggregate:error_events",
            "aggregate:error_events",
        ]
        status = await commands_of("{ serviceStatus { status } }", {})
        # Answered from memory: the snapshot is read synchronously, so it cannot wait on the database.
        # (Background polls may send commands in the same instant; they are about no organization.)
        assert status == [] and not inspect.iscoroutinefunction(StatusService.snapshot)
        again = (
            'mutation($o: ID!) { logError(orgId: $o, error: {message: "again", severity: LOW}) { errorId } }'
        )
        logged = await commands_of(again, {"o": org.id})
        # The position counters are not about one organization; the rest is: the merge alias of the
        # fingerprint, the insert, the group count, and a new group's first activity entry.
        # A new group also asks whether a merge took its fingerprint meanwhile (then its count moves).
        assert logged == [
            "find:group_aliases",
            "insert:error_events",
            "update:error_groups",
            "find:group_aliases",
            "insert:group_activity",
        ]
        # An existing group: its fingerprint's merge alias is known (no alias changed since: the merge
        # generation read with the position says so), and it is counted and its triage state read
        # (regression, ignore, escalation) in one findAndModify.
        assert await commands_of(again, {"o": org.id}) == [
            "insert:error_events",
            "findAndModify:error_groups",
        ]


FILTERS = [
    EventFilter(),
    EventFilter(source="svc"),
    EventFilter(code="E1"),
    EventFilter(fingerprint="f" * 16),
    EventFilter(source="svc", severities=frozenset({Severity.HIGH})),
    EventFilter(code="E1", search="disk", from_=datetime(2026, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("flt", FILTERS)
async def test_every_list_query_reads_an_index_in_order(server: LiveServer, flt: EventFilter) -> None:
    client: AsyncMongoClient = AsyncMongoClient(server.settings.mongodb_uri)
    try:
        info = await client[server.settings.mongodb_db]["error_events"].index_information()
    finally:
        await client.close()
    indexes = [[key for key, _ in spec["key"]] for spec in info.values()]
    # Equality on the organization (and on the query's most selective field that has an index of its
    # own), then event_id: the page is read in order, without a sort and without other rows.
    match = _match("org", flt)
    wanted = next((f for f in TIMELINE_FILTERS if f in match), None)
    assert (["org_id", wanted, "event_id"] if wanted else ["org_id", "event_id"]) in indexes, indexes


async def test_mongodb_plans_a_list_page_as_an_index_scan(server: LiveServer) -> None:
    """On MongoDB (MONGODB_URI set), the planner's own word. nx-27017 answers explain with a stub plan."""
    client: AsyncMongoClient = AsyncMongoClient(server.settings.mongodb_uri)
    try:
        db = client[server.settings.mongodb_db]
        pipeline = [
            {"$match": _match("org", EventFilter(source="svc"))},
            {"$sort": {"event_id": -1}},
            {"$limit": 21},
        ]
        plan = await db.command("explain", {"aggregate": "error_events", "pipeline": pipeline, "cursor": {}})
    finally:
        await client.close()
    text = repr(plan)
    if "'stage': 'EOF'" in text and "IXSCAN" not in text:
        pytest.skip("nx-27017 answers explain with a stub plan; this runs against MongoDB")
    assert "IXSCAN" in text and "org_source_timeline" in text and "'SORT'" not in text


async def test_a_repeated_query_takes_the_direct_lane_and_answers_the_same(server: LiveServer) -> None:
    """The first request of a document goes through Strawberry's view (which validates it); the same
    document again through the view's direct lane: same status, headers and body. A query that errors
    on the lane is answered by the full path, its budget charged once."""
    org = make_org(server)
    async with httpx.AsyncClient(base_url=server.url) as http:
        event = await log_error(GraphQLClient(http), org.id, org.key, source="lane")
        query = "query One($o: ID!, $i: ID!) { errorEvent(orgId: $o, id: $i) { id source __typename } }"
        body = {"query": query, "variables": {"o": org.id, "i": event["id"]}}

        async def post(payload: dict[str, Any]) -> httpx.Response:
            return await http.post("/graphql", json=payload, headers={"X-API-KEY": org.key})

        def shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
            varying = {"x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset", "date"}
            headers = [(k, v) for k, v in response.headers.items() if k not in varying]
            return response.status_code, headers, response.content

        before = DirectLane.answered
        full = await post(body)
        assert DirectLane.answered == before
        direct = await post(body)
        assert DirectLane.answered == before + 1
        assert shape(direct) == shape(full) and b'"source":"lane"' in direct.content
        remaining = int(direct.headers["x-ratelimit-remaining"])

        failing = {"query": query, "variables": {"o": "org-someone-else", "i": event["id"]}}
        first_refusal = await post(failing)  # validated by the full path
        refused = await post(failing)
        for answer in (first_refusal, refused):  # the same error both times (its time and request id aside)
            error = answer.json()["errors"][0]
            assert (error["message"], error["path"], answer.status_code) == (
                first_refusal.json()["errors"][0]["message"],
                ["errorEvent"],
                200,
            )
        assert DirectLane.answered == before + 1  # errors: the full path answered
        assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert int(refused.headers["x-ratelimit-remaining"]) == remaining - 2  # one unit per request


async def test_an_answer_from_memory_is_reused_until_the_state_changes(
    server: LiveServer, admin_key: str
) -> None:
    """serviceStatus, repeated: executed once on the direct lane, then its bytes reused (counted) and
    identical; a status change makes the next answer a fresh execution showing it. A document reading
    the clock (`timestamp`) is never reused; every request is still charged."""
    from app.graphql.execution.answers import AnswerCache
    from tests.test_status import set_status

    org = make_org(server)
    # Components only: whatever the probes make of the machine, this test changes "authentication".
    query = "query S { serviceStatus { services { name status description } position __typename } }"
    async with httpx.AsyncClient(base_url=server.url) as http:
        gql = GraphQLClient(http)

        async def post(document: str) -> httpx.Response:
            return await http.post("/graphql", json={"query": document}, headers={"X-API-KEY": org.key})

        first = await post(query)  # the full path (validates)
        stored, hits = AnswerCache.stored, AnswerCache.hits
        second = await post(query)  # the direct lane executes it and keeps the body
        assert (AnswerCache.stored, AnswerCache.hits) == (stored + 1, hits)
        answered = DirectLane.answered
        third = await post(query)
        assert (AnswerCache.stored, AnswerCache.hits, DirectLane.answered) == (
            stored + 1,
            hits + 1,
            answered + 1,
        )
        assert first.content == second.content == third.content
        assert int(third.headers["x-ratelimit-remaining"]) == int(second.headers["x-ratelimit-remaining"]) - 1

        await set_status(gql, admin_key, "authentication", "UNDER_MAINTENANCE", description="reuse test")
        try:
            changed = await post(query)
            assert AnswerCache.hits == hits + 1 and AnswerCache.stored == stored + 2
            assert b"reuse test" in changed.content and changed.content != third.content
            assert (await post(query)).content == changed.content and AnswerCache.hits == hits + 2
        finally:
            await set_status(gql, admin_key, "authentication", "OPERATIONAL")
        after = await post(query)  # the components as before, a later position: executed again
        assert b"reuse test" not in after.content and after.content != third.content
        assert AnswerCache.hits == hits + 2 and AnswerCache.stored == stored + 3

        clock = "{ serviceStatus { status timestamp } }"
        for _ in range(3):
            assert (await post(clock)).status_code == 200
        anonymous = await http.post("/graphql", json={"query": query})
        assert anonymous.status_code == 401 and b"INVALID_API_KEY" in anonymous.content
        stored_now, hits_now = AnswerCache.stored, AnswerCache.hits
        assert hits_now == hits + 2 and stored_now == stored + 3


class _RecordingTransport(asyncio.Transport):
    """A connection's transport that keeps what the server writes, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _served(app: Any, request: bytes) -> list[bytes]:
    config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
    protocol = guarded_protocol(10, 30, 10)(config=config, server_state=ServerState(), app_state={})
    transport = _RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await asyncio.gather(*protocol.tasks)
    protocol.connection_lost(None)
    return transport.writes


async def test_a_response_of_declared_length_is_one_socket_write() -> None:
    """The head of a response with Content-Length goes out with its body (one write, one segment); a
    streamed one (no length) still has its head written first, before its body is known."""
    sent_head = asyncio.Event()

    async def fixed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def streamed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent_head.set()
        await send({"type": "http.response.body", "body": b"ok", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
    writes = await _served(fixed, request)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nok")
    writes = await _served(streamed, request)
    assert sent_head.is_set() and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")  # the head alone, written at once
    assert b"".join(writes[1:]) == b"2\r\nok\r\n0\r\n\r\n"


def test_every_benchmark_target_names_a_measured_workload() -> None:
    """The verdict tables `make bench` prints (bench/targets.py) find their rows by workload name: a
    renamed workload would otherwise drop its target from the table without a word."""
    from bench.run import WORKLOADS
    from bench.sdk_ingest import envelope_row, envelope_script
    from bench.targets import HTTP_TARGETS, SDK_TARGETS

    assert {t.workload for t in HTTP_TARGETS} <= WORKLOADS.keys()
    _script, size = envelope_script("key")
    assert all(envelope_row(size).startswith(t.workload) for t in SDK_TARGETS)

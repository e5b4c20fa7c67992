"""What keeps the server fast, asserted structurally (no timing): caches and executor shortcuts installed,
an index read in order for every list query, one database round trip per list page, none for
serviceStatus. Timings live in bench/ (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring

from app.events.model import EventFilter, Severity
from app.events.store import TIMELINE_FILTERS, _match
from app.graphql.execution import document_cache as parse_cache
from app.graphql.execution.document_cache import DocumentCache
from app.graphql.execution.fanout import SharedResultsExecutor
from app.graphql.execution.leaf_fields import LeafFieldsExecutor
from app.graphql.schema import build_schema
from tests.conftest import LiveServer, _free_port, make_org, start_server
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
    parsed, validated = parse_cache._parse.cache_info(), parse_cache._validate.cache_info()
    assert (await schema.execute(query, context_value=context)).errors is None
    assert parse_cache._parse.cache_info().hits == parsed.hits + 1
    assert parse_cache._validate.cache_info().hits == validated.hits + 1


def test_the_executor_shortcuts_leaves_and_shares_subscription_results() -> None:
    executor = build_schema().execution_context_class
    assert issubclass(executor, LeafFieldsExecutor) and issubclass(executor, SharedResultsExecutor)


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
        assert status == [] and not commands.seen  # answered from memory
        logged = await commands_of(
            'mutation($o: ID!) { logError(orgId: $o, error: {message: "again", severity: LOW}) { errorId } }',
            {"o": org.id},
        )
        # The position counter is not about one organization; the insert and the group count are.
        assert logged == ["insert:error_events", "update:error_groups"]


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

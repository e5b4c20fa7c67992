"""Abusive documents are refused before execution with QUERY_TOO_COMPLEX naming each exceeded limit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from graphql import parse, validate
from ulid import ULID
from websockets.asyncio.client import connect

from app.graphql.context import RequestContext
from app.graphql.execution import document_cache
from app.graphql.limits import Limits, limit_rule
from app.graphql.schema import build_schema
from tests.conftest import GraphQLClient, LiveServer, Org

LIMITS = Limits()


def details(error: dict) -> dict[str, str]:
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert error["extensions"]["status"] == 400
    return {d["field"]: d["message"] for d in error["extensions"]["details"]}


def test_depth_is_measured_through_fragments() -> None:
    """The schema is shallow (depth 4 at most), so the rule is checked with a lower limit."""
    schema = build_schema()._schema
    rule = limit_rule(Limits(max_depth=3))
    document = """
      query { orgErrors(orgId: "x") { ...Edges } }
      fragment Edges on ErrorEventConnection { edges { ... on ErrorEventEdge { node { id } } } }"""
    errors = validate(schema, parse(document), [rule])
    assert [e.original_error.details[0].field for e in errors] == ["depth"]  # type: ignore[union-attr]
    assert validate(schema, parse('{ orgErrors(orgId: "x") { totalCount } }'), [rule]) == []


async def test_aliases_tokens_and_cost_are_reported_together(gql: GraphQLClient, org: Org) -> None:
    aliases = " ".join(f"a{i}: serviceStatus {{ status }}" for i in range(LIMITS.max_aliases + 1))
    found = details(await gql.error(f"{{ {aliases} }}", key=org.key))
    assert set(found) == {"aliases"}
    assert str(LIMITS.max_aliases) in found["aliases"]

    expensive = " ".join(
        f'p{i}: orgErrors(orgId: "{org.id}", first: 100) {{ nodes {{ id message timestamp severity }} }}'
        for i in range(LIMITS.max_cost // 500 + 1)
    )
    found = details(await gql.error(f"{{ {expensive} }}", key=org.key))
    assert "cost" in found


async def test_a_variable_page_size_counts_as_its_default_or_the_largest_page(
    gql: GraphQLClient, org: Org
) -> None:
    page = "edges { cursor node { id orgId message severity timestamp receivedAt code source context } }"
    document = (
        "query($n: Int) { "
        + " ".join(f'c{i}: orgErrors(orgId: "{org.id}", first: $n) {{ {page} }}' for i in range(5))
        + " }"
    )
    refused = await gql.error(document, {"n": 1}, key=org.key)  # the estimate cannot be talked down
    assert "cost" in details(refused)
    cheap = document.replace("$n: Int", "$n: Int = 1")
    response = await gql.post(cheap, {"n": 1}, key=org.key)
    body = response.json()
    assert all(e["extensions"]["code"] != "QUERY_TOO_COMPLEX" for e in body.get("errors", []))


async def test_token_limit(gql: GraphQLClient, org: Org) -> None:
    document = "{ " + " ".join("serviceStatus { status }" for _ in range(LIMITS.max_tokens // 4 + 1)) + " }"
    found = details(await gql.error(document, key=org.key))
    assert set(found) == {"tokens"}


async def test_refusals_are_request_errors_under_graphql_response_json(
    http: httpx.AsyncClient, org: Org
) -> None:
    aliases = " ".join(f"a{i}: serviceStatus {{ status }}" for i in range(LIMITS.max_aliases + 1))
    response = await http.post(
        "/graphql",
        json={"query": f"{{ {aliases} }}"},
        headers={"X-API-KEY": org.key, "Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400 and "data" not in response.json()


async def test_introspection_is_on_in_development(gql: GraphQLClient, org: Org) -> None:
    body = (await gql.post("{ __schema { queryType { name } } }", key=org.key)).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_introspection_can_be_turned_off() -> None:
    result = await build_schema(introspection=False).execute(
        "{ __schema { queryType { name } } }",
        context_value=RequestContext(request_id="r", services=None),  # type: ignore[arg-type]
    )
    assert result.errors and result.errors[0].extensions["code"] == "GRAPHQL_VALIDATION_FAILED"


def fragment_chain(levels: int) -> str:
    """Each fragment spreads the next twice: 2**levels copies of the last one, in under a kilobyte."""
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    return f"query Q {{ ...F0 }} {chain} fragment F{levels} on Query {{ serviceStatus {{ status }} }}"


async def test_a_doubling_fragment_chain_is_refused_by_its_cost(gql: GraphQLClient, org: Org) -> None:
    found = details(await gql.error(fragment_chain(40), key=org.key))  # 2**40 fields if expanded
    assert set(found) == {"cost"}
    # A chain that stays within the cost runs, with its fields merged into one.
    data = await gql.data(fragment_chain(3), key=org.key)
    assert data["serviceStatus"]["status"]


def test_each_fragment_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measure of a fragment is reused at each spread: count the visits of the last one."""
    from app.graphql import limits

    schema = build_schema()._schema
    visits = 0
    original = limits._fragment

    def counting(name: str, *args: Any) -> Any:
        nonlocal visits
        visits += name == "F12"
        return original(name, *args)

    monkeypatch.setattr(limits, "_fragment", counting)
    errors = validate(schema, parse(fragment_chain(12)), [limit_rule(Limits())])
    assert [e.original_error.details[0].field for e in errors] == ["cost"]  # type: ignore[union-attr]
    assert visits == 2  # spread twice by F11, measured once, then taken from the memo


async def test_many_copies_of_one_field_are_refused_before_validation(gql: GraphQLClient, org: Org) -> None:
    flood = "{ " + " ".join("serviceStatus { status }" for _ in range(LIMITS.max_repeats + 1)) + " }"
    found = details(await gql.error(flood, key=org.key))
    assert set(found) == {"fields"} and "'serviceStatus'" in found["fields"]
    # Through fragments and inline fragments too (each distinct fragment counted once, as validation does).
    spread = " ".join(f"...S{i}" for i in range(LIMITS.max_repeats + 1))
    fragments = " ".join(
        f"fragment S{i} on Query {{ ... on Query {{ serviceStatus {{ status }} }} }}"
        for i in range(LIMITS.max_repeats + 1)
    )
    found = details(await gql.error(f"{{ {spread} }} {fragments}", key=org.key))
    assert set(found) == {"fields"}
    # Nested selection sets are counted too.
    nested = "{ serviceStatus { " + " ".join("status" for _ in range(LIMITS.max_repeats + 1)) + " } }"
    assert set(details(await gql.error(nested, key=org.key))) == {"fields"}
    # At the limit, the copies are merged and served.
    fine = "{ " + " ".join("serviceStatus { status }" for _ in range(LIMITS.max_repeats)) + " }"
    assert (await gql.data(fine, key=org.key))["serviceStatus"]["status"]


async def test_aliases_inside_introspection_count(gql: GraphQLClient, org: Org) -> None:
    trees = " ".join(
        f"i{i}: __schema {{ types {{ name fields {{ name type {{ name ofType {{ name }} }} }} }} }}"
        for i in range(LIMITS.max_aliases + 1)
    )
    assert "aliases" in details(await gql.error(f"{{ {trees} }}", key=org.key))
    # GraphiQL's own introspection query (deeply nested types, no aliases) still passes.
    from graphql import get_introspection_query

    body = (await gql.post(get_introspection_query(), key=org.key)).json()
    assert "errors" not in body and body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_error_stats_cost_by_its_buckets() -> None:
    schema = build_schema()._schema
    rule = limit_rule(Limits(max_cost=500))
    week = (
        '{ errorStats(orgId: "x", from: "2026-01-01T00:00:00Z", to: "2026-01-08T00:00:00Z", '
        "interval: HOUR) { total } }"
    )
    month = week.replace("01-08", "02-01")
    assert validate(schema, parse(week), [rule]) == []  # 168 buckets
    errors = validate(schema, parse(month), [rule])  # 744 buckets
    assert [e.original_error.details[0].field for e in errors] == ["cost"]  # type: ignore[union-attr]
    unknown = 'query($f: DateTime!, $t: DateTime!) { errorStats(orgId: "x", from: $f, to: $t) { total } }'
    assert validate(schema, parse(unknown), [rule])  # a range given by variables counts as the widest


async def test_error_stats_spends_read_units_by_range(gql: GraphQLClient, org: Org) -> None:
    query = (
        "query($f: DateTime!, $t: DateTime!, $i: StatsInterval!) "
        "{ errorStats(orgId: $o, from: $f, to: $t, interval: $i) { total } }"
    ).replace("$o", f'"{org.id}"')

    async def spent(start: str, end: str, interval: str) -> int:
        before = await gql.post("{ serviceStatus { status } }", key=org.key)
        response = await gql.post(query, {"f": start, "t": end, "i": interval}, key=org.key)
        assert response.status_code == 200 and "errors" not in response.json(), response.json()
        remaining = int(before.headers["X-RateLimit-Remaining"]) - 1
        return remaining - int(response.headers["X-RateLimit-Remaining"])

    assert await spent("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "HOUR") == 2  # 24 buckets, a day
    assert await spent("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "DAY") == 1 + 8 + 12  # 365 buckets


def test_large_documents_are_parsed_but_not_kept() -> None:
    padded = "{ serviceStatus { status } }" + "#" + "x" * (document_cache.MAX_CACHED_BYTES + 1) + "\n"
    before = document_cache.sizes()
    assert document_cache.cached_parse(padded, 2000) is not None
    assert document_cache.sizes()["documents"] == before["documents"]
    assert document_cache.sizes()["parsed"] == before["parsed"] + 1
    small = "{ serviceStatus { status } } # " + str(ULID())
    document = document_cache.cached_parse(small, 2000)
    assert document is not None and document_cache.entry_of(document) is not None
    assert document_cache.sizes()["documents"] in (before["documents"] + 1, document_cache.MAX_DOCUMENTS)


async def test_a_document_longer_than_the_limit_is_refused_unparsed(
    gql: GraphQLClient, server: LiveServer, org: Org
) -> None:
    """Comments cost parse time but no tokens: a document padded to 1 MB once cost 0.3 s of CPU."""
    limit = server.settings.max_query_bytes
    padded = "{ serviceStatus { status } }\n#" + "x" * limit + "\n"
    parsed = document_cache.sizes()["parsed"]
    found = details(await gql.error(padded, key=org.key))
    assert document_cache.sizes()["parsed"] == parsed  # not even by the direct lane
    assert set(found) == {"document"} and str(limit) in found["document"]
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": org.key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": padded}}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_dense_documents_are_kept_within_the_token_budget(gql: GraphQLClient, org: Org) -> None:
    """A parsed document weighs by its tokens (about 550 bytes each), not its length: distinct dense
    documents, each a few KB, fill the cache up to its token budget and no further, with their
    validations and compiled plans kept in the same entries."""
    per_document = 1_900  # comments are tokens too: each kept in the parsed document's token chain
    assert per_document <= document_cache.MAX_DOCUMENT_TOKENS
    count = 2 * document_cache.TOKEN_BUDGET // per_document
    for i in range(count):
        dense = f"{{ serviceStatus {{ status }} }} # {ULID()} {i}\n" + "#\n" * (per_document - 6)
        assert len(dense) < 4_200
        assert (await gql.data(dense, key=org.key))["serviceStatus"]["status"]
        held = document_cache.sizes()
        assert held["tokens"] <= document_cache.TOKEN_BUDGET, (i, held)
    held = document_cache.sizes()
    assert held["tokens"] > document_cache.TOKEN_BUDGET - 2 * per_document  # the budget, not fewer
    assert held["documents"] <= document_cache.TOKEN_BUDGET // per_document + document_cache.MAX_DOCUMENTS
    kept = [e for e in document_cache._cache.entries.values() if e.tokens >= per_document - 1]
    assert len(kept) <= document_cache.TOKEN_BUDGET // per_document
    assert kept and all(e.valid_for and e.plans for e in kept[-3:])  # validated once, plan kept with it
    over = "{ serviceStatus { status } }\n" + "#\n" * (document_cache.MAX_DOCUMENT_TOKENS + 10)
    before = document_cache.sizes()["documents"]
    document = document_cache.cached_parse(over, 10 * document_cache.MAX_DOCUMENT_TOKENS)
    assert document is not None and document_cache.entry_of(document) is None  # over its share: not kept
    assert document_cache.sizes()["documents"] == before

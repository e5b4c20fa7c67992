"""Abusive documents are refused before execution with QUERY_TOO_COMPLEX naming each exceeded limit."""

from __future__ import annotations

import httpx
from graphql import parse, validate

from app.graphql.context import RequestContext
from app.graphql.limits import Limits, limit_rule
from app.graphql.schema import build_schema
from tests.conftest import GraphQLClient, Org

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

"""Cost reporting: `X-GraphQL-Cost: include` adds the query's estimated cost and the budget left."""

from __future__ import annotations

import httpx

from tests.conftest import Org

QUERY_TOO_COMPLEX_LIMIT = 5000  # MAX_QUERY_COST's default
PAGE = "query Page($o: ID!) { orgErrors(orgId: $o, first: 7) { totalCount nodes { id message } } }"


async def test_cost_and_budget_in_extensions_on_request(http: httpx.AsyncClient, org: Org) -> None:
    body = {"query": PAGE, "variables": {"o": org.id}}
    plain = await http.post("/graphql", json=body, headers={"X-API-KEY": org.key})
    assert "extensions" not in plain.json()  # nothing unless asked for

    response = await http.post(
        "/graphql", json=body, headers={"X-API-KEY": org.key, "X-GraphQL-Cost": "include"}
    )
    assert response.status_code == 200
    cost = response.json()["extensions"]["cost"]
    # orgErrors 1 + (totalCount 1 + nodes 1 + id 1 + message 1) x first 7 = 29, as the limit counts it
    assert cost["requestedQueryCost"] == 29
    assert cost["maximumQueryCost"] == QUERY_TOO_COMPLEX_LIMIT
    throttle = cost["throttleStatus"]
    assert throttle["resource"] == "READ" and throttle["charged"] == 1
    assert throttle["currentlyAvailable"] == int(response.headers["x-ratelimit-remaining"])
    assert throttle["maximumAvailable"] == int(response.headers["x-ratelimit-limit"])
    assert throttle["resetAt"].endswith("Z")

    again = await http.post(
        "/graphql", json=body, headers={"X-API-KEY": org.key, "X-GraphQL-Cost": "include"}
    )
    assert again.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == (
        throttle["currentlyAvailable"] - 1
    )


async def test_cost_is_reported_with_the_error_of_a_too_costly_query(
    http: httpx.AsyncClient, org: Org
) -> None:
    page = "orgErrors(orgId: $o, first: 100) { nodes { id message severity timestamp source code } }"
    costly = "query($o: ID!) { " + " ".join(f"a{i}: {page}" for i in range(9)) + " }"
    response = await http.post(
        "/graphql",
        json={"query": costly, "variables": {"o": org.id}},
        headers={"X-API-KEY": org.key, "X-GraphQL-Cost": "include"},
    )
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert body["extensions"]["cost"]["requestedQueryCost"] == 9 * (1 + 7 * 100)  # over the 5000 limit

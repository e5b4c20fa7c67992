"""Retrying logError with an idempotency key never stores a duplicate."""

from __future__ import annotations

import asyncio

from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import LOG_ERROR, ORG_ERRORS

ERROR = {"message": "Payment failed", "severity": "HIGH", "context": {"order": 17, "items": [1, 2]}}


async def count(gql: GraphQLClient, org: Org) -> int:
    return (await gql.data(ORG_ERRORS, {"orgId": org.id}, key=org.key))["orgErrors"]["totalCount"]


async def test_a_retry_replays_the_first_result(gql: GraphQLClient, org: Org) -> None:
    variables = {"orgId": org.id, "error": ERROR, "key": "retry-1"}
    first = (await gql.data(LOG_ERROR, variables, key=org.key))["logError"]
    # The same payload, keys of the context in another order: still the same request.
    again = {**variables, "error": {**ERROR, "context": {"items": [1, 2], "order": 17}}}
    second = (await gql.data(LOG_ERROR, again, key=org.key))["logError"]

    assert first["replayed"] is False and second["replayed"] is True
    assert second["errorId"] == first["errorId"]
    assert second["error"] == first["error"]
    assert await count(gql, org) == 1


async def test_the_header_works_like_the_argument(gql: GraphQLClient, org: Org) -> None:
    variables = {"orgId": org.id, "error": ERROR}
    headers = {"X-Idempotency-Key": "hdr-1"}
    first = (await gql.post(LOG_ERROR, variables, key=org.key, headers=headers)).json()["data"]["logError"]
    second = (await gql.post(LOG_ERROR, variables, key=org.key, headers=headers)).json()["data"]["logError"]
    via_argument = (await gql.data(LOG_ERROR, {**variables, "key": "hdr-1"}, key=org.key))["logError"]
    assert (first["replayed"], second["replayed"], via_argument["replayed"]) == (False, True, True)
    assert first["errorId"] == second["errorId"] == via_argument["errorId"]
    assert await count(gql, org) == 1


async def test_same_key_other_payload_is_a_conflict(gql: GraphQLClient, org: Org) -> None:
    await gql.data(LOG_ERROR, {"orgId": org.id, "error": ERROR, "key": "k-1"}, key=org.key)
    error = await gql.error(
        LOG_ERROR, {"orgId": org.id, "error": {**ERROR, "severity": "LOW"}, "key": "k-1"}, key=org.key
    )
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["status"] == 409
    assert await count(gql, org) == 1


async def test_keys_are_scoped_to_the_organization(gql: GraphQLClient, server: LiveServer, org: Org) -> None:
    other = make_org(server)
    mine = await gql.data(LOG_ERROR, {"orgId": org.id, "error": ERROR, "key": "shared"}, key=org.key)
    theirs = await gql.data(LOG_ERROR, {"orgId": other.id, "error": ERROR, "key": "shared"}, key=other.key)
    assert mine["logError"]["replayed"] is False and theirs["logError"]["replayed"] is False
    assert mine["logError"]["errorId"] != theirs["logError"]["errorId"]


async def test_concurrent_identical_requests_store_exactly_one(gql: GraphQLClient, org: Org) -> None:
    variables = {"orgId": org.id, "error": ERROR, "key": "burst-1"}
    results = await asyncio.gather(*(gql.data(LOG_ERROR, variables, key=org.key) for _ in range(10)))
    payloads = [r["logError"] for r in results]
    assert len({p["errorId"] for p in payloads}) == 1
    assert sorted(p["replayed"] for p in payloads) == [False] + [True] * 9
    assert await count(gql, org) == 1

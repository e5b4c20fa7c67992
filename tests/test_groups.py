"""Error groups: fingerprints, exact counts under concurrency, ordering and pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import GraphQLClient, Org
from tests.documents import LOG_ERROR

GROUPS = """
query Groups($orgId: ID!, $first: Int, $after: String, $orderBy: ErrorGroupOrder, $filter: ErrorGroupFilter) {
  errorGroups(orgId: $orgId, first: $first, after: $after, orderBy: $orderBy, filter: $filter) {
    totalCount
    nodes { fingerprint message source code occurrences firstSeen lastSeen maxSeverity latestEventId }
    pageInfo { hasNextPage endCursor }
  }
}"""
GROUP = "query($o: ID!, $f: String!) { errorGroup(orgId: $o, fingerprint: $f) { occurrences maxSeverity } }"
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


async def log(gql: GraphQLClient, org: Org, **error: object) -> dict:
    error.setdefault("severity", "LOW")
    data = await gql.data(
        LOG_ERROR.replace("replayed", "replayed newGroup"), {"orgId": org.id, "error": error}, key=org.key
    )
    return data["logError"]


async def groups(gql: GraphQLClient, org: Org, **variables: object) -> dict:
    return (await gql.data(GROUPS, {"orgId": org.id, **variables}, key=org.key))["errorGroups"]


async def test_events_group_by_fingerprint_with_first_and_last_seen(gql: GraphQLClient, org: Org) -> None:
    first = await log(gql, org, message="User 42 not found", source="accounts", timestamp=at(5))
    second = await log(
        gql, org, message="User 7 not found", source="accounts", severity="HIGH", timestamp=at(1)
    )
    third = await log(gql, org, message="User 9 not found", source="accounts", timestamp=at(9))
    other = await log(gql, org, message="User 9 not found", source="billing", timestamp=at(2))

    assert first["newGroup"] is True and second["newGroup"] is False and third["newGroup"] is False
    assert other["newGroup"] is True  # same message, another source: another problem
    assert first["error"]["fingerprint"] == second["error"]["fingerprint"] == third["error"]["fingerprint"]

    page = await groups(gql, org)
    assert page["totalCount"] == 2
    accounts = next(g for g in page["nodes"] if g["source"] == "accounts")
    assert accounts == {
        "fingerprint": first["error"]["fingerprint"],
        "message": "User 42 not found",
        "source": "accounts",
        "code": None,
        "occurrences": 3,
        "firstSeen": "2026-11-01T12:01:00.000Z",
        "lastSeen": "2026-11-01T12:09:00.000Z",
        "maxSeverity": "HIGH",
        "latestEventId": third["error"]["id"],
    }


async def test_the_reporter_can_choose_the_fingerprint(gql: GraphQLClient, org: Org) -> None:
    a = await log(gql, org, message="Totally different", fingerprint="checkout-timeouts")
    b = await log(gql, org, message="Words unrelated", fingerprint="checkout-timeouts")
    assert a["error"]["fingerprint"] == b["error"]["fingerprint"] == "checkout-timeouts"
    group = (await gql.data(GROUP, {"o": org.id, "f": "checkout-timeouts"}, key=org.key))["errorGroup"]
    assert group == {"occurrences": 2, "maxSeverity": "LOW"}
    missing = await gql.data(GROUP, {"o": org.id, "f": "nope"}, key=org.key)
    assert missing["errorGroup"] is None


async def test_counts_stay_exact_under_concurrent_logging(gql: GraphQLClient, org: Org) -> None:
    results = await asyncio.gather(
        *(log(gql, org, message=f"Queue {i} overflowed", code="QUEUE_FULL") for i in range(25))
    )
    assert sum(r["newGroup"] for r in results) == 1  # exactly one event started the group
    fingerprint = results[0]["error"]["fingerprint"]
    group = (await gql.data(GROUP, {"o": org.id, "f": fingerprint}, key=org.key))["errorGroup"]
    assert group["occurrences"] == 25


async def test_a_burst_over_several_groups_counts_each_exactly(gql: GraphQLClient, org: Org) -> None:
    # Concurrent events share their group writes (one upsert per group per round trip): each group
    # must still be started by exactly one event and aggregate every one of its events.
    severities = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    plan = [(f"BURST_{i % 3}", at(i), severities[i % 4]) for i in range(24)]
    results = await asyncio.gather(
        *(log(gql, org, message="burst", code=code, timestamp=when, severity=sev) for code, when, sev in plan)
    )
    variables = {"orgId": org.id, "first": 10, "filter": {"search": "burst"}}
    groups = (await gql.data(GROUPS, variables, key=org.key))["errorGroups"]["nodes"]
    assert sorted(g["code"] for g in groups) == ["BURST_0", "BURST_1", "BURST_2"]
    for group in groups:
        mine = [r for r, (code, *_) in zip(results, plan, strict=True) if code == group["code"]]
        events = [r["error"] for r in mine]
        assert sum(r["newGroup"] for r in mine) == 1
        assert group["occurrences"] == len(mine) == 8
        assert group["firstSeen"] == min(e["timestamp"] for e in events)
        assert group["lastSeen"] == max(e["timestamp"] for e in events)
        assert group["latestEventId"] == max(e["id"] for e in events)
        assert group["maxSeverity"] == max((e["severity"] for e in events), key=severities.index)


async def test_a_replayed_retry_is_not_counted_again(gql: GraphQLClient, org: Org) -> None:
    variables = {"orgId": org.id, "error": {"message": "Once", "severity": "LOW"}, "key": "once"}
    query = LOG_ERROR.replace("replayed", "replayed newGroup")
    first = (await gql.data(query, variables, key=org.key))["logError"]
    again = (await gql.data(query, variables, key=org.key))["logError"]
    assert first["newGroup"] is True and again["newGroup"] is True and again["replayed"] is True
    group = (await gql.data(GROUP, {"o": org.id, "f": first["error"]["fingerprint"]}, key=org.key))[
        "errorGroup"
    ]
    assert group["occurrences"] == 1


@pytest.mark.parametrize(
    ("field", "direction", "expected"),
    [
        ("LAST_SEEN", "DESC", ["c", "b", "a"]),
        ("FIRST_SEEN", "ASC", ["a", "b", "c"]),
        ("OCCURRENCES", "DESC", ["b", "a", "c"]),
        ("SEVERITY", "DESC", ["c", "a", "b"]),
    ],
)
async def test_orderings(
    gql: GraphQLClient, org: Org, field: str, direction: str, expected: list[str]
) -> None:
    # a: 2 events, MEDIUM, minutes 0-3; b: 3 events, LOW, minutes 1-4; c: 1 event, CRITICAL, minute 10
    for code, severity, minute in [
        ("a", "MEDIUM", 0),
        ("b", "LOW", 1),
        ("a", "LOW", 3),
        ("b", "LOW", 2),
        ("b", "LOW", 4),
        ("c", "CRITICAL", 10),
    ]:
        await log(gql, org, message=f"problem {code}", code=code, severity=severity, timestamp=at(minute))
    page = await groups(gql, org, orderBy={"field": field, "direction": direction})
    assert [g["code"] for g in page["nodes"]] == expected


async def test_group_pages_and_filters(gql: GraphQLClient, org: Org) -> None:
    for i in range(7):
        await log(
            gql,
            org,
            message=f"problem {i}",
            code=f"P{i}",
            severity="HIGH" if i % 2 else "LOW",
            timestamp=at(i),
        )
    seen: list[str] = []
    after = None
    while True:
        page = await groups(gql, org, first=3, after=after)
        seen += [g["code"] for g in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"P{i}" for i in reversed(range(7))]

    high = await groups(gql, org, filter={"minSeverity": "HIGH"})
    assert [g["code"] for g in high["nodes"]] == ["P5", "P3", "P1"] and high["totalCount"] == 3
    found = await groups(gql, org, filter={"search": "PROBLEM 4"})
    assert [g["code"] for g in found["nodes"]] == ["P4"]

    # A cursor of one ordering is refused by another.
    first_page = await groups(gql, org, first=1)
    error = await gql.error(
        GROUPS,
        {"orgId": org.id, "after": first_page["pageInfo"]["endCursor"], "orderBy": {"field": "OCCURRENCES"}},
        key=org.key,
    )
    assert error["extensions"]["code"] == "INVALID_REQUEST"
    assert error["extensions"]["details"][0]["field"] == "after"


async def test_a_group_lists_its_most_recent_releases_only(gql: GraphQLClient, org: Org) -> None:
    """A DSN key is public: one that sends a new release with every event must not grow its group's
    document without bound. The group keeps the most recent 100 releases (and counts every event)."""
    for n in range(1, 104):
        error = {
            "message": "Checkout failed",
            "severity": "HIGH",
            "fingerprint": "checkout",
            "release": f"web@{n}",
        }
        await gql.data(LOG_ERROR, {"orgId": org.id, "error": error}, key=org.key)
    query = 'query($o: ID!) { errorGroup(orgId: $o, fingerprint: "checkout") { occurrences releases } }'
    group = (await gql.data(query, {"o": org.id}, key=org.key))["errorGroup"]
    assert group["occurrences"] == 103
    assert sorted(group["releases"]) == sorted(f"web@{n}" for n in range(4, 104))

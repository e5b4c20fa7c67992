"""errorStats against a hand-computed expectation over a fixed data set."""

from __future__ import annotations

from tests.conftest import GraphQLClient, Org
from tests.helpers import log_error

STATS = """
query Stats($o: ID!, $from: DateTime!, $to: DateTime!, $interval: StatsInterval!, $groupBy: StatsGroupBy) {
  errorStats(orgId: $o, from: $from, to: $to, interval: $interval, groupBy: $groupBy) {
    from to interval groupBy total keys
    buckets { start count breakdown { key count } }
  }
}"""

# (timestamp, severity, source)
DATA = [
    ("2026-11-01T10:05:00Z", "LOW", "api"),
    ("2026-11-01T10:59:59.999Z", "HIGH", "api"),
    ("2026-11-01T11:00:00Z", "HIGH", "worker"),
    ("2026-11-01T13:30:00Z", "LOW", None),
    ("2026-11-01T13:31:00Z", "LOW", "api"),
    ("2026-11-01T09:59:59.999Z", "CRITICAL", "api"),  # before the range
    ("2026-11-01T14:00:00Z", "CRITICAL", "api"),  # at `to`: excluded
]


async def seed(gql: GraphQLClient, org: Org) -> None:
    for stamp, severity, source in DATA:
        extra = {"source": source} if source else {}
        await log_error(gql, org.id, org.key, timestamp=stamp, severity=severity, **extra)


async def test_hourly_buckets_with_empty_ones(gql: GraphQLClient, org: Org) -> None:
    await seed(gql, org)
    variables = {
        "o": org.id,
        "from": "2026-11-01T10:00:00Z",
        "to": "2026-11-01T14:00:00Z",
        "interval": "HOUR",
    }
    stats = (await gql.data(STATS, variables, key=org.key))["errorStats"]
    assert stats["total"] == 5 and stats["groupBy"] is None and stats["keys"] == []
    assert [(b["start"], b["count"], b["breakdown"]) for b in stats["buckets"]] == [
        ("2026-11-01T10:00:00.000Z", 2, []),
        ("2026-11-01T11:00:00.000Z", 1, []),
        ("2026-11-01T12:00:00.000Z", 0, []),
        ("2026-11-01T13:00:00.000Z", 2, []),
    ]


async def test_breakdown_by_severity_and_by_source(gql: GraphQLClient, org: Org) -> None:
    await seed(gql, org)
    base = {"o": org.id, "from": "2026-11-01T10:00:00Z", "to": "2026-11-01T14:00:00Z", "interval": "HOUR"}
    by_severity = (await gql.data(STATS, {**base, "groupBy": "SEVERITY"}, key=org.key))["errorStats"]
    assert by_severity["keys"] == ["LOW", "HIGH"]
    assert [b["breakdown"] for b in by_severity["buckets"]] == [
        [{"key": "HIGH", "count": 1}, {"key": "LOW", "count": 1}],
        [{"key": "HIGH", "count": 1}],
        [],
        [{"key": "LOW", "count": 2}],
    ]
    by_source = (await gql.data(STATS, {**base, "groupBy": "SOURCE"}, key=org.key))["errorStats"]
    assert by_source["keys"] == ["api", None, "worker"]
    assert by_source["buckets"][3]["breakdown"] == [{"key": None, "count": 1}, {"key": "api", "count": 1}]


async def test_day_buckets_and_rounding_of_from(gql: GraphQLClient, org: Org) -> None:
    await seed(gql, org)
    variables = {"o": org.id, "from": "2026-11-01T10:30:00Z", "to": "2026-11-03T00:00:00Z", "interval": "DAY"}
    stats = (await gql.data(STATS, variables, key=org.key))["errorStats"]
    # `from` is rounded down to the bucket, so the day's whole first bucket counts.
    assert stats["from"] == "2026-11-01T00:00:00.000Z"
    assert [(b["start"], b["count"]) for b in stats["buckets"]] == [
        ("2026-11-01T00:00:00.000Z", 7),
        ("2026-11-02T00:00:00.000Z", 0),
    ]


async def test_the_number_of_buckets_is_bounded(gql: GraphQLClient, org: Org) -> None:
    variables = {
        "o": org.id,
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-11-01T00:00:00Z",
        "interval": "MINUTE",
    }
    error = await gql.error(STATS, variables, key=org.key)
    assert error["extensions"]["code"] == "INVALID_REQUEST"
    assert error["extensions"]["details"][0]["field"] == "interval"
    backwards = await gql.error(STATS, {**variables, "to": "2025-01-01T00:00:00Z"}, key=org.key)
    assert backwards["extensions"]["details"][0]["field"] == "to"

"""Logging error events and reading them back: orgErrors, errorEvent, filters, pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.conftest import GraphQLClient, Org
from tests.documents import ERROR_EVENT, LOG_ERROR, ORG_ERRORS
from tests.helpers import ISO_MS_UTC, all_pages, log_error

T0 = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_log_error_returns_the_stored_event(gql: GraphQLClient, org: Org) -> None:
    error = {
        "message": "Upload failed",
        "severity": "CRITICAL",
        "timestamp": "2025-11-20T18:30:00.123+01:30",
        "code": "FILE_UPLOAD_FAILED",
        "source": "upload-service",
        "context": {"file": "a.pdf", "size": 12},
    }
    data = await gql.data(LOG_ERROR, {"orgId": org.id, "error": error}, key=org.key)
    payload = data["logError"]
    event = payload["error"]

    assert payload["message"] == "Error logged successfully"
    assert payload["replayed"] is False
    assert payload["errorId"] == event["id"]
    assert event["id"].startswith("error-") and len(event["id"]) == 32
    assert event["orgId"] == org.id
    assert event["timestamp"] == "2025-11-20T17:00:00.123Z"  # converted to UTC, milliseconds kept
    assert ISO_MS_UTC.match(event["receivedAt"])
    assert (event["message"], event["severity"], event["code"], event["source"]) == (
        "Upload failed",
        "CRITICAL",
        "FILE_UPLOAD_FAILED",
        "upload-service",
    )
    assert event["context"] == {"file": "a.pdf", "size": 12}

    fetched = await gql.data(ERROR_EVENT, {"orgId": org.id, "id": event["id"]}, key=org.key)
    assert fetched["errorEvent"] == event


async def test_timestamp_defaults_to_the_receive_time(gql: GraphQLClient, org: Org) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    event = await log_error(gql, org.id, org.key)
    assert event["timestamp"] == event["receivedAt"]
    assert before <= datetime.fromisoformat(event["timestamp"]) <= datetime.now(UTC)
    assert event["code"] is None and event["source"] is None and event["context"] is None


async def test_error_event_is_null_when_missing(gql: GraphQLClient, org: Org) -> None:
    for missing in ("error-01JD3Q8X4T9W2M7V5K6N8P0RZQ", "not-an-id", "x" * 500):
        data = await gql.data(ERROR_EVENT, {"orgId": org.id, "id": missing}, key=org.key)
        assert data["errorEvent"] is None


async def test_newest_first_by_default_and_oldest_first_on_request(gql: GraphQLClient, org: Org) -> None:
    stamps = [T0 + timedelta(minutes=m) for m in (5, 1, 3, 2, 4)]
    for stamp in stamps:
        await log_error(gql, org.id, org.key, timestamp=iso(stamp))

    desc = (await gql.data(ORG_ERRORS, {"orgId": org.id}, key=org.key))["orgErrors"]
    asc = (await gql.data(ORG_ERRORS, {"orgId": org.id, "sortOrder": "ASC"}, key=org.key))["orgErrors"]

    expected = [iso(s).replace("Z", ".000Z") for s in sorted(stamps, reverse=True)]
    assert [n["timestamp"] for n in desc["nodes"]] == expected
    assert [n["timestamp"] for n in asc["nodes"]] == expected[::-1]
    assert desc["totalCount"] == 5
    assert [e["node"]["id"] for e in desc["edges"]] == [n["id"] for n in desc["nodes"]]
    assert desc["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": desc["edges"][0]["cursor"],
        "endCursor": desc["edges"][-1]["cursor"],
    }


async def test_empty_organization_has_an_empty_page(gql: GraphQLClient, org: Org) -> None:
    page = (await gql.data(ORG_ERRORS, {"orgId": org.id}, key=org.key))["orgErrors"]
    assert page["nodes"] == [] and page["edges"] == [] and page["totalCount"] == 0
    assert page["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


async def test_pages_cover_every_event_once_in_both_orders(gql: GraphQLClient, org: Org) -> None:
    # Several events share a millisecond: the id breaks the tie, so nothing is skipped or repeated.
    stamps = [T0 + timedelta(milliseconds=m // 3) for m in range(23)]
    logged = [(await log_error(gql, org.id, org.key, timestamp=iso(s)))["id"] for s in stamps]

    desc = await all_pages(gql, org.id, org.key, first=4)
    asc = await all_pages(gql, org.id, org.key, first=5, sortOrder="ASC")

    assert sorted(desc) == sorted(logged) and len(desc) == 23
    assert desc == sorted(logged, reverse=True)
    assert asc == desc[::-1]


async def test_cursors_stay_correct_while_events_arrive(gql: GraphQLClient, org: Org) -> None:
    """Reading newest-first while new events (newer and older) are logged between pages: every event
    that existed when reading began is seen exactly once."""
    existing = [
        (await log_error(gql, org.id, org.key, timestamp=iso(T0 + timedelta(seconds=s))))["id"]
        for s in range(12)
    ]
    seen: list[str] = []
    after = None
    for round_ in range(10):
        data = await gql.data(
            "query($o: ID!, $a: String) { orgErrors(orgId: $o, first: 3, after: $a) "
            "{ nodes { id } pageInfo { hasNextPage endCursor } } }",
            {"o": org.id, "a": after},
            key=org.key,
        )
        page = data["orgErrors"]
        seen += [n["id"] for n in page["nodes"]]
        # Concurrent writers: one newer than everything, one in the middle of the range.
        await asyncio.gather(
            log_error(gql, org.id, org.key, timestamp=iso(T0 + timedelta(hours=1, seconds=round_))),
            log_error(
                gql, org.id, org.key, timestamp=iso(T0 + timedelta(seconds=6, milliseconds=round_ + 1))
            ),
        )
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert len(seen) == len(set(seen)), "an event was repeated"
    assert set(existing) <= set(seen), "an event that existed was skipped"
    assert seen == sorted(seen, reverse=True), "order broke across pages"


async def test_filters(gql: GraphQLClient, org: Org) -> None:
    events = [
        ("Disk full on db-1", "CRITICAL", "DISK_FULL", "storage", T0),
        ("Disk full on db-2", "HIGH", "DISK_FULL", "storage", T0 + timedelta(minutes=1)),
        ("Login throttled for bob", "LOW", None, "auth", T0 + timedelta(minutes=2)),
        ("Price (USD) was [invalid]", "MEDIUM", None, "billing", T0 + timedelta(minutes=3)),
        ("Login throttled for alice", "MEDIUM", None, "auth", T0 + timedelta(minutes=4)),
    ]
    ids = {}
    for message, severity, code, source, stamp in events:
        extra = {"code": code} if code else {}
        event = await log_error(
            gql,
            org.id,
            org.key,
            message=message,
            severity=severity,
            source=source,
            timestamp=iso(stamp),
            **extra,
        )
        ids[message] = event

    async def matching(flt: dict) -> tuple[list[str], int]:
        data = await gql.data(ORG_ERRORS, {"orgId": org.id, "filter": flt, "sortOrder": "ASC"}, key=org.key)
        return [n["message"] for n in data["orgErrors"]["nodes"]], data["orgErrors"]["totalCount"]

    assert await matching({"severities": ["LOW", "CRITICAL"]}) == (
        ["Disk full on db-1", "Login throttled for bob"],
        2,
    )
    assert await matching({"minSeverity": "HIGH"}) == (["Disk full on db-1", "Disk full on db-2"], 2)
    assert await matching({"severities": ["LOW", "HIGH"], "minSeverity": "HIGH"}) == (
        ["Disk full on db-2"],
        1,
    )
    assert await matching({"severities": ["LOW"], "minSeverity": "HIGH"}) == ([], 0)
    # from is inclusive, to exclusive; offsets are converted to UTC.
    assert await matching({"from": iso(T0 + timedelta(minutes=1)), "to": "2025-11-20T18:04:00+01:00"}) == (
        ["Disk full on db-2", "Login throttled for bob", "Price (USD) was [invalid]"],
        3,
    )
    assert await matching({"code": "DISK_FULL"}) == (["Disk full on db-1", "Disk full on db-2"], 2)
    assert await matching({"source": "auth"}) == (["Login throttled for bob", "Login throttled for alice"], 2)
    assert await matching({"search": "LOGIN THROTTLED"}) == (
        ["Login throttled for bob", "Login throttled for alice"],
        2,
    )
    # Pattern characters in `search` are literal text.
    assert await matching({"search": "(usd) was [inv"}) == (["Price (USD) was [invalid]"], 1)
    assert await matching({"search": ".*"}) == ([], 0)
    # Same code and source: same problem; messages differing only in names are the same too.
    fingerprint = ids["Disk full on db-1"]["fingerprint"]
    assert ids["Disk full on db-2"]["fingerprint"] == fingerprint
    assert await matching({"fingerprint": fingerprint}) == (["Disk full on db-1", "Disk full on db-2"], 2)
    assert await matching({"source": "auth", "minSeverity": "MEDIUM", "search": "alice"}) == (
        ["Login throttled for alice"],
        1,
    )


async def test_total_count_ignores_pagination(gql: GraphQLClient, org: Org) -> None:
    for _ in range(7):
        await log_error(gql, org.id, org.key, severity="LOW")
    await log_error(gql, org.id, org.key, severity="HIGH")
    page = (
        await gql.data(
            ORG_ERRORS, {"orgId": org.id, "first": 2, "filter": {"severities": ["LOW"]}}, key=org.key
        )
    )["orgErrors"]
    assert len(page["nodes"]) == 2 and page["totalCount"] == 7 and page["pageInfo"]["hasNextPage"]


async def test_stored_values_read_back_exactly(gql: GraphQLClient, org: Org) -> None:
    """Hostile strings and JSON that MongoDB would misread come back exactly as written."""
    context = {
        "$where": "sleep(1000)",
        "a.b": {"$gt": ""},
        "": None,
        "big": 2**62,
        "neg": -0.5,
        "list": [1, "two", {"three": [3]}],
        "ünï": "\u0000\u202e\U0001f600",
        "order": {"z": 1, "a": 2},
    }
    message = "NUL\u0000 <script>alert(1)</script> '; db.dropDatabase(); \U0001f4a5 \u202e"
    event = await log_error(
        gql, org.id, org.key, message=message, context=context, code="A.b:c/d@e-f_g", source="svc"
    )
    assert event["message"] == message
    assert event["context"] == context
    assert list(event["context"]["order"]) == ["z", "a"]
    fetched = (await gql.data(ERROR_EVENT, {"orgId": org.id, "id": event["id"]}, key=org.key))["errorEvent"]
    assert fetched == event

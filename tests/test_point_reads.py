"""Batched point reads (app.storage.lookups): concurrent errorEvent / errorGroup lookups share one `find`,
and every caller still gets exactly its own answer, its own organization's view and its own error."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ulid import ULID

from app.core.errors import ErrorCode, ServiceUnavailable
from app.events.model import ErrorEventRecord
from app.events.store import EventStore, new_event_id
from app.groups.store import GroupStore
from app.storage.breaker import BreakerState, CircuitBreaker
from app.storage.lookups import MAX_KEYS, KeyedReader
from app.storage.mongo import Database, create_client
from tests.conftest import GraphQLClient, LiveServer, Org, make_org
from tests.documents import ERROR_EVENT
from tests.helpers import CommandLog, log_error, monitored_database, record

GROUP = "query($o: ID!, $f: String!) { errorGroup(orgId: $o, fingerprint: $f) { fingerprint occurrences } }"


def unknown_id() -> str:
    return new_event_id(datetime.now(UTC))


async def test_concurrent_error_event_requests_each_get_their_own_event(
    gql: GraphQLClient, org: Org, server: LiveServer
) -> None:
    other = make_org(server)
    mine = [await log_error(gql, org.id, org.key, message=f"mine {i}") for i in range(4)]
    theirs = [await log_error(gql, other.id, other.key, message=f"theirs {i}") for i in range(4)]
    missing = unknown_id()

    # (asking org, id, expected answer): distinct and repeated ids of both organizations, each asked by
    # its own organization and by the other one, and an id nobody has.
    asks: list[tuple[Org, str, dict[str, Any] | None]] = []
    for _ in range(3):
        asks += [(org, e["id"], e) for e in mine] + [(other, e["id"], e) for e in theirs]
        asks += [(other, e["id"], None) for e in mine[:2]] + [(org, e["id"], None) for e in theirs[:2]]
        asks += [(org, missing, None), (other, missing, None)]

    async def ask(who: Org, event_id: str) -> Any:
        return (await gql.data(ERROR_EVENT, {"orgId": who.id, "id": event_id}, key=who.key))["errorEvent"]

    answers = await asyncio.gather(*(ask(who, event_id) for who, event_id, _ in asks))
    assert answers == [expected for _, _, expected in asks]


async def test_concurrent_error_group_requests_each_get_their_own_group(
    gql: GraphQLClient, org: Org, server: LiveServer
) -> None:
    other = make_org(server)
    a = await log_error(gql, org.id, org.key, message="group a", source="a")
    await log_error(gql, org.id, org.key, message="group a", source="a")
    b = await log_error(gql, org.id, org.key, message="group b", source="b")
    c = await log_error(gql, other.id, other.key, message="group c", source="c")
    asks: list[tuple[Org, str, int | None]] = [
        (org, a["fingerprint"], 2),
        (org, b["fingerprint"], 1),
        (other, c["fingerprint"], 1),
        (other, a["fingerprint"], None),  # another organization's fingerprint
        (org, c["fingerprint"], None),
        (org, "no-such-fingerprint", None),
    ] * 4

    async def ask(who: Org, fingerprint: str) -> int | None:
        group = (await gql.data(GROUP, {"o": who.id, "f": fingerprint}, key=who.key))["errorGroup"]
        if group is None:
            return None
        assert group["fingerprint"] == fingerprint
        return int(group["occurrences"])

    answers = await asyncio.gather(*(ask(who, fingerprint) for who, fingerprint, _ in asks))
    assert answers == [expected for _, _, expected in asks]


def read_keys(finds: CommandLog, index: int) -> list[str]:
    """The event ids the `index`th read asked for: a `find` by equality or a union of matches."""
    command = finds.seen[index][1]
    if "filter" in command:
        return [command["filter"]["event_id"]]
    stages = command["pipeline"]
    return [stages[0]["$match"]["event_id"]] + [
        s["$unionWith"]["pipeline"][0]["$match"]["event_id"] for s in stages[1:]
    ]


@pytest.fixture
async def database(mongo_uri: str) -> AsyncIterator[tuple[Database, CommandLog]]:
    """A database of its own, with the reads (`find`, `aggregate`) its client sends."""
    finds = CommandLog(names=("find", "aggregate"))
    async with monitored_database(mongo_uri, finds, "pointreads") as db:
        yield db, finds


def event(org_id: str, message: str) -> ErrorEventRecord:
    return record(org_id, message, message=message)


def ident(record: ErrorEventRecord | None) -> tuple[str, str, str] | None:
    """What tells events apart (the stored timestamps are rounded to the millisecond)."""
    return (record.id, record.org_id, record.message) if record is not None else None


async def stored(store: EventStore, org_id: str, count: int) -> list[ErrorEventRecord]:
    events = [event(org_id, f"{org_id} {i}") for i in range(count)]
    await asyncio.gather(*(store.insert(e) for e in events))
    return events


async def test_concurrent_gets_share_one_find_and_answer_each_caller(
    database: tuple[Database, CommandLog],
) -> None:
    db, finds = database
    store = EventStore(db)
    mine, theirs = await stored(store, "org-a", 5), await stored(store, "org-b", 3)
    missing = unknown_id()
    asks = [("org-a", e) for e in mine] * 2 + [("org-b", e) for e in theirs]
    asks += [("org-a", theirs[0]), ("org-b", mine[0])]  # another organization's event: None

    answers = await asyncio.gather(*(store.get(org, e.id) for org, e in asks), store.get("org-a", missing))

    assert [ident(a) for a in answers] == [ident(e) if e.org_id == org else None for org, e in asks] + [None]
    assert len(answers) == 16 and len(finds.seen) == 1  # 16 lookups, one round trip
    # Each id once, whatever number of callers asked for it.
    assert sorted(read_keys(finds, 0)) == sorted({e.id for e in mine + theirs} | {missing})


async def test_a_lone_get_is_one_find_by_equality(database: tuple[Database, CommandLog]) -> None:
    db, finds = database
    store = EventStore(db)
    (only,) = await stored(store, "org-a", 1)
    assert ident(await store.get("org-a", only.id)) == ident(only)
    assert [c["find"] for _, c in finds.seen] == ["error_events"] and read_keys(finds, 0) == [only.id]


async def test_a_batch_holds_at_most_max_keys_ids(database: tuple[Database, CommandLog]) -> None:
    db, finds = database
    store = EventStore(db)
    ids = [unknown_id() + str(i) for i in range(2 * MAX_KEYS + 10)]
    assert await asyncio.gather(*(store.get("org-a", i) for i in ids)) == [None] * len(ids)
    assert [len(read_keys(finds, i)) for i in range(len(finds.seen))] == [MAX_KEYS, MAX_KEYS, 10]


async def test_a_get_after_a_write_sees_it_even_with_a_read_in_flight(
    database: tuple[Database, CommandLog],
) -> None:
    db, finds = database
    store = EventStore(db)
    earlier = asyncio.create_task(store.get("org-a", unknown_id()))
    await finds.sent.wait()  # a read is on the wire
    (written,) = await stored(store, "org-a", 1)
    assert ident(await store.get("org-a", written.id)) == ident(
        written
    )  # sent in a later flush, after the write
    assert await earlier is None


async def test_a_cancelled_caller_leaves_the_others_their_answers(
    database: tuple[Database, CommandLog],
) -> None:
    db, finds = database
    store = EventStore(db)
    events = await stored(store, "org-a", 3)
    gone = asyncio.create_task(store.get("org-a", events[0].id))
    staying = [asyncio.create_task(store.get("org-a", e.id)) for e in events]
    await finds.sent.wait()  # the flush carrying all four is on the wire
    gone.cancel()
    assert [ident(a) for a in await asyncio.gather(*staying)] == [ident(e) for e in events]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(finds.seen) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_failed_flush_reaches_every_caller_as_service_unavailable() -> None:
    """The database is not there: every caller of the flush gets SERVICE_UNAVAILABLE, the breaker counts
    one failure for the flush and opens, and the next callers are refused at once."""
    client = create_client(f"mongodb://127.0.0.1:{_closed_port()}", timeout_ms=300)
    breaker = CircuitBreaker(threshold=1, cooldown=60)
    store = EventStore(client["gone"], breaker)
    try:
        ids = [str(ULID()) for _ in range(6)] * 2
        for _ in range(2):  # through the driver's timeout, then refused by the open breaker
            results = await asyncio.gather(*(store.get("org-a", i) for i in ids), return_exceptions=True)
            assert all(isinstance(r, ServiceUnavailable) for r in results), results
            assert {r.code for r in results if isinstance(r, ServiceUnavailable)} == {
                ErrorCode.SERVICE_UNAVAILABLE
            }
            assert breaker.state is BreakerState.OPEN
    finally:
        await client.close()


async def test_concurrent_group_gets_share_one_find_by_id(database: tuple[Database, CommandLog]) -> None:
    db, finds = database
    store = GroupStore(db)
    for fingerprint in ("a", "b", "a"):
        await store.record(event("org-a", fingerprint))
    finds.clear()
    found = await asyncio.gather(
        *(store.get(org, f) for org, f in [("org-a", "a"), ("org-a", "b"), ("org-b", "a"), ("org-a", "a")])
    )
    assert [(g.fingerprint, g.occurrences) if g else None for g in found] == [
        ("a", 2),
        ("b", 1),
        None,
        ("a", 2),
    ]
    assert len(finds.seen) == 1
    assert sorted(finds.seen[0][1]["filter"]["_id"]["$in"]) == ["org-a\x1fa", "org-a\x1fb", "org-b\x1fa"]
    assert finds.seen[0][1]["projection"] == {"pending": 0}


async def test_a_union_read_keeps_the_projection(database: tuple[Database, CommandLog]) -> None:
    db, finds = database
    await db["things"].insert_many([{"key": k, "shown": k.upper(), "hidden": 1} for k in ("x", "y")])
    reader = KeyedReader(db["things"], "key", "things.get", projection={"_id": 0, "hidden": 0})
    assert await asyncio.gather(reader.get("x"), reader.get("y"), reader.get("z")) == [
        {"key": "x", "shown": "X"},
        {"key": "y", "shown": "Y"},
        None,
    ]
    assert [c.get("aggregate") for _, c in finds.seen] == ["things"]

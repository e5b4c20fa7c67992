"""The write path's shared round trips (docs/performance.md), against a real database: a batch of counted
events reads its groups' state once, and the live feed leaves the events this process is storing to it
(it publishes them itself) while still finding one that was stored and never published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.core.pubsub import Mailbox, PubSub
from app.events.feed import EVENTS_TOPIC, EventFeed
from app.events.model import ErrorEventRecord, EventUser, SdkInfo
from app.events.store import EventStore, new_event_id
from app.groups.store import AliasStore, GroupStore
from app.storage.mongo import Database
from tests.helpers import CommandLog, monitored_database, record


@pytest.fixture
async def database(mongo_uri: str) -> AsyncIterator[tuple[Database, CommandLog]]:
    log = CommandLog()
    async with monitored_database(mongo_uri, log, "writepath") as db:
        yield db, log


def drained(mailbox: Mailbox) -> list[str]:
    """The ids of the events waiting in `mailbox`, taken out."""
    ids = [e.id for e in mailbox._messages]
    mailbox._messages.clear()
    return ids


def event(fingerprint: str, seq: int | None = None, org_id: str = "org-w") -> ErrorEventRecord:
    return record(org_id, fingerprint, seq=seq)


async def test_a_batch_of_counted_events_reads_its_groups_once(database: tuple[Database, CommandLog]) -> None:
    db, commands = database
    store = GroupStore(db)
    first = await store.record(event("old"))
    assert first.started and first.group is None  # a new group: nothing read
    commands.clear()
    results = await asyncio.gather(  # submitted together: one flush
        store.record(event("old")),
        store.record(event("new")),
        store.record(event("new")),
        store.record(event("old")),
    )
    assert [r.started for r in results] == [False, True, False, False]
    for result in (results[0], results[3]):  # read after the batch's counts
        assert result.group is not None and (result.group.fingerprint, result.group.occurrences) == ("old", 3)
    later_new = results[2].group  # its group was started earlier in the same batch
    assert later_new is not None and (later_new.fingerprint, later_new.occurrences) == ("new", 2)
    assert [name for name, _ in commands.seen] == ["update", "find"]  # one write, one read


async def test_concurrent_alias_lookups_share_one_read(database: tuple[Database, CommandLog]) -> None:
    db, commands = database
    aliases = AliasStore(db)
    await aliases.point("org-w", "a", "target")
    commands.clear()
    found = await asyncio.gather(*(aliases.target("org-w", f) for f in ("a", "b", "a", "c")))
    assert found == ["target", None, "target", None]
    assert [name for name, _ in commands.seen] == ["find"]  # submitted together: one read


async def test_the_feed_leaves_an_event_being_stored_to_its_process(
    database: tuple[Database, CommandLog],
) -> None:
    db, _ = database
    store = EventStore(db)
    pubsub = PubSub()
    feed = EventFeed(store, pubsub, interval=3600, grace=0)  # polled by hand; no grace for holes
    await feed.start()
    try:
        with pubsub.subscribe(EVENTS_TOPIC) as mailbox:
            published = event("fed", seq=await store.next_seq())
            with feed.expect(published.seq or 0):
                await store.insert(published)
                await feed.poll()  # stored, not yet published here: the poll neither reads nor skips it
                assert drained(mailbox) == []
                feed.publish_local(published)
            await feed.poll()
            assert drained(mailbox) == [published.id]  # once

            lost = event("lost", seq=await store.next_seq())
            with feed.expect(lost.seq or 0):
                await store.insert(lost)
                await feed.poll()
                assert drained(mailbox) == []
                # ...and then the process fails before publishing it
            await feed.poll()  # the poll finds it
            assert drained(mailbox) == [lost.id]
    finally:
        await feed.stop()


async def test_the_poll_reads_in_full_only_the_events_another_process_stored(
    database: tuple[Database, CommandLog],
) -> None:
    db, log = database
    store = EventStore(db)
    pubsub = PubSub()
    feed = EventFeed(store, pubsub, interval=3600, grace=0)  # polled by hand
    await feed.start()
    try:
        with pubsub.subscribe(EVENTS_TOPIC) as mailbox:
            own = [event("own", seq=await store.next_seq()) for _ in range(3)]
            for e in own:
                await store.insert(e)
                feed.publish_local(e)
            assert drained(mailbox) == [e.id for e in own]
            log.clear()
            await feed.poll()  # everything found is this process's own: positions only
            assert drained(mailbox) == []
            assert [name for name, _ in log.seen] == ["aggregate"]
            assert {"$project": {"seq": 1}} in log.seen[0][1]["pipeline"]

            # Another process's event between two of this one's: read in full, the others are not.
            foreign = event("foreign", seq=await store.next_seq())
            later = event("own", seq=await store.next_seq())
            await store.insert(later)
            feed.publish_local(later)
            await store.insert(foreign)
            drained(mailbox)
            log.clear()
            await feed.poll()
            assert drained(mailbox) == [foreign.id]
            assert [name for name, _ in log.seen] == ["aggregate", "aggregate"]
            full_read = log.seen[1][1]["pipeline"]
            assert not any("$project" in stage for stage in full_read)
            assert full_read[0]["$match"]["seq"] == {"$gte": foreign.seq, "$lte": foreign.seq}
    finally:
        await feed.stop()


async def test_an_event_inserted_here_is_marked_counted_by_its_id(
    database: tuple[Database, CommandLog],
) -> None:
    """By `_id`: the one field every deployment updates by from an index (nx-27017 scans for others)."""
    db, commands = database
    store = EventStore(db)
    stored = event("marked", seq=1)
    await store.insert(stored)
    commands.clear()
    await store.mark_counted(stored.id, True)
    assert len(commands.seen) == 1 and commands.seen[0][0] == "update"
    doc = await db["error_events"].find_one({"event_id": stored.id})
    assert doc is not None and "counting_ms" not in doc and bool(doc["started_group"])  # nx-27017 answers 1
    assert f"'q': {{'_id': ObjectId('{doc['_id']}')}}" in repr(commands.seen[0][1])
    # An event this process did not insert (a repair after a crash) is found by its public id.
    await db["error_events"].update_one({"event_id": stored.id}, {"$set": {"counting_ms": 1}})
    await store.mark_counted(stored.id, False)
    doc = await db["error_events"].find_one({"event_id": stored.id})
    assert doc is not None and "counting_ms" not in doc


async def test_inserts_and_count_marks_waiting_together_are_one_write(
    database: tuple[Database, CommandLog],
) -> None:
    """One driver operation (one session, server selection and connection checkout) carries both."""
    db, commands = database
    store = EventStore(db)
    counted = event("counted", seq=1)
    await store.insert(counted)
    commands.clear()
    fresh = event("fresh", seq=2)
    await asyncio.gather(store.mark_counted(counted.id, True), store.insert(fresh))
    assert sorted(name for name, _ in commands.seen) == ["insert", "update"]
    assert len(set(commands.operations)) == 1
    docs = {d["event_id"]: d async for d in db["error_events"].find({})}
    assert "counting_ms" not in docs[counted.id] and "counting_ms" in docs[fresh.id]


async def test_an_existing_group_is_counted_and_read_in_one_command(
    database: tuple[Database, CommandLog],
) -> None:
    db, commands = database
    store = GroupStore(db)
    assert (await store.record(event("one"))).started  # new: an upsert
    commands.clear()
    results = await asyncio.gather(store.record(event("one")), store.record(event("one")))
    assert [name for name, _ in commands.seen] == ["findAndModify"]
    for result in results:
        assert not result.started and result.group is not None and result.group.occurrences == 3
    # Merged away meanwhile (its document taken): the counting upsert starts it again, as before.
    await db["error_groups"].delete_many({})
    again = await store.record(event("one"))
    assert again.started and again.group is None


# `details` as the server wrote it before its structs were msgspec's (orjson, field by field, datetimes
# with "+00:00"), with one field a later version might add ("future").
EARLIER_DETAILS = (
    '{"exceptions":[{"type":"KeyError","value":"\'cart\'","module":null,"mechanism":"generic","handled":false,'
    '"frames":[{"filename":"shop/cart.py","abs_path":null,"function":"add","module":"shop.cart","lineno":12,'
    '"colno":null,"in_app":true,"context_line":"    cart[key]","pre_context":["def add():"],'
    '"post_context":[]}]}],'
    '"user":{"id":"u-1","username":null,"email":null,"ip_address":"203.0.113.0"},'
    '"request":{"url":"https://shop.example/cart","method":"POST","query_string":null,"headers":{"Accept":"*/*"}},'
    '"breadcrumbs":[{"timestamp":"2026-11-30T09:00:00.250000+00:00","type":null,"category":"http",'
    '"message":"GET /cart 200","level":"info","data":{"status":200}}],'
    '"contexts":{"os":{"name":"Linux"}},"sdk":{"name":"sentry.python","version":"2.40.0"},"future":1}'
)


async def test_details_stored_by_earlier_versions_read_back_and_new_ones_round_trip(
    database: tuple[Database, CommandLog],
) -> None:
    db, _ = database
    store = EventStore(db)
    earlier = event("details", seq=1)
    await store.insert(earlier)
    await db["error_events"].update_one({"event_id": earlier.id}, {"$set": {"details": EARLIER_DETAILS}})
    found = await store.get(earlier.org_id, earlier.id)
    assert found is not None and found.details is not None
    details = found.details
    (exception,) = details.exceptions
    assert (exception.type, exception.handled, exception.frames[0].function) == ("KeyError", False, "add")
    assert exception.frames[0].pre_context == ["def add():"] and details.handled is False
    assert details.user == EventUser(id="u-1", ip_address="203.0.113.0")
    assert details.request is not None and details.request.headers == {"Accept": "*/*"}
    crumb = details.breadcrumbs[0]
    assert crumb.timestamp == datetime(2026, 11, 30, 9, 0, 0, 250000, tzinfo=UTC)
    assert crumb.data == {"status": 200} and details.sdk == SdkInfo("sentry.python", "2.40.0")
    # Written again by this version, it reads back equal.
    again = replace(earlier, id=new_event_id(datetime.now(UTC)), seq=2, details=details)
    await store.insert(again)
    read_again = await store.get(again.org_id, again.id)
    assert read_again is not None and read_again.details == details

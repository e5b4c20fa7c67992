"""Group counts stay exact across crashes: an event stored but not counted when its process died is
counted by its retry (same idempotency key) or by the repair, once, and never while a live process may
still be counting it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.events.fingerprint import fingerprint
from app.events.model import ErrorEventRecord, NewEvent, Severity
from app.events.service import payload_hash
from app.groups.store import _update as group_update
from tests.conftest import GraphQLClient, LiveServer, Org
from tests.documents import LOG_ERROR
from tests.helpers import record

GROUP = "query($o: ID!, $f: String!) { errorGroup(orgId: $o, fingerprint: $f) { occurrences } }"


def stored_uncounted(
    server: LiveServer, org: Org, message: str, *, age: timedelta, idempotency_key: str | None = None
) -> ErrorEventRecord:
    """What a process that died between storing an event and counting it leaves behind."""
    received = datetime.now(UTC).replace(microsecond=0) - age
    event = record(org.id, fingerprint(message, None, None), message=message, received=received)
    new = NewEvent(
        message=message,
        severity=Severity.HIGH,
        timestamp=None,
        code=None,
        source=None,
        context=None,
        fingerprint=None,
    )

    async def insert(services: Any) -> None:
        store = services.events._store
        if idempotency_key is None:
            await store.insert(event)
        else:
            await store.insert(event, f"{org.id}\x1f{idempotency_key}", payload_hash(new))

    server.call(insert)
    return event


async def occurrences(gql: GraphQLClient, org: Org, event: ErrorEventRecord) -> int | None:
    group = (await gql.data(GROUP, {"o": org.id, "f": event.fingerprint}, key=org.key))["errorGroup"]
    return group["occurrences"] if group else None


async def test_a_retry_counts_the_event_a_crash_left_uncounted(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    event = stored_uncounted(server, org, "lost count", age=timedelta(minutes=5), idempotency_key="k-1")
    assert await occurrences(gql, org, event) is None
    variables = {"orgId": org.id, "key": "k-1", "error": {"message": "lost count", "severity": "HIGH"}}
    replayed = (await gql.data(LOG_ERROR, variables, key=org.key))["logError"]
    assert replayed["replayed"] is True and replayed["error"]["id"] == event.id
    assert await occurrences(gql, org, event) == 1
    await gql.data(LOG_ERROR, variables, key=org.key)  # once counted, a retry changes nothing
    assert await occurrences(gql, org, event) == 1


async def test_the_repair_counts_every_left_over_event_once(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    left = [stored_uncounted(server, org, "left behind", age=timedelta(minutes=m)) for m in (1, 2, 3)]
    in_flight = stored_uncounted(server, org, "being counted", age=timedelta(seconds=1))
    repaired = server.call(lambda s: s.events.repair_counts())
    assert repaired >= 3  # (other tests' leftovers may be counted too)
    assert await occurrences(gql, org, left[0]) == 3
    # Within its lease an event may still be counted by a live process: the repair leaves it alone.
    assert await occurrences(gql, org, in_flight) is None
    server.call(lambda s: s.events.repair_counts())
    assert await occurrences(gql, org, left[0]) == 3


async def test_events_logged_normally_are_marked_counted(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    for i in range(3):
        variables = {"orgId": org.id, "key": f"n-{i}", "error": {"message": "normal", "severity": "LOW"}}
        await gql.data(LOG_ERROR, variables, key=org.key)
    server.call(lambda s: s.events.settle())  # the marks are written just after the answers

    async def uncounted(services: Any) -> int:
        col = services.events._store._col
        return await col.count_documents({"org_id": org.id, "counting_ms": {"$exists": True}})

    assert server.call(uncounted) == 0


# A crash (or a write its client gave up on, applied later) between a group's increment and the
# event's count mark leaves a counted event that looks uncounted: it must not be counted again.

MERGE = """mutation($o: ID!, $s: String!, $t: String!) {
  mergeErrorGroups(orgId: $o, source: $s, target: $t) { fingerprint occurrences } }"""


def incremented_not_marked(server: LiveServer, event: ErrorEventRecord) -> None:
    """What a process that died after counting `event` into its group, before its mark, leaves."""
    server.call(lambda s: s.events._groups.record(event))


def event_doc(server: LiveServer, event: ErrorEventRecord) -> dict[str, Any]:
    async def read(services: Any) -> dict[str, Any]:
        doc: dict[str, Any] = await services.events._store._col.find_one({"event_id": event.id})
        return doc

    return server.call(read)


def pending_ids(server: LiveServer, org: Org, fp: str) -> set[str]:
    async def read(services: Any) -> set[str]:
        doc = await services.events._groups._store._col.find_one({"_id": f"{org.id}\x1f{fp}"})
        assert doc is not None
        return set(doc.get("pending") or {}) | {k[8:] for k in doc if k.startswith("pending.")}

    return server.call(read)


async def log_one(gql: GraphQLClient, org: Org, message: str, server: LiveServer | None = None) -> None:
    """Logs an event; with `server`, also waits for its count mark (written after the answer)."""
    await gql.data(
        LOG_ERROR, {"orgId": org.id, "error": {"message": message, "severity": "LOW"}}, key=org.key
    )
    if server is not None:
        server.call(lambda s: s.events.settle())


async def test_the_repair_does_not_count_again_an_event_whose_group_was_incremented(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    await log_one(gql, org, "counted before the crash")  # the group exists
    event = stored_uncounted(server, org, "counted before the crash", age=timedelta(minutes=5))
    incremented_not_marked(server, event)
    assert await occurrences(gql, org, event) == 2
    assert server.call(lambda s: s.events.repair_counts()) >= 1
    assert await occurrences(gql, org, event) == 2
    assert "counting_ms" not in event_doc(server, event)  # marked now: never claimed again
    assert event.id not in pending_ids(server, org, event.fingerprint)
    server.call(lambda s: s.events.repair_counts())
    assert await occurrences(gql, org, event) == 2


async def test_the_repair_does_not_count_again_an_event_that_started_its_group(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    event = stored_uncounted(server, org, "started, then the crash", age=timedelta(minutes=5))
    incremented_not_marked(server, event)
    assert await occurrences(gql, org, event) == 1
    server.call(lambda s: s.events.repair_counts())
    assert await occurrences(gql, org, event) == 1
    doc = event_doc(server, event)
    assert "counting_ms" not in doc and bool(doc.get("started_group"))


async def test_a_retry_does_not_count_again_an_event_whose_group_was_incremented(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    started = stored_uncounted(server, org, "retried", age=timedelta(minutes=5), idempotency_key="r-1")
    incremented_not_marked(server, started)
    await log_one(gql, org, "retried")
    later = stored_uncounted(server, org, "retried", age=timedelta(minutes=4), idempotency_key="r-2")
    incremented_not_marked(server, later)
    assert await occurrences(gql, org, started) == 3
    for key in ("r-1", "r-2", "r-1"):
        variables = {"orgId": org.id, "key": key, "error": {"message": "retried", "severity": "HIGH"}}
        replayed = (await gql.data(LOG_ERROR, variables, key=org.key))["logError"]
        assert replayed["replayed"] is True
    assert await occurrences(gql, org, started) == 3
    assert "counting_ms" not in event_doc(server, later)
    assert bool(event_doc(server, started).get("started_group"))


async def test_an_event_whose_increment_never_happened_is_counted_once_into_an_existing_group(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    await log_one(gql, org, "increment lost")
    lost = stored_uncounted(server, org, "increment lost", age=timedelta(minutes=5))
    retried = stored_uncounted(server, org, "increment lost", age=timedelta(minutes=5), idempotency_key="l-1")
    server.call(lambda s: s.events.repair_counts())
    assert await occurrences(gql, org, lost) == 3
    variables = {"orgId": org.id, "key": "l-1", "error": {"message": "increment lost", "severity": "HIGH"}}
    assert (await gql.data(LOG_ERROR, variables, key=org.key))["logError"]["replayed"] is True
    assert await occurrences(gql, org, retried) == 3


async def test_an_event_counted_into_a_group_merged_since_is_not_counted_again(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    await log_one(gql, org, "merge target")
    target = fingerprint("merge target", None, None)
    event = stored_uncounted(server, org, "merged away", age=timedelta(minutes=5))
    incremented_not_marked(server, event)
    merged = await gql.data(MERGE, {"o": org.id, "s": event.fingerprint, "t": target}, key=org.key)
    assert merged["mergeErrorGroups"]["occurrences"] == 2
    server.call(lambda s: s.events.repair_counts())
    group = (await gql.data(GROUP, {"o": org.id, "f": target}, key=org.key))["errorGroup"]
    assert group["occurrences"] == 2
    assert event.id not in pending_ids(server, org, target)


async def test_a_group_forgets_the_events_it_counted_once_they_are_marked(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    for _ in range(4):
        await log_one(gql, org, "steady", server)
    fp = fingerprint("steady", None, None)
    # Each update removes the ids marked since the previous one: only the last event's may remain.
    assert len(pending_ids(server, org, fp)) <= 1


async def test_the_sweep_removes_the_ids_of_marked_events_and_keeps_the_unmarked(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    await log_one(gql, org, "swept", server)
    fp = fingerprint("swept", None, None)
    marked = pending_ids(server, org, fp)
    assert len(marked) == 1  # the last event's id, removed only by this process's next update
    # Its lease still running while the sweep looks (an event in flight, or one whose process has just
    # died): the server's own background repair leaves it alone meanwhile.
    crashed = stored_uncounted(server, org, "swept", age=timedelta(0))

    async def increment(services: Any) -> None:  # as another process would, before it died
        await services.events._groups._store._col.update_one(
            {"_id": f"{org.id}\x1f{fp}"}, group_update([crashed]), upsert=True
        )

    server.call(increment)  # its entry is what keeps the repair from counting it twice
    assert pending_ids(server, org, fp) == marked | {crashed.id}
    assert server.call(lambda s: s.events.sweep_pending(batch=1)) >= 1
    assert pending_ids(server, org, fp) == {crashed.id}

    async def expire_lease(services: Any) -> None:  # the dead process's lease runs out
        lapsed = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1000)
        await services.events._store._col.update_one(
            {"event_id": crashed.id}, {"$set": {"counting_ms": lapsed}}
        )

    server.call(expire_lease)
    server.call(lambda s: s.events.repair_counts())  # (or the background repair, first: the same answer)
    assert await occurrences(gql, org, crashed) == 2

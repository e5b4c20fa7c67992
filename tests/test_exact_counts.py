"""Group counts stay exact across crashes: an event stored but not counted when its process died is
counted by its retry (same idempotency key) or by the repair, once, and never while a live process may
still be counting it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.events.fingerprint import fingerprint
from app.events.model import ErrorEventRecord, NewEvent, Severity
from app.events.service import payload_hash
from app.events.store import new_event_id
from tests.conftest import GraphQLClient, LiveServer, Org
from tests.documents import LOG_ERROR

GROUP = "query($o: ID!, $f: String!) { errorGroup(orgId: $o, fingerprint: $f) { occurrences } }"


def stored_uncounted(
    server: LiveServer, org: Org, message: str, *, age: timedelta, idempotency_key: str | None = None
) -> ErrorEventRecord:
    """What a process that died between storing an event and counting it leaves behind."""
    received = datetime.now(UTC).replace(microsecond=0) - age
    event = ErrorEventRecord(
        id=new_event_id(received),
        org_id=org.id,
        message=message,
        severity=Severity.HIGH,
        timestamp=received,
        received_at=received,
        code=None,
        source=None,
        context=None,
        fingerprint=fingerprint(message, None, None),
    )
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

    async def uncounted(services: Any) -> int:
        col = services.events._store._col
        return await col.count_documents({"org_id": org.id, "counting_ms": {"$exists": True}})

    assert server.call(uncounted) == 0

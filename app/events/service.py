"""The rules of error events: who may read and write which organization, idempotent logging."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec
import orjson

from app.core.clock import utc_now
from app.core.errors import AppError, Conflict
from app.core.principal import Principal
from app.events.feed import EventFeed
from app.events.fingerprint import fingerprint
from app.events.inputs import validate_log_error
from app.events.model import ErrorEventRecord, EventPage, EventQuery, NewEvent, Severity
from app.events.store import DuplicateIdempotencyKey, EventStore, new_event_id
from app.orgs.service import OrgService
from app.storage.batching import Cohort

# How long a process may take between storing an event and counting it (two database calls, each
# bounded by MONGODB_TIMEOUT_MS) before the event counts as left behind by a crash.
COUNT_LEASE_MS = 30_000
SWEEP_EVERY = 10  # count repairs per sweep of the groups' pending maps (`sweep_pending`)
log = logging.getLogger("app.events")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    event: ErrorEventRecord
    replayed: bool
    new_group: bool


def payload_hash(event: NewEvent) -> str:
    """What a retry must repeat exactly to be a replay rather than a conflict."""
    payload: dict[str, object] = {
        "message": event.message,
        "severity": event.severity.value,
        "timestamp": event.timestamp.isoformat() if event.timestamp else None,
        "code": event.code,
        "source": event.source,
        "context": event.context,
        "fingerprint": event.fingerprint,
    }
    # Fields added later join the hash only when set: keys stored before them still replay.
    extra: dict[str, object] = {
        "environment": event.environment,
        "release": event.release,
        "level": event.level,
        "platform": event.platform,
        "tags": event.tags,
        # A struct, as builtins (datetimes left to orjson). Only SDK events have details, and theirs
        # are never hashed (ANY_PAYLOAD): logError and the REST route take none.
        "details": msgspec.to_builtins(event.details, builtin_types=(datetime,)) if event.details else None,
        "project_id": event.project_id,
    }
    payload.update({k: v for k, v in extra.items() if v is not None})
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


# Stored as the payload hash of a key whose retries replay whatever their payload (SDK event ids): never
# a SHA-256 hex digest, so a logError that reused such a key with its own payload is a conflict.
ANY_PAYLOAD = "any"
REPLAY_LIMIT = 1000  # events a resumed errorLogged subscription replays at most


class GroupCounter(Protocol):
    """Counts a stored event into its group (the groups domain implements it; events do not import it)."""

    async def canonical(self, org_id: str, fingerprint: str, generation: int | None = None) -> str:
        """The fingerprint an event of `fingerprint` is stored and counted under: another one when the
        group was merged into it. `generation`: the merge generation read with the event's position;
        an answer looked up since that generation was read may be reused (None: look it up now)."""
        ...

    async def record(self, event: ErrorEventRecord) -> bool:
        """True when the event started its group. Also applies the automatic status changes an event
        causes (regression, end of an ignore condition, escalation)."""
        ...

    def marked(self, event: ErrorEventRecord) -> None:
        """`event`'s count mark is written (its group may forget that it counted it)."""
        ...

    async def counted(self, event: ErrorEventRecord) -> tuple[bool, bool]:
        """Whether `event`'s group was incremented for it already (a crash came before its mark), and
        whether it started the group."""
        ...

    async def forget(self, event: ErrorEventRecord) -> None:
        """After `counted` found it and its mark was written: its group need not remember it."""
        ...

    async def pending_entries(
        self, after: str | None, limit: int
    ) -> tuple[list[tuple[str, list[str]]], str | None]:
        """Groups' remembered event ids, `limit` groups at a time: ((group key, ids), ...), next `after`."""
        ...

    async def drop_pending(self, key: str, event_ids: list[str]) -> None:
        """The group (by key) need not remember these events any more."""
        ...


class EventService:
    def __init__(
        self,
        store: EventStore,
        groups: GroupCounter,
        orgs: OrgService,
        feed: EventFeed,
        retention_days: float = 0,
    ) -> None:
        self._store = store
        self._groups = groups
        self._orgs = orgs
        self._feed = feed
        self._cohorts = Cohort()
        # Event id -> its count mark on its way (posted, not yet written), and whether it started its group.
        self._marks: dict[str, tuple[asyncio.Future[None], bool]] = {}
        self.retention_days = retention_days  # 0: events are kept forever
        self.logged: Counter[Severity] = Counter()  # events stored (replays excluded), for the metrics

    def validate_log_error(self, raw: dict[str, Any]) -> tuple[str, NewEvent, str | None]:
        """logError's arguments (GraphQL names): (org id, event, idempotency key), or one catalogued
        error listing every problem, a timestamp older than the retention window among them."""
        return validate_log_error(raw, retention_days=self.retention_days)

    async def authorize(self, principal: Principal, org_id: str) -> None:
        """NOT_FOUND unless the organization exists and the credential may use it."""
        await self._orgs.authorize(principal, org_id)

    async def log(
        self,
        principal: Principal,
        org_id: str,
        new: NewEvent,
        idempotency_key: str | None,
        *,
        replay_any_payload: bool = False,
    ) -> LoggedEvent:
        # In cohorts: each batched step below then carries every event logged at the same time (see
        # app.storage.batching.Cohort).
        cohort = await self._cohorts.enter()
        try:
            return await self._log(principal, org_id, new, idempotency_key, replay_any_payload)
        finally:
            self._cohorts.leave(cohort)

    async def _log(
        self,
        principal: Principal,
        org_id: str,
        new: NewEvent,
        idempotency_key: str | None,
        replay_any_payload: bool,
    ) -> LoggedEvent:
        """Stores and counts an event once per idempotency key. A retry with the same key replays the
        first result; with another payload it is a CONFLICT, unless `replay_any_payload` (SDK event ids:
        an SDK's resend is the same event even when, say, its clock-derived fields moved)."""
        principal.check_write(org_id)  # ingest keys write into their project's organization, read nothing
        await self._orgs.require(org_id)
        received_at = utc_now()
        timestamp = new.timestamp or received_at
        # The position first: the merge generation read with it tells whether this process's earlier
        # alias lookups still hold (no alias set or removed since), so the lookup is usually skipped.
        seq, merges = await self._store.next_position()
        basis = new.fingerprint or fingerprint(
            new.message, new.code, new.source, new.details.exceptions if new.details else ()
        )
        event = ErrorEventRecord(
            id=new_event_id(timestamp),
            org_id=org_id,
            message=new.message,
            severity=new.severity,
            timestamp=timestamp,
            received_at=received_at,
            code=new.code,
            source=new.source,
            context=new.context,
            fingerprint=await self._groups.canonical(org_id, basis, merges),
            seq=seq,
            environment=new.environment,
            release=new.release,
            level=new.level,
            platform=new.platform,
            tags=new.tags,
            details=new.details,
            project_id=new.project_id,
        )
        with self._feed.expect(event.seq or 0):  # published below: the feed's poll need not read it
            if idempotency_key is None:
                await self._store.insert(event)
            else:
                idem_key = f"{org_id}\x1f{idempotency_key}"
                # An SDK's resend is answered whatever its payload: its hash would never be compared,
                # and hashing a whole event's details was 3% of the server's CPU under bench/sdk_ingest.py.
                digest = ANY_PAYLOAD if replay_any_payload else payload_hash(new)
                try:
                    await self._store.insert(event, idem_key, digest)
                except DuplicateIdempotencyKey:
                    return await self._replay(idem_key, None if replay_any_payload else digest)
            # Counted after the event is stored, so a replayed retry never counts twice. A crash between
            # the writes leaves the event marked uncounted (no multi-document transaction on every
            # deployment): a retry or the repair (`repair_counts`) counts it once its lease has expired.
            new_group = await self._groups.record(event)
            self._mark_later(event, new_group)
            self.logged[event.severity] += 1
            self._feed.publish_local(event)
        return LoggedEvent(event=event, replayed=False, new_group=new_group)

    def _mark_later(self, event: ErrorEventRecord, started_group: bool) -> None:
        """The event's count mark, written with the next flush of writes while its caller is answered:
        the cohort is out one round trip sooner, and under load the mark rides with the next cohort's
        inserts. Exact counts do not depend on it: until the mark is written, the event's group keeps
        its id as counted (the pending map), so after a crash in between the repair only marks it. A
        retry meanwhile is answered from what the mark will say (`_replay`)."""
        written = self._store.post_mark(event.id, started_group)
        self._marks[event.id] = (written, started_group)
        written.add_done_callback(functools.partial(self._marked, event))

    def _marked(self, event: ErrorEventRecord, written: asyncio.Future[None]) -> None:
        self._marks.pop(event.id, None)
        if written.cancelled():
            return
        error = written.exception()
        if error is None:
            self._groups.marked(event)
        else:  # left to the repair, once the event's lease has expired
            log.warning("count mark of %s not written: %s", event.id, error)

    async def settle(self) -> None:
        """Waits (at most 5 s) for the count marks on their way: at shutdown, before the client closes."""
        if self._marks:
            await asyncio.wait([written for written, _ in self._marks.values()], timeout=5)

    async def _count(self, event: ErrorEventRecord) -> bool:
        new_group = await self._groups.record(event)
        await self._store.mark_counted(event.id, new_group)
        self._groups.marked(event)
        return new_group

    async def _count_claimed(self, event: ErrorEventRecord) -> bool:
        """Counts an event claimed after its lease expired, unless its group's increment was written
        before the crash (the group remembers the ids it counted until their marks are written): then
        only the mark is. Whether it started its group."""
        counted, started = await self._groups.counted(event)
        if not counted:
            return await self._count(event)
        await self._store.mark_counted(event.id, started)
        await self._groups.forget(event)
        return started

    async def _replay(self, idem_key: str, digest: str | None) -> LoggedEvent:
        found = await self._store.find_by_idempotency_key(idem_key)
        if found is None:  # the first write was removed (retention) between insert and read
            raise Conflict("Idempotency key is being reused; retry with a new key")
        if digest is not None and found.idem_hash != digest:
            raise Conflict()
        started_group = found.started_group
        on_its_way = self._marks.get(found.event.id)
        if on_its_way is not None:  # counted here a moment ago, its mark not written yet
            started_group = on_its_way[1]
        elif found.counting_ms is not None and await self._claim(found.event.id):
            # The first attempt stored the event and died before marking it counted: count it now,
            # unless its group was incremented already.
            started_group = await self._count_claimed(found.event)
        return LoggedEvent(event=found.event, replayed=True, new_group=started_group)

    async def _claim(self, event_id: str) -> bool:
        now = now_ms()
        return await self._store.claim_uncounted(event_id, now - COUNT_LEASE_MS, now)

    async def repair_counts(self, limit: int = 500) -> int:
        """Counts the events a crash left uncounted (older than the lease, so that no live process is
        still counting them); each is claimed first, so instances repairing together count it once,
        and counted only if its group's increment was not written before the crash (`_count_claimed`).
        The number of events repaired (counted, or only marked)."""
        repaired = 0
        while True:
            stale = await self._store.stale_uncounted(now_ms() - COUNT_LEASE_MS, limit)
            for event in stale:
                if await self._claim(event.id):
                    await self._count_claimed(event)
                    repaired += 1
            if len(stale) < limit:
                return repaired

    async def sweep_pending(self, batch: int = 500) -> int:
        """Removes from the groups' pending maps the ids a process left there (a crash, its memory's
        bound, a group it did not update again): those whose event is marked counted or gone. Safe
        beside live processes: a marked event is never claimed again, and an unmarked one (in flight,
        or left by a crash for the repair) keeps its entry. Reads every group with a map, `batch` at a
        time. The number of ids removed."""
        removed = 0
        after: str | None = None
        while True:
            groups, after = await self._groups.pending_entries(after, batch)
            ids = [event_id for _, pending in groups for event_id in pending]
            keep = await self._store.unmarked(ids) if ids else set()
            for key, pending in groups:
                stale = [event_id for event_id in pending if event_id not in keep]
                if stale:
                    await self._groups.drop_pending(key, stale)
                    removed += len(stale)
            if after is None:
                return removed

    async def repair_forever(self, interval: float) -> None:
        """At start-up, then every `interval` seconds (a crash of another instance is found too). The
        groups' pending maps are swept at start-up and every SWEEP_EVERY repairs (a whole scan of the
        groups with a map: rarer than the repair, which reads an index of the few unmarked events)."""
        runs = 0
        while True:
            try:
                repaired = await self.repair_counts()
                if repaired:
                    log.warning("repaired the counts of %s events a crash had left unmarked", repaired)
                if runs % SWEEP_EVERY == 0:
                    await self.sweep_pending()
                runs += 1
            except AppError:
                pass  # the database is away: next time
            except Exception:
                log.exception("count repair failed")
            await asyncio.sleep(interval)

    async def page(self, principal: Principal, query: EventQuery) -> EventPage:
        await self.authorize(principal, query.org_id)
        if query.filter.severities is not None and not query.filter.severities:
            return EventPage(events=[], has_next_page=False)
        return await self._store.page(query)

    async def count(self, query: EventQuery) -> int:
        """Total matching events; only called after `page` authorized the same query."""
        if query.filter.severities is not None and not query.filter.severities:
            return 0
        return await self._store.count(query.org_id, query.filter)

    async def get(self, principal: Principal, org_id: str, event_id: str) -> ErrorEventRecord | None:
        await self.authorize(principal, org_id)
        if len(event_id) > 64:
            return None
        return await self._store.get(org_id, event_id)

    async def bucket_counts(
        self,
        principal: Principal,
        org_id: str,
        start_ms: int,
        end_ms: int,
        interval_ms: int,
        field: str | None,
    ) -> list[tuple[int, str | None, int]]:
        """(bucket start ms, value of `field` or None, count) of an organization's events in
        [start_ms, end_ms): what errorStats is computed from."""
        await self.authorize(principal, org_id)
        return await self._store.bucket_counts(org_id, start_ms, end_ms, interval_ms, field)

    async def missed(
        self, principal: Principal, org_id: str, after_seq: int, limit: int
    ) -> list[ErrorEventRecord]:
        """An organization's events logged after a feed position, oldest first (subscription replay)."""
        await self.authorize(principal, org_id)
        return await self._store.after_seq(after_seq, limit, org_id)

    async def stream(
        self,
        principal: Principal,
        org_id: str,
        severities: frozenset[Severity] | None,
        resume_from: int | None,
    ) -> AsyncIterator[tuple[ErrorEventRecord, bool]]:
        """Authorizes now (a refusal is the subscription's error, before any item), then returns the
        stream of `_stream`."""
        await self.authorize(principal, org_id)
        return self._stream(principal, org_id, severities, resume_from)

    async def _stream(
        self,
        principal: Principal,
        org_id: str,
        severities: frozenset[Severity] | None,
        resume_from: int | None,
    ) -> AsyncIterator[tuple[ErrorEventRecord, bool]]:
        """An organization's newly logged events (of `severities`, None: all). With `resume_from` (a feed
        position), first the events logged since then (at most REPLAY_LIMIT), oldest first. Listening
        starts before reading what was missed, so nothing logged meanwhile falls between the two; what
        arrives both ways is sent once. Authorized before the first item.

        Each item says whether it is a broadcast: the one record object every subscriber receives (the
        GraphQL layer then executes a document on it once for all of them)."""

        def matches(record: ErrorEventRecord) -> bool:
            return record.org_id == org_id and (severities is None or record.severity in severities)

        with self._feed.subscribe() as mailbox:
            replayed: set[int] = set()
            if resume_from is not None:
                for record in await self.missed(principal, org_id, resume_from, REPLAY_LIMIT):
                    replayed.add(record.seq or 0)
                    if matches(record):
                        yield record, False
            while True:
                record = await mailbox.get()
                if record.seq in replayed:
                    replayed.discard(record.seq)
                    continue
                if resume_from is not None and record.seq is not None and record.seq <= resume_from:
                    continue
                if matches(record):
                    yield record, True

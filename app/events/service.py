"""The rules of error events: who may read and write which organization, idempotent logging."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from app.auth.principal import Principal
from app.core.errors import AppError, Conflict
from app.events.feed import EventFeed
from app.events.fingerprint import fingerprint
from app.events.model import ErrorEventRecord, EventPage, EventQuery, NewEvent
from app.events.store import DuplicateIdempotencyKey, EventStore, new_event_id
from app.groups.store import GroupStore
from app.web.metrics import events_logged
from app.orgs.service import OrgService


# How long a process may take between storing an event and counting it (two database calls, each
# bounded by MONGODB_TIMEOUT_MS) before the event counts as left behind by a crash.
COUNT_LEASE_MS = 30_000
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
    payload = {
        "message": event.message,
        "severity": event.severity.value,
        "timestamp": event.timestamp.isoformat() if event.timestamp else None,
        "code": event.code,
        "source": event.source,
        "context": event.context,
        "fingerprint": event.fingerprint,
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class EventService:
    def __init__(self, store: EventStore, groups: GroupStore, orgs: OrgService, feed: EventFeed) -> None:
        self._store = store
        self._groups = groups
        self._orgs = orgs
        self._feed = feed

    async def authorize(self, principal: Principal, org_id: str) -> None:
        """NOT_FOUND unless the organization exists and the credential may use it."""
        principal.check_org(org_id)
        await self._orgs.require(org_id)

    async def log(
        self, principal: Principal, org_id: str, new: NewEvent, idempotency_key: str | None
    ) -> LoggedEvent:
        await self.authorize(principal, org_id)
        received_at = datetime.now(UTC)
        received_at = received_at.replace(microsecond=received_at.microsecond // 1000 * 1000)
        timestamp = new.timestamp or received_at
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
            fingerprint=new.fingerprint or fingerprint(new.message, new.code, new.source),
            seq=await self._store.next_seq(),
        )
        if idempotency_key is None:
            await self._store.insert(event)
        else:
            idem_key = f"{org_id}\x1f{idempotency_key}"
            digest = payload_hash(new)
            try:
                await self._store.insert(event, idem_key, digest)
            except DuplicateIdempotencyKey:
                return await self._replay(idem_key, digest)
        # Counted after the event is stored, so a replayed retry never counts twice. A crash between
        # the writes leaves the event marked uncounted (no multi-document transaction on every
        # deployment): a retry or the repair (`repair_counts`) counts it once its lease has expired.
        new_group = await self._count(event)
        events_logged.labels(event.severity.value).inc()
        self._feed.publish_local(event)
        return LoggedEvent(event=event, replayed=False, new_group=new_group)

    async def _count(self, event: ErrorEventRecord) -> bool:
        new_group = await self._groups.record(event)
        await self._store.mark_counted(event.id, new_group)
        return new_group

    async def _replay(self, idem_key: str, digest: str) -> LoggedEvent:
        found = await self._store.find_by_idempotency_key(idem_key)
        if found is None:  # the first write was removed (retention) between insert and read
            raise Conflict("Idempotency key is being reused; retry with a new key")
        if found.idem_hash != digest:
            raise Conflict()
        started_group = found.started_group
        if found.counting_ms is not None and await self._claim(found.event.id):
            # The first attempt stored the event and died before counting it: count it now.
            started_group = await self._count(found.event)
        return LoggedEvent(event=found.event, replayed=True, new_group=started_group)

    async def _claim(self, event_id: str) -> bool:
        now = now_ms()
        return await self._store.claim_uncounted(event_id, now - COUNT_LEASE_MS, now)

    async def repair_counts(self, limit: int = 500) -> int:
        """Counts the events a crash left uncounted (older than the lease, so that no live process is
        still counting them); each is claimed first, so instances repairing together count it once.
        The number counted."""
        repaired = 0
        while True:
            stale = await self._store.stale_uncounted(now_ms() - COUNT_LEASE_MS, limit)
            for event in stale:
                if await self._claim(event.id):
                    await self._count(event)
                    repaired += 1
            if len(stale) < limit:
                return repaired

    async def repair_forever(self, interval: float) -> None:
        """At start-up, then every `interval` seconds (a crash of another instance is found too)."""
        while True:
            try:
                repaired = await self.repair_counts()
                if repaired:
                    log.warning("counted %s events a crash had left uncounted", repaired)
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

    async def missed(
        self, principal: Principal, org_id: str, after_seq: int, limit: int
    ) -> list[ErrorEventRecord]:
        """An organization's events logged after a feed position, oldest first (subscription replay)."""
        await self.authorize(principal, org_id)
        return await self._store.after_seq(after_seq, limit, org_id)

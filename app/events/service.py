"""The rules of error events: who may read and write which organization, idempotent logging."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from app.auth.principal import Principal
from app.core.errors import Conflict
from app.events.feed import EventFeed
from app.events.fingerprint import fingerprint
from app.events.model import ErrorEventRecord, EventPage, EventQuery, NewEvent
from app.events.store import DuplicateIdempotencyKey, EventStore, new_event_id
from app.groups.store import GroupStore
from app.web.metrics import events_logged
from app.orgs.service import OrgService


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
    # Fields added later join the hash only when set: keys stored before them still replay.
    extra = {
        "environment": event.environment,
        "release": event.release,
        "level": event.level,
        "platform": event.platform,
        "tags": event.tags,
        "details": event.details,
        "project_id": event.project_id,
    }
    payload.update({k: v for k, v in extra.items() if v is not None})
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
        self,
        principal: Principal,
        org_id: str,
        new: NewEvent,
        idempotency_key: str | None,
        *,
        replay_any_payload: bool = False,
    ) -> LoggedEvent:
        """Stores and counts an event once per idempotency key. A retry with the same key replays the
        first result; with another payload it is a CONFLICT, unless `replay_any_payload` (SDK event ids:
        an SDK's resend is the same event even when, say, its clock-derived fields moved)."""
        principal.check_write(org_id)
        await self._orgs.require(org_id)
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
            fingerprint=new.fingerprint
            or fingerprint(
                new.message, new.code, new.source, new.details.exceptions if new.details else ()
            ),
            seq=await self._store.next_seq(),
            environment=new.environment,
            release=new.release,
            level=new.level,
            platform=new.platform,
            tags=new.tags,
            details=new.details,
            project_id=new.project_id,
        )
        if idempotency_key is None:
            await self._store.insert(event)
        else:
            idem_key = f"{org_id}\x1f{idempotency_key}"
            digest = payload_hash(new)
            try:
                await self._store.insert(event, idem_key, digest)
            except DuplicateIdempotencyKey:
                return await self._replay(idem_key, None if replay_any_payload else digest)
        # Counted after the event is stored, so a replayed retry never counts twice. A failure between
        # the two writes leaves the event uncounted (no multi-document transaction on every deployment).
        new_group = await self._groups.record(event)
        if new_group:
            await self._store.mark_started_group(event.id)
        events_logged.labels(event.severity.value).inc()
        self._feed.publish_local(event)
        return LoggedEvent(event=event, replayed=False, new_group=new_group)

    async def _replay(self, idem_key: str, digest: str | None) -> LoggedEvent:
        found = await self._store.find_by_idempotency_key(idem_key)
        if found is None:  # the first write was removed (retention) between insert and read
            raise Conflict("Idempotency key is being reused; retry with a new key")
        event, stored_digest, started_group = found
        if digest is not None and stored_digest != digest:
            raise Conflict()
        return LoggedEvent(event=event, replayed=True, new_group=started_group)

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

"""Error groups: reading them, counting events into them (the event service's GroupCounter), triage
(status, assignment, comments, merges) and the activity every change leaves, streamed to subscribers.

Automatic changes follow app.groups.triage. A change applies only to the revision it was computed from
(find_one_and_update on the revision), so with several instances or concurrent events each change is made,
and recorded as activity, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from app.core.clock import to_ms, utc_now
from app.core.errors import AppError, Conflict, FieldProblem, NotFound, ValidationFailed
from app.core.principal import Principal
from app.core.pubsub import PubSub
from app.core.tasks import stop_tasks
from app.events.model import ErrorEventRecord, EventFilter
from app.events.store import EventStore
from app.groups.model import (
    ActivityCause,
    ActivityKind,
    ActivityRecord,
    Actor,
    ErrorGroupRecord,
    GroupChange,
    GroupPage,
    GroupQuery,
    GroupStatus,
    GroupSubstatus,
    IgnoreKind,
    Resolution,
    ResolveKind,
)
from app.groups.store import ActivityStore, AliasStore, GroupStore, ReleaseStore
from app.groups.triage import HOUR_MS, HOURS_KEPT, Transition, after_event
from app.orgs.service import OrgService

ACTIVITY_TOPIC = "group-activity"
HOLE_MARGIN = 100  # positions the activity poll reads again, for inserts that finished out of order
log = logging.getLogger("app.groups")
REPLAY_LIMIT = 1000  # activity entries a resumed errorGroupChanged replays at most
MAX_REMEMBERED_ALIASES = 100_000  # fingerprints whose canonical form this process remembers
# ...for at most this long, even without a new generation (a merge whose generation bump failed).
ALIAS_MEMORY_SECONDS = 60.0
_ATTEMPTS = 5  # a person's change re-read and re-applied when an automatic one came in between


@dataclass(frozen=True, slots=True)
class TriageSettings:
    escalation_factor: float = 10.0
    escalation_min_events: int = 20
    poll_seconds: float = 0.25  # how often other instances' activity is looked for


class GroupService:
    def __init__(
        self,
        store: GroupStore,
        orgs: OrgService,
        *,
        activity: ActivityStore,
        aliases: AliasStore,
        releases: ReleaseStore,
        events: EventStore,
        pubsub: PubSub,
        settings: TriageSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._orgs = orgs
        self._activity = activity
        self._aliases = aliases
        self._releases = releases
        self._events = events
        self._pubsub = pubsub
        self._settings = settings or TriageSettings()
        self._clock = clock
        self.automatic: dict[ActivityCause, int] = {}  # automatic changes made, by cause (for the metrics)
        self._published: OrderedDict[int, None] = OrderedDict()  # recent positions published here
        self._watermark: int | None = None  # the poll reads entries after this position
        self._poller: asyncio.Task[None] | None = None
        self._canonical: dict[tuple[str, str], str] = {}  # (org, fingerprint) -> canonical, see canonical()
        self._alias_generation = -1
        self._canonical_since = time.monotonic()

    # -- other instances' activity ----------------------------------------------------------------

    async def start(self) -> None:
        """Publishes other instances' activity to this process's subscribers, polling every
        `poll_seconds` (one query per process, never one per subscriber)."""
        self._watermark = await self._activity.last_seq()
        self._poller = asyncio.create_task(self._poll_forever(), name="group-activity")

    async def stop(self) -> None:
        await stop_tasks([self._poller])
        self._poller = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.poll_seconds)
            try:
                await self.poll()
            except AppError as exc:  # database away: try again next round
                log.debug("activity poll failed: %s", exc.message)
            except Exception:
                log.exception("activity poll failed")

    async def poll(self) -> None:
        """Entries stored since the last poll. Positions are taken before the insert, so a lower one can
        become visible after a higher one: the poll re-reads the last HOLE_MARGIN positions, and what was
        published already is skipped."""
        start = max(0, (self._watermark or 0) - HOLE_MARGIN)
        for entry in await self._activity.after(None, start, 1000):
            self._watermark = max(self._watermark or 0, entry.seq)
            if entry.seq not in self._published:
                self._remember(entry.seq)
                self._pubsub.publish(ACTIVITY_TOPIC, entry)

    def _remember(self, seq: int) -> None:
        self._published[seq] = None
        while len(self._published) > 10_000:
            self._published.popitem(last=False)

    # -- counting (GroupCounter) ------------------------------------------------------------------

    async def canonical(self, org_id: str, fingerprint: str, generation: int | None = None) -> str:
        """Merges are rare and every event asks: the answers are remembered for one merge generation
        (a number every alias change bumps, read by the event with its feed position, in a round trip
        it makes anyway). An answer is kept only when it was looked up after the generation in force
        was read, so it is never older than the last alias change this process has been told of. An
        event that still counts under a fingerprint a merge has just taken (the same race as a lookup
        made just before the merge) is moved over by `record`, whose own check is never cached."""
        if generation is None:
            return await self._aliases.target(org_id, fingerprint) or fingerprint
        now = time.monotonic()
        if generation > self._alias_generation or now - self._canonical_since > ALIAS_MEMORY_SECONDS:
            self._canonical.clear()
            self._alias_generation = max(generation, self._alias_generation)
            self._canonical_since = now
        key = (org_id, fingerprint)
        if generation == self._alias_generation and (known := self._canonical.get(key)) is not None:
            return known
        found = await self._aliases.target(org_id, fingerprint) or fingerprint
        if generation == self._alias_generation:
            if len(self._canonical) >= MAX_REMEMBERED_ALIASES:
                self._canonical.clear()
            self._canonical[key] = found
        return found

    def marked(self, event: ErrorEventRecord) -> None:
        self._store.marked(event)

    async def counted(self, event: ErrorEventRecord) -> tuple[bool, bool]:
        """Whether `event` was counted already (its id is in its group's pending map: the group's
        increment was written, its mark not), and whether it started the group. A group merged since
        gave its pending map to its target (`absorb`): the target is looked at when the group is gone
        or lacks the id."""
        found = await self._store.has_pending(event.org_id, event.fingerprint, event.id)
        if found is not None and found[0]:
            return found
        target = await self._aliases.target(event.org_id, event.fingerprint)
        if target is not None and target != event.fingerprint:
            in_target = await self._store.has_pending(event.org_id, target, event.id)
            if in_target is not None and in_target[0]:
                return True, False  # its own group is gone: it is not a new group any more
        return False, False

    async def forget(self, event: ErrorEventRecord) -> None:
        """Removes a claimed, already counted event's id from its group's pending map (and its merge
        target's), once its mark is written."""
        await self._store.forget_pending(event.org_id, event.fingerprint, event.id)
        target = await self._aliases.target(event.org_id, event.fingerprint)
        if target is not None and target != event.fingerprint:
            await self._store.forget_pending(event.org_id, target, event.id)

    async def pending_entries(
        self, after: str | None, limit: int
    ) -> tuple[list[tuple[str, list[str]]], str | None]:
        return await self._store.pending_entries(after, limit)

    async def drop_pending(self, key: str, event_ids: list[str]) -> None:
        await self._store.drop_pending(key, event_ids)

    async def record(self, event: ErrorEventRecord) -> bool:
        counted = await self._store.record(event)  # with the group's state when it existed
        if event.release is not None and event.seq is not None:
            await self._releases.note(event.org_id, event.release, event.seq)
        now = self._clock()
        if counted.started:
            target = await self._aliases.target(event.org_id, event.fingerprint)
            if target is not None:  # counted just as a merge took this fingerprint's group: move it over
                await self._store.absorb(event.org_id, target, event.fingerprint)
                return False
        if counted.started:  # a new group's state is known: no read
            await self._publish(
                ActivityRecord(
                    seq=await self._activity.next_seq(),
                    org_id=event.org_id,
                    fingerprint=event.fingerprint,
                    kind=ActivityKind.FIRST_SEEN,
                    cause=ActivityCause.FIRST_EVENT,
                    actor=None,
                    at=now,
                    status=GroupStatus.UNRESOLVED,
                    substatus=GroupSubstatus.NEW,
                    event=event,
                )
            )
            return True
        group = counted.group
        if group is None:  # merged away meanwhile
            return False
        transition = await self._transition(group, event.release, now)
        if transition is not None:
            changed = await self._store.apply(
                replace(
                    group,
                    status=transition.status,
                    substatus=transition.substatus,
                    resolution=None,
                    ignore=None,
                )
            )
            if changed is not None:  # else another instance or event made a change first
                self.automatic[transition.cause] = self.automatic.get(transition.cause, 0) + 1
                await self._log(
                    changed, ActivityKind.STATUS_CHANGED, transition.cause, None, now, event=event
                )
        if len(group.hourly) > HOURS_KEPT + 2:
            await self._store.forget_hours(group, to_ms(now) // HOUR_MS * HOUR_MS - HOURS_KEPT * HOUR_MS)
        return False

    async def _transition(
        self, group: ErrorGroupRecord, release: str | None, now: datetime
    ) -> Transition | None:
        first_seen: dict[str, int] = {}
        resolution = group.resolution
        if group.status is GroupStatus.RESOLVED and release and resolution and resolution.release:
            first_seen = await self._releases.first_seen(group.org_id, [release, resolution.release])
        window_count = None
        ignore = group.ignore
        if group.status is GroupStatus.IGNORED and ignore and ignore.kind is IgnoreKind.UNTIL_RATE:
            start = now - timedelta(minutes=ignore.window_minutes or 0)
            if ignore.since is not None and ignore.since > start:
                start = ignore.since
            window_count = await self._events.count(
                group.org_id, EventFilter(fingerprint=group.fingerprint, from_=start)
            )
        return after_event(
            group,
            release,
            now,
            first_seen=first_seen,
            window_count=window_count,
            factor=self._settings.escalation_factor,
            min_events=self._settings.escalation_min_events,
        )

    # -- reading ------------------------------------------------------------------------------------

    async def page(self, principal: Principal, query: GroupQuery) -> GroupPage:
        await self._orgs.authorize(principal, query.org_id)
        return await self._store.page(query)

    async def count(self, query: GroupQuery) -> int:
        return await self._store.count(query.org_id, query.filter)

    async def get(self, principal: Principal, org_id: str, fingerprint: str) -> ErrorGroupRecord | None:
        await self._orgs.authorize(principal, org_id)
        return await self._store.get(org_id, fingerprint) if len(fingerprint) <= 128 else None

    async def lookup(self, org_id: str, fingerprint: str) -> ErrorGroupRecord | None:
        """A group, for internal use (alerts): no credential involved."""
        return await self._store.get(org_id, fingerprint)

    async def _existing(self, principal: Principal, org_id: str, fingerprint: str) -> ErrorGroupRecord:
        group = await self.get(principal, org_id, fingerprint)
        if group is None:
            raise NotFound("Error group not found")
        return group

    # -- triage by a person ---------------------------------------------------------------------------

    async def update(
        self, principal: Principal, org_id: str, fingerprint: str, change: GroupChange
    ) -> ErrorGroupRecord:
        """Applies a person's change (status with its condition, assignee); one activity entry per part
        that changed."""
        for _ in range(_ATTEMPTS):
            group = await self._existing(principal, org_id, fingerprint)
            now = self._clock()
            wanted = group
            if change.status is not None:
                wanted = self._with_status(group, change, now)
            if change.set_assignee:
                wanted = replace(wanted, assignee=change.assignee)
            if wanted == group:
                return group
            changed = await self._store.apply(wanted)
            if changed is None:
                continue  # an event changed it meanwhile: decide again on the new state
            actor = Actor(principal.name, principal.prefix)
            if (changed.status, changed.substatus, changed.resolution, changed.ignore) != (
                group.status,
                group.substatus,
                group.resolution,
                group.ignore,
            ):
                await self._log(changed, ActivityKind.STATUS_CHANGED, ActivityCause.PERSON, actor, now)
            if changed.assignee != group.assignee:
                await self._log(changed, ActivityKind.ASSIGNED, ActivityCause.PERSON, actor, now)
            return changed
        raise Conflict("The group is changing too fast; try again")

    def _with_status(self, group: ErrorGroupRecord, change: GroupChange, now: datetime) -> ErrorGroupRecord:
        status = change.status
        if status is GroupStatus.RESOLVED:
            resolution = change.resolution or Resolution(ResolveKind.NOW)
            if resolution.kind is not ResolveKind.IN_RELEASE:
                resolution = Resolution(resolution.kind, group.last_release)
            return replace(group, status=status, resolution=resolution, ignore=None)
        if status is GroupStatus.IGNORED:
            ignore = change.ignore
            if ignore is None:
                raise ValidationFailed(
                    details=[FieldProblem("input.ignore", "Required when status is IGNORED")]
                )
            if ignore.until is not None and ignore.until <= now:
                raise ValidationFailed(details=[FieldProblem("input.ignore.until", "Must be in the future")])
            ignore = replace(ignore, baseline=group.occurrences, since=now)
            return replace(group, status=status, ignore=ignore, resolution=None)
        assert status is GroupStatus.UNRESOLVED
        substatus = group.substatus
        if group.status is not GroupStatus.UNRESOLVED or substatus in (
            GroupSubstatus.REGRESSED,
            GroupSubstatus.ESCALATING,
        ):
            substatus = GroupSubstatus.ONGOING  # a person looked at it: neither new nor alarming any more
        return replace(group, status=status, substatus=substatus, resolution=None, ignore=None)

    async def comment(self, principal: Principal, org_id: str, fingerprint: str, text: str) -> ActivityRecord:
        group = await self._existing(principal, org_id, fingerprint)
        actor = Actor(principal.name, principal.prefix)
        return await self._log(
            group, ActivityKind.COMMENTED, ActivityCause.PERSON, actor, self._clock(), text=text
        )

    async def merge(self, principal: Principal, org_id: str, source: str, target: str) -> ErrorGroupRecord:
        """`source` becomes an alias of `target`: its counts move there, and its later events count there."""
        await self._orgs.authorize(principal, org_id)
        target = await self.canonical(org_id, target)
        if source == target:
            raise ValidationFailed(details=[FieldProblem("source", "A group cannot be merged into itself")])
        await self._existing(principal, org_id, target)
        await self._existing(principal, org_id, source)
        await self._aliases.point(org_id, source, target)
        # After the alias: whoever reads the new generation sees it. Should this write fail, the merge
        # answers an error (retried, it sets the alias and bumps again) and caches expire within
        # ALIAS_MEMORY_SECONDS.
        await self._events.note_alias_change()
        # The source's document is taken atomically, with every count that reached it; an event whose
        # alias lookup ran before the alias was set and that re-creates it is moved over by `record`.
        await self._store.absorb(org_id, target, source)
        after = await self._existing(principal, org_id, target)
        actor = Actor(principal.name, principal.prefix)
        await self._log(after, ActivityKind.MERGED, ActivityCause.PERSON, actor, self._clock(), text=source)
        return after

    async def unmerge(self, principal: Principal, org_id: str, fingerprint: str) -> ErrorGroupRecord:
        """Removes `fingerprint`'s alias for good: its later events start a group of their own again.
        The counts moved by the merge stay where they are. Answers the group it was merged into."""
        await self._orgs.authorize(principal, org_id)
        target = await self._aliases.remove(org_id, fingerprint)
        if target is None:
            raise NotFound("No group is merged under this fingerprint")
        await self._events.note_alias_change()
        group = await self._existing(principal, org_id, target)
        actor = Actor(principal.name, principal.prefix)
        await self._log(
            group, ActivityKind.UNMERGED, ActivityCause.PERSON, actor, self._clock(), text=fingerprint
        )
        return group

    # -- activity --------------------------------------------------------------------------------------

    async def _log(
        self,
        group: ErrorGroupRecord,
        kind: ActivityKind,
        cause: ActivityCause,
        actor: Actor | None,
        at: datetime,
        *,
        text: str | None = None,
        event: ErrorEventRecord | None = None,
    ) -> ActivityRecord:
        entry = ActivityRecord(
            seq=await self._activity.next_seq(),
            org_id=group.org_id,
            fingerprint=group.fingerprint,
            kind=kind,
            cause=cause,
            actor=actor,
            at=at,
            status=group.status,
            substatus=group.substatus,
            assignee=group.assignee,
            text=text,
            release=event.release if event is not None and kind is ActivityKind.STATUS_CHANGED else None,
            event=event,
        )
        return await self._publish(entry)

    async def _publish(self, entry: ActivityRecord) -> ActivityRecord:
        await self._activity.insert(entry)
        self._remember(entry.seq)
        self._pubsub.publish(ACTIVITY_TOPIC, entry)
        return entry

    async def activity(
        self, principal: Principal, org_id: str, fingerprint: str, first: int, before: int | None
    ) -> tuple[list[ActivityRecord], bool]:
        """A group's activity, newest first."""
        await self._orgs.authorize(principal, org_id)
        return await self._activity.page(org_id, fingerprint, first, before)

    async def stream(
        self, principal: Principal, org_id: str, after: int | None
    ) -> AsyncIterator[ActivityRecord]:
        """Authorizes now (a refusal is the subscription's error), then returns the stream."""
        await self._orgs.authorize(principal, org_id)
        return self._stream(org_id, after)

    async def _stream(self, org_id: str, after: int | None) -> AsyncIterator[ActivityRecord]:
        """The organization's activity from now on; with `after` (a position), first what was recorded
        since then (at most REPLAY_LIMIT), oldest first. Listening starts before the replay is read, so
        nothing falls between the two, and what arrives both ways is sent once."""
        with self._pubsub.subscribe(ACTIVITY_TOPIC) as mailbox:
            replayed: set[int] = set()
            if after is not None:
                for entry in await self._activity.after(org_id, after, REPLAY_LIMIT):
                    replayed.add(entry.seq)
                    yield entry
            while True:
                live: ActivityRecord = await mailbox.get()
                if live.seq in replayed:
                    replayed.discard(live.seq)
                    continue
                if live.org_id != org_id or (after is not None and live.seq <= after):
                    continue
                yield live

"""The `error_groups` collection: one document per (organization, fingerprint), updated atomically.

Document shape: `_id` "<org>\\x1f<fingerprint>", org_id, fingerprint, message, source, code (from the
first event), occurrences, first_seen_ms / last_seen_ms (epoch milliseconds), severity_rank (highest
seen), latest_event_id, environments? and releases? (every value its events carried, `$addToSet`).
Times are integers so that `$min`/`$max` and keyset comparisons behave the same on MongoDB and on
nx-27017, which stores a date written by an update to an existing document as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from app.core.clock import from_ms, to_ms
from app.core.errors import AppError
from app.core.paging import SortOrder
from app.events.model import ErrorEventRecord, Severity
from app.groups.model import (
    ActivityCause,
    ActivityKind,
    ActivityRecord,
    Actor,
    ErrorGroupRecord,
    GroupFilter,
    GroupOrderField,
    GroupPage,
    GroupQuery,
    GroupStatus,
    GroupSubstatus,
    IgnoreCondition,
    IgnoreKind,
    Resolution,
    ResolveKind,
)
from app.groups.triage import HOUR_MS
from app.storage.batching import Batcher
from app.storage.breaker import CircuitBreaker
from app.storage.counters import Counters
from app.storage.lookups import KeyedReader
from app.storage.mongo import Database, translate_errors, write_failure
from app.storage.paging import keyset_page

SORT_FIELD = {
    GroupOrderField.LAST_SEEN: "last_seen_ms",
    GroupOrderField.FIRST_SEEN: "first_seen_ms",
    GroupOrderField.OCCURRENCES: "occurrences",
    GroupOrderField.SEVERITY: "severity_rank",
}
_BY_RANK = {s.rank: s for s in Severity}
# The environments and releases a group lists are kept to the most recent this many: a public DSN key
# sending a new release with every event must not grow one document toward MongoDB's 16 MB limit.
MAX_LISTED = {"environments": 50, "releases": 100}
MAX_REMEMBERED_GROUPS = 100_000
# Event ids whose count mark is written, remembered until this process's next update of their group
# removes them from its `pending` map; past the bound they are left there (harmless, see `_update`).
MAX_MARKED = 10_000
# The group state read on the counting path: the pending map is only read by a claim's check.
WITHOUT_PENDING = {"pending": 0}


def _key(event: ErrorEventRecord) -> str:
    return f"{event.org_id}\x1f{event.fingerprint}"


def _update(events: list[ErrorEventRecord], marked: list[str] | None = None) -> dict[str, Any]:
    """Counts `events` (one group's, oldest arrival first) into their group, creating it if new.

    The same write notes the events' ids in the group's `pending` map, so that counting is idempotent
    per event: an event is counted in three writes (stored with a counting lease, its group
    incremented, the lease removed), and a crash (or a write applied after its client gave up on it)
    between the last two leaves a counted event that looks uncounted. Whoever claims it later (the
    repair, a replayed retry) first looks for its id here: found, only the mark is written. `marked`:
    ids whose mark has since been written, removed by this update (a different path than the `$set`,
    so allowed together). Ids left behind by a crash stay in the map: a few bytes each, never read on
    the counting path (projected away), removed if their event is claimed again."""
    first = events[0]
    stamps = [to_ms(e.timestamp) for e in events]
    seen: dict[str, Any] = {}
    for name, attribute in (("environments", "environment"), ("releases", "release")):
        values = sorted({getattr(e, attribute) for e in events if getattr(e, attribute) is not None})
        if values:
            seen[name] = {"$each": values}
    counts: dict[str, Any] = {"occurrences": len(events)}
    for e in events:  # received per hour, for the escalation rule
        hour = f"hourly.h{to_ms(e.received_at) // HOUR_MS * HOUR_MS}"
        counts[hour] = counts.get(hour, 0) + 1
    update: dict[str, Any] = {
        "$setOnInsert": {
            "org_id": first.org_id,
            "fingerprint": first.fingerprint,
            "message": first.message,
            "source": first.source,
            "code": first.code,
            "status": GroupStatus.UNRESOLVED.value,
            "substatus": GroupSubstatus.NEW.value,
            "revision": 0,
            "created_ms": to_ms(first.received_at),
            "first_event_id": first.id,
        },
        "$inc": counts,
        "$min": {"first_seen_ms": min(stamps)},
        "$max": {
            "last_seen_ms": max(stamps),
            "severity_rank": max(e.severity.rank for e in events),
            "latest_event_id": max(e.id for e in events),
        },
    }
    if seen:
        update["$addToSet"] = seen
    # Event ids are ULIDs: no dots. A dotted path in an upsert is a nested field on MongoDB; the
    # check (`has_pending`) also accepts a literal "pending.<id>" key, what older nx-27017 builds made.
    updates: dict[str, Any] = {f"pending.{e.id}": 1 for e in events}
    releases = [e.release for e in events if e.release is not None]
    if releases:
        updates["last_release"] = releases[-1]
    update["$set"] = updates
    if marked:
        update["$unset"] = {f"pending.{event_id}": "" for event_id in marked}
    return update


def _from_doc(doc: dict[str, Any]) -> ErrorGroupRecord:
    return ErrorGroupRecord(
        org_id=doc["org_id"],
        fingerprint=doc["fingerprint"],
        message=doc["message"],
        source=doc.get("source"),
        code=doc.get("code"),
        occurrences=int(doc["occurrences"]),
        first_seen=from_ms(int(doc["first_seen_ms"])),
        last_seen=from_ms(int(doc["last_seen_ms"])),
        max_severity=_BY_RANK[int(doc["severity_rank"])],
        latest_event_id=doc["latest_event_id"],
        environments=sorted(doc.get("environments") or []),
        releases=sorted(doc.get("releases") or []),
        status=GroupStatus(doc.get("status") or "UNRESOLVED"),
        substatus=GroupSubstatus(doc.get("substatus") or "NEW"),
        assignee=doc.get("assignee"),
        resolution=_resolution(doc.get("resolution")),
        ignore=_ignore(doc.get("ignore")),
        last_release=doc.get("last_release"),
        revision=int(doc.get("revision") or 0),
        hourly={int(k[1:]): int(v) for k, v in (doc.get("hourly") or {}).items()},
        created=from_ms(int(doc["created_ms"])) if doc.get("created_ms") is not None else None,
    )


def _resolution(doc: dict[str, Any] | None) -> Resolution | None:
    return Resolution(ResolveKind(doc["kind"]), doc.get("release")) if doc else None


def _ignore(doc: dict[str, Any] | None) -> IgnoreCondition | None:
    if not doc:
        return None
    return IgnoreCondition(
        kind=IgnoreKind(doc["kind"]),
        count=doc.get("count"),
        window_minutes=doc.get("window_minutes"),
        until=from_ms(doc["until_ms"]) if doc.get("until_ms") is not None else None,
        baseline=int(doc.get("baseline") or 0),
        since=from_ms(doc["since_ms"]) if doc.get("since_ms") is not None else None,
    )


def state_doc(group: ErrorGroupRecord) -> dict[str, Any]:
    """The triage fields of `group` as stored (what a status change writes)."""
    resolution = group.resolution
    ignore = group.ignore
    return {
        "status": group.status.value,
        "substatus": group.substatus.value,
        "assignee": group.assignee,
        "resolution": {"kind": resolution.kind.value, "release": resolution.release} if resolution else None,
        "ignore": {
            "kind": ignore.kind.value,
            "count": ignore.count,
            "window_minutes": ignore.window_minutes,
            "until_ms": to_ms(ignore.until) if ignore.until else None,
            "baseline": ignore.baseline,
            "since_ms": to_ms(ignore.since) if ignore.since else None,
        }
        if ignore
        else None,
    }


def _match(org_id: str, flt: GroupFilter) -> dict[str, Any]:
    match: dict[str, Any] = {"org_id": org_id}
    if flt.min_severity is not None:
        match["severity_rank"] = {"$gte": flt.min_severity.rank}
    if flt.source is not None:
        match["source"] = flt.source
    if flt.search is not None:
        match["message"] = {"$regex": re.escape(flt.search), "$options": "i"}
    if flt.statuses is not None:
        match["status"] = {"$in": sorted(s.value for s in flt.statuses)}
    if flt.substatuses is not None:
        match["substatus"] = {"$in": sorted(s.value for s in flt.substatuses)}
    if flt.assignee is not None:
        match["assignee"] = flt.assignee
    elif flt.unassigned:
        match["assignee"] = None  # also matches groups that never had one
    return match


@dataclass(frozen=True, slots=True)
class Counted:
    """An event counted into its group: it started the group, or the group as read after counting
    (None when it was merged away meanwhile)."""

    started: bool
    group: ErrorGroupRecord | None


class GroupStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["error_groups"]
        self._records: Batcher[ErrorEventRecord, Counted] = Batcher(self._record_batch)
        # errorGroup: concurrent lookups by key share one `find` (see app.storage.lookups).
        self._by_key = KeyedReader(self._col, "_id", "error_groups.get", breaker, WITHOUT_PENDING)
        # Groups this process has counted into: likely to exist still (see `_record_one`).
        self._existing: set[str] = set()
        # Group key -> ids of its events counted and marked since, for the next update (see `_update`).
        self._marked: dict[str, list[str]] = {}
        self._marked_count = 0

    async def ensure_indexes(self) -> None:
        async with translate_errors("error_groups.indexes", self._breaker):
            # Groups counted before triage existed: UNRESOLVED, and NEW or ONGOING by age, like new ones.
            await self._col.update_many(
                {"status": {"$exists": False}},
                {"$set": {"status": GroupStatus.UNRESOLVED.value, "substatus": GroupSubstatus.ONGOING.value}},
            )
            await self._col.create_index(
                [("org_id", ASCENDING), ("status", ASCENDING), ("last_seen_ms", DESCENDING)],
                name="org_status_last_seen",
            )
        await self._ensure_order_indexes()

    async def _ensure_order_indexes(self) -> None:
        # errorGroups(orderBy): equality on org_id, then the sort field, then the fingerprint as the
        # unique tie-break of keyset pagination, one index per order (both directions use it).
        async with translate_errors("error_groups.indexes", self._breaker):
            for order, field in SORT_FIELD.items():
                await self._col.create_index(
                    [("org_id", ASCENDING), (field, DESCENDING), ("fingerprint", DESCENDING)],
                    name=f"org_by_{order.value.lower()}",
                )

    async def record(self, event: ErrorEventRecord) -> Counted:
        """Counts one event into its group: whether the event started the group, else the group as
        read after counting (its triage state). Concurrent callers share the round trips: one write
        for every group of the batch, one read for the groups that existed."""
        return await self._records.submit(event)

    async def _record_batch(self, events: list[ErrorEventRecord]) -> list[Counted | BaseException]:
        # One upsert per group: the batch's events of one group are counted together, the first of
        # them (in arrival order) is the one that may start it.
        by_key: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_key.setdefault(_key(event), []).append(i)
        keys = list(by_key)
        updates = [_update([events[i] for i in by_key[key]], self._take_marked(key)) for key in keys]
        if (
            len(keys) == 1
            and keys[0] in self._existing
            and (counted := await self._record_one(events, keys[0], updates[0])) is not None
        ):
            return counted
        ops = [UpdateOne({"_id": k}, update, upsert=True) for k, update in zip(keys, updates, strict=True)]
        started: set[str] = set()
        retry: list[int] = []
        failed: dict[str, BaseException] = {}
        async with translate_errors("error_groups.record", self._breaker):
            try:
                result = await self._col.bulk_write(ops, ordered=False)
                started = {keys[index] for index in result.upserted_ids or {}}
            except BulkWriteError as exc:
                started = {keys[u["index"]] for u in exc.details.get("upserted", [])}
                for failure in exc.details.get("writeErrors", []):
                    if failure.get("code") == 11000:
                        # Two first events raced (another instance) to create the group: the loser's
                        # upsert, tried again, is an update.
                        retry.append(failure["index"])
                    else:  # that group's events alone fail; the others were counted
                        failed[keys[failure["index"]]] = write_failure(failure)
            for index in retry:
                again = await self._col.update_one({"_id": keys[index]}, updates[index], upsert=True)
                if again.upserted_id is not None:
                    started.add(keys[index])
        # The state of the groups that existed, read once for the batch (what the automatic status
        # changes are computed from); a group started here needs no read: it is new and unresolved.
        # The events of a group started in this batch after its first one read it too.
        to_read = [k for k in keys if k not in failed and (k not in started or len(by_key[k]) > 1)]
        read: dict[str, ErrorGroupRecord] = {}
        read_failure: BaseException | None = None
        if to_read:
            try:
                async with translate_errors("error_groups.get", self._breaker):
                    docs = await self._col.find({"_id": {"$in": to_read}}, WITHOUT_PENDING).to_list()
                    await self._trim_lists(docs)
                read = {doc["_id"]: _from_doc(doc) for doc in docs}
            except AppError as exc:  # counted, but the state is unknown: those callers see why
                read_failure = exc
        if len(self._existing) + len(keys) > MAX_REMEMBERED_GROUPS:
            self._existing.clear()
        self._existing.update(k for k in keys if k not in failed)
        results: list[Counted | BaseException] = []
        for i, event in enumerate(events):
            key = _key(event)
            if key in failed:
                results.append(failed[key])
            elif key in started and by_key[key][0] == i:
                results.append(Counted(started=True, group=None))
            elif read_failure is not None:
                results.append(read_failure)
            else:  # None: merged away meanwhile
                results.append(Counted(started=False, group=read.get(key)))
        return results

    async def _record_one(
        self, events: list[ErrorEventRecord], key: str, update: dict[str, Any]
    ) -> list[Counted | BaseException] | None:
        """The flush's events are all of one group (the common case under load: a burst is one
        problem): an existing group is counted and read back in one round trip (`findAndModify`)
        instead of an update and a find. Tried only for a group this process has counted into (a new
        one would cost a miss first). None when the group does not exist (merged away): the caller's
        upsert starts it, as before. Not an upsert here: nx-27017 applies neither `$setOnInsert` nor
        `$addToSet` to a document `findAndModify` inserts, and would lose whether this write started it."""
        async with translate_errors("error_groups.record", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": key}, update, WITHOUT_PENDING, return_document=ReturnDocument.AFTER
            )
            if doc is None:  # merged away
                self._existing.discard(key)
                return None
            await self._trim_lists([doc])
        group = _from_doc(doc)
        return [Counted(started=False, group=group)] * len(events)

    def marked(self, event: ErrorEventRecord) -> None:
        """`event`'s count mark is written: its id leaves its group's pending map at the next update."""
        if self._marked_count < MAX_MARKED:
            self._marked.setdefault(_key(event), []).append(event.id)
            self._marked_count += 1

    def _take_marked(self, key: str) -> list[str] | None:
        marked = self._marked.pop(key, None)
        if marked:
            self._marked_count -= len(marked)
        return marked

    async def has_pending(self, org_id: str, fingerprint: str, event_id: str) -> tuple[bool, bool] | None:
        """Whether group `fingerprint` counted event `event_id` (its id is in the pending map), and
        whether the event started it; None when the group does not exist."""
        async with translate_errors("error_groups.get", self._breaker):
            doc = await self._col.find_one({"_id": f"{org_id}\x1f{fingerprint}"})
        if doc is None:
            return None
        found = event_id in (doc.get("pending") or {}) or f"pending.{event_id}" in doc
        return found, found and doc.get("first_event_id") == event_id

    async def forget_pending(self, org_id: str, fingerprint: str, event_id: str) -> None:
        async with translate_errors("error_groups.pending", self._breaker):
            await self._col.update_one(
                {"_id": f"{org_id}\x1f{fingerprint}"}, {"$unset": {f"pending.{event_id}": ""}}
            )

    async def pending_entries(
        self, after: str | None, limit: int
    ) -> tuple[list[tuple[str, list[str]]], str | None]:
        """The pending ids of up to `limit` groups (in `_id` order, after `after`), as (group key, ids),
        and the key to continue after (None: the end). Groups whose map is empty are skipped (nx-27017
        cannot query for a non-empty map)."""
        query: dict[str, Any] = {"pending": {"$exists": True}}
        if after is not None:
            query["_id"] = {"$gt": after}
        async with translate_errors("error_groups.pending", self._breaker):
            docs = await self._col.find(query, {"pending": 1}).sort("_id", ASCENDING).limit(limit).to_list()
        found = [(doc["_id"], list(doc["pending"])) for doc in docs if doc.get("pending")]
        return found, docs[-1]["_id"] if len(docs) == limit else None

    async def drop_pending(self, key: str, event_ids: list[str]) -> None:
        async with translate_errors("error_groups.pending", self._breaker):
            await self._col.update_one({"_id": key}, {"$unset": {f"pending.{i}": "" for i in event_ids}})

    async def _trim_lists(self, docs: list[dict[str, Any]]) -> None:
        """Keeps each group's environment and release lists to their most recent MAX_LISTED values
        (`$addToSet` appends, so the most recent are last). Rare: only a list past its bound is written;
        a value added by another instance in the same instant may be trimmed with the oldest."""
        for doc in docs:
            trimmed = {
                name: values[-bound:]
                for name, bound in MAX_LISTED.items()
                if len(values := doc.get(name) or []) > bound
            }
            if trimmed:
                await self._col.update_one({"_id": doc["_id"]}, {"$set": trimmed})
                doc.update(trimmed)

    async def get(self, org_id: str, fingerprint: str) -> ErrorGroupRecord | None:
        """The group, None when there is none. Concurrent lookups share one `find` by `_id`
        (app.storage.lookups.KeyedReader); the key holds the organization, so no other check is needed."""
        doc = await self._by_key.get(f"{org_id}\x1f{fingerprint}")
        return _from_doc(doc) if doc else None

    async def page(self, query: GroupQuery) -> GroupPage:
        direction = DESCENDING if query.direction is SortOrder.DESC else ASCENDING
        docs, more = await keyset_page(
            self._col,
            _match(query.org_id, query.filter),
            [(SORT_FIELD[query.order_by], direction), ("fingerprint", direction)],
            query.after,
            query.first,
            operation="error_groups.page",
            breaker=self._breaker,
        )
        return GroupPage([_from_doc(d) for d in docs], has_next_page=more)

    async def count(self, org_id: str, flt: GroupFilter) -> int:
        async with translate_errors("error_groups.count", self._breaker):
            result = await (
                await self._col.aggregate([{"$match": _match(org_id, flt)}, {"$count": "n"}])
            ).to_list()
        return result[0]["n"] if result else 0

    async def apply(self, group: ErrorGroupRecord) -> ErrorGroupRecord | None:
        """Writes `group`'s triage fields if the stored group is still at `group.revision` (then bumped);
        None when another change came first."""
        async with translate_errors("error_groups.apply", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": f"{group.org_id}\x1f{group.fingerprint}", "revision": group.revision},
                {"$set": state_doc(group), "$inc": {"revision": 1}},
                return_document=ReturnDocument.AFTER,
            )
        return _from_doc(doc) if doc else None

    async def forget_hours(self, group: ErrorGroupRecord, before_ms: int) -> None:
        """Drops hourly counts older than `before_ms` (the escalation rule looks at a day)."""
        old = {f"hourly.h{h}": "" for h in group.hourly if h < before_ms}
        if old:
            async with translate_errors("error_groups.hours", self._breaker):
                await self._col.update_one({"_id": f"{group.org_id}\x1f{group.fingerprint}"}, {"$unset": old})

    async def absorb(self, org_id: str, into: str, source: str) -> bool:
        """Takes group `source`'s document (atomically: counts that landed on it up to that instant come
        along) and adds its counts into group `into`. False when `source` has no document."""
        async with translate_errors("error_groups.merge", self._breaker):
            doc = await self._col.find_one_and_delete({"_id": f"{org_id}\x1f{source}"})
            if doc is None:
                return False
            merged = _from_doc(doc)
            counts: dict[str, Any] = {"occurrences": merged.occurrences}
            for hour, n in merged.hourly.items():
                counts[f"hourly.h{hour}"] = n
            # The events counted into `source` whose mark may not be written yet stay findable.
            pending = [*(doc.get("pending") or {}), *(k[8:] for k in doc if k.startswith("pending."))]
            await self._col.update_one(
                {"_id": f"{org_id}\x1f{into}"},
                {
                    **({"$set": {f"pending.{event_id}": 1 for event_id in pending}} if pending else {}),
                    "$inc": counts,
                    "$min": {"first_seen_ms": to_ms(merged.first_seen)},
                    "$max": {
                        "last_seen_ms": to_ms(merged.last_seen),
                        "severity_rank": merged.max_severity.rank,
                        "latest_event_id": merged.latest_event_id,
                    },
                },
            )
        return True


class AliasStore:
    """`group_aliases`: `_id` "<org>\x1f<fingerprint>" -> `target`, the fingerprint its events count under."""

    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["group_aliases"]
        self._breaker = breaker
        self._by_key = KeyedReader(self._col, "_id", "group_aliases.get", breaker)

    async def ensure_indexes(self) -> None:
        async with translate_errors("group_aliases.indexes", self._breaker):
            await self._col.create_index([("org_id", ASCENDING), ("target", ASCENDING)], name="org_target")

    async def target(self, org_id: str, fingerprint: str) -> str | None:
        """The fingerprint `fingerprint`'s events count under, None when it is not merged; concurrent
        callers share one round trip."""
        doc = await self._by_key.get(f"{org_id}\x1f{fingerprint}")
        return str(doc["target"]) if doc else None

    async def point(self, org_id: str, fingerprint: str, target: str) -> None:
        """`fingerprint` (and whatever was merged into it) now counts under `target`."""
        async with translate_errors("group_aliases.set", self._breaker):
            await self._col.update_many(
                {"org_id": org_id, "target": fingerprint}, {"$set": {"target": target}}
            )
            await self._col.update_one(
                {"_id": f"{org_id}\x1f{fingerprint}"},
                {"$set": {"org_id": org_id, "fingerprint": fingerprint, "target": target}},
                upsert=True,
            )

    async def remove(self, org_id: str, fingerprint: str) -> str | None:
        """Removes the alias; the target it had, or None when there was none."""
        async with translate_errors("group_aliases.remove", self._breaker):
            doc = await self._col.find_one_and_delete({"_id": f"{org_id}\x1f{fingerprint}"})
        return doc["target"] if doc else None


class ReleaseStore:
    """`releases`: the order an organization's releases were first seen (the event position of the first
    event that named each), for releases that are not semantic versions."""

    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["releases"]
        self._breaker = breaker
        self._noted: set[str] = set()  # noted by this process already: one write per release

    async def note(self, org_id: str, release: str, seq: int) -> None:
        key = f"{org_id}\x1f{release}"
        if key in self._noted:
            return
        async with translate_errors("releases.note", self._breaker):
            await self._col.update_one(
                {"_id": key}, {"$min": {"first_seq": seq}, "$setOnInsert": {"org_id": org_id}}, upsert=True
            )
        if len(self._noted) < 100_000:
            self._noted.add(key)

    async def first_seen(self, org_id: str, releases: list[str]) -> dict[str, int]:
        async with translate_errors("releases.get", self._breaker):
            docs = await self._col.find({"_id": {"$in": [f"{org_id}\x1f{r}" for r in releases]}}).to_list()
        return {d["_id"].split("\x1f", 1)[1]: int(d["first_seq"]) for d in docs}


def _activity_doc(a: ActivityRecord) -> dict[str, Any]:
    return {
        "seq": a.seq,
        "org_id": a.org_id,
        "fingerprint": a.fingerprint,
        "kind": a.kind.value,
        "cause": a.cause.value,
        "actor_name": a.actor.name if a.actor else None,
        "actor_prefix": a.actor.prefix if a.actor else None,
        "at_ms": to_ms(a.at),
        "status": a.status.value,
        "substatus": a.substatus.value,
        "assignee": a.assignee,
        "text": a.text,
        "release": a.release,
    }


def _activity(doc: dict[str, Any]) -> ActivityRecord:
    prefix = doc.get("actor_prefix")
    return ActivityRecord(
        seq=int(doc["seq"]),
        org_id=doc["org_id"],
        fingerprint=doc["fingerprint"],
        kind=ActivityKind(doc["kind"]),
        cause=ActivityCause(doc["cause"]),
        actor=Actor(doc.get("actor_name"), prefix) if prefix else None,
        at=from_ms(int(doc["at_ms"])),
        status=GroupStatus(doc["status"]),
        substatus=GroupSubstatus(doc["substatus"]),
        assignee=doc.get("assignee"),
        text=doc.get("text"),
        release=doc.get("release"),
    )


class ActivityStore:
    """`group_activity`: every change of every group, `seq` a position unique across instances (a field of
    its own with a unique index: nx-27017 refuses an integer `_id`)."""

    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["group_activity"]
        self._counters = Counters(db, breaker)
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("group_activity.indexes", self._breaker):
            await self._col.create_index(
                [("org_id", ASCENDING), ("fingerprint", ASCENDING), ("seq", DESCENDING)], name="org_group"
            )
            await self._col.create_index([("org_id", ASCENDING), ("seq", ASCENDING)], name="org_seq")
            await self._col.create_index([("seq", ASCENDING)], name="seq", unique=True)

    async def next_seq(self) -> int:
        return (await self._counters.take("group_activity"))[0]

    async def last_seq(self) -> int:
        return await self._counters.last("group_activity")

    async def insert(self, activity: ActivityRecord) -> None:
        async with translate_errors("group_activity.insert", self._breaker):
            await self._col.insert_one(_activity_doc(activity))

    async def page(
        self, org_id: str, fingerprint: str, first: int, before: int | None
    ) -> tuple[list[ActivityRecord], bool]:
        """A group's entries, newest first, older than position `before` when given."""
        docs, more = await keyset_page(
            self._col,
            {"org_id": org_id, "fingerprint": fingerprint},
            [("seq", DESCENDING)],
            (before,) if before is not None else None,
            first,
            operation="group_activity.page",
            breaker=self._breaker,
        )
        return [_activity(d) for d in docs], more

    async def after(self, org_id: str | None, seq: int, limit: int) -> list[ActivityRecord]:
        """An organization's entries (None: every organization's) after position `seq`, oldest first."""
        docs, _ = await keyset_page(
            self._col,
            {"org_id": org_id} if org_id is not None else {},
            [("seq", ASCENDING)],
            (seq,),
            limit,
            operation="group_activity.after",
            breaker=self._breaker,
        )
        return [_activity(d) for d in docs]

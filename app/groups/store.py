"""The `error_groups` collection: one document per (organization, fingerprint), updated atomically.

Document shape: `_id` "<org>\\x1f<fingerprint>", org_id, fingerprint, message, source, code (from the
first event), occurrences, first_seen_ms / last_seen_ms (epoch milliseconds), severity_rank (highest
seen), latest_event_id, environments? and releases? (every value its events carried, `$addToSet`).
Times are integers so that `$min`/`$max` and keyset comparisons behave the same on MongoDB and on
nx-27017, which stores a date written by an update to an existing document as text.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from app.core.clock import from_ms, to_ms
from app.core.paging import SortOrder
from app.events.model import ErrorEventRecord, Severity
from app.groups.model import ErrorGroupRecord, GroupFilter, GroupOrderField, GroupPage, GroupQuery
from app.storage.batching import Batcher
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors, write_failure
from app.storage.paging import keyset_page

SORT_FIELD = {
    GroupOrderField.LAST_SEEN: "last_seen_ms",
    GroupOrderField.FIRST_SEEN: "first_seen_ms",
    GroupOrderField.OCCURRENCES: "occurrences",
    GroupOrderField.SEVERITY: "severity_rank",
}
_BY_RANK = {s.rank: s for s in Severity}


def _key(event: ErrorEventRecord) -> str:
    return f"{event.org_id}\x1f{event.fingerprint}"


def _update(events: list[ErrorEventRecord]) -> dict[str, Any]:
    """Counts `events` (one group's, oldest arrival first) into their group, creating it if new."""
    first = events[0]
    stamps = [to_ms(e.timestamp) for e in events]
    seen: dict[str, Any] = {}
    for name, attribute in (("environments", "environment"), ("releases", "release")):
        values = sorted({getattr(e, attribute) for e in events if getattr(e, attribute) is not None})
        if values:
            seen[name] = {"$each": values}
    update: dict[str, Any] = {
        "$setOnInsert": {
            "org_id": first.org_id,
            "fingerprint": first.fingerprint,
            "message": first.message,
            "source": first.source,
            "code": first.code,
        },
        "$inc": {"occurrences": len(events)},
        "$min": {"first_seen_ms": min(stamps)},
        "$max": {
            "last_seen_ms": max(stamps),
            "severity_rank": max(e.severity.rank for e in events),
            "latest_event_id": max(e.id for e in events),
        },
    }
    if seen:
        update["$addToSet"] = seen
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
    )


def _match(org_id: str, flt: GroupFilter) -> dict[str, Any]:
    match: dict[str, Any] = {"org_id": org_id}
    if flt.min_severity is not None:
        match["severity_rank"] = {"$gte": flt.min_severity.rank}
    if flt.source is not None:
        match["source"] = flt.source
    if flt.search is not None:
        match["message"] = {"$regex": re.escape(flt.search), "$options": "i"}
    return match


class GroupStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["error_groups"]
        self._records: Batcher[ErrorEventRecord, bool] = Batcher(self._record_batch)

    async def ensure_indexes(self) -> None:
        # errorGroups(orderBy): equality on org_id, then the sort field, then the fingerprint as the
        # unique tie-break of keyset pagination, one index per order (both directions use it).
        async with translate_errors("error_groups.indexes", self._breaker):
            for order, field in SORT_FIELD.items():
                await self._col.create_index(
                    [("org_id", ASCENDING), (field, DESCENDING), ("fingerprint", DESCENDING)],
                    name=f"org_by_{order.value.lower()}",
                )

    async def record(self, event: ErrorEventRecord) -> bool:
        """Counts one event into its group; True when the event started the group. Concurrent
        callers share one round trip."""
        return await self._records.submit(event)

    async def _record_batch(self, events: list[ErrorEventRecord]) -> list[bool | BaseException]:
        # One upsert per group: the batch's events of one group are counted together, the first of
        # them (in arrival order) is the one that may start it.
        by_key: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_key.setdefault(_key(event), []).append(i)
        keys = list(by_key)
        updates = [_update([events[i] for i in by_key[key]]) for key in keys]
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
        results: list[bool | BaseException] = [False] * len(events)
        for key, indexes in by_key.items():
            if key in failed:
                for i in indexes:
                    results[i] = failed[key]
            elif key in started:
                results[indexes[0]] = True
        return results

    async def get(self, org_id: str, fingerprint: str) -> ErrorGroupRecord | None:
        async with translate_errors("error_groups.get", self._breaker):
            doc = await self._col.find_one({"_id": f"{org_id}\x1f{fingerprint}"})
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

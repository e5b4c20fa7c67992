"""The `error_events` collection: the only code that reads and writes error events.

Document shape:
    event_id     "error-<ULID>", public id. The ULID's time part is the event's timestamp (ms), so
                 ordering by event_id is ordering by timestamp with a unique tie-break. One string key
                 thus serves sorting, time-range filters and keyset pagination.
    org_id, message, severity, code?, source?, fingerprint
    timestamp    BSON date (UTC, ms): when it happened; the TTL index expires events by it
    ts_ms        the same instant in epoch milliseconds (int64): statistics bucket it with arithmetic,
                 which nx-27017 evaluates ($dateTrunc and $toLong it does not)
    started_group?  true on the event that created its group (replayed as `newGroup`)
    received_at  BSON date: when the server stored it
    context      the reporter's JSON object, stored as JSON text: `$`-prefixed or dotted keys, huge
                 integers and key order all come back exactly as sent, and nothing queries inside it
    environment?, release?, level?, platform?, project_id?   as sent (SDK events and logError alike)
    tag_pairs?   ["key=value", ...]: the tag filter's multikey index
    tags?        {key: value} with "." in keys stored as TAG_DOT: errorStats groups by one tag's value
    handled?     false when an exception of the event was not handled (the filter `handled`)
    details?     exception chain with frames, user, request, breadcrumbs, contexts, sdk: JSON text,
                 shown and never queried (headers and contexts carry arbitrary keys)
    counting_ms? present while the event is not yet counted into its group: the epoch ms at which a
                 process took it on (its insert, or a repair's claim). Removed once counted, so the sparse
                 index holds only the uncounted; one older than COUNT_LEASE_MS was left by a crash.
    idem_key?    "<org>\\x1f<idempotency key>", unique where present (sparse)
    idem_hash?   hash of the first payload sent with that key

Why not `_id` = public id: nx-27017 (the embedded stand-in) rejects inserts when `_id` is part of a
compound index, and keyset pagination needs (org_id, sort key) in one index. `_id` stays an ObjectId.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import orjson
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from ulid import ULID

from app.core.clock import from_ms, to_ms
from app.core.errors import ServiceUnavailable
from app.events.model import (
    ErrorEventRecord,
    EventDetails,
    EventFilter,
    EventPage,
    EventQuery,
    Severity,
    SortOrder,
)
from app.storage.batching import Batcher
from app.storage.breaker import CircuitBreaker
from app.storage.counters import Counters
from app.storage.lookups import KeyedReader
from app.storage.mongo import Database, translate_errors, write_failure
from app.storage.paging import keyset_page

ID_PREFIX = "error-"
MAX_REMEMBERED_IDS = 100_000
TIMELINE_FILTERS = (  # equality filters with an index of their own
    "fingerprint",
    "source",
    "code",
    "environment",
    "release",
    "tag_pairs",
)
# A dotted key would be a path in MongoDB: tag keys are stored (in `tags` only) with this in place of ".".
TAG_DOT = "\u2024"


# `details` is stored as JSON text, field by field, without the fields at their defaults (null, empty).
# Documents written before (by orjson, datetimes with "+00:00"; or with every field) read back the
# same; unknown fields are ignored.
_DETAILS_ENCODER = msgspec.json.Encoder()
_DETAILS_DECODER = msgspec.json.Decoder(EventDetails)

# "The $changeStream stage is only supported on replica sets" and kin: nothing to retry.
_NO_CHANGE_STREAMS = frozenset({40573, 40324, 136})


class ChangeStreamsUnsupported(Exception):
    """The deployment has no change streams (a standalone mongod); polling is all there is."""


class DuplicateIdempotencyKey(Exception):
    """The idempotency key is already taken; the caller decides between replay and conflict."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: ErrorEventRecord
    idem_hash: str
    started_group: bool
    counting_ms: int | None  # None once counted


def new_event_id(timestamp: datetime) -> str:
    return ID_PREFIX + str(ULID.from_datetime(timestamp))


def _id_floor(moment: datetime) -> str:
    """The smallest event id of the millisecond containing `moment` (rounded up to a whole ms)."""
    ms = -(-int(moment.timestamp() * 1_000_000) // 1000)
    return ID_PREFIX + str(ULID.from_bytes(ms.to_bytes(6, "big") + bytes(10)))


def _to_doc(event: ErrorEventRecord, idem_key: str | None, idem_hash: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": event.id,
        "org_id": event.org_id,
        "message": event.message,
        "severity": event.severity.value,
        "timestamp": event.timestamp,
        "ts_ms": to_ms(event.timestamp),
        "received_at": event.received_at,
        "fingerprint": event.fingerprint,
        "seq": event.seq,
        "counting_ms": int(event.received_at.timestamp() * 1000),  # uncounted until mark_counted
    }
    for name in ("code", "source"):
        if getattr(event, name) is not None:
            doc[name] = getattr(event, name)
    if event.context is not None:
        doc["context"] = orjson.dumps(event.context).decode()
    for name in ("environment", "release", "level", "platform", "project_id"):
        if getattr(event, name) is not None:
            doc[name] = getattr(event, name)
    if event.tags:
        doc["tag_pairs"] = [f"{k}={v}" for k, v in event.tags.items()]
        doc["tags"] = {tag_field(k): v for k, v in event.tags.items()}
    if event.details is not None:
        doc["details"] = _DETAILS_ENCODER.encode(event.details).decode()
        if event.details.handled is not None:
            doc["handled"] = event.details.handled
    if idem_key is not None:
        doc["idem_key"] = idem_key
        doc["idem_hash"] = idem_hash
    return doc


def _from_doc(doc: dict[str, Any]) -> ErrorEventRecord:
    context = doc.get("context")
    return ErrorEventRecord(
        id=doc["event_id"],
        org_id=doc["org_id"],
        message=doc["message"],
        severity=Severity(doc["severity"]),
        timestamp=doc["timestamp"],
        received_at=doc["received_at"],
        code=doc.get("code"),
        source=doc.get("source"),
        context=orjson.loads(context) if context is not None else None,
        fingerprint=doc["fingerprint"],
        seq=doc.get("seq"),
        environment=doc.get("environment"),
        release=doc.get("release"),
        level=doc.get("level"),
        platform=doc.get("platform"),
        tags=dict(p.split("=", 1) for p in doc["tag_pairs"]) if doc.get("tag_pairs") else None,
        details=_DETAILS_DECODER.decode(doc["details"]) if doc.get("details") else None,
        project_id=doc.get("project_id"),
    )


def tag_field(key: str) -> str:
    return key.replace(".", TAG_DOT)


def _match(org_id: str, flt: EventFilter) -> dict[str, Any]:
    match: dict[str, Any] = {"org_id": org_id}
    id_range: dict[str, str] = {}
    if flt.from_ is not None:
        id_range["$gte"] = _id_floor(flt.from_)
    if flt.to is not None:
        id_range["$lt"] = _id_floor(flt.to)
    if id_range:
        match["event_id"] = id_range
    if flt.severities is not None:
        match["severity"] = {"$in": sorted(s.value for s in flt.severities)}
    for name in ("code", "source", "fingerprint", "environment", "release"):
        if getattr(flt, name) is not None:
            match[name] = getattr(flt, name)
    if flt.tag is not None:
        # `$all` of one element means the same as equality on an array field in MongoDB; nx-27017's
        # aggregate finds nothing with the plain equality form on arrays.
        match["tag_pairs"] = {"$all": [f"{flt.tag[0]}={flt.tag[1]}"]}
    if flt.handled is not None:
        match["handled"] = flt.handled
    if flt.search is not None:
        # Escaped: the client's text is matched literally, never interpreted as a pattern.
        match["message"] = {"$regex": re.escape(flt.search), "$options": "i"}
    return match


def _insert_failure(doc: dict[str, Any], failure: dict[str, Any]) -> BaseException:
    if failure.get("code") == 11000 and "idem_key" in doc and "idem" in str(failure.get("errmsg", "")):
        return DuplicateIdempotencyKey()
    return write_failure(failure)


class EventStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["error_events"]
        self._counters = Counters(db, breaker)
        self._positions: Batcher[None, tuple[int, int]] = Batcher(self._take_positions)
        # Inserts and count marks go out together: one `bulk_write` of mixed operations per flush (under
        # load the marks of events counted meanwhile ride along with the next events' inserts).
        # An item is the document to insert or the update of a count mark.
        self._writes: Batcher[dict[str, Any] | UpdateOne, None] = Batcher(self._write_batch)
        self._object_ids: dict[str, ObjectId] = {}  # event id -> `_id` of events inserted here, until counted
        # errorEvent: concurrent lookups by public id share one `find` over the unique index (see
        # app.storage.lookups for read-your-writes, errors, the bound and duplicates).
        self._by_id = KeyedReader(self._col, "event_id", "error_events.get", breaker)

    async def ensure_indexes(self, retention_days: float) -> None:
        """Idempotent; each index is named after the query it serves."""
        await self._ensure_retention(int(retention_days * 86400))
        async with translate_errors("error_events.indexes", self._breaker):
            # errorEvent(id): one event by its public id; also enforces global uniqueness.
            await self._col.create_index([("event_id", ASCENDING)], unique=True, name="event_id")
            # orgErrors: equality on org_id, then range/sort/seek on event_id (= timestamp order), in
            # both directions. Severity and search are residual filters on this scan.
            await self._col.create_index(
                [("org_id", ASCENDING), ("event_id", DESCENDING)], name="org_timeline"
            )
            # orgErrors(filter: {fingerprint | source | code}): one problem's, one component's or one
            # code's events in order, without scanning past everyone else's (a residual filter on the
            # timeline read 8,000 newer events of other sources first: 6.5 ms vs 1.3 ms on nx-27017).
            for field in TIMELINE_FILTERS:
                await self._col.create_index(
                    [("org_id", ASCENDING), (field, ASCENDING), ("event_id", DESCENDING)],
                    name=f"org_{field}_timeline",
                )
            # The live feed and subscription replay read by insertion order, across organizations and
            # within one.
            await self._col.create_index([("seq", ASCENDING)], name="feed")
            await self._col.create_index([("org_id", ASCENDING), ("seq", ASCENDING)], name="org_feed")
            # Idempotent logError: the unique index, not a read-then-write, makes retries safe under
            # concurrency. Sparse: events logged without a key do not collide on a missing value.
            await self._col.create_index(
                [("idem_key", ASCENDING)], unique=True, sparse=True, name="idempotency"
            )
            # Exact counts after a crash: the (few) events not yet counted into their group.
            await self._col.create_index([("counting_ms", ASCENDING)], sparse=True, name="uncounted")

    async def _ensure_retention(self, seconds: int) -> None:
        """Retention: the database removes events whose timestamp is older than `seconds` (TTL index;
        MongoDB's TTL monitor runs every 60 s). A changed setting is applied to the existing index;
        0 keeps events forever (no TTL index)."""
        async with translate_errors("error_events.retention", self._breaker):
            for name, spec in (await self._col.index_information()).items():
                if spec["key"] != [("timestamp", 1)] or spec.get("expireAfterSeconds") == seconds:
                    continue
                if seconds:
                    # collMod changes it in place on MongoDB; recreate where that did not take.
                    await self._col.database.command(
                        "collMod", self._col.name, index={"name": name, "expireAfterSeconds": seconds}
                    )
                    spec = (await self._col.index_information()).get(name, {})
                if not seconds or spec.get("expireAfterSeconds") != seconds:
                    await self._col.drop_index(name)
            if seconds:
                await self._col.create_index(
                    [("timestamp", ASCENDING)], expireAfterSeconds=seconds, name="retention"
                )

    async def insert(
        self, event: ErrorEventRecord, idem_key: str | None = None, idem_hash: str | None = None
    ) -> None:
        """Stores the event (concurrent inserts share one round trip); DuplicateIdempotencyKey when
        the key is taken."""
        doc = _to_doc(event, idem_key, idem_hash)
        # The `_id` is chosen here so that marking the event counted can find it by `_id`: nx-27017 (the
        # embedded stand-in) scans the whole collection to update by any other field, indexed or not
        # (about 50 ms at 10,000 events); MongoDB answers both from an index.
        doc["_id"] = object_id = ObjectId()
        if len(self._object_ids) >= MAX_REMEMBERED_IDS:  # counts that never came: forget, mark by event_id
            self._object_ids.clear()
        self._object_ids[event.id] = object_id
        try:
            await self._writes.submit(doc)
        except BaseException:
            self._object_ids.pop(event.id, None)
            raise

    async def _write_batch(self, items: list[dict[str, Any] | UpdateOne]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(items)
        ops = [InsertOne(item) if isinstance(item, dict) else item for item in items]
        async with translate_errors("error_events.write", self._breaker):
            try:
                # Unordered: one operation's failure (a taken idempotency key) does not stop the others.
                await self._col.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                for failure in exc.details.get("writeErrors", []):
                    item = items[failure["index"]]
                    results[failure["index"]] = (
                        _insert_failure(item, failure) if isinstance(item, dict) else write_failure(failure)
                    )
        return results

    async def find_by_idempotency_key(self, idem_key: str) -> StoredEvent | None:
        """The first request's event with this key, its payload hash and counting state."""
        async with translate_errors("error_events.find_idem", self._breaker):
            doc = await self._col.find_one({"idem_key": idem_key})
        if doc is None:
            return None
        return StoredEvent(
            _from_doc(doc), doc["idem_hash"], bool(doc.get("started_group")), doc.get("counting_ms")
        )

    async def mark_counted(self, event_id: str, started_group: bool) -> None:
        """The event is counted into its group (and started it, when `started_group`); concurrent
        callers share one round trip, with the inserts waiting at the same time."""
        await self.post_mark(event_id, started_group)

    def post_mark(self, event_id: str, started_group: bool) -> asyncio.Future[None]:
        """`mark_counted` without waiting: the mark goes with the next flush of writes (under load,
        with the next events' inserts); the future says when it is written, or why it was not."""
        object_id = self._object_ids.pop(event_id, None)
        update: dict[str, Any] = {"$unset": {"counting_ms": ""}}
        if started_group:
            update["$set"] = {"started_group": True}
        return self._writes.post(
            UpdateOne({"_id": object_id} if object_id is not None else {"event_id": event_id}, update)
        )

    async def claim_uncounted(self, event_id: str, stale_before_ms: int, now_ms: int) -> bool:
        """Take on counting an event whose counter went away (its lease is older than
        `stale_before_ms`); False when it is counted, or another process took it first."""
        async with translate_errors("error_events.claim", self._breaker):
            result = await self._col.update_one(
                {"event_id": event_id, "counting_ms": {"$lt": stale_before_ms}},
                {"$set": {"counting_ms": now_ms}},
            )
        return result.modified_count == 1

    async def unmarked(self, event_ids: list[str]) -> set[str]:
        """Those of `event_ids` whose events are stored and not yet marked counted."""
        async with translate_errors("error_events.uncounted", self._breaker):
            docs = await self._col.find(
                {"event_id": {"$in": event_ids}, "counting_ms": {"$exists": True}}, {"event_id": 1}
            ).to_list()
        return {doc["event_id"] for doc in docs}

    async def stale_uncounted(self, stale_before_ms: int, limit: int) -> list[ErrorEventRecord]:
        async with translate_errors("error_events.uncounted", self._breaker):
            docs = await self._col.find({"counting_ms": {"$lt": stale_before_ms}}).limit(limit).to_list()
        return [_from_doc(doc) for doc in docs]

    async def get(self, org_id: str, event_id: str) -> ErrorEventRecord | None:
        """The event, None when there is none or it is another organization's.

        Read by the unique id alone (one index, one key), in a batch with the lookups waiting at the
        same moment (app.storage.lookups.KeyedReader: a lone lookup is one `find_one`, as before; under
        load one command carries many). The organization is checked here, per caller, after the read:
        a batch may hold ids of several organizations, and each caller sees only its own."""
        doc = await self._by_id.get(event_id)
        return _from_doc(doc) if doc is not None and doc["org_id"] == org_id else None

    async def page(self, query: EventQuery) -> EventPage:
        keys = [("event_id", DESCENDING if query.order is SortOrder.DESC else ASCENDING)]
        docs, more = await keyset_page(
            self._col,
            _match(query.org_id, query.filter),
            keys,
            (query.after,) if query.after is not None else None,
            query.first,
            operation="error_events.page",
            breaker=self._breaker,
        )
        return EventPage(events=[_from_doc(doc) for doc in docs], has_next_page=more)

    async def count(self, org_id: str, flt: EventFilter) -> int:
        # $match + $count rather than count_documents: same plan on MongoDB, far cheaper on nx-27017.
        pipeline: list[dict[str, Any]] = [{"$match": _match(org_id, flt)}, {"$count": "n"}]
        async with translate_errors("error_events.count", self._breaker):
            result = await (await self._col.aggregate(pipeline)).to_list()
        return int(result[0]["n"]) if result else 0

    async def bucket_counts(
        self, org_id: str, start_ms: int, end_ms: int, interval_ms: int, field: str | None
    ) -> list[tuple[int, str | None, int]]:
        """(bucket start ms, value of `field` or None, count) for events in [start_ms, end_ms).

        One `$group` on a single computed key: nx-27017 evaluates neither a compound `_id` nor
        `$dateTrunc` there, so the bucket (arithmetic on ts_ms) and the key are joined in one string,
        which MongoDB computes the same way."""
        bucket = {"$subtract": ["$ts_ms", {"$mod": ["$ts_ms", interval_ms]}]}
        key: Any = bucket
        if field is not None and field.startswith("tags."):
            field = "tags." + tag_field(field.removeprefix("tags."))
        if field is not None:
            key = {"$concat": [{"$toString": bucket}, "|", {"$ifNull": [f"${field}", ""]}]}
        start = from_ms(start_ms)
        end = from_ms(end_ms)
        pipeline = [
            {"$match": {"org_id": org_id, "event_id": {"$gte": _id_floor(start), "$lt": _id_floor(end)}}},
            {"$group": {"_id": key, "n": {"$sum": 1}}},
        ]
        async with translate_errors("error_events.stats", self._breaker):
            rows = await (await self._col.aggregate(pipeline)).to_list()
        result: list[tuple[int, str | None, int]] = []
        for row in rows:
            if field is None:
                result.append((int(float(row["_id"])), None, int(row["n"])))
            else:
                bucket_text, _, value = str(row["_id"]).partition("|")
                result.append((int(float(bucket_text)), value or None, int(row["n"])))
        return result

    async def next_seq(self) -> int:
        """The next insertion position, unique across every server instance (an atomic counter);
        concurrent callers take theirs in one round trip."""
        return (await self.next_position())[0]

    async def next_position(self) -> tuple[int, int]:
        """`next_seq`, and the merge generation read in the same round trip: how many times any
        instance changed a group alias (`note_alias_change`) before the position was taken."""
        return await self._positions.submit(None)

    async def _take_positions(self, callers: list[None]) -> list[tuple[int, int]]:
        positions, generation = await self._counters.take_reading("error_events", len(callers), "merges")
        return [(seq, generation) for seq in positions]

    async def note_alias_change(self) -> None:
        """A group alias was set or removed: positions taken from now on carry a new merge generation."""
        await self._counters.bump("error_events", "merges")

    async def last_seq(self) -> int:
        return await self._counters.last("error_events")

    async def after_seq(
        self,
        seq: int,
        limit: int,
        org_id: str | None = None,
        known: Callable[[int], bool] | None = None,
    ) -> list[ErrorEventRecord]:
        """Events inserted after position `seq`, oldest first; those at a position `known` says the
        caller has already are left out unread.

        With `known` (the live feed's poll, whose own process published most of what it finds) the
        positions are read first, then only the range of those not known, in full: an SDK event's
        document is about 6 KB, and reading back every one this process had just stored was 2% of the
        server's CPU under bench/sdk_ingest.py. Alone on the database, the second read never happens."""
        match: dict[str, Any] = {"seq": {"$gt": seq}}
        if org_id is not None:
            match["org_id"] = org_id
        if known is not None:
            # `_id` comes along: excluding it takes nx-27017's aggregate off its SQL tier (a scan of the
            # collection: 2.8 s at 100,000 events, against 10 ms with it).
            positions = await self._after_seq(match, limit, {"seq": 1})
            wanted = [d["seq"] for d in positions if d.get("seq") is not None and not known(d["seq"])]
            if not wanted:
                return []
            match["seq"] = {"$gte": wanted[0], "$lte": wanted[-1]}
        docs = await self._after_seq(match, limit, None)
        if known is not None:
            docs = [d for d in docs if d.get("seq") is None or not known(d["seq"])]
        return [_from_doc(d) for d in docs]

    async def _after_seq(
        self, match: dict[str, Any], limit: int, projection: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        pipeline: list[dict[str, Any]] = [{"$match": match}, {"$sort": {"seq": ASCENDING}}, {"$limit": limit}]
        if projection is not None:
            pipeline.append({"$project": projection})
        async with translate_errors("error_events.after_seq", self._breaker):
            docs: list[dict[str, Any]] = await (await self._col.aggregate(pipeline)).to_list()
        return docs

    async def watch_inserts(
        self, known: Callable[[int], bool] | None = None
    ) -> AsyncIterator[ErrorEventRecord]:
        """New events as the database commits them (a change stream: needs a replica set or sharded
        cluster on MongoDB), but those at a position `known` says the caller has already (left
        undecoded). ChangeStreamsUnsupported when the deployment has none; ServiceUnavailable when the
        stream breaks."""
        try:
            async with await self._col.watch([{"$match": {"operationType": "insert"}}]) as stream:
                async for change in stream:
                    doc = change["fullDocument"]
                    if known is not None and doc.get("seq") is not None and known(doc["seq"]):
                        continue
                    yield _from_doc(doc)
        except OperationFailure as exc:
            if exc.code in _NO_CHANGE_STREAMS:
                raise ChangeStreamsUnsupported(str(exc)) from exc
            raise ServiceUnavailable() from exc
        except PyMongoError as exc:
            raise ServiceUnavailable() from exc

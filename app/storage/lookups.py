"""Batched point reads: concurrent lookups of documents by one unique key share a round trip.

A request that reads one document by its key (`errorEvent(id)`, `errorGroup(fingerprint)`) spends most
of its database-side CPU in the driver, not in the database: on the 2-core machine py-spy showed the
socket send of each command (asyncio's transport write; a loopback send also pays the receiving side's
TCP processing) at 22% of the server's busy CPU and PyMongo's own per-command Python at 18%, whatever
the command carries. `KeyedReader` sends the keys of every lookup waiting at the same moment in ONE
command over the key's unique index, with the group commit of the write path
(app.storage.batching.Batcher): at most one read in flight per reader; what arrives meanwhile goes out
together in the next one; a lone caller is read at once. The command: `find({"_id": {"$in": keys}})`
by `_id`; by any other key an `aggregate` of one equality `$match` per key joined by `$unionWith`
(see `_union`: nx-27017 reads `$in` on other fields by testing every document).

What callers can rely on:
- Read-your-writes. A lookup is sent in a flush that starts after it was submitted, never in one already
  on the wire (the Batcher takes its batch when a flush starts, and keys submitted later wait for the
  next). So a lookup made after a write completed is answered after that write, as with a direct read.
- Errors. One flush is one call through `translate_errors` and the breaker (one admission slot, one
  verdict for the breaker: a failed flush counts as one failure, however many callers it carried). Every
  caller of a failed flush sees the same catalogued error (SERVICE_UNAVAILABLE when the database is
  unreachable or the breaker is open). A cancelled caller does not cancel the flush: the others get
  their documents; its own answer is dropped.
- Admission. A flush takes one admission slot (app.storage.admission), whatever number of lookups it
  carries; lookups waiting in the reader hold none, so under a flood they queue here (100 per round
  trip, one round trip at a time) rather than being refused early as separate calls would be. The
  request-level limits in front of them (rate limits, budgets) still apply.
- The batch bound. At most `max_keys` lookups per command (MAX_KEYS by default; the rest wait for the
  next flush). Fewer than 101 documents fit the first reply of a `find` or `aggregate` (the server's
  default first batch), so a flush is one round trip without a getMore unless its documents exceed
  16 MiB, and a pipeline of 100 branches is far below MongoDB's limit on pipeline stages.
- Duplicate keys in one flush are sent and read once; every caller of that key gets the document. The
  same dict is handed to each of them: callers decode it and must not change it.
- Context. Flushes run in a task started by the lookup that found the reader idle, with a copy of its
  context, and under continuous load that task sends the following batches too: a log line of a read
  (a database failure) carries that request's id, and with tracing on the command's span is in that
  request's trace, not in those of the requests it answered.
- The idle case. A lone lookup is one `find_one` by equality, exactly the read it replaces: one round
  trip, no waiting on a timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from app.storage.batching import Batcher
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Document, translate_errors

MAX_KEYS = 100


class KeyedReader:
    """Documents of `collection` by the value of `field`, which a unique index covers (at most one
    document per key: a second one with the same key would be ignored)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        field: str,
        operation: str,
        breaker: CircuitBreaker | None = None,
        projection: Mapping[str, Any] | None = None,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._col = collection
        self._field = field
        self._operation = operation
        self._breaker = breaker
        self._projection = projection
        self._batcher: Batcher[Any, Document | None] = Batcher(self._read, max_keys)
        self.commands = 0  # flushes sent: structural tests compare it with the lookups made

    async def get(self, key: Any) -> Document | None:
        """The document whose `field` is `key`, None when there is none."""
        return await self._batcher.submit(key)

    async def _read(self, keys: list[Any]) -> list[Document | None]:
        distinct = list(dict.fromkeys(keys))
        self.commands += 1
        async with translate_errors(self._operation, self._breaker):
            if len(distinct) == 1:
                doc = await self._col.find_one({self._field: distinct[0]}, self._projection)
                docs = [doc] if doc is not None else []
            elif self._field == "_id":
                docs = await self._col.find({"_id": {"$in": distinct}}, self._projection).to_list()
            else:
                docs = await (await self._col.aggregate(self._union(distinct))).to_list()
        found = {doc[self._field]: doc for doc in docs}
        return [found.get(key) for key in keys]

    def _union(self, keys: list[Any]) -> list[dict[str, Any]]:
        """One point match per key, in one command. Not `{field: {"$in": keys}}`: nx-27017 (the embedded
        database) answers `$in` from an index only on `_id`; on any other field it tests every document
        (about 30 ms at 30,000 events, whatever the number of keys, against 0.1-0.2 ms per key here).
        Each `$unionWith` branch is an equality match, which both it and MongoDB answer from the index."""
        pipeline: list[dict[str, Any]] = [{"$match": {self._field: keys[0]}}]
        pipeline += [
            {"$unionWith": {"coll": self._col.name, "pipeline": [{"$match": {self._field: key}}]}}
            for key in keys[1:]
        ]
        if self._projection is not None:
            pipeline.append({"$project": dict(self._projection)})
        return pipeline

"""Named atomic counters, one document each in the `counters` collection: insertion positions and
numeric ids that are unique across every server instance sharing the database."""

from __future__ import annotations

from pymongo import ReturnDocument

from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors


class Counters:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["counters"]
        self._breaker = breaker

    async def take(self, name: str, count: int = 1) -> range:
        """Reserves the next `count` numbers of counter `name` (numbers start at 1), in one round trip."""
        async with translate_errors(f"counters.{name}", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": name}, {"$inc": {"seq": count}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        last = int(doc["seq"]) if doc else count  # an upsert always returns the document
        return range(last - count + 1, last + 1)

    async def last(self, name: str) -> int:
        """The last number taken from counter `name` (0 before the first)."""
        async with translate_errors(f"counters.{name}", self._breaker):
            doc = await self._col.find_one({"_id": name})
        return int(doc["seq"]) if doc else 0

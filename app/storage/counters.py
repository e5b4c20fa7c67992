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
        return (await self.take_reading(name, count, None))[0]

    async def take_reading(self, name: str, count: int, field: str | None) -> tuple[range, int]:
        """`take`, and the value of another integer `field` of the counter's document in the same round
        trip (0 when unset): a number bumped by `bump` that the takers want to notice."""
        async with translate_errors(f"counters.{name}", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": name}, {"$inc": {"seq": count}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        last = int(doc["seq"]) if doc else count  # an upsert always returns the document
        return range(last - count + 1, last + 1), int(doc.get(field) or 0) if doc and field else 0

    async def bump(self, name: str, field: str) -> None:
        """Adds one to `field` of counter `name`'s document (its numbers are left alone)."""
        async with translate_errors(f"counters.{name}", self._breaker):
            await self._col.update_one({"_id": name}, {"$inc": {field: 1}}, upsert=True)

    async def last(self, name: str) -> int:
        """The last number taken from counter `name` (0 before the first)."""
        async with translate_errors(f"counters.{name}", self._breaker):
            doc = await self._col.find_one({"_id": name})
        return int(doc.get("seq") or 0) if doc else 0  # a document bumped (`bump`) before any take has none

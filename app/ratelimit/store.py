"""The `rate_budgets` collection: units of a credential's budget reserved by every instance, per window.

Document: `_id` "<key id>:<resource>:<window start, epoch s>", `used` (units reserved so far, all
instances together), `expires_at` (a TTL index removes a window's document after it ends).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo import ASCENDING, ReturnDocument

from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors


class BudgetStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["rate_budgets"]
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("rate_budgets.indexes", self._breaker):
            await self._col.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")

    async def reserve(self, budget_id: str, units: int, expires_at_s: float) -> int:
        """Adds `units` to the window's reserved total, in one round trip; the new total."""
        async with translate_errors("rate_budgets.reserve", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": budget_id},
                {
                    "$inc": {"used": units},
                    "$setOnInsert": {"expires_at": datetime.fromtimestamp(expires_at_s, UTC)},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return int(doc["used"]) if doc else units

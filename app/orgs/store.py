"""The `organizations` collection: `_id` is the public slug."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: datetime


def _from_doc(doc: dict[str, Any]) -> Organization:
    return Organization(id=doc["_id"], name=doc.get("name", doc["_id"]), created_at=doc["created_at"])


class OrgStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["organizations"]

    async def insert(self, org: Organization) -> bool:
        """False when the slug is taken."""
        async with translate_errors("orgs.insert", self._breaker):
            try:
                await self._col.insert_one({"_id": org.id, "name": org.name, "created_at": org.created_at})
            except DuplicateKeyError:
                return False
        return True

    async def get(self, org_id: str) -> Organization | None:
        async with translate_errors("orgs.get", self._breaker):
            doc = await self._col.find_one({"_id": org_id})
        return _from_doc(doc) if doc else None

    async def list(self) -> list[Organization]:
        async with translate_errors("orgs.list", self._breaker):
            docs = await self._col.find({}).sort("_id", 1).to_list()
        return [_from_doc(doc) for doc in docs]

"""The `api_keys` collection: `_id` is the public key id; only the key's hash is stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, as_datetime, translate_errors


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    hash: str
    org_id: str | None
    admin: bool
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    project_id: int | None = None  # set on ingest keys (a DSN's public key), which have no secret

    @property
    def ingest(self) -> bool:
        return self.project_id is not None


def _from_doc(doc: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=doc["_id"],
        hash=doc["hash"],
        org_id=doc.get("org_id"),
        admin=bool(doc.get("admin")),
        name=doc.get("name"),
        created_at=doc["created_at"],
        expires_at=doc.get("expires_at"),
        revoked_at=as_datetime(doc.get("revoked_at")),
        project_id=doc.get("project_id"),
    )


class KeyStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["api_keys"]

    async def ensure_indexes(self) -> None:
        # Lookups are by `_id` (the key id); listing a tenant's keys filters on org_id.
        async with translate_errors("api_keys.indexes", self._breaker):
            await self._col.create_index([("org_id", 1)], name="org_id")
            # An organization's DSNs: its projects' ingest keys.
            await self._col.create_index([("project_id", 1)], name="project_id", sparse=True)

    async def insert(self, record: KeyRecord) -> None:
        async with translate_errors("api_keys.insert", self._breaker):
            await self._col.insert_one(
                {
                    "_id": record.key_id,
                    "hash": record.hash,
                    "org_id": record.org_id,
                    "admin": record.admin,
                    "name": record.name,
                    "created_at": record.created_at,
                    "expires_at": record.expires_at,
                    "revoked_at": record.revoked_at,
                    **({"project_id": record.project_id} if record.project_id is not None else {}),
                }
            )

    async def get(self, key_id: str) -> KeyRecord | None:
        async with translate_errors("api_keys.get", self._breaker):
            doc = await self._col.find_one({"_id": key_id})
        return _from_doc(doc) if doc else None

    async def get_many(self, key_ids: list[str]) -> list[KeyRecord]:
        async with translate_errors("api_keys.get_many", self._breaker):
            docs = await self._col.find({"_id": {"$in": key_ids}}).to_list()
        return [_from_doc(doc) for doc in docs]

    async def list(self, org_id: str | None = None, project_id: int | None = None) -> list[KeyRecord]:
        query: dict[str, object] = {"org_id": org_id} if org_id else {}
        if project_id is not None:
            query["project_id"] = project_id
        async with translate_errors("api_keys.list", self._breaker):
            docs = await self._col.find(query).sort("created_at", 1).to_list()
        return [_from_doc(doc) for doc in docs]

    async def revoke(self, key_id: str, when: datetime) -> bool:
        async with translate_errors("api_keys.revoke", self._breaker):
            result = await self._col.update_one(
                {"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": when}}
            )
        return result.modified_count == 1

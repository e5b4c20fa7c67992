"""The `persisted_documents` collection: every instance knows a document once any of them stored it."""

from __future__ import annotations

from app.persisted.model import PersistedDocument
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors


class PersistedDocumentStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["persisted_documents"]

    async def get(self, document_id: str) -> PersistedDocument | None:
        async with translate_errors("persisted.get", self._breaker):
            doc = await self._col.find_one({"_id": document_id})
        if doc is None:
            return None
        return PersistedDocument(id=doc["_id"], document=doc["document"], created_at=doc["created_at"])

    async def put(self, document: PersistedDocument) -> None:
        """Stores it unless already there (ids are content hashes: the first copy is as good as any)."""
        async with translate_errors("persisted.put", self._breaker):
            await self._col.update_one(
                {"_id": document.id},
                {"$setOnInsert": {"document": document.document, "created_at": document.created_at}},
                upsert=True,
            )

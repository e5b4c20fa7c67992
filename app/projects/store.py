"""The `projects` collection: `_id` is the project's integer id, taken from a counter (`$inc`).

Document shape: `_id` (int), org_id, name, created_at. The counter is `counters` {_id: "projects"}.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from app.projects.model import Project
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import translate_errors


def _from_doc(doc: dict[str, Any]) -> Project:
    return Project(id=int(doc["_id"]), org_id=doc["org_id"], name=doc["name"], created_at=doc["created_at"])


class ProjectStore:
    def __init__(self, db: AsyncDatabase[Any], breaker: CircuitBreaker | None = None) -> None:
        self._breaker = breaker
        self._col = db["projects"]
        self._counters = db["counters"]

    async def ensure_indexes(self) -> None:
        # An organization's projects (a handful: sorted in memory by `_id`). Not (org_id, _id): the
        # embedded database refuses inserts when `_id` is part of a compound index.
        async with translate_errors("projects.indexes", self._breaker):
            await self._col.create_index([("org_id", ASCENDING)], name="org_projects")

    async def next_id(self) -> int:
        async with translate_errors("counters.projects", self._breaker):
            doc = await self._counters.find_one_and_update(
                {"_id": "projects"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        if doc is None:  # an upsert with ReturnDocument.AFTER always returns the document
            raise RuntimeError("counter upsert returned nothing")
        return int(doc["seq"])

    async def insert(self, project: Project) -> None:
        async with translate_errors("projects.insert", self._breaker):
            await self._col.insert_one(
                {
                    "_id": project.id,
                    "org_id": project.org_id,
                    "name": project.name,
                    "created_at": project.created_at,
                }
            )

    async def get(self, project_id: int) -> Project | None:
        async with translate_errors("projects.get", self._breaker):
            doc = await self._col.find_one({"_id": project_id})
        return _from_doc(doc) if doc else None

    async def list(self, org_id: str | None = None) -> list[Project]:
        query = {"org_id": org_id} if org_id else {}
        async with translate_errors("projects.list", self._breaker):
            docs = await self._col.find(query).sort("_id", ASCENDING).to_list()
        return [_from_doc(d) for d in docs]

"""Reading error groups; counting events into them is done by the event service as it logs."""

from __future__ import annotations

from app.core.principal import Principal
from app.groups.model import ErrorGroupRecord, GroupPage, GroupQuery
from app.groups.store import GroupStore
from app.orgs.service import OrgService


class GroupService:
    def __init__(self, store: GroupStore, orgs: OrgService) -> None:
        self._store = store
        self._orgs = orgs

    async def page(self, principal: Principal, query: GroupQuery) -> GroupPage:
        await self._orgs.authorize(principal, query.org_id)
        return await self._store.page(query)

    async def count(self, query: GroupQuery) -> int:
        return await self._store.count(query.org_id, query.filter)

    async def get(self, principal: Principal, org_id: str, fingerprint: str) -> ErrorGroupRecord | None:
        await self._orgs.authorize(principal, org_id)
        return await self._store.get(org_id, fingerprint) if len(fingerprint) <= 128 else None

"""Creating, listing and checking organizations."""

from __future__ import annotations

from app.core.clock import utc_now
from app.core.errors import Conflict, FieldProblem, InvalidRequest, NotFound
from app.core.principal import Principal
from app.core.validation import SLUG_RE, SLUG_RULE
from app.orgs.store import Organization, OrgStore


def is_slug(value: str) -> bool:
    return bool(SLUG_RE.match(value))


class OrgService:
    def __init__(self, store: OrgStore) -> None:
        self._store = store
        # Organizations are never deleted, so a slug once seen stays known: no expiry needed.
        self._known: set[str] = set()

    async def create(self, org_id: str, name: str | None = None) -> Organization:
        if not is_slug(org_id):
            raise InvalidRequest(details=[FieldProblem("org", f"Organization id {SLUG_RULE}")])
        org = Organization(id=org_id, name=name or org_id, created_at=utc_now())
        if not await self._store.insert(org):
            raise Conflict(f"Organization {org_id!r} already exists")
        self._known.add(org_id)
        return org

    async def list(self) -> list[Organization]:
        return await self._store.list()

    async def get(self, org_id: str) -> Organization | None:
        return await self._store.get(org_id)

    async def require(self, org_id: str) -> None:
        if org_id in self._known:
            return
        if await self._store.get(org_id) is None:
            raise NotFound("Organization not found")
        self._known.add(org_id)

    async def authorize(self, principal: Principal, org_id: str) -> None:
        """NOT_FOUND unless the organization exists and the credential may use it (another organization's
        data is indistinguishable from a missing one)."""
        principal.check_org(org_id)
        await self.require(org_id)

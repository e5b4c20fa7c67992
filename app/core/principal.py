"""Who is calling: the result of a verified credential."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.core.errors import Forbidden, NotFound


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    org_id: str | None  # None for admin keys
    admin: bool
    expires_at: datetime | None
    project_id: int | None = None  # ingest keys: the one project they may send events to
    ingest: bool = False  # ingest-only (a DSN's public key): may submit events, may read nothing

    @property
    def label(self) -> str:
        if self.ingest:
            return f"ingest:{self.project_id}"
        return "admin" if self.admin else f"org:{self.org_id}"

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden()

    def can_read(self, org_id: str) -> bool:
        return not self.ingest and (self.admin or self.org_id == org_id)

    def check_write(self, org_id: str) -> None:
        """Logging events: org and admin keys as for reading, and ingest keys into their project's org."""
        if not (self.admin or self.org_id == org_id):
            raise NotFound("Organization not found")

    def check_org(self, org_id: str) -> None:
        """Another organization's data is NOT_FOUND, indistinguishable from a missing one."""
        if not self.can_read(org_id):
            raise NotFound("Organization not found")

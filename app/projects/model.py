"""The project domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DsnKey:
    public_key: str
    dsn: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Project:
    id: int  # unique across the server: the DSN's path, /api/<id>/envelope/
    org_id: str
    name: str
    created_at: datetime
    keys: list[DsnKey] = field(default_factory=list)

"""Creating projects with their first DSN key, listing them with their DSNs, more keys."""

from __future__ import annotations

import builtins
import dataclasses
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from app.auth.service import AuthService
from app.auth.store import KeyRecord
from app.core.errors import NotFound
from app.core.principal import Principal
from app.orgs.service import OrgService
from app.projects.inputs import validate_create_project
from app.projects.model import DsnKey, Project
from app.projects.store import ProjectStore


def build_dsn(public_url: str, public_key: str, project_id: int) -> str:
    """`<scheme>://<public key>@<host>[:<port>][/<path>]/<project id>`, what `sentry_sdk.init(dsn=)` takes."""
    parts = urlsplit(public_url)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{public_key}@{parts.netloc}{path}/{project_id}"


class ProjectService:
    def __init__(self, store: ProjectStore, orgs: OrgService, auth: AuthService, public_url: str) -> None:
        self._store = store
        self._orgs = orgs
        self._auth = auth
        self.public_url = public_url

    def _dsn_key(self, record: KeyRecord) -> DsnKey:
        return DsnKey(
            public_key=record.key_id,
            dsn=build_dsn(self.public_url, record.key_id, record.project_id or 0),
            name=record.name,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )

    async def create(self, raw: dict[str, Any]) -> Project:
        """A project and its first ingest key (management: the command line)."""
        args = validate_create_project(raw)
        await self._orgs.require(args.org_id)
        project = Project(
            id=await self._store.next_id(), org_id=args.org_id, name=args.name, created_at=datetime.now(UTC)
        )
        await self._store.insert(project)
        key = await self._auth.create_ingest_key(project.org_id, project.id, name="default")
        return dataclasses.replace(project, keys=[self._dsn_key(key)])

    async def create_key(self, project_id: int, name: str | None = None) -> DsnKey:
        project = await self.require(project_id)
        return self._dsn_key(await self._auth.create_ingest_key(project.org_id, project.id, name))

    async def require(self, project_id: int) -> Project:
        project = await self._store.get(project_id)
        if project is None:
            raise NotFound(f"No project {project_id}")
        return project

    async def get(self, project_id: int) -> Project | None:
        return await self._store.get(project_id)

    async def list(self, org_id: str | None = None) -> builtins.list[Project]:
        """Projects with their keys (management), all organizations' when `org_id` is None."""
        projects = await self._store.list(org_id)
        keys = await self._auth.list_keys(org_id)
        by_project: dict[int, list[DsnKey]] = {}
        for record in keys:
            if record.project_id is not None:
                by_project.setdefault(record.project_id, []).append(self._dsn_key(record))
        return [dataclasses.replace(p, keys=by_project.get(p.id, [])) for p in projects]

    async def for_org(self, principal: Principal, org_id: str) -> builtins.list[Project]:
        """An organization's projects and DSNs, for its org keys (and admin keys)."""
        principal.check_org(org_id)
        await self._orgs.require(org_id)
        return await self.list(org_id)

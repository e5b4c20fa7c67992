"""GraphQL types and resolvers of projects: an organization's projects and their DSNs."""

from __future__ import annotations

import strawberry

from app.graphql.context import RequestContext
from app.graphql.scalars import DateTime
from app.projects.model import DsnKey, Project

Info = strawberry.Info[RequestContext, None]


@strawberry.type(
    description="A DSN: what a Sentry SDK is configured with to send this project's errors here."
)
class ProjectKey:
    public_key: str = strawberry.field(description="The DSN's public key: it can only submit events.")
    dsn: str = strawberry.field(description="e.g. http://<public key>@errors.example.com/1")
    name: str | None
    created_at: DateTime
    revoked_at: DateTime | None

    @classmethod
    def from_record(cls, k: DsnKey) -> ProjectKey:
        return cls(
            public_key=k.public_key,
            dsn=k.dsn,
            name=k.name,
            created_at=DateTime(k.created_at),
            revoked_at=DateTime(k.revoked_at) if k.revoked_at else None,
        )


@strawberry.type(description="Where SDK events go: events carry its id as projectId.")
class SdkProject:
    id: int = strawberry.field(description="Numeric, as Sentry SDKs expect; the last part of the DSN.")
    name: str
    created_at: DateTime
    keys: list[ProjectKey]

    @classmethod
    def from_record(cls, p: Project) -> SdkProject:
        return cls(
            id=p.id,
            name=p.name,
            created_at=DateTime(p.created_at),
            keys=[ProjectKey.from_record(k) for k in p.keys],
        )


@strawberry.type
class ProjectQueries:
    @strawberry.field(description="An organization's projects with their DSNs (create them with the CLI).")
    async def projects(self, info: Info, org_id: strawberry.ID) -> list[SdkProject]:
        ctx = info.context
        records = await ctx.services.projects.for_org(ctx.principal_for(org_id), org_id)
        return [SdkProject.from_record(p) for p in records]

"""GraphQL types and resolvers of error groups: errorGroups, errorGroup."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from app.graphql.args import as_raw, given
from app.graphql.context import RequestContext
from app.graphql.enums import Severity, SortOrder
from app.graphql.pagination import PageInfo, page_info
from app.graphql.scalars import DateTime
from app.groups.inputs import validate_group_args
from app.groups.model import ErrorGroupRecord, GroupQuery, group_cursor
from app.groups.model import GroupOrderField as GroupOrderFieldEnum

Info = strawberry.Info[RequestContext, None]

ErrorGroupOrderField = strawberry.enum(GroupOrderFieldEnum, name="ErrorGroupOrderField")


@strawberry.type(description="All events of one fingerprint: one problem, with exact counts.")
class ErrorGroup:
    fingerprint: str
    message: str = strawberry.field(description="A representative message: the first event's.")
    source: str | None
    code: str | None
    occurrences: int = strawberry.field(description="How many events were logged with this fingerprint.")
    first_seen: DateTime
    last_seen: DateTime
    max_severity: Severity = strawberry.field(description="The highest severity seen.")
    latest_event_id: strawberry.ID = strawberry.field(description="The most recent event's id.")
    environments: list[str] = strawberry.field(description="Every environment its events were seen in.")
    releases: list[str] = strawberry.field(description="Every release its events were seen in.")

    @classmethod
    def from_record(cls, g: ErrorGroupRecord) -> ErrorGroup:
        return cls(
            fingerprint=g.fingerprint,
            message=g.message,
            source=g.source,
            code=g.code,
            occurrences=g.occurrences,
            first_seen=DateTime(g.first_seen),
            last_seen=DateTime(g.last_seen),
            max_severity=g.max_severity,
            latest_event_id=strawberry.ID(g.latest_event_id),
            environments=g.environments,
            releases=g.releases,
        )


@strawberry.type
class ErrorGroupEdge:
    cursor: str
    node: ErrorGroup


@strawberry.type
class ErrorGroupConnection:
    edges: list[ErrorGroupEdge]
    nodes: list[ErrorGroup]
    page_info: PageInfo
    _query: strawberry.Private[GroupQuery]

    @strawberry.field(description="Number of groups matching the filter (ignores pagination).")
    async def total_count(self, info: Info) -> int:
        return await info.context.services.groups.count(self._query)


@strawberry.input
class ErrorGroupFilter:
    min_severity: Severity | None = strawberry.field(
        default=UNSET, description="Only groups whose highest severity is at least this."
    )
    source: str | None = UNSET
    search: str | None = strawberry.field(
        default=UNSET, description="Case-insensitive substring of the representative message."
    )


@strawberry.input
class ErrorGroupOrder:
    field: GroupOrderFieldEnum = GroupOrderFieldEnum.LAST_SEEN
    direction: SortOrder = SortOrder.DESC


_FILTER_NAMES = {"min_severity": "minSeverity", "source": "source", "search": "search"}


@strawberry.type
class GroupQueries:
    @strawberry.field(description="Problems of one organization (events grouped by fingerprint).")
    async def error_groups(
        self,
        info: Info,
        org_id: strawberry.ID,
        filter: ErrorGroupFilter | None = UNSET,
        first: int | None = 20,
        after: str | None = UNSET,
        order_by: ErrorGroupOrder | None = UNSET,
    ) -> ErrorGroupConnection:
        ctx = info.context
        principal = ctx.require_principal()
        ctx.org_id = org_id
        raw: dict[str, Any] = {"orgId": org_id}
        if given(filter):
            raw["filter"] = as_raw(filter, _FILTER_NAMES)
        if first is not None:
            raw["first"] = first
        if given(after):
            raw["after"] = after
        if given(order_by):
            raw["orderBy"] = {"field": order_by.field, "direction": order_by.direction}
        query = validate_group_args(raw)
        page = await ctx.services.groups.page(principal, query)
        nodes = [ErrorGroup.from_record(g) for g in page.groups]
        edges = [
            ErrorGroupEdge(cursor=group_cursor(query.order_by, g), node=n)
            for g, n in zip(page.groups, nodes, strict=True)
        ]
        return ErrorGroupConnection(
            edges=edges,
            nodes=nodes,
            page_info=page_info([e.cursor for e in edges], page.has_next_page, query.after is not None),
            _query=query,
        )

    @strawberry.field(description="One group by fingerprint; null when the organization has none.")
    async def error_group(self, info: Info, org_id: strawberry.ID, fingerprint: str) -> ErrorGroup | None:
        ctx = info.context
        ctx.org_id = org_id
        group = await ctx.services.groups.get(ctx.require_principal(), org_id, fingerprint)
        return ErrorGroup.from_record(group) if group else None

"""GraphQL types and resolvers of error groups: errorGroups, errorGroup, triage (updateErrorGroup,
commentOnErrorGroup, mergeErrorGroups, unmergeErrorGroup) and the errorGroupChanged subscription."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from app.core.errors import FieldProblem, InvalidRequest
from app.core.paging import DEFAULT_PAGE, MAX_PAGE, PAGE_SIZE_RULE
from app.core.validation import decode_argument
from app.graphql.args import as_raw, given
from app.graphql.context import RequestContext
from app.graphql.enums import Severity, SortOrder
from app.graphql.pagination import PageInfo, page_info
from app.graphql.scalars import DateTime
from app.groups.inputs import validate_comment, validate_group_args, validate_merge, validate_update
from app.groups.model import (
    ActivityCause,
    ActivityKind,
    ActivityRecord,
    ErrorGroupRecord,
    GroupQuery,
    GroupStatus,
    GroupSubstatus,
    IgnoreKind,
    ResolveKind,
    activity_position,
    decode_activity_position,
    group_cursor,
)
from app.groups.model import GroupOrderField as GroupOrderFieldEnum
from app.groups.service import REPLAY_LIMIT

Info = strawberry.Info[RequestContext, None]

ErrorGroupOrderField = strawberry.enum(GroupOrderFieldEnum, name="ErrorGroupOrderField")
ErrorGroupStatus = strawberry.enum(GroupStatus, name="ErrorGroupStatus")
ErrorGroupSubstatus = strawberry.enum(GroupSubstatus, name="ErrorGroupSubstatus")
ResolveKindEnum = strawberry.enum(ResolveKind, name="ResolveKind")
IgnoreKindEnum = strawberry.enum(IgnoreKind, name="IgnoreKind")
ActivityKindEnum = strawberry.enum(ActivityKind, name="ErrorGroupActivityKind")
ActivityCauseEnum = strawberry.enum(ActivityCause, name="ErrorGroupActivityCause")


@strawberry.type(description="How a group was resolved.")
class ErrorGroupResolution:
    kind: ResolveKind
    release: str | None = strawberry.field(
        description="IN_RELEASE: the fixing release. NOW and IN_NEXT_RELEASE: the newest release the group "
        "had seen when it was resolved (events are compared with it)."
    )


@strawberry.type(description="When an ignored group comes back by itself.")
class ErrorGroupIgnore:
    kind: IgnoreKind
    count: int | None
    window_minutes: int | None
    until: DateTime | None


@strawberry.type(description="Who made a change: a key's name and its public prefix.")
class Actor:
    name: str | None
    prefix: str


@strawberry.type(description="One change of a group, by a person or automatic.")
class ErrorGroupActivity:
    position: str = strawberry.field(description="Pass as errorGroupChanged(after:) to resume after it.")
    org_id: strawberry.ID
    fingerprint: str
    kind: ActivityKind
    cause: ActivityCause
    actor: Actor | None = strawberry.field(description="Null for automatic changes.")
    at: DateTime
    status: GroupStatus = strawberry.field(description="The group's status after the change.")
    substatus: GroupSubstatus
    assignee: str | None
    text: str | None = strawberry.field(
        description="A comment's text, or the other fingerprint of a merge or unmerge."
    )
    release: str | None = strawberry.field(description="The release of the event that caused a regression.")

    @classmethod
    def from_record(cls, a: ActivityRecord) -> ErrorGroupActivity:
        return cls(
            position=activity_position(a.seq),
            org_id=strawberry.ID(a.org_id),
            fingerprint=a.fingerprint,
            kind=a.kind,
            cause=a.cause,
            actor=Actor(name=a.actor.name, prefix=a.actor.prefix) if a.actor else None,
            at=DateTime(a.at),
            status=a.status,
            substatus=a.substatus,
            assignee=a.assignee,
            text=a.text,
            release=a.release,
        )


@strawberry.type
class ErrorGroupActivityConnection:
    nodes: list[ErrorGroupActivity]
    page_info: PageInfo


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
    environments: list[str] = strawberry.field(
        description="The environments its events were seen in (the most recent 50)."
    )
    releases: list[str] = strawberry.field(
        description="The releases its events were seen in (the most recent 100)."
    )
    status: GroupStatus
    substatus: GroupSubstatus
    assignee: str | None
    resolution: ErrorGroupResolution | None
    ignore: ErrorGroupIgnore | None
    last_release: str | None = strawberry.field(description="The release of the latest event that had one.")
    _org_id: strawberry.Private[str]

    @strawberry.field(description="Every change of the group, newest first.")
    async def activity(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = UNSET
    ) -> ErrorGroupActivityConnection:
        ctx = info.context
        size = first if first is not None else DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidRequest(details=[FieldProblem("first", PAGE_SIZE_RULE)])
        before = decode_argument(decode_activity_position, after, "after") if given(after) else None
        entries, more = await ctx.services.groups.activity(
            ctx.require_principal(), self._org_id, self.fingerprint, size, before
        )
        nodes = [ErrorGroupActivity.from_record(a) for a in entries]
        return ErrorGroupActivityConnection(
            nodes=nodes, page_info=page_info([n.position for n in nodes], more, before is not None)
        )

    @classmethod
    def from_record(cls, g: ErrorGroupRecord) -> ErrorGroup:
        r, ig = g.resolution, g.ignore
        return cls(
            _org_id=g.org_id,
            status=g.status,
            substatus=g.substatus,
            assignee=g.assignee,
            resolution=ErrorGroupResolution(kind=r.kind, release=r.release) if r else None,
            ignore=ErrorGroupIgnore(
                kind=ig.kind,
                count=ig.count,
                window_minutes=ig.window_minutes,
                until=DateTime(ig.until) if ig.until else None,
            )
            if ig
            else None,
            last_release=g.last_release,
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
    statuses: list[GroupStatus] | None = strawberry.field(default=UNSET, description="Any of these.")
    substatuses: list[GroupSubstatus] | None = strawberry.field(default=UNSET, description="Any of these.")
    assignee: str | None = strawberry.field(default=UNSET, description="Assigned to exactly this.")
    unassigned: bool | None = strawberry.field(default=UNSET, description="true: only unassigned groups.")


@strawberry.input
class ErrorGroupOrder:
    field: GroupOrderFieldEnum = GroupOrderFieldEnum.LAST_SEEN
    direction: SortOrder = SortOrder.DESC


_FILTER_NAMES = {
    "min_severity": "minSeverity",
    "source": "source",
    "search": "search",
    "statuses": "statuses",
    "substatuses": "substatuses",
    "assignee": "assignee",
    "unassigned": "unassigned",
}


@strawberry.input
class ResolutionInput:
    kind: ResolveKind = ResolveKind.NOW
    release: str | None = strawberry.field(default=UNSET, description="Required with IN_RELEASE.")


@strawberry.input
class IgnoreInput:
    kind: IgnoreKind = IgnoreKind.FOREVER
    count: int | None = strawberry.field(default=UNSET, description="UNTIL_COUNT and UNTIL_RATE: events.")
    window_minutes: int | None = strawberry.field(default=UNSET, description="UNTIL_RATE: the window.")
    until: DateTime | None = strawberry.field(default=UNSET, description="UNTIL_TIME: a future time.")


@strawberry.input
class UpdateErrorGroupInput:
    status: GroupStatus | None = UNSET
    resolution: ResolutionInput | None = strawberry.field(default=UNSET, description="With RESOLVED.")
    ignore: IgnoreInput | None = strawberry.field(default=UNSET, description="With IGNORED (required).")
    assignee: str | None = strawberry.field(
        default=UNSET, description="Free-form (1 to 128 characters); null unassigns."
    )


def _update_raw(value: UpdateErrorGroupInput) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if value.status is not UNSET and value.status is not None:
        raw["status"] = value.status
    if given(value.resolution):
        raw["resolution"] = as_raw(value.resolution, {"kind": "kind", "release": "release"})
    if given(value.ignore):
        raw["ignore"] = as_raw(
            value.ignore,
            {"kind": "kind", "count": "count", "window_minutes": "windowMinutes", "until": "until"},
        )
    if value.assignee is not UNSET:
        raw["assignee"] = value.assignee
    return raw


@strawberry.type
class GroupMutations:
    @strawberry.mutation(description="Changes a group's status (with its condition) and assignee.")
    async def update_error_group(
        self, info: Info, org_id: strawberry.ID, fingerprint: str, input: UpdateErrorGroupInput
    ) -> ErrorGroup:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, fp, change = validate_update(
            {"orgId": org_id, "fingerprint": fingerprint, "input": _update_raw(input)}
        )
        return ErrorGroup.from_record(await ctx.services.groups.update(principal, org, fp, change))

    @strawberry.mutation(description="Adds a comment (1 to 4000 characters) to a group's activity.")
    async def comment_on_error_group(
        self, info: Info, org_id: strawberry.ID, fingerprint: str, text: str
    ) -> ErrorGroupActivity:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, fp, body = validate_comment({"orgId": org_id, "fingerprint": fingerprint, "text": text})
        return ErrorGroupActivity.from_record(await ctx.services.groups.comment(principal, org, fp, body))

    @strawberry.mutation(
        description="Makes `source` an alias of `target`: its counts move to `target`, and its later events "
        "are counted there. Answers the target group."
    )
    async def merge_error_groups(
        self, info: Info, org_id: strawberry.ID, source: str, target: str
    ) -> ErrorGroup:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, src, dst = validate_merge({"orgId": org_id, "source": source, "target": target})
        return ErrorGroup.from_record(await ctx.services.groups.merge(principal, org, src, dst))

    @strawberry.mutation(
        description="Removes the alias of a merged fingerprint for good: its later events start a group of "
        "their own again (the counts already moved stay). Answers the group it had been merged into."
    )
    async def unmerge_error_group(self, info: Info, org_id: strawberry.ID, fingerprint: str) -> ErrorGroup:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, fp, _ = validate_merge({"orgId": org_id, "source": fingerprint, "target": fingerprint})
        return ErrorGroup.from_record(await ctx.services.groups.unmerge(principal, org, fp))


@strawberry.type
class GroupSubscriptions:
    @strawberry.subscription(
        description="Every change of an organization's groups (activity entries). With `after` (an entry's "
        f"position), first replays up to {REPLAY_LIMIT} entries since then, oldest first: no gap, "
        "no duplicate."
    )
    async def error_group_changed(
        self, info: Info, org_id: strawberry.ID, after: str | None = UNSET
    ) -> AsyncIterator[ErrorGroupActivity]:
        ctx = info.context
        principal = ctx.require_principal()
        validate_group_args({"orgId": org_id})
        resume = decode_argument(decode_activity_position, after, "after") if given(after) else None
        stream = await ctx.services.groups.stream(principal, org_id, resume)
        return _activity_views(stream)


async def _activity_views(entries: AsyncIterator[ActivityRecord]) -> AsyncIterator[ErrorGroupActivity]:
    async for entry in entries:
        yield ErrorGroupActivity.from_record(entry)


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
        principal = ctx.principal_for(org_id)
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
        group = await ctx.services.groups.get(ctx.principal_for(org_id), org_id, fingerprint)
        return ErrorGroup.from_record(group) if group else None

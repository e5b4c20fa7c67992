"""GraphQL types and resolvers of error events: orgErrors, errorEvent, logError, errorLogged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from app.core.validation import decode_argument
from app.events.inputs import validate_org_errors
from app.events.model import ErrorEventRecord, EventQuery, decode_feed_position, event_cursor, feed_position
from app.events.model import StackFrame as FrameRecord
from app.events.service import REPLAY_LIMIT
from app.graphql.args import as_raw, given
from app.graphql.context import RequestContext
from app.graphql.enums import Severity, SortOrder
from app.graphql.execution.fanout import SharedViews
from app.graphql.pagination import PageInfo, page_info
from app.graphql.scalars import JSON, DateTime

Info = strawberry.Info[RequestContext, None]


@strawberry.type(description="A tag: an indexed key and value (filter with ErrorFilter.tag).")
class Tag:
    key: str
    value: str


@strawberry.input(description="A tag to filter by, or to attach to a logged error.")
class TagInput:
    key: str = strawberry.field(description="1 to 32 of A-Z a-z 0-9 _ . : -")
    value: str = strawberry.field(description="1 to 200 characters, one line.")


@strawberry.type(description="One frame of a stack trace.")
class StackFrame:
    filename: str | None
    abs_path: str | None
    function: str | None
    module: str | None
    lineno: int | None
    colno: int | None
    in_app: bool | None = strawberry.field(description="Whether the frame is the application's own code.")
    context_line: str | None = strawberry.field(description="The source line, when the SDK sent it.")
    pre_context: list[str]
    post_context: list[str]


@strawberry.type(description="One exception of a chain (Sentry order: the innermost cause first).")
class ExceptionValue:
    type: str | None
    value: str | None
    module: str | None
    mechanism: str | None = strawberry.field(description='How it was captured, e.g. "excepthook".')
    handled: bool | None = strawberry.field(
        description="False when the program (or thread) did not catch it."
    )
    frames: list[StackFrame] = strawberry.field(description="Oldest call first; the crash is the last frame.")


@strawberry.type
class EventUser:
    id: str | None
    username: str | None
    email: str | None
    ip_address: str | None = strawberry.field(description="Anonymised unless ANONYMIZE_IP=false.")


@strawberry.type
class HttpHeader:
    name: str
    value: str


@strawberry.type(description="The HTTP request being served; Cookie and Authorization are never kept.")
class EventRequest:
    url: str | None
    method: str | None
    query_string: str | None
    headers: list[HttpHeader]


@strawberry.type(description="Something that happened before the error (the last 100 are kept).")
class Breadcrumb:
    timestamp: DateTime | None
    type: str | None
    category: str | None
    message: str | None
    level: str | None
    data: JSON | None


@strawberry.type(description="The SDK that sent the event.")
class SdkInfo:
    name: str
    version: str | None


def _frames(frames: list[FrameRecord]) -> list[StackFrame]:
    return [
        StackFrame(
            filename=f.filename,
            abs_path=f.abs_path,
            function=f.function,
            module=f.module,
            lineno=f.lineno,
            colno=f.colno,
            in_app=f.in_app,
            context_line=f.context_line,
            pre_context=f.pre_context,
            post_context=f.post_context,
        )
        for f in frames
    ]


@strawberry.type(description="One reported error.")
class ErrorEvent:
    id: strawberry.ID = strawberry.field(
        description='Stable public id, e.g. "error-01JD3...". Unique across all organizations; '
        "sortable by timestamp."
    )
    org_id: strawberry.ID
    message: str
    severity: Severity
    timestamp: DateTime = strawberry.field(
        description="When the error happened (client-supplied, or the time it was received)."
    )
    received_at: DateTime = strawberry.field(description="When the server stored it.")
    code: str | None = strawberry.field(
        description="Machine-readable code supplied by the reporter, e.g. FILE_UPLOAD_FAILED."
    )
    source: str | None = strawberry.field(
        description='Name of the component that raised it, e.g. "upload-service".'
    )
    context: JSON | None = strawberry.field(description="Free-form JSON object from the reporter.")
    fingerprint: str = strawberry.field(
        description="Grouping key: events with the same fingerprint are the same problem. "
        "From the code (and source) when given, else from the message with numbers, ids, UUIDs, "
        "e-mail addresses and quoted values normalized away (and source)."
    )

    position: str | None = strawberry.field(
        description="Where this event is in the live feed: pass it as errorLogged(after:) to resume a "
        "subscription without gap or duplicate."
    )
    environment: str | None = strawberry.field(description='e.g. "production", as the reporter sent it.')
    release: str | None = strawberry.field(description="The application version that raised it.")
    level: str | None = strawberry.field(
        description="The SDK's level (fatal, error, warning, info, debug); `severity` is derived from it."
    )
    platform: str | None = strawberry.field(description='e.g. "python", "node", "javascript".')
    project_id: int | None = strawberry.field(description="The project an SDK sent it to.")
    handled: bool | None = strawberry.field(
        description="False when an exception of the event was not caught by the program; null without one."
    )
    _record: strawberry.Private[ErrorEventRecord]

    @strawberry.field(description="Indexed key/value pairs, sorted by key.")
    def tags(self) -> list[Tag]:
        return [Tag(key=k, value=v) for k, v in sorted((self._record.tags or {}).items())]

    @strawberry.field(description="The exception chain with stack traces (SDK events).")
    def exceptions(self) -> list[ExceptionValue]:
        details = self._record.details
        return [
            ExceptionValue(
                type=e.type,
                value=e.value,
                module=e.module,
                mechanism=e.mechanism,
                handled=e.handled,
                frames=_frames(e.frames),
            )
            for e in (details.exceptions if details else [])
        ]

    @strawberry.field
    def user(self) -> EventUser | None:
        u = self._record.details.user if self._record.details else None
        return EventUser(id=u.id, username=u.username, email=u.email, ip_address=u.ip_address) if u else None

    @strawberry.field
    def request(self) -> EventRequest | None:
        r = self._record.details.request if self._record.details else None
        if r is None:
            return None
        headers = [HttpHeader(name=k, value=v) for k, v in r.headers.items()]
        return EventRequest(url=r.url, method=r.method, query_string=r.query_string, headers=headers)

    @strawberry.field(description="Oldest first.")
    def breadcrumbs(self) -> list[Breadcrumb]:
        details = self._record.details
        return [
            Breadcrumb(
                timestamp=DateTime(b.timestamp) if b.timestamp else None,
                type=b.type,
                category=b.category,
                message=b.message,
                level=b.level,
                data=JSON(b.data) if b.data is not None else None,
            )
            for b in (details.breadcrumbs if details else [])
        ]

    @strawberry.field(description="os, runtime, browser, device and app contexts, as the SDK sent them.")
    def contexts(self) -> JSON | None:
        contexts = self._record.details.contexts if self._record.details else None
        return JSON(contexts) if contexts is not None else None

    @strawberry.field
    def sdk(self) -> SdkInfo | None:
        sdk = self._record.details.sdk if self._record.details else None
        return SdkInfo(name=sdk.name, version=sdk.version) if sdk else None

    @classmethod
    def from_record(cls, r: ErrorEventRecord) -> ErrorEvent:
        return cls(
            position=feed_position(r.seq) if r.seq is not None else None,
            id=strawberry.ID(r.id),
            org_id=strawberry.ID(r.org_id),
            message=r.message,
            severity=r.severity,
            timestamp=DateTime(r.timestamp),
            received_at=DateTime(r.received_at),
            code=r.code,
            source=r.source,
            context=JSON(r.context) if r.context is not None else None,
            fingerprint=r.fingerprint,
            environment=r.environment,
            release=r.release,
            level=r.level,
            platform=r.platform,
            project_id=r.project_id,
            handled=r.handled,
            _record=r,
        )


# The live feed publishes each record once to every subscriber: one ErrorEvent for all of them
# (app.graphql.execution.fanout).
_shared_events = SharedViews(ErrorEvent.from_record)


@strawberry.type
class ErrorEventEdge:
    cursor: str
    node: ErrorEvent


@strawberry.type(
    description="Relay-style connection. Cursors are opaque and stable under concurrent inserts."
)
class ErrorEventConnection:
    edges: list[ErrorEventEdge]
    nodes: list[ErrorEvent]
    page_info: PageInfo
    _query: strawberry.Private[EventQuery]

    @strawberry.field(
        description="Number of events matching the filter (ignores pagination). Counted only when asked for."
    )
    async def total_count(self, info: Info) -> int:
        return await info.context.services.events.count(self._query)


@strawberry.input(description="All given conditions must hold.")
class ErrorFilter:
    severities: list[Severity] | None = UNSET
    min_severity: Severity | None = strawberry.field(
        default=UNSET, description="Only events at or above this severity."
    )
    from_: DateTime | None = strawberry.field(
        name="from", default=UNSET, description="Inclusive lower bound on timestamp."
    )
    to: DateTime | None = strawberry.field(default=UNSET, description="Exclusive upper bound on timestamp.")
    code: str | None = UNSET
    source: str | None = UNSET
    fingerprint: str | None = UNSET
    search: str | None = strawberry.field(
        default=UNSET, description="Case-insensitive substring match on message (literal text)."
    )
    environment: str | None = UNSET
    release: str | None = UNSET
    tag: TagInput | None = strawberry.field(default=UNSET, description="Events with this tag key and value.")
    handled: bool | None = strawberry.field(
        default=UNSET,
        description="false: events with an exception the program did not catch; true: all caught.",
    )


_FILTER_NAMES = {
    "environment": "environment",
    "release": "release",
    "tag": "tag",
    "handled": "handled",
    "severities": "severities",
    "min_severity": "minSeverity",
    "from_": "from",
    "to": "to",
    "code": "code",
    "source": "source",
    "fingerprint": "fingerprint",
    "search": "search",
}


@strawberry.input
class LogErrorInput:
    message: str = strawberry.field(description="1 to 8192 characters, not blank.")
    severity: Severity
    timestamp: DateTime | None = strawberry.field(
        default=UNSET,
        description="Defaults to the time the server receives it; at most 5 minutes in the future.",
    )
    code: str | None = strawberry.field(default=UNSET, description="1 to 128 of A-Z a-z 0-9 . _ : / @ -")
    source: str | None = strawberry.field(default=UNSET, description="1 to 128 of A-Z a-z 0-9 . _ : / @ -")
    context: JSON | None = strawberry.field(
        default=UNSET, description="A JSON object of at most 16 KB encoded, nested at most 5 deep."
    )
    fingerprint: str | None = strawberry.field(
        default=UNSET,
        description="Your own grouping key (1 to 128 of A-Z a-z 0-9 . _ : / @ -), instead of the "
        "computed one: events with the same fingerprint are the same problem.",
    )
    environment: str | None = strawberry.field(default=UNSET, description="1 to 64 characters, one line.")
    release: str | None = strawberry.field(default=UNSET, description="1 to 200 characters, one line.")
    tags: list[TagInput] | None = strawberry.field(default=UNSET, description="At most 50 indexed tags.")


_INPUT_NAMES = {
    n: n
    for n in (
        "message",
        "severity",
        "timestamp",
        "code",
        "source",
        "context",
        "fingerprint",
        "environment",
        "release",
        "tags",
    )
}


@strawberry.type
class LogErrorPayload:
    message: str = strawberry.field(description='Always "Error logged successfully".')
    error_id: strawberry.ID
    error: ErrorEvent
    replayed: bool = strawberry.field(
        description="True when this response replays an earlier request with the same idempotency key."
    )
    new_group: bool = strawberry.field(
        description="True when this event is the first of its fingerprint: a new problem."
    )


def _connection(records: list[ErrorEventRecord], has_next: bool, query: EventQuery) -> ErrorEventConnection:
    nodes = [ErrorEvent.from_record(r) for r in records]
    edges = [ErrorEventEdge(cursor=event_cursor(r.id), node=n) for r, n in zip(records, nodes, strict=True)]
    return ErrorEventConnection(
        edges=edges,
        nodes=nodes,
        page_info=page_info([e.cursor for e in edges], has_next, query.after is not None),
        _query=query,
    )


@strawberry.type
class EventQueries:
    @strawberry.field(description="Error events of one organization, newest first by default.")
    async def org_errors(
        self,
        info: Info,
        org_id: strawberry.ID,
        filter: ErrorFilter | None = UNSET,
        first: int | None = 20,
        after: str | None = UNSET,
        sort_order: SortOrder | None = SortOrder.DESC,
    ) -> ErrorEventConnection:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        raw: dict[str, Any] = {"orgId": org_id}
        if given(filter):
            raw["filter"] = as_raw(filter, _FILTER_NAMES)
        if first is not None:
            raw["first"] = first
        if given(after):
            raw["after"] = after
        if sort_order is not None:
            raw["sortOrder"] = sort_order
        query = validate_org_errors(raw)
        page = await ctx.services.events.page(principal, query)
        return _connection(page.events, page.has_next_page, query)

    @strawberry.field(description="One error event; null when it does not exist in that organization.")
    async def error_event(self, info: Info, org_id: strawberry.ID, id: strawberry.ID) -> ErrorEvent | None:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        record = await ctx.services.events.get(principal, org_id, id)
        return ErrorEvent.from_record(record) if record else None


@strawberry.type
class EventMutations:
    @strawberry.mutation(
        description="Record a new error event. Retrying with the same idempotencyKey (or the "
        "X-Idempotency-Key header) never stores a duplicate: the first result is replayed."
    )
    async def log_error(
        self, info: Info, org_id: strawberry.ID, error: LogErrorInput, idempotency_key: str | None = UNSET
    ) -> LogErrorPayload:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        raw: dict[str, Any] = {"orgId": org_id, "error": as_raw(error, _INPUT_NAMES)}
        key = idempotency_key if given(idempotency_key) else ctx.idempotency_key
        if key is not None:
            raw["idempotencyKey"] = key
        org, new, key = ctx.services.events.validate_log_error(raw)
        logged = await ctx.services.events.log(principal, org, new, key)
        return LogErrorPayload(
            message="Error logged successfully",
            error_id=strawberry.ID(logged.event.id),
            error=ErrorEvent.from_record(logged.event),
            replayed=logged.replayed,
            new_group=logged.new_group,
        )


@strawberry.type
class EventSubscriptions:
    @strawberry.subscription(
        description="Live feed of newly logged error events of one organization. With `after` (an event's "
        f"position), first replays up to {REPLAY_LIMIT} events logged since then, oldest first, then "
        "streams live: no gap, no duplicate."
    )
    async def error_logged(
        self,
        info: Info,
        org_id: strawberry.ID,
        min_severity: Severity | None = UNSET,
        after: str | None = UNSET,
    ) -> AsyncIterator[ErrorEvent]:
        # A plain coroutine returning the stream: its checks run when the subscription is created, so a
        # refusal is the operation's `error` message, not an error inside a `next` payload.
        ctx = info.context
        principal = ctx.require_principal()
        raw: dict[str, Any] = {"orgId": org_id}
        if given(min_severity):
            raw["filter"] = {"minSeverity": min_severity}
        query = validate_org_errors(raw)
        resume_from = decode_argument(decode_feed_position, after, "after") if given(after) else None
        stream = await ctx.services.events.stream(
            principal, query.org_id, query.filter.severities, resume_from
        )
        return _views(stream)


async def _views(records: AsyncIterator[tuple[ErrorEventRecord, bool]]) -> AsyncIterator[ErrorEvent]:
    async for record, broadcast in records:
        yield _shared_events(record) if broadcast else ErrorEvent.from_record(record)

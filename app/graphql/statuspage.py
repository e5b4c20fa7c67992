"""GraphQL types and resolvers of the status page: custom components (and their heartbeat monitors),
incidents, maintenances, uptime, and the incidentUpdated subscription. Resolvers translate arguments,
call StatusPageService and map its records to types."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.types.unset import UNSET

from app.core.errors import FieldProblem, InvalidDateFormat, InvalidRequest
from app.core.validation import decode_argument, parse_datetime
from app.graphql import status as _status_types  # noqa: F401 (registers ServiceState and StatusCause)
from app.graphql.args import given
from app.graphql.context import RequestContext
from app.graphql.scalars import DateTime
from app.status.model import COMPONENTS, Component, ServiceState, StatusCause
from app.statuspage.model import CustomComponent as CustomRecord
from app.statuspage.model import (
    DayUptime,
    IncidentImpact,
    IncidentStatus,
    MaintenanceStatus,
    PageChange,
    UptimeFigure,
    UptimeRange,
    decode_page_position,
    page_position,
)
from app.statuspage.model import Incident as IncidentRecord
from app.statuspage.model import Maintenance as MaintenanceRecord
from app.statuspage.model import StatusUpdate as UpdateRecord
from app.statuspage.model import Uptime as UptimeRecord

Info = strawberry.Info[RequestContext, None]
MAX_PAGE = 100

strawberry.enum(IncidentStatus, description="Where an incident stands.")
strawberry.enum(IncidentImpact, description="How bad an incident is (Statuspage's impact).")
strawberry.enum(MaintenanceStatus, description="Where a scheduled maintenance stands.")
strawberry.enum(UptimeRange, description="Uptime range presets, ending now.")


@strawberry.type(description="A push monitor: GET or POST /api/push/<token>?status=up|down&msg=&ping=.")
class HeartbeatMonitor:
    push_token: str | None = strawberry.field(description="The secret of the push URL (admin keys only).")
    interval_seconds: float
    grace_seconds: float
    last_beat_at: DateTime
    down: bool = strawberry.field(description="Missed beats (or down pushes) have put it in MAJOR_OUTAGE.")
    message: str | None
    ping: float | None


@strawberry.type(description="A component of the status page: built-in (probed) or defined by an admin.")
class StatusPageComponent:
    name: str
    built_in: bool
    description: str | None
    group: str | None
    order: int
    show_uptime: bool
    status: ServiceState
    cause: StatusCause
    reason: str | None = strawberry.field(
        description="Why the component is in its state, if not operational."
    )
    created_at: DateTime | None
    heartbeat: HeartbeatMonitor | None


def component_type(record: CustomRecord | None, live: Component, admin: bool) -> StatusPageComponent:
    hb = record.heartbeat if record else None
    return StatusPageComponent(
        name=live.name,
        built_in=record is None,
        description=record.description if record else None,
        group=record.group if record else None,
        order=record.order if record else COMPONENTS.index(live.name) - 1000,
        show_uptime=record.show_uptime if record else True,
        status=live.status,
        cause=live.cause,
        reason=live.description,
        created_at=DateTime(record.created_at) if record else None,
        heartbeat=HeartbeatMonitor(
            push_token=hb.token if admin else None,
            interval_seconds=hb.interval,
            grace_seconds=hb.grace,
            last_beat_at=DateTime(hb.last_beat),
            down=hb.down,
            message=hb.message,
            ping=hb.ping,
        )
        if hb
        else None,
    )


@strawberry.type(description="One posted update, in order.")
class StatusPageUpdate:
    id: str
    status: str = strawberry.field(description="The incident's or maintenance's status it announced.")
    message: str
    at: DateTime


def _updates(updates: tuple[UpdateRecord, ...]) -> list[StatusPageUpdate]:
    return [StatusPageUpdate(id=u.id, status=u.status, message=u.message, at=DateTime(u.at)) for u in updates]


@strawberry.type
class IncidentComponent:
    component: str
    status: ServiceState = strawberry.field(description="The state the incident sets the component to.")


@strawberry.type
class Incident:
    id: str
    name: str
    status: IncidentStatus
    impact: IncidentImpact
    components: list[IncidentComponent]
    updates: list[StatusPageUpdate]
    postmortem: str | None
    created_at: DateTime
    updated_at: DateTime
    resolved_at: DateTime | None

    @classmethod
    def of(cls, i: IncidentRecord) -> Incident:
        return cls(
            id=i.id,
            name=i.name,
            status=i.status,
            impact=i.impact,
            components=[IncidentComponent(component=c.component, status=c.state) for c in i.components],
            updates=_updates(i.updates),
            postmortem=i.postmortem,
            created_at=DateTime(i.created_at),
            updated_at=DateTime(i.updated_at),
            resolved_at=DateTime(i.resolved_at) if i.resolved_at else None,
        )


@strawberry.type
class Maintenance:
    id: str
    name: str
    status: MaintenanceStatus
    components: list[str]
    starts_at: DateTime
    ends_at: DateTime
    updates: list[StatusPageUpdate]
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, m: MaintenanceRecord) -> Maintenance:
        return cls(
            id=m.id,
            name=m.name,
            status=m.status,
            components=list(m.components),
            starts_at=DateTime(m.starts_at),
            ends_at=DateTime(m.ends_at),
            updates=_updates(m.updates),
            created_at=DateTime(m.created_at),
            updated_at=DateTime(m.updated_at),
        )


@strawberry.type(description="One change of an incident or a maintenance: the record as it was after it.")
class StatusPageEvent:
    position: str = strawberry.field(description="Resume incidentUpdated(after:) from here.")
    incident: Incident | None
    maintenance: Maintenance | None

    @classmethod
    def of(cls, c: PageChange) -> StatusPageEvent:
        return cls(
            position=page_position(c.seq),
            incident=Incident.of(c.incident) if c.incident else None,
            maintenance=Maintenance.of(c.maintenance) if c.maintenance else None,
        )


@strawberry.type
class StateSeconds:
    status: ServiceState
    seconds: float


@strawberry.type(description="Uptime over a range: (counted - (major + 0.3 * partial)) / counted.")
class UptimeFigures:
    start: DateTime
    end: DateTime
    uptime: float | None = strawberry.field(
        description="Percentage up, 0-100; null when nothing counted (all maintenance or no data)."
    )
    downtime_seconds: float = strawberry.field(
        description="Major outage seconds + 0.3 x partial outage seconds."
    )
    no_data_seconds: float
    seconds: list[StateSeconds] = strawberry.field(description="Seconds spent in each state.")


def _figures(f: UptimeFigure) -> UptimeFigures:
    return UptimeFigures(
        start=DateTime(f.start),
        end=DateTime(f.end),
        uptime=None if f.uptime is None else round(f.uptime * 100, 6),
        downtime_seconds=f.downtime_seconds,
        no_data_seconds=f.no_data_seconds,
        seconds=[
            StateSeconds(status=s, seconds=v) for s, v in sorted(f.seconds.items(), key=lambda x: x[0].rank)
        ],
    )


@strawberry.type
class UptimeDay:
    date: str = strawberry.field(description="The UTC day, YYYY-MM-DD.")
    figures: UptimeFigures


@strawberry.type
class Uptime:
    target: str
    group: bool
    figures: UptimeFigures
    days: list[UptimeDay] = strawberry.field(
        description="One figure per UTC day of the range (the uptime bar)."
    )

    @classmethod
    def of(cls, u: UptimeRecord) -> Uptime:
        return cls(
            target=u.target,
            group=u.group,
            figures=_figures(u.figure),
            days=[_day(d) for d in u.days],
        )


def _day(d: DayUptime) -> UptimeDay:
    return UptimeDay(date=d.day.isoformat(), figures=_figures(d.figure))


@strawberry.input
class StatusComponentInput:
    name: str = strawberry.field(description="Unique; 1-64 of letters, digits, space . _ - (shown as is).")
    description: str | None = UNSET
    group: str | None = UNSET
    order: int | None = UNSET
    show_uptime: bool | None = UNSET
    heartbeat_interval: float | None = strawberry.field(
        default=UNSET, description="Seconds between expected pushes: makes the component a push monitor."
    )
    heartbeat_grace: float | None = strawberry.field(default=UNSET, description="Seconds a push may be late.")


@strawberry.input
class StatusComponentChanges:
    description: str | None = UNSET
    group: str | None = UNSET
    order: int | None = UNSET
    show_uptime: bool | None = UNSET


@strawberry.input
class AffectedComponentInput:
    component: str
    status: ServiceState


@strawberry.input
class IncidentInput:
    name: str
    message: str
    status: IncidentStatus | None = UNSET
    impact: IncidentImpact | None = UNSET
    components: list[AffectedComponentInput] | None = UNSET


@strawberry.input
class IncidentUpdateInput:
    message: str
    status: IncidentStatus
    impact: IncidentImpact | None = UNSET
    components: list[AffectedComponentInput] | None = strawberry.field(
        default=UNSET, description="Replaces the affected components (and the states they are set to)."
    )


@strawberry.input
class MaintenanceInput:
    name: str
    message: str
    starts_at: DateTime
    ends_at: DateTime
    components: list[str]


@strawberry.input
class MaintenanceUpdateInput:
    message: str
    status: MaintenanceStatus


def _is_input(value: Any) -> bool:
    return not isinstance(value, Enum) and hasattr(value, "__strawberry_definition__")


def _raw(obj: Any) -> dict[str, Any]:
    """A strawberry input as a plain dict (GraphQL names), omitted fields left out, nested inputs too."""
    out: dict[str, Any] = {}
    for attr, value in vars(obj).items():
        if value is UNSET or value is None:
            continue
        name = "".join(p.capitalize() if i else p for i, p in enumerate(attr.split("_")))
        if isinstance(value, list):
            value = [_raw(v) if _is_input(v) else v for v in value]
        elif _is_input(value):
            value = _raw(value)
        out[name] = value
    return out


def _components(info: Info) -> list[StatusPageComponent]:
    services = info.context.services
    admin = info.context.principal is not None and info.context.principal.admin
    live = {c.name: c for c in services.status.snapshot().services}
    records = {c.name: c for c in services.status_page.view.components}
    out = [component_type(records.get(name), c, admin) for name, c in live.items()]
    return sorted(out, key=lambda c: (c.order, c.name))


def _date(value: Any, field: str) -> datetime | None:
    if not given(value):
        return None
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise InvalidDateFormat(details=[FieldProblem(field, str(exc))]) from None


def _first(first: int | None) -> int:
    size = 20 if first is None else first
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(
            details=[FieldProblem("first", f"Limit must be a positive number of at most {MAX_PAGE}")]
        )
    return size


@strawberry.type
class StatusPageQueries:
    @strawberry.field(
        description="Every component of the status page, built-in and custom, in display order."
    )
    def status_components(self, info: Info) -> list[StatusPageComponent]:
        info.context.require_principal()
        return _components(info)

    @strawberry.field(description="Incidents, newest first; `open` narrows to unresolved ones.")
    async def incidents(
        self, info: Info, open: bool | None = False, first: int | None = 20
    ) -> list[Incident]:
        info.context.require_principal()
        rows = await info.context.services.status_page.incidents(open_only=bool(open), first=_first(first))
        return [Incident.of(i) for i in rows]

    @strawberry.field(description="One incident by id.")
    async def incident(self, info: Info, id: str) -> Incident:
        info.context.require_principal()
        return Incident.of(await info.context.services.status_page.incident(id))

    @strawberry.field(description="Scheduled maintenances by window start; `status` narrows.")
    async def maintenances(
        self,
        info: Info,
        status: list[MaintenanceStatus] | None = UNSET,
        first: int | None = 20,
    ) -> list[Maintenance]:
        info.context.require_principal()
        wanted = list(status) if given(status) else None
        rows = await info.context.services.status_page.maintenances(wanted, _first(first))
        return [Maintenance.of(m) for m in rows]

    @strawberry.field(
        description="Exact uptime of a component or a group from its recorded transitions: a preset range "
        "(default DAYS_90) ending now, or from/to; with one figure per UTC day."
    )
    async def uptime(
        self,
        info: Info,
        component: str | None = UNSET,
        group: str | None = UNSET,
        range: UptimeRange | None = UNSET,
        from_: Annotated[DateTime | None, strawberry.argument(name="from")] = UNSET,
        to: DateTime | None = UNSET,
    ) -> Uptime:
        info.context.require_principal()
        page = info.context.services.status_page
        start, end = page.range_of(range if given(range) else None, _date(from_, "from"), _date(to, "to"))
        result = await page.uptime(
            component if given(component) else None, group if given(group) else None, start, end
        )
        return Uptime.of(result)


def _admin(info: Info) -> None:
    info.context.require_principal().require_admin()


@strawberry.type
class StatusPageMutations:
    @strawberry.mutation(description="Define a component of the status page (admin keys only).")
    async def create_status_component(self, info: Info, input: StatusComponentInput) -> StatusPageComponent:
        _admin(info)
        record = await info.context.services.status_page.create_component(_raw(input))
        live = next(c for c in info.context.services.status.snapshot().services if c.name == record.name)
        return component_type(record, live, True)

    @strawberry.mutation(
        description="Change a custom component's description, group, order or uptime display."
    )
    async def update_status_component(
        self, info: Info, name: str, input: StatusComponentChanges
    ) -> StatusPageComponent:
        _admin(info)
        record = await info.context.services.status_page.update_component(name, _raw(input))
        live = next(c for c in info.context.services.status.snapshot().services if c.name == record.name)
        return component_type(record, live, True)

    @strawberry.mutation(description="Remove a custom component (its recorded transitions stay).")
    async def delete_status_component(self, info: Info, name: str) -> bool:
        _admin(info)
        await info.context.services.status_page.delete_component(name)
        return True

    @strawberry.mutation(
        description="Open an incident; its components take the states given until it is resolved."
    )
    async def create_incident(self, info: Info, input: IncidentInput) -> Incident:
        _admin(info)
        return Incident.of(await info.context.services.status_page.create_incident(_raw(input)))

    @strawberry.mutation(
        description="Post an update to an open incident (RESOLVED resolves it). CONFLICT if resolved."
    )
    async def update_incident(self, info: Info, id: str, input: IncidentUpdateInput) -> Incident:
        _admin(info)
        return Incident.of(await info.context.services.status_page.update_incident(id, _raw(input)))

    @strawberry.mutation(description="Resolve an incident: its components are handed back.")
    async def resolve_incident(self, info: Info, id: str, message: str) -> Incident:
        _admin(info)
        raw = {"message": message, "status": IncidentStatus.RESOLVED}
        return Incident.of(await info.context.services.status_page.update_incident(id, raw))

    @strawberry.mutation(description="Attach (or replace) an incident's postmortem.")
    async def set_incident_postmortem(self, info: Info, id: str, postmortem: str) -> Incident:
        _admin(info)
        return Incident.of(await info.context.services.status_page.set_postmortem(id, postmortem))

    @strawberry.mutation(
        description="Schedule a maintenance: its components go UNDER_MAINTENANCE at startsAt and back at "
        "endsAt by themselves."
    )
    async def schedule_maintenance(self, info: Info, input: MaintenanceInput) -> Maintenance:
        _admin(info)
        return Maintenance.of(await info.context.services.status_page.schedule_maintenance(_raw(input)))

    @strawberry.mutation(description="Post an update to a maintenance: IN_PROGRESS, VERIFYING, COMPLETED.")
    async def update_maintenance(self, info: Info, id: str, input: MaintenanceUpdateInput) -> Maintenance:
        _admin(info)
        return Maintenance.of(await info.context.services.status_page.update_maintenance(id, _raw(input)))


@strawberry.type
class StatusPageSubscriptions:
    @strawberry.subscription(
        description="Every change of an incident or a maintenance as it happens. With `after` (a position), "
        "first replays the changes recorded since then."
    )
    async def incident_updated(self, info: Info, after: str | None = UNSET) -> AsyncIterator[StatusPageEvent]:
        info.context.require_principal()
        resume = decode_argument(decode_page_position, after, "after") if given(after) else None
        return _events(info.context, resume)


async def _events(ctx: RequestContext, resume: int | None) -> AsyncGenerator[StatusPageEvent, None]:
    async for change in ctx.services.status_page.stream(resume):
        yield StatusPageEvent.of(change)

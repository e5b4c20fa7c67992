"""GraphQL types and resolvers of service status: serviceStatus, statusHistory, setServiceStatus,
serviceStatusChanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from datetime import datetime

import strawberry
from strawberry.types.unset import UNSET

from app.core.errors import FieldProblem, InvalidDateFormat
from app.core.validation import decode_argument, parse_datetime
from app.graphql.args import given, raw_args
from app.graphql.context import RequestContext, Services
from app.graphql.execution.fanout import SharedViews
from app.graphql.pagination import PageInfo, page_info
from app.graphql.scalars import DateTime
from app.status.inputs import validate_history
from app.status.model import ServiceState as ServiceStateEnum
from app.status.model import StatusCause as StatusCauseEnum
from app.status.model import StatusSnapshot, Transition, decode_status_position, status_position
from app.status.service import REPLAY_LIMIT

Info = strawberry.Info[RequestContext, None]

ServiceState = strawberry.enum(
    ServiceStateEnum,
    description="Status of a service component. Rank for roll-ups, best to worst: OPERATIONAL, "
    "UNDER_MAINTENANCE, DEGRADED_PERFORMANCE, PARTIAL_OUTAGE, MAJOR_OUTAGE.",
)
StatusCause = strawberry.enum(StatusCauseEnum, description="What set a component's state.")


@strawberry.type
class ServiceComponent:
    name: str = strawberry.field(description='Component name: "api", "storage", "authentication".')
    status: ServiceStateEnum
    description: str | None = strawberry.field(
        description="Human-readable reason for a non-operational state, if any."
    )
    updated_at: DateTime = strawberry.field(description="Last time this component's status changed.")
    cause: StatusCauseEnum = strawberry.field(description="What set the current state.")
    observed: float | None = strawberry.field(
        description="The figure behind the state: ping seconds (storage), failed share (api)."
    )


@strawberry.type
class ServiceStatus:
    status: ServiceStateEnum = strawberry.field(description="Roll-up: the worst component status.")
    services: list[ServiceComponent]
    timestamp: DateTime
    position: str | None = strawberry.field(
        description="Position of the latest recorded transition: resume serviceStatusChanged(after:) from it."
    )

    @classmethod
    def from_snapshot(cls, snap: StatusSnapshot) -> ServiceStatus:
        return cls(
            status=snap.status,
            services=[
                ServiceComponent(
                    name=c.name,
                    status=c.status,
                    description=c.description,
                    updated_at=DateTime(c.updated_at),
                    cause=c.cause,
                    observed=c.observed,
                )
                for c in snap.services
            ],
            timestamp=DateTime(snap.timestamp),
            position=status_position(snap.seq) if snap.seq is not None else None,
        )


# Every subscriber receives the same published snapshot: one ServiceStatus for all of them, on which
# each distinct subscription document executes once (app.graphql.execution.fanout).
_shared_status = SharedViews(ServiceStatus.from_snapshot)


@strawberry.type(description="One change of one component's state.")
class StatusTransition:
    position: str
    service: str
    from_: ServiceStateEnum = strawberry.field(name="from")
    to: ServiceStateEnum
    cause: StatusCauseEnum
    observed: float | None
    description: str | None
    at: DateTime
    instance: str = strawberry.field(description="The server instance that observed it (host:pid).")

    @classmethod
    def from_transition(cls, t: Transition) -> StatusTransition:
        return cls(
            position=status_position(t.seq),
            service=t.component,
            from_=t.from_state,
            to=t.to_state,
            cause=t.cause,
            observed=t.observed,
            description=t.description,
            at=DateTime(t.at),
            instance=t.instance,
        )


@strawberry.type
class StatusTransitionConnection:
    nodes: list[StatusTransition]
    page_info: PageInfo


def status_state(services: Services) -> Hashable:
    """What `serviceStatus` answers from, but its clock: the components and the latest position (the
    direct lane reuses a document's answer while this is equal, app.graphql.execution.answers)."""
    return services.status.state()


# Root fields answered from memory, by the state their answers depend on; fields that read the clock.
MEMORY_FIELDS = {"serviceStatus": status_state}
CLOCK_FIELDS = frozenset({"timestamp"})


@strawberry.type
class StatusQueries:
    @strawberry.field(description="Current operational status of the services. Needs no organization scope.")
    def service_status(self, info: Info) -> ServiceStatus:
        info.context.require_principal()
        return ServiceStatus.from_snapshot(info.context.services.status.snapshot())

    @strawberry.field(
        description="Recorded status transitions, newest first; `service` narrows to one component."
    )
    async def status_history(
        self, info: Info, service: str | None = UNSET, first: int | None = 20, after: str | None = UNSET
    ) -> StatusTransitionConnection:
        info.context.require_principal()
        query = validate_history(raw_args(service=service, first=first, after=after))
        page = await info.context.services.status.history(query)
        nodes = [StatusTransition.from_transition(t) for t in page.items]
        return StatusTransitionConnection(
            nodes=nodes,
            page_info=page_info([n.position for n in nodes], page.has_next_page, query.before is not None),
        )


@strawberry.type
class StatusMutations:
    @strawberry.mutation(
        description="Operator override of one component's status (admin keys only). OPERATIONAL clears the "
        "override and hands the component back to the probes; `until` ends it by itself."
    )
    async def set_service_status(
        self,
        info: Info,
        service: str,
        status: ServiceStateEnum,
        description: str | None = UNSET,
        until: DateTime | None = UNSET,
    ) -> ServiceStatus:
        info.context.require_principal().require_admin()
        ends: datetime | None = None
        if given(until):
            try:
                ends = parse_datetime(until)
            except ValueError as exc:
                raise InvalidDateFormat(details=[FieldProblem("until", str(exc))]) from None
        reason = None if description is UNSET else description
        snapshot = await info.context.services.status.override(service, status, reason, ends)
        return ServiceStatus.from_snapshot(snapshot)


@strawberry.type
class StatusSubscriptions:
    @strawberry.subscription(
        description="Emits the current status at once, then every time the roll-up or any component changes. "
        f"With `after` (a position), first replays the recorded statuses since then (at most {REPLAY_LIMIT}) "
        "instead of the current one."
    )
    async def service_status_changed(
        self, info: Info, after: str | None = UNSET
    ) -> AsyncIterator[ServiceStatus]:
        info.context.require_principal()
        resume = decode_argument(decode_status_position, after, "after") if given(after) else None
        return _shared(info.context.services.status.stream(resume))


async def _shared(snapshots: AsyncIterator[tuple[StatusSnapshot, bool]]) -> AsyncIterator[ServiceStatus]:
    async for snapshot, broadcast in snapshots:
        yield _shared_status(snapshot) if broadcast else ServiceStatus.from_snapshot(snapshot)

"""GraphQL types and resolvers of service status: serviceStatus, setServiceStatus, serviceStatusChanged."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types.unset import UNSET

from app.context import RequestContext
from app.scalars import DateTime
from app.status.service import STATUS_TOPIC, StatusSnapshot
from app.status.service import ServiceState as ServiceStateEnum

Info = strawberry.Info[RequestContext, None]

ServiceState = strawberry.enum(
    ServiceStateEnum,
    description="Status of a service component. Rank for roll-ups, best to worst: OPERATIONAL, "
    "UNDER_MAINTENANCE, DEGRADED_PERFORMANCE, PARTIAL_OUTAGE, MAJOR_OUTAGE.",
)


@strawberry.type
class ServiceComponent:
    name: str = strawberry.field(description='Component name: "api", "storage", "authentication".')
    status: ServiceState  # type: ignore[valid-type]
    description: str | None = strawberry.field(
        description="Human-readable reason for a non-operational state, if any."
    )
    updated_at: DateTime = strawberry.field(description="Last time this component's status changed.")  # type: ignore[valid-type]


@strawberry.type
class ServiceStatus:
    status: ServiceState = strawberry.field(description="Roll-up: the worst component status.")  # type: ignore[valid-type]
    services: list[ServiceComponent]
    timestamp: DateTime  # type: ignore[valid-type]

    @classmethod
    def from_snapshot(cls, snap: StatusSnapshot) -> ServiceStatus:
        return cls(
            status=snap.status,
            services=[
                ServiceComponent(
                    name=c.name, status=c.status, description=c.description, updated_at=c.updated_at
                )
                for c in snap.services
            ],
            timestamp=snap.timestamp,
        )


@strawberry.type
class StatusQueries:
    @strawberry.field(description="Current operational status of the services. Needs no organization scope.")
    def service_status(self, info: Info) -> ServiceStatus:
        info.context.require_principal()
        return ServiceStatus.from_snapshot(info.context.services.status.snapshot())


@strawberry.type
class StatusMutations:
    @strawberry.mutation(
        description="Operator override of one component's status (admin keys only). "
        "OPERATIONAL clears the override and hands the component back to the probes."
    )
    async def set_service_status(
        self,
        info: Info,
        service: str,
        status: ServiceState,  # type: ignore[valid-type]
        description: str | None = UNSET,
    ) -> ServiceStatus:
        info.context.require_principal().require_admin()
        reason = None if description is UNSET else description
        snapshot = await info.context.services.status.override(service, status, reason)
        return ServiceStatus.from_snapshot(snapshot)


@strawberry.type
class StatusSubscriptions:
    @strawberry.subscription(
        description="Emits the current status at once, then every time the roll-up or any component changes."
    )
    async def service_status_changed(self, info: Info) -> AsyncGenerator[ServiceStatus, None]:
        info.context.require_principal()
        status = info.context.services.status
        async with info.context.services.pubsub.subscribe(STATUS_TOPIC) as queue:
            yield ServiceStatus.from_snapshot(status.snapshot())
            while True:
                yield ServiceStatus.from_snapshot(await queue.get())

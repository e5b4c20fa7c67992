"""GraphQL types and resolvers of alert rules and their deliveries."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from app.alerts.inputs import validate_rule
from app.alerts.model import AlertRule as AlertRuleRecord
from app.alerts.model import Delivery, DeliveryState, DestinationKind, FrequencyScope, Trigger
from app.core.errors import FieldProblem, InvalidRequest
from app.core.paging import DEFAULT_PAGE, MAX_PAGE, PAGE_SIZE_RULE
from app.graphql.args import as_raw, given
from app.graphql.context import RequestContext
from app.graphql.enums import Severity
from app.graphql.scalars import DateTime
from app.graphql.status import ServiceState as _RegisteredState  # noqa: F401 (registers the enum)
from app.status.model import ServiceState

Info = strawberry.Info[RequestContext, None]

AlertTrigger = strawberry.enum(Trigger, name="AlertTrigger")
AlertDestinationKind = strawberry.enum(DestinationKind, name="AlertDestinationKind")
AlertFrequencyScope = strawberry.enum(FrequencyScope, name="AlertFrequencyScope")
AlertDeliveryState = strawberry.enum(DeliveryState, name="AlertDeliveryState")


@strawberry.type
class AlertTag:
    key: str
    value: str


@strawberry.type(
    description="Which events a rule considers (a filter on a field the event lacks never matches)."
)
class AlertRuleFilter:
    min_severity: Severity | None
    environment: str | None
    source: str | None
    tag: AlertTag | None


@strawberry.type(description="When to alert, and where to.")
class AlertRule:
    id: strawberry.ID
    name: str
    trigger: Trigger
    destination: DestinationKind
    url: str
    signing_secrets: list[str] = strawberry.field(
        description="whsec_ secrets that sign every delivery, newest first (two during a rotation)."
    )
    filter: AlertRuleFilter
    threshold: int | None = strawberry.field(description="FREQUENCY: more than this many events...")
    window_minutes: int | None = strawberry.field(description="FREQUENCY: ...within this many minutes.")
    scope: FrequencyScope
    component: str | None = strawberry.field(description="SERVICE_STATUS: the component (null: any).")
    state: ServiceState | None = strawberry.field(description="SERVICE_STATUS: the state entered.")
    throttle_minutes: int = strawberry.field(description="At most one alert per group within this.")
    enabled: bool
    disabled_reason: str | None = strawberry.field(
        description="Why the server disabled the rule (its destination failed for a day)."
    )
    failing_since: DateTime | None = strawberry.field(description="First failure since the last success.")
    created_at: DateTime | None

    @classmethod
    def from_record(cls, r: AlertRuleRecord) -> AlertRule:
        f = r.filter
        return cls(
            id=strawberry.ID(r.id),
            name=r.name,
            trigger=r.trigger,
            destination=r.destination,
            url=r.url,
            signing_secrets=list(r.secrets),
            filter=AlertRuleFilter(
                min_severity=f.min_severity,
                environment=f.environment,
                source=f.source,
                tag=AlertTag(key=f.tag[0], value=f.tag[1]) if f.tag else None,
            ),
            threshold=r.threshold,
            window_minutes=r.window_minutes,
            scope=r.scope,
            component=r.component,
            state=r.state,
            throttle_minutes=r.throttle_minutes,
            enabled=r.enabled,
            disabled_reason=r.disabled_reason,
            failing_since=DateTime(r.failing_since) if r.failing_since else None,
            created_at=DateTime(r.created_at) if r.created_at else None,
        )


@strawberry.type(description="One try at delivering an alert.")
class AlertDeliveryAttempt:
    at: DateTime
    status_code: int | None = strawberry.field(description="Null when nothing answered (refused, timeout).")
    latency_ms: float
    error: str | None


@strawberry.type(description="An alert to one destination, with every attempt.")
class AlertDelivery:
    id: strawberry.ID = strawberry.field(description="The webhook-id header: the same on every attempt.")
    rule_id: strawberry.ID
    trigger: Trigger
    state: DeliveryState
    url: str
    body: str = strawberry.field(description="The exact JSON sent (and signed).")
    attempts: list[AlertDeliveryAttempt]
    next_attempt_at: DateTime | None = strawberry.field(description="While PENDING: when it is tried next.")
    created_at: DateTime
    test: bool
    fingerprint: str | None

    @classmethod
    def from_record(cls, d: Delivery) -> AlertDelivery:
        return cls(
            id=strawberry.ID(d.id),
            rule_id=strawberry.ID(d.rule_id),
            trigger=d.trigger,
            state=d.state,
            url=d.url,
            body=d.body,
            attempts=[
                AlertDeliveryAttempt(
                    at=DateTime(a.at), status_code=a.status_code, latency_ms=a.latency_ms, error=a.error
                )
                for a in d.attempts
            ],
            next_attempt_at=DateTime(d.due_at) if d.state is DeliveryState.PENDING else None,
            created_at=DateTime(d.created_at),
            test=d.test,
            fingerprint=d.fingerprint,
        )


@strawberry.input
class AlertTagInput:
    key: str
    value: str


@strawberry.input
class AlertRuleFilterInput:
    min_severity: Severity | None = UNSET
    environment: str | None = UNSET
    source: str | None = UNSET
    tag: AlertTagInput | None = UNSET


@strawberry.input(description="A whole rule (an update replaces every field).")
class AlertRuleInput:
    name: str = strawberry.field(description="1 to 100 characters.")
    trigger: Trigger
    url: str = strawberry.field(description="An http or https URL the server posts to.")
    destination: DestinationKind = DestinationKind.WEBHOOK
    filter: AlertRuleFilterInput | None = UNSET
    threshold: int | None = strawberry.field(default=UNSET, description="FREQUENCY (required): events.")
    window_minutes: int | None = strawberry.field(default=UNSET, description="FREQUENCY (required).")
    scope: FrequencyScope | None = strawberry.field(default=UNSET, description="FREQUENCY: GROUP by default.")
    component: str | None = strawberry.field(default=UNSET, description="SERVICE_STATUS: null for any.")
    state: ServiceState | None = strawberry.field(default=UNSET, description="SERVICE_STATUS (required).")
    throttle_minutes: int = strawberry.field(default=0, description="0 to 10080.")
    enabled: bool = True


_RULE_NAMES = {
    n: n
    for n in ("name", "trigger", "url", "destination", "threshold", "scope", "component", "state", "enabled")
} | {"window_minutes": "windowMinutes", "throttle_minutes": "throttleMinutes"}


def _rule_raw(org_id: str, value: AlertRuleInput) -> dict[str, Any]:
    rule = {k: v for k, v in as_raw(value, _RULE_NAMES).items() if v is not None}
    if given(value.filter):
        flt = {
            k: v
            for k, v in as_raw(
                value.filter,
                {"min_severity": "minSeverity", "environment": "environment", "source": "source"},
            ).items()
            if v is not None
        }
        if given(value.filter.tag):
            flt["tag"] = {"key": value.filter.tag.key, "value": value.filter.tag.value}
        rule["filter"] = flt
    return {"orgId": org_id, "input": rule}


def _page_size(first: int | None) -> int:
    size = first if first is not None else DEFAULT_PAGE
    if not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(details=[FieldProblem("first", PAGE_SIZE_RULE)])
    return size


@strawberry.type
class AlertQueries:
    @strawberry.field(description="An organization's alert rules, oldest first.")
    async def alert_rules(self, info: Info, org_id: strawberry.ID) -> list[AlertRule]:
        ctx = info.context
        rules = await ctx.services.alerts.rules(ctx.principal_for(org_id), org_id)
        return [AlertRule.from_record(r) for r in rules]

    @strawberry.field(description="The delivery log, newest first: of one rule, or of the organization.")
    async def alert_deliveries(
        self, info: Info, org_id: strawberry.ID, rule_id: strawberry.ID | None = UNSET, first: int | None = 20
    ) -> list[AlertDelivery]:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        rule = str(rule_id) if given(rule_id) else None
        found = await ctx.services.alerts.deliveries(principal, org_id, rule, _page_size(first))
        return [AlertDelivery.from_record(d) for d in found]


@strawberry.type
class AlertMutations:
    @strawberry.mutation(description="A new alert rule; its signing secret is generated.")
    async def create_alert_rule(self, info: Info, org_id: strawberry.ID, input: AlertRuleInput) -> AlertRule:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, spec = validate_rule(_rule_raw(org_id, input))
        return AlertRule.from_record(await ctx.services.alerts.create(principal, org, spec))

    @strawberry.mutation(
        description="Replaces a rule's settings (its secrets stay). Enabling it clears the reason."
    )
    async def update_alert_rule(
        self, info: Info, org_id: strawberry.ID, id: strawberry.ID, input: AlertRuleInput
    ) -> AlertRule:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        org, spec = validate_rule(_rule_raw(org_id, input))
        return AlertRule.from_record(await ctx.services.alerts.update(principal, org, str(id), spec))

    @strawberry.mutation(description="Deletes a rule; its pending deliveries are not sent. False if none.")
    async def delete_alert_rule(self, info: Info, org_id: strawberry.ID, id: strawberry.ID) -> bool:
        ctx = info.context
        return await ctx.services.alerts.delete(ctx.principal_for(org_id), org_id, str(id))

    @strawberry.mutation(
        description="A new signing secret; deliveries are signed with it and the previous one until the next "
        "rotation."
    )
    async def rotate_alert_rule_secret(
        self, info: Info, org_id: strawberry.ID, id: strawberry.ID
    ) -> AlertRule:
        ctx = info.context
        rule = await ctx.services.alerts.rotate_secret(ctx.principal_for(org_id), org_id, str(id))
        return AlertRule.from_record(rule)

    @strawberry.mutation(description="Sends a delivery again now (the same webhook-id), whatever its state.")
    async def redeliver_alert(self, info: Info, org_id: strawberry.ID, id: strawberry.ID) -> AlertDelivery:
        ctx = info.context
        delivery = await ctx.services.alerts.redeliver(ctx.principal_for(org_id), org_id, str(id))
        return AlertDelivery.from_record(delivery)

    @strawberry.mutation(description="Sends a test alert to the rule's destination (tried once).")
    async def send_test_alert(self, info: Info, org_id: strawberry.ID, id: strawberry.ID) -> AlertDelivery:
        ctx = info.context
        delivery = await ctx.services.alerts.send_test(ctx.principal_for(org_id), org_id, str(id))
        return AlertDelivery.from_record(delivery)

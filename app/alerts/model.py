"""The alerting domain: rules, firings and deliveries as plain data (no GraphQL, no pymongo)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from app.events.model import Severity
from app.status.model import ServiceState


class Trigger(str, Enum):
    NEW_GROUP = "NEW_GROUP"
    REGRESSION = "REGRESSION"
    ESCALATING = "ESCALATING"
    FREQUENCY = "FREQUENCY"  # more than `threshold` events within `window_minutes`
    SERVICE_STATUS = "SERVICE_STATUS"  # a component enters `state`


class FrequencyScope(str, Enum):
    GROUP = "GROUP"
    ORGANIZATION = "ORGANIZATION"


class DestinationKind(str, Enum):
    WEBHOOK = "WEBHOOK"  # the generic JSON body
    SLACK = "SLACK"  # a Slack incoming-webhook body ({"text": ...})
    DISCORD = "DISCORD"  # a Discord webhook body ({"content": ...})


class DeliveryState(str, Enum):
    PENDING = "PENDING"  # waiting for its next attempt
    DELIVERED = "DELIVERED"  # a 2xx answer
    FAILED = "FAILED"  # out of attempts (retried for ALERT_RETRY_HOURS), or its destination was disabled


@dataclass(frozen=True, slots=True)
class AlertFilter:
    min_severity: Severity | None = None
    environment: str | None = None
    source: str | None = None
    tag: tuple[str, str] | None = None  # (key, value)


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: str
    org_id: str
    name: str
    trigger: Trigger
    destination: DestinationKind
    url: str
    secrets: tuple[str, ...]  # whsec_..., newest first; two during a rotation
    filter: AlertFilter = field(default_factory=AlertFilter)
    threshold: int | None = None  # FREQUENCY
    window_minutes: int | None = None  # FREQUENCY
    scope: FrequencyScope = FrequencyScope.GROUP  # FREQUENCY
    component: str | None = None  # SERVICE_STATUS: None for any component
    state: ServiceState | None = None  # SERVICE_STATUS
    throttle_minutes: int = 0  # at most one firing per rule and group (or component) within this
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: datetime | None = None  # the first failed attempt since the last success
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as a client describes it (create, or the full replacement of an update)."""

    name: str
    trigger: Trigger
    destination: DestinationKind
    url: str
    filter: AlertFilter
    threshold: int | None
    window_minutes: int | None
    scope: FrequencyScope
    component: str | None
    state: ServiceState | None
    throttle_minutes: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    status_code: int | None  # None: no answer (connection refused, timeout)
    latency_ms: float
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # msg_<ulid>: the webhook-id, the same on every attempt
    org_id: str
    rule_id: str
    trigger: Trigger
    body: str  # the exact JSON sent (signed as is)
    url: str
    state: DeliveryState
    attempts: tuple[Attempt, ...]
    due_at: datetime
    created_at: datetime
    test: bool = False
    fingerprint: str | None = None

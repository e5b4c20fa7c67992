"""Input rules of alert rules, checked with pydantic; every problem of one input reported at once."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.alerts.model import AlertFilter, DestinationKind, FrequencyScope, RuleSpec, Trigger
from app.core.errors import ErrorCode, FieldProblem, ValidationFailed
from app.core.validation import OrgId, app_error_from
from app.events.model import Severity
from app.status.model import COMPONENTS, ServiceState

MAX_THROTTLE_MINUTES = 7 * 24 * 60
MAX_WINDOW_MINUTES = 24 * 60


class _Tag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=32)
    value: str = Field(min_length=1, max_length=200)


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min_severity: Severity | None = Field(default=None, alias="minSeverity")
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    source: str | None = Field(default=None, min_length=1, max_length=128)
    tag: _Tag | None = None


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=100)
    trigger: Trigger
    destination: DestinationKind = DestinationKind.WEBHOOK
    url: str = Field(max_length=2000)
    filter: _Filter | None = None
    threshold: int | None = Field(default=None, ge=1, le=1_000_000)
    window_minutes: int | None = Field(default=None, alias="windowMinutes", ge=1, le=MAX_WINDOW_MINUTES)
    scope: FrequencyScope = FrequencyScope.GROUP
    component: str | None = None
    state: ServiceState | None = None
    throttle_minutes: int = Field(default=0, alias="throttleMinutes", ge=0, le=MAX_THROTTLE_MINUTES)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("Must be an http or https URL with a host")
        return value

    @field_validator("component")
    @classmethod
    def _known_component(cls, value: str | None) -> str | None:
        if value is not None and value not in COMPONENTS:
            raise ValueError(f"Must be one of {', '.join(COMPONENTS)}")
        return value


def _combination_problems(rule: dict[str, Any]) -> list[FieldProblem]:
    """What depends on the trigger, checked on what the client sent (reported beside field problems)."""
    trigger = getattr(rule.get("trigger"), "value", rule.get("trigger"))
    problems: list[FieldProblem] = []
    frequency = trigger == Trigger.FREQUENCY.value
    status = trigger == Trigger.SERVICE_STATUS.value
    for name, needed in (("threshold", frequency), ("windowMinutes", frequency), ("state", status)):
        if needed and rule.get(name) is None:
            problems.append(FieldProblem(f"input.{name}", f"Required with trigger {trigger}"))
        if not needed and rule.get(name) is not None:
            problems.append(FieldProblem(f"input.{name}", f"Not used with trigger {trigger}"))
    if not frequency and rule.get("scope") is not None:
        problems.append(FieldProblem("input.scope", f"Not used with trigger {trigger}"))
    if not status and rule.get("component") is not None:
        problems.append(FieldProblem("input.component", f"Not used with trigger {trigger}"))
    if status and rule.get("filter"):
        problems.append(FieldProblem("input.filter", "Service status has no event to filter"))
    return problems


def validate_rule(raw: dict[str, Any]) -> tuple[str, RuleSpec]:
    """(org id, rule) from createAlertRule / updateAlertRule arguments (GraphQL names)."""
    try:
        org_id = _Org.model_validate({"orgId": raw.get("orgId")}).org_id
    except ValidationError as exc:
        raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None
    given = raw.get("input") or {}
    combination = _combination_problems(given) if given.get("trigger") is not None else []
    try:
        rule = _Rule.model_validate(given)
    except ValidationError as exc:
        error = app_error_from(exc, {}, prefix="input")
        error.details = [*error.details, *combination]
        raise error from None
    if combination:
        raise ValidationFailed(details=combination)
    f = rule.filter or _Filter()
    return org_id, RuleSpec(
        name=rule.name,
        trigger=rule.trigger,
        destination=rule.destination,
        url=rule.url,
        filter=AlertFilter(
            f.min_severity, f.environment, f.source, (f.tag.key, f.tag.value) if f.tag else None
        ),
        threshold=rule.threshold,
        window_minutes=rule.window_minutes,
        scope=rule.scope,
        component=rule.component,
        state=rule.state,
        throttle_minutes=rule.throttle_minutes,
        enabled=rule.enabled,
    )


class _Org(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")

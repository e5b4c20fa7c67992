"""Validation of status-page input (GraphQL, CLI and push parameters alike): every problem of one input
reported together, under the field names the client wrote (camelCase).

Component names are checked against the known ones, passed as the validation context `names`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from app.core.errors import ErrorCode
from app.core.validation import app_error_from, parse_datetime
from app.status.model import ServiceState
from app.statuspage.model import IncidentImpact, IncidentStatus, MaintenanceStatus

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"
Text = Annotated[str, Field(min_length=1, max_length=5000)]
Title = Annotated[str, Field(min_length=1, max_length=200)]


class _Input(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _known(name: str, info: ValidationInfo) -> str:
    names = (info.context or {}).get("names")
    if names is not None and name not in names:
        raise ValueError(f"Unknown component {name!r}")
    return name


class ComponentInput(_Input):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=512)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    order: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    show_uptime: bool = True
    heartbeat_interval: float | None = Field(default=None, ge=1, le=86_400)
    heartbeat_grace: float = Field(default=0, ge=0, le=86_400)

    @field_validator("name")
    @classmethod
    def _free(cls, name: str, info: ValidationInfo) -> str:
        if name in (info.context or {}).get("reserved", ()):
            raise ValueError(f"{name!r} is a built-in component")
        return name


class ComponentChanges(_Input):
    description: str | None = Field(default=None, max_length=512)
    group: str | None = Field(default=None, pattern=NAME_PATTERN)
    order: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    show_uptime: bool | None = None


class AffectedInput(_Input):
    component: str
    status: ServiceState

    _check = field_validator("component")(_known)


class IncidentInput(_Input):
    name: Title
    message: Text
    status: IncidentStatus = IncidentStatus.INVESTIGATING
    impact: IncidentImpact = IncidentImpact.NONE
    components: list[AffectedInput] = Field(default_factory=list, max_length=100)


class IncidentUpdateInput(_Input):
    message: Text
    status: IncidentStatus
    impact: IncidentImpact | None = None
    components: list[AffectedInput] | None = Field(default=None, max_length=100)


class MaintenanceInput(_Input):
    name: Title
    message: Text
    starts_at: datetime
    ends_at: datetime
    components: list[str] = Field(min_length=1, max_length=100)

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _date(cls, value: Any) -> datetime:
        return parse_datetime(value)

    @field_validator("components")
    @classmethod
    def _components(cls, names: list[str], info: ValidationInfo) -> list[str]:
        for name in names:
            _known(name, info)
        return list(dict.fromkeys(names))

    @field_validator("ends_at")
    @classmethod
    def _window(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and ends_at <= starts_at:
            raise ValueError("The window must end after it starts")
        return ends_at


class MaintenanceUpdateInput(_Input):
    message: Text
    status: MaintenanceStatus


T = TypeVar("T", bound=BaseModel)


def validate(model: type[T], raw: dict[str, Any], prefix: str = "input", **context: Any) -> T:
    """The validated input, or one catalogued error listing every problem."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        raise app_error_from(exc, {}, ErrorCode.VALIDATION_ERROR, prefix=prefix) from None

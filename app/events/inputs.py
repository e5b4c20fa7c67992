"""The input rules of the error-event operations, checked with pydantic at the edge.

Field names and aliases are the GraphQL names, so `details[].field` reads as the client wrote it
(`error.message`, `filter.from`). Every rule is listed in docs/api.md, "Input rules".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.core.errors import ErrorCode
from app.core.paging import DEFAULT_PAGE
from app.core.validation import DateTimeIn, OrgId, PageSize, app_error_from, matching
from app.events.model import EventFilter, EventQuery, NewEvent, Severity, SortOrder, decode_event_cursor

MAX_MESSAGE_CHARS = 8192
MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 5
MAX_FUTURE_SKEW = timedelta(minutes=5)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # ids are ULIDs, which start at the Unix epoch

_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")
_IDEMPOTENCY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# Reporter-supplied codes and source names: printable, no spaces, safe in logs and URLs.
Token = Annotated[
    str,
    matching(
        _TOKEN_RE,
        "Must be 1 to 128 characters of letters, digits and . _ : / @ - starting with a letter or digit",
    ),
]
IdempotencyKey = Annotated[
    str,
    matching(_IDEMPOTENCY_RE, "Idempotency key must be 1 to 128 characters of A-Z a-z 0-9 . _ : -"),
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


MAX_TAGS = 50
_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
_LABEL_RE = re.compile(r"^[^\r\n]*\S[^\r\n]*$")  # one line, not blank
TagKey = Annotated[str, matching(_TAG_KEY_RE, "Tag key must be 1 to 32 of A-Z a-z 0-9 _ . : -")]
TagValue = Annotated[str, Field(max_length=200), matching(_LABEL_RE, "Tag value must be one line, not blank")]
Environment = Annotated[
    str, Field(max_length=64), matching(_LABEL_RE, "Environment must be one line, not blank")
]
Release = Annotated[str, Field(max_length=200), matching(_LABEL_RE, "Release must be one line, not blank")]


class TagModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: TagKey
    value: TagValue


def _json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_json_depth(v) for v in value), default=0)
    return 0


class LogErrorInputModel(_Input):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    severity: Severity
    timestamp: DateTimeIn | None = None
    code: Token | None = None
    source: Token | None = None
    fingerprint: Token | None = None
    context: Any = None
    environment: Environment | None = None
    release: Release | None = None
    tags: list[TagModel] | None = Field(default=None, max_length=MAX_TAGS)

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Message must not be blank")
        return value

    @field_validator("timestamp")
    @classmethod
    def _plausible_time(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        now = datetime.now(UTC)
        if value > now + MAX_FUTURE_SKEW:
            raise ValueError("Timestamp must not be more than 5 minutes in the future")
        if value < EARLIEST:
            raise ValueError("Timestamp must not be before 1970-01-01T00:00:00Z")
        # An event older than the retention window would be acknowledged and then removed by the
        # database within a minute: refused instead, so that an acknowledged write is never lost.
        retention_days = (info.context or {}).get("retention_days") or 0
        if retention_days and value < now - timedelta(days=retention_days):
            raise ValueError(
                f"Timestamp is older than the retention window of {retention_days:g} days: events are kept "
                f"for {retention_days:g} days after their timestamp, so this one would be removed at once"
            )
        return value

    @field_validator("context")
    @classmethod
    def _bounded_object(cls, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("Context must be a JSON object")
        try:
            size = len(orjson.dumps(value))
        except (TypeError, orjson.JSONEncodeError):
            raise ValueError("Context must be encodable as JSON") from None
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"Context must be at most {MAX_CONTEXT_BYTES} bytes as JSON")
        if _json_depth(value) > MAX_CONTEXT_DEPTH:
            raise ValueError(f"Context must be nested at most {MAX_CONTEXT_DEPTH} levels deep")
        return value


class LogErrorArgs(_Input):
    org_id: OrgId = Field(alias="orgId")
    error: LogErrorInputModel
    idempotency_key: IdempotencyKey | None = Field(default=None, alias="idempotencyKey")


class FilterModel(_Input):
    severities: list[Severity] | None = Field(default=None, max_length=len(Severity))
    min_severity: Severity | None = Field(default=None, alias="minSeverity")
    from_: DateTimeIn | None = Field(default=None, alias="from")
    to: DateTimeIn | None = None
    code: str | None = Field(default=None, min_length=1, max_length=128)
    source: str | None = Field(default=None, min_length=1, max_length=128)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=128)
    search: str | None = Field(default=None, min_length=1, max_length=256)
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    release: str | None = Field(default=None, min_length=1, max_length=200)
    tag: TagModel | None = None
    handled: bool | None = None

    @model_validator(mode="after")
    def _ordered_range(self) -> FilterModel:
        if self.from_ and self.to and self.to <= self.from_:
            raise ValueError("filter.to must be later than filter.from")
        return self

    def to_domain(self) -> EventFilter:
        severities: frozenset[Severity] | None = None
        if self.severities is not None:
            severities = frozenset(self.severities)
        if self.min_severity is not None:
            above = self.min_severity.and_above()
            severities = above if severities is None else severities & above
        return EventFilter(
            severities=severities,
            from_=self.from_,
            to=self.to,
            code=self.code,
            source=self.source,
            fingerprint=self.fingerprint,
            search=self.search,
            environment=self.environment,
            release=self.release,
            tag=(self.tag.key, self.tag.value) if self.tag else None,
            handled=self.handled,
        )


class OrgErrorsArgs(_Input):
    org_id: OrgId = Field(alias="orgId")
    filter: FilterModel | None = None
    first: PageSize = DEFAULT_PAGE
    after: str | None = None
    sort_order: SortOrder = Field(default=SortOrder.DESC, alias="sortOrder")

    @field_validator("after")
    @classmethod
    def _decodable(cls, value: str | None) -> str | None:
        return None if value is None else decode_event_cursor(value)

    def to_domain(self) -> EventQuery:
        return EventQuery(
            org_id=self.org_id,
            filter=self.filter.to_domain() if self.filter else EventFilter(),
            first=self.first,
            after=self.after,
            order=self.sort_order,
        )


def validate_log_error(raw: dict[str, Any], *, retention_days: float = 0) -> tuple[str, NewEvent, str | None]:
    """(org_id, event, idempotency key) or one AppError listing every problem. With `retention_days`
    (0: events are kept forever), a timestamp older than the retention window is one of them."""
    try:
        args = LogErrorArgs.model_validate(raw, context={"retention_days": retention_days})
    except ValidationError as exc:
        raise app_error_from(
            exc,
            {"orgId": ErrorCode.INVALID_REQUEST, "idempotencyKey": ErrorCode.INVALID_REQUEST},
            default=ErrorCode.VALIDATION_ERROR,
        ) from None
    e = args.error
    event = NewEvent(
        message=e.message,
        severity=e.severity,
        timestamp=e.timestamp,
        code=e.code,
        source=e.source,
        context=e.context,
        fingerprint=e.fingerprint,
        environment=e.environment,
        release=e.release,
        tags={t.key: t.value for t in e.tags} if e.tags else None,
    )
    return args.org_id, event, args.idempotency_key


def validate_org_errors(raw: dict[str, Any]) -> EventQuery:
    try:
        return OrgErrorsArgs.model_validate(raw).to_domain()
    except ValidationError as exc:
        raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None

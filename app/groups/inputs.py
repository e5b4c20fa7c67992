"""Input rules of the group operations, checked with pydantic; every problem of one input reported at once."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from app.core.errors import ErrorCode, FieldProblem, ValidationFailed
from app.core.paging import DEFAULT_PAGE, SortOrder
from app.core.validation import DateTimeIn, OrgId, PageSize, app_error_from
from app.events.model import Severity
from app.groups.model import (
    GroupChange,
    GroupFilter,
    GroupOrderField,
    GroupQuery,
    GroupStatus,
    GroupSubstatus,
    IgnoreCondition,
    IgnoreKind,
    Resolution,
    ResolveKind,
    decode_group_cursor,
)

MAX_ASSIGNEE = 128
MAX_COMMENT = 4000
MAX_IGNORE_COUNT = 1_000_000
MAX_WINDOW_MINUTES = 7 * 24 * 60


class _GroupFilterModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min_severity: Severity | None = Field(default=None, alias="minSeverity")
    source: str | None = Field(default=None, min_length=1, max_length=128)
    search: str | None = Field(default=None, min_length=1, max_length=256)
    statuses: list[GroupStatus] | None = Field(default=None, max_length=3)
    substatuses: list[GroupSubstatus] | None = Field(default=None, max_length=4)
    assignee: str | None = Field(default=None, min_length=1, max_length=MAX_ASSIGNEE)
    unassigned: bool = False


class _OrderModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: GroupOrderField = GroupOrderField.LAST_SEEN
    direction: SortOrder = SortOrder.DESC


class _GroupArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    filter: _GroupFilterModel | None = None
    first: PageSize = DEFAULT_PAGE
    order_by: _OrderModel = Field(default_factory=_OrderModel, alias="orderBy")
    after: str | None = None  # after order_by: its check needs the order

    @field_validator("after")
    @classmethod
    def _cursor_of_this_order(cls, value: str | None, info: ValidationInfo) -> str | None:
        order = info.data.get("order_by")
        if value is not None and order is not None:
            decode_group_cursor(value, order.field)
        return value


def validate_group_args(raw: dict[str, Any]) -> GroupQuery:
    try:
        args = _GroupArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None
    flt = args.filter or _GroupFilterModel()
    return GroupQuery(
        org_id=args.org_id,
        filter=GroupFilter(
            min_severity=flt.min_severity,
            source=flt.source,
            search=flt.search,
            statuses=frozenset(flt.statuses) if flt.statuses is not None else None,
            substatuses=frozenset(flt.substatuses) if flt.substatuses is not None else None,
            assignee=flt.assignee,
            unassigned=flt.unassigned,
        ),
        first=args.first,
        after=decode_group_cursor(args.after, args.order_by.field) if args.after else None,
        order_by=args.order_by.field,
        direction=args.order_by.direction,
    )


class _ResolutionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: ResolveKind = ResolveKind.NOW
    release: str | None = Field(default=None, min_length=1, max_length=200)


class _IgnoreModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: IgnoreKind = IgnoreKind.FOREVER
    count: int | None = Field(default=None, ge=1, le=MAX_IGNORE_COUNT)
    window_minutes: int | None = Field(default=None, alias="windowMinutes", ge=1, le=MAX_WINDOW_MINUTES)
    until: DateTimeIn | None = None


class _UpdateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: GroupStatus | None = None
    resolution: _ResolutionModel | None = None
    ignore: _IgnoreModel | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=MAX_ASSIGNEE)


class _UpdateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    fingerprint: str = Field(min_length=1, max_length=128)
    input: _UpdateModel


_IGNORE_NEEDS = {
    IgnoreKind.FOREVER.value: set(),
    IgnoreKind.UNTIL_COUNT.value: {"count"},
    IgnoreKind.UNTIL_RATE.value: {"count", "windowMinutes"},
    IgnoreKind.UNTIL_TIME.value: {"until"},
}


def _combination_problems(given: dict[str, Any]) -> list[FieldProblem]:
    """The rules between the fields of updateErrorGroup's input, checked on what the client sent so that
    they are reported beside the problems of the fields themselves."""
    problems: list[FieldProblem] = []
    status = given.get("status")
    status = getattr(status, "value", status)
    if status is None and "assignee" not in given:
        problems.append(FieldProblem("input", "Give a status, an assignee, or both"))
    resolution = given.get("resolution")
    if resolution is not None:
        if status != GroupStatus.RESOLVED.value:
            problems.append(FieldProblem("input.resolution", "Only given with status RESOLVED"))
        kind = getattr(resolution.get("kind"), "value", resolution.get("kind")) or ResolveKind.NOW.value
        if kind == ResolveKind.IN_RELEASE.value and resolution.get("release") is None:
            problems.append(FieldProblem("input.resolution.release", "Required when kind is IN_RELEASE"))
        if kind != ResolveKind.IN_RELEASE.value and resolution.get("release") is not None:
            problems.append(FieldProblem("input.resolution.release", "Only given when kind is IN_RELEASE"))
    ignore = given.get("ignore")
    if status == GroupStatus.IGNORED.value and ignore is None:
        problems.append(FieldProblem("input.ignore", "Required with status IGNORED"))
    if ignore is not None:
        if status != GroupStatus.IGNORED.value:
            problems.append(FieldProblem("input.ignore", "Only given with status IGNORED"))
        kind = getattr(ignore.get("kind"), "value", ignore.get("kind")) or IgnoreKind.FOREVER.value
        needs = _IGNORE_NEEDS.get(kind, set())
        present = {n for n in ("count", "windowMinutes", "until") if ignore.get(n) is not None}
        for name in sorted(needs - present):
            problems.append(FieldProblem(f"input.ignore.{name}", f"Required when kind is {kind}"))
        for name in sorted(present - needs):
            problems.append(FieldProblem(f"input.ignore.{name}", f"Not used when kind is {kind}"))
    return problems


def validate_update(raw: dict[str, Any]) -> tuple[str, str, GroupChange]:
    """updateErrorGroup's arguments (GraphQL names; `input.assignee` null clears it)."""
    combination = _combination_problems(raw.get("input") or {})
    try:
        args = _UpdateArgs.model_validate(raw)
    except ValidationError as exc:
        error = app_error_from(exc, {"orgId": ErrorCode.INVALID_REQUEST})
        error.details = [*error.details, *combination]
        raise error from None
    if combination:
        raise ValidationFailed(details=combination)
    given = args.input
    resolution = given.resolution
    ignore = given.ignore
    change = GroupChange(
        status=given.status,
        resolution=Resolution(resolution.kind, resolution.release) if resolution else None,
        ignore=IgnoreCondition(ignore.kind, ignore.count, ignore.window_minutes, ignore.until)
        if ignore
        else None,
        assignee=given.assignee,
        set_assignee="assignee" in given.model_fields_set,
    )
    return args.org_id, args.fingerprint, change


class _CommentArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    fingerprint: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=MAX_COMMENT)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Comment must not be blank")
        return value


def validate_comment(raw: dict[str, Any]) -> tuple[str, str, str]:
    try:
        args = _CommentArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {"orgId": ErrorCode.INVALID_REQUEST}) from None
    return args.org_id, args.fingerprint, args.text


class _MergeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    source: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=1, max_length=128)


def validate_merge(raw: dict[str, Any]) -> tuple[str, str, str]:
    try:
        args = _MergeArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {"orgId": ErrorCode.INVALID_REQUEST}) from None
    return args.org_id, args.source, args.target

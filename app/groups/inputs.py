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
    model_validator,
)

from app.core.errors import ErrorCode
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

    @model_validator(mode="after")
    def _release_when_in_release(self) -> _ResolutionModel:
        if self.kind is ResolveKind.IN_RELEASE and self.release is None:
            raise ValueError("release is required when kind is IN_RELEASE")
        if self.kind is not ResolveKind.IN_RELEASE and self.release is not None:
            raise ValueError("release is only given when kind is IN_RELEASE")
        return self


class _IgnoreModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: IgnoreKind = IgnoreKind.FOREVER
    count: int | None = Field(default=None, ge=1, le=MAX_IGNORE_COUNT)
    window_minutes: int | None = Field(default=None, alias="windowMinutes", ge=1, le=MAX_WINDOW_MINUTES)
    until: DateTimeIn | None = None

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> _IgnoreModel:
        needs = {
            IgnoreKind.FOREVER: set(),
            IgnoreKind.UNTIL_COUNT: {"count"},
            IgnoreKind.UNTIL_RATE: {"count", "windowMinutes"},
            IgnoreKind.UNTIL_TIME: {"until"},
        }[self.kind]
        given = {
            name
            for name, value in (
                ("count", self.count),
                ("windowMinutes", self.window_minutes),
                ("until", self.until),
            )
            if value is not None
        }
        problems = [f"{n} is required when kind is {self.kind.value}" for n in sorted(needs - given)]
        problems += [f"{n} is not used when kind is {self.kind.value}" for n in sorted(given - needs)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class _UpdateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: GroupStatus | None = None
    resolution: _ResolutionModel | None = None
    ignore: _IgnoreModel | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=MAX_ASSIGNEE)

    @model_validator(mode="after")
    def _consistent(self) -> _UpdateModel:
        problems = []
        if self.status is None and "assignee" not in self.model_fields_set:
            problems.append("Give a status, an assignee, or both")
        if self.resolution is not None and self.status is not GroupStatus.RESOLVED:
            problems.append("resolution is only given with status RESOLVED")
        if self.ignore is not None and self.status is not GroupStatus.IGNORED:
            problems.append("ignore is only given with status IGNORED")
        if self.status is GroupStatus.IGNORED and self.ignore is None:
            problems.append("ignore is required with status IGNORED")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class _UpdateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    fingerprint: str = Field(min_length=1, max_length=128)
    input: _UpdateModel


def validate_update(raw: dict[str, Any]) -> tuple[str, str, GroupChange]:
    """updateErrorGroup's arguments (GraphQL names; `input.assignee` null clears it)."""
    try:
        args = _UpdateArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {"orgId": ErrorCode.INVALID_REQUEST}) from None
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

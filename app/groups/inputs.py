"""Input rules of the group operations, checked with pydantic; every problem of one input reported at once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from app.core.errors import ErrorCode
from app.core.paging import DEFAULT_PAGE, SortOrder
from app.core.validation import OrgId, PageSize, app_error_from
from app.events.model import Severity
from app.groups.model import GroupFilter, GroupOrderField, GroupQuery, decode_group_cursor


class _GroupFilterModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min_severity: Severity | None = Field(default=None, alias="minSeverity")
    source: str | None = Field(default=None, min_length=1, max_length=128)
    search: str | None = Field(default=None, min_length=1, max_length=256)


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
        filter=GroupFilter(min_severity=flt.min_severity, source=flt.source, search=flt.search),
        first=args.first,
        after=decode_group_cursor(args.after, args.order_by.field) if args.after else None,
        order_by=args.order_by.field,
        direction=args.order_by.direction,
    )

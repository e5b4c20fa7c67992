"""Input rules of errorStats, checked with pydantic; every problem of one input reported at once."""

from __future__ import annotations

from datetime import datetime
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
from app.core.validation import DateTimeIn, OrgId, app_error_from
from app.events.inputs import TagKey
from app.stats.model import Interval, StatsGroupBy, StatsQuery


class _StatsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    interval: Interval = Interval.HOUR
    group_by: StatsGroupBy | None = Field(default=None, alias="groupBy")
    tag_key: TagKey | None = Field(default=None, alias="tagKey")
    from_: DateTimeIn = Field(alias="from")
    to: DateTimeIn

    @model_validator(mode="after")
    def _tag_key_with_tag(self) -> _StatsArgs:
        if (self.group_by is StatsGroupBy.TAG) != (self.tag_key is not None):
            raise ValueError("tagKey is required with groupBy: TAG, and only then")
        return self

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("from_")
        if start is not None and value <= start:
            raise ValueError("to must be later than from")
        return value


def validate_stats(raw: dict[str, Any]) -> StatsQuery:
    """errorStats' arguments (GraphQL names, omitted ones left out)."""
    try:
        args = _StatsArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None
    return StatsQuery(args.org_id, args.interval, args.group_by, args.from_, args.to, args.tag_key)

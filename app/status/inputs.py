"""Input rules of the status API, checked with pydantic; every problem of one input reported at once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core.errors import ErrorCode
from app.core.paging import DEFAULT_PAGE
from app.core.validation import PageSize, app_error_from
from app.status.model import HistoryQuery, decode_status_position


class _HistoryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str | None = Field(default=None, max_length=64)
    first: PageSize = DEFAULT_PAGE
    after: int | None = None

    @field_validator("after", mode="before")
    @classmethod
    def _position(cls, value: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("Malformed position")
        return decode_status_position(value)


def validate_history(raw: dict[str, Any]) -> HistoryQuery:
    """statusHistory's arguments (GraphQL names, omitted ones left out)."""
    try:
        args = _HistoryArgs.model_validate(raw)
    except ValidationError as exc:
        raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None
    return HistoryQuery(service=args.service, first=args.first, before=args.after)

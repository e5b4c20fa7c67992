"""GraphQL scalars.

DateTime input is passed through untouched and parsed by the pydantic input models, so that a bad
date is reported as INVALID_DATE_FORMAT with its field path, together with every other problem of
the same input, instead of as an anonymous variable-coercion failure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NewType

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from app.core.clock import format_datetime

__all__ = ["JSON", "SCALAR_MAP", "DateTime"]


def _serialize(value: Any) -> str:
    if isinstance(value, datetime):
        return format_datetime(value)
    raise TypeError(f"DateTime cannot represent {type(value).__name__}")


DateTime = NewType("DateTime", object)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    DateTime: strawberry.scalar(
        name="DateTime",
        description="ISO 8601 date-time. Output: always UTC with millisecond precision "
        "(2025-11-20T17:00:00.000Z). Input: any ISO 8601 offset, converted to UTC; without an offset "
        "the time is read as UTC; anything else is INVALID_DATE_FORMAT.",
        serialize=_serialize,
        parse_value=lambda value: value,
    )
}

"""Turning pydantic validation failures into one catalogued error that lists every problem.

Callers say which catalog code a broken top-level field means (`field_codes`); when several codes
apply to one input, the most basic wins (a malformed argument before a bad date before a broken rule),
and `details` still lists every problem so the client can fix them all in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from app.core.clock import truncate_ms
from app.core.errors import (
    AppError,
    ErrorCode,
    FieldProblem,
    InvalidDateFormat,
    InvalidRequest,
    ValidationFailed,
)
from app.core.paging import check_page_size

T = TypeVar("T")

# `first` of every list: 1..MAX_PAGE, with the catalogued wording.
PageSize = Annotated[int, AfterValidator(check_page_size)]

# Error types raised by `parse_datetime`; recognised below whatever field they sit on. A well-formed date
# outside the range event ids, timestamps and buckets can express is a VALIDATION_ERROR.
DATE_ERROR_TYPE = "invalid_date_format"
DATE_RANGE_ERROR_TYPE = "date_out_of_range"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

_PRIORITY = (ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_DATE_FORMAT, ErrorCode.VALIDATION_ERROR)
_EXCEPTIONS: dict[ErrorCode, type[AppError]] = {
    ErrorCode.INVALID_REQUEST: InvalidRequest,
    ErrorCode.INVALID_DATE_FORMAT: InvalidDateFormat,
    ErrorCode.VALIDATION_ERROR: ValidationFailed,
}


def parse_datetime(value: Any) -> datetime:
    """ISO 8601 text to an aware UTC datetime truncated to milliseconds (the stored precision).

    A value without an offset is read as UTC. Anything else raises the date error type."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and 0 < len(value) <= 64:
        text = value.strip()
        # Python 3.11 reads "Z" and most ISO 8601 forms; lowercase "z" and "t" are ISO-legal too.
        text = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            parsed = datetime.fromisoformat(text.replace("t", "T", 1))
        except ValueError:
            raise PydanticCustomError(
                DATE_ERROR_TYPE, "Invalid date format: expected ISO 8601, e.g. 2025-11-20T17:00:00Z"
            ) from None
    else:
        raise PydanticCustomError(DATE_ERROR_TYPE, "Invalid date format: expected an ISO 8601 string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-05:00 is past the last representable instant
        parsed = datetime.max.replace(tzinfo=UTC)
    if not EARLIEST <= parsed < LATEST:
        raise PydanticCustomError(
            DATE_RANGE_ERROR_TYPE,
            "Date out of range: must be from 1970-01-01T00:00:00Z up to (not including) 9999-01-01T00:00:00Z",
        )
    return truncate_ms(parsed)


def matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    """A pydantic check that a string matches `pattern`, failing with `rule` as the message."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
SLUG_RULE = "must be a slug of 1 to 64 lowercase letters, digits and inner hyphens"

# Input types shared by the domains' input models.
DateTimeIn = Annotated[datetime, BeforeValidator(parse_datetime)]
OrgId = Annotated[str, matching(SLUG_RE, f"Organization id {SLUG_RULE}")]


def app_error_from(
    exc: ValidationError,
    field_codes: dict[str, ErrorCode],
    default: ErrorCode = ErrorCode.VALIDATION_ERROR,
    prefix: str = "",
) -> AppError:
    """One AppError for every problem in `exc`; `field_codes` maps a top-level field to its code."""
    details: list[FieldProblem] = []
    codes: set[ErrorCode] = set()
    for problem in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in problem["loc"]]
        field = ".".join(([prefix] if prefix else []) + loc) or prefix or "input"
        if problem["type"] == DATE_ERROR_TYPE:
            codes.add(ErrorCode.INVALID_DATE_FORMAT)
        elif problem["type"] == DATE_RANGE_ERROR_TYPE:
            codes.add(ErrorCode.VALIDATION_ERROR)
        else:
            codes.add(field_codes.get(loc[0] if loc else "", default))
        details.append(FieldProblem(field=field, message=_clean(problem["msg"])))
    code = next((c for c in _PRIORITY if c in codes), ErrorCode.VALIDATION_ERROR)
    return _EXCEPTIONS[code](details=details)


def _clean(message: str) -> str:
    # pydantic prefixes messages raised from validators with "Value error, ".
    return message.removeprefix("Value error, ")


def decode_argument(decode: Callable[[str], T], value: str, field: str) -> T:
    """`decode(value)`, or INVALID_REQUEST naming `field` with the decoder's message (cursors, positions)."""
    try:
        return decode(value)
    except ValueError as exc:
        raise InvalidRequest(details=[FieldProblem(field, str(exc))]) from None

"""Time: the one place that reads the wall clock and converts instants.

Instants are stored with millisecond precision (MongoDB's date type), so every `now` is truncated to the
millisecond and every conversion to and from epoch milliseconds lives here. Tests that need to control
time replace `Clock` instances, never patch `datetime`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def truncate_ms(moment: datetime) -> datetime:
    """The same instant without sub-millisecond digits (the stored precision)."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def utc_now() -> datetime:
    """The current time, aware, UTC, truncated to the millisecond."""
    return truncate_ms(datetime.now(UTC))


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int | float) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def format_datetime(value: datetime) -> str:
    """UTC with millisecond precision: 2025-11-20T17:00:00.000Z (a naive value is taken as UTC).
    Formats first and looks at the offset after: a list page formats 40 of these, nearly all UTC."""
    text = value.isoformat(timespec="milliseconds")
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    if value.tzinfo is None:
        return text + "Z"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"

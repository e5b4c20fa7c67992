"""The error-group domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from app.core import cursors
from app.core.clock import to_ms
from app.core.paging import SortOrder
from app.events.model import Severity


class GroupOrderField(str, Enum):
    LAST_SEEN = "LAST_SEEN"
    FIRST_SEEN = "FIRST_SEEN"
    OCCURRENCES = "OCCURRENCES"
    SEVERITY = "SEVERITY"


@dataclass(frozen=True, slots=True)
class ErrorGroupRecord:
    org_id: str
    fingerprint: str
    message: str  # the first event's message
    source: str | None
    code: str | None
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    max_severity: Severity
    latest_event_id: str
    environments: list[str] = field(default_factory=list)  # every environment its events came from
    releases: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupFilter:
    min_severity: Severity | None = None
    source: str | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class GroupQuery:
    org_id: str
    filter: GroupFilter
    first: int
    after: tuple[int, str] | None  # (sort value, fingerprint) of the last group seen
    order_by: GroupOrderField
    direction: SortOrder


@dataclass(frozen=True, slots=True)
class GroupPage:
    groups: list[ErrorGroupRecord]
    has_next_page: bool


# A page cursor: the order it belongs to, the sort value and fingerprint of the last group seen. A cursor
# from another ordering is refused rather than silently misread.
_CURSOR_TAG = "g1"
_CURSOR = re.compile(r"([A-Z_]+):(-?\d{1,19}):([A-Za-z0-9._:/@-]{1,128})")


def sort_value(group: ErrorGroupRecord, field: GroupOrderField) -> int:
    """The value `field` orders groups by (times in epoch milliseconds)."""
    if field is GroupOrderField.LAST_SEEN:
        return to_ms(group.last_seen)
    if field is GroupOrderField.FIRST_SEEN:
        return to_ms(group.first_seen)
    if field is GroupOrderField.OCCURRENCES:
        return group.occurrences
    return group.max_severity.rank


def group_cursor(order: GroupOrderField, group: ErrorGroupRecord) -> str:
    return cursors.encode(_CURSOR_TAG, order.value, sort_value(group, order), group.fingerprint)


def decode_group_cursor(token: str, order: GroupOrderField) -> tuple[int, str]:
    """(sort value, fingerprint) of the last group of a page in `order`; ValueError otherwise."""
    field, value, fingerprint = cursors.decode(token, _CURSOR_TAG, _CURSOR)
    if field != order.value:
        raise ValueError("Cursor belongs to another orderBy")
    return int(value), fingerprint

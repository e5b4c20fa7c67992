"""The error-event domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from app.core import cursors
from app.core.paging import SortOrder

__all__ = ["ErrorEventRecord", "EventFilter", "EventPage", "EventQuery", "NewEvent", "Severity", "SortOrder"]

# Page cursors name the last event of a page by its id. Ids are ULIDs whose time part is the event's
# timestamp, so "after this id" is a stable position in timestamp order: events inserted later land
# before or after it, never shift it, and a page never repeats or skips an event that already existed.
_CURSOR_TAG = "v1"
_EVENT_ID = re.compile(r"error-[0-9A-HJKMNP-TV-Z]{26}")
_POSITION_TAG = "p1"


def event_cursor(event_id: str) -> str:
    return cursors.encode(_CURSOR_TAG, event_id)


def decode_event_cursor(token: str) -> str:
    """The event id inside a page cursor; ValueError when it is not one of ours."""
    (event_id,) = cursors.decode(token, _CURSOR_TAG, _EVENT_ID, max_length=128)
    return event_id


def feed_position(seq: int) -> str:
    """An event's place in the live feed: `errorLogged(after:)` resumes from it."""
    return cursors.encode_position(_POSITION_TAG, seq)


def decode_feed_position(token: str) -> int:
    return cursors.decode_position(token, _POSITION_TAG)


class Severity(str, Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def and_above(self) -> frozenset[Severity]:
        return frozenset(s for s in Severity if s.rank >= self.rank)


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


@dataclass(frozen=True, slots=True)
class ErrorEventRecord:
    id: str
    org_id: str
    message: str
    severity: Severity
    timestamp: datetime
    received_at: datetime
    code: str | None
    source: str | None
    context: dict[str, Any] | None
    fingerprint: str
    seq: int | None = None  # insertion order across all instances: the live feed's position


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A validated event as the reporter sent it (timestamp None: use the receive time)."""

    message: str
    severity: Severity
    timestamp: datetime | None
    code: str | None
    source: str | None
    context: dict[str, Any] | None
    fingerprint: str | None = None  # the reporter's own grouping key, if sent


@dataclass(frozen=True, slots=True)
class EventFilter:
    severities: frozenset[Severity] | None = None  # None: any severity
    from_: datetime | None = None  # inclusive
    to: datetime | None = None  # exclusive
    code: str | None = None
    source: str | None = None
    fingerprint: str | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    org_id: str
    filter: EventFilter
    first: int
    after: str | None  # the event id the page starts after, decoded from the cursor
    order: SortOrder


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[ErrorEventRecord]
    has_next_page: bool

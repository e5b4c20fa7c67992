"""The error-event domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


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


class SortOrder(str, Enum):
    ASC = "ASC"
    DESC = "DESC"


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

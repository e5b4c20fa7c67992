"""The error-group domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from app.events.model import Severity, SortOrder


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

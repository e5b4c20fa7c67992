"""The error-group domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from app.core import cursors
from app.core.clock import to_ms
from app.core.paging import SortOrder
from app.events.model import ErrorEventRecord, Severity


class GroupStatus(str, Enum):
    UNRESOLVED = "UNRESOLVED"
    RESOLVED = "RESOLVED"
    IGNORED = "IGNORED"


class GroupSubstatus(str, Enum):
    NEW = "NEW"  # first seen less than NEW_GROUP_DAYS ago
    ONGOING = "ONGOING"
    REGRESSED = "REGRESSED"  # came back after it was resolved
    ESCALATING = "ESCALATING"  # far more events this hour than its recent rate


class ResolveKind(str, Enum):
    NOW = "NOW"
    IN_RELEASE = "IN_RELEASE"
    IN_NEXT_RELEASE = "IN_NEXT_RELEASE"


class IgnoreKind(str, Enum):
    FOREVER = "FOREVER"
    UNTIL_COUNT = "UNTIL_COUNT"  # until `count` more events
    UNTIL_RATE = "UNTIL_RATE"  # until `count` events within `window_minutes`
    UNTIL_TIME = "UNTIL_TIME"  # until `until`


class ActivityKind(str, Enum):
    FIRST_SEEN = "FIRST_SEEN"
    STATUS_CHANGED = "STATUS_CHANGED"
    ASSIGNED = "ASSIGNED"
    COMMENTED = "COMMENTED"
    MERGED = "MERGED"  # another fingerprint now counts into this group
    UNMERGED = "UNMERGED"


class ActivityCause(str, Enum):
    PERSON = "PERSON"  # a credential's holder, named by `actor`
    FIRST_EVENT = "FIRST_EVENT"
    REGRESSION = "REGRESSION"
    ESCALATION = "ESCALATION"
    IGNORE_ENDED = "IGNORE_ENDED"
    AGED = "AGED"  # NEW became ONGOING


NEW_GROUP_DAYS = 7


@dataclass(frozen=True, slots=True)
class Resolution:
    kind: ResolveKind
    # IN_RELEASE: the fixing release. NOW and IN_NEXT_RELEASE: the newest release the group had seen when
    # it was resolved (None: none), the line events are compared against.
    release: str | None = None


@dataclass(frozen=True, slots=True)
class IgnoreCondition:
    kind: IgnoreKind
    count: int | None = None
    window_minutes: int | None = None
    until: datetime | None = None
    baseline: int = 0  # the group's occurrences when it was ignored (UNTIL_COUNT counts from there)
    since: datetime | None = None  # when it was ignored (UNTIL_RATE counts events from then on)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: a credential's name and its public prefix (etk_<key id>)."""

    name: str | None
    prefix: str


@dataclass(frozen=True, slots=True)
class GroupChange:
    """What one update asks for: only the given parts change."""

    status: GroupStatus | None = None
    resolution: Resolution | None = None
    ignore: IgnoreCondition | None = None
    assignee: str | None = None
    set_assignee: bool = False  # assignee given (None then clears it)


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    seq: int  # position across the organization's groups: the errorGroupChanged stream's order
    org_id: str
    fingerprint: str
    kind: ActivityKind
    cause: ActivityCause
    actor: Actor | None
    at: datetime
    status: GroupStatus
    substatus: GroupSubstatus
    assignee: str | None = None
    text: str | None = None  # a comment, or the other fingerprint of a merge
    release: str | None = None  # the event's release, for a regression
    # The event that caused it (automatic changes; not stored): what alert rules filter on.
    event: ErrorEventRecord | None = field(default=None, compare=False)


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
    status: GroupStatus = GroupStatus.UNRESOLVED
    substatus: GroupSubstatus = GroupSubstatus.NEW
    assignee: str | None = None
    resolution: Resolution | None = None
    ignore: IgnoreCondition | None = None
    last_release: str | None = None  # the release of the latest event that had one
    revision: int = 0  # bumped by every status change: a change applies only to the state it was made from
    hourly: dict[int, int] = field(default_factory=dict)  # received events per hour (start ms), recent
    created: datetime | None = None  # when the server first counted it


@dataclass(frozen=True, slots=True)
class GroupFilter:
    min_severity: Severity | None = None
    source: str | None = None
    search: str | None = None
    statuses: frozenset[GroupStatus] | None = None
    substatuses: frozenset[GroupSubstatus] | None = None
    assignee: str | None = None
    unassigned: bool = False


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


_ACTIVITY_TAG = "a1"


def activity_position(seq: int) -> str:
    """An activity entry's place: errorGroupChanged(after:) resumes after it, ErrorGroup.activity(after:)
    pages past it."""
    return cursors.encode_position(_ACTIVITY_TAG, seq)


def decode_activity_position(token: str) -> int:
    return cursors.decode_position(token, _ACTIVITY_TAG)

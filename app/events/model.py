"""The error-event domain: plain data, no GraphQL and no pymongo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import msgspec

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


# A Sentry `level` and the severity it maps to; the level itself is kept on the event.
LEVEL_SEVERITY = {
    "fatal": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "info": Severity.LOW,
    "debug": Severity.LOW,
}


# An event's details (what an SDK tells beyond the message) are msgspec structs, frozen like the records
# around them: an SDK event carries some fifty (frames, breadcrumbs), and for the benchmark's 5.5 KB
# event a frozen dataclass took 1.3 µs a frame to build against 0.25, its JSON (the stored `details`)
# 27 µs to write against 4.6 and 77 µs to read back against 10. Fields at their defaults (null, empty)
# are left out of the JSON and come back as the defaults: a fifth less to write, send and store for
# that event (5.4 KB of JSON instead of 6.7).
class StackFrame(msgspec.Struct, frozen=True, omit_defaults=True):
    filename: str | None = None
    abs_path: str | None = None
    function: str | None = None
    module: str | None = None
    lineno: int | None = None
    colno: int | None = None
    in_app: bool | None = None
    context_line: str | None = None
    pre_context: list[str] = msgspec.field(default_factory=list)
    post_context: list[str] = msgspec.field(default_factory=list)


class ExceptionInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One exception of a chain (the outermost last, as Sentry orders them)."""

    type: str | None = None
    value: str | None = None
    module: str | None = None
    mechanism: str | None = None  # e.g. "excepthook", "threading", "onunhandledrejection"
    handled: bool | None = None
    frames: list[StackFrame] = msgspec.field(default_factory=list)  # oldest call first, the crash last


class EventUser(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str | None = None
    username: str | None = None
    email: str | None = None
    ip_address: str | None = None  # anonymised unless ANONYMIZE_IP is off


class EventRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    url: str | None = None
    method: str | None = None
    query_string: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # never Cookie nor Authorization


class Breadcrumb(msgspec.Struct, frozen=True, omit_defaults=True):
    timestamp: datetime | None = None
    type: str | None = None
    category: str | None = None
    message: str | None = None
    level: str | None = None
    data: dict[str, Any] | None = None


class SdkInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    version: str | None = None


class EventDetails(msgspec.Struct, frozen=True, omit_defaults=True):
    """What an SDK (or a reporter) tells about an error beyond its message: shown, never filtered on."""

    exceptions: list[ExceptionInfo] = msgspec.field(default_factory=list)
    user: EventUser | None = None
    request: EventRequest | None = None
    breadcrumbs: list[Breadcrumb] = msgspec.field(default_factory=list)
    contexts: dict[str, Any] | None = None
    sdk: SdkInfo | None = None

    @property
    def handled(self) -> bool | None:
        """False when any exception of the chain was not handled (it crashed the program or thread)."""
        flags = [e.handled for e in self.exceptions if e.handled is not None]
        return None if not flags else all(flags)


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
    environment: str | None = None
    release: str | None = None
    level: str | None = None  # the reporter's own level word (Sentry: fatal, error, warning, info, debug)
    platform: str | None = None
    tags: dict[str, str] | None = None
    details: EventDetails | None = None
    project_id: int | None = None  # the project an SDK sent it to

    @property
    def handled(self) -> bool | None:
        return self.details.handled if self.details else None


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
    environment: str | None = None
    release: str | None = None
    level: str | None = None
    platform: str | None = None
    tags: dict[str, str] | None = None
    details: EventDetails | None = None
    project_id: int | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    severities: frozenset[Severity] | None = None  # None: any severity
    from_: datetime | None = None  # inclusive
    to: datetime | None = None  # exclusive
    code: str | None = None
    source: str | None = None
    fingerprint: str | None = None
    search: str | None = None
    environment: str | None = None
    release: str | None = None
    tag: tuple[str, str] | None = None  # (key, value)
    handled: bool | None = None  # False: events with an unhandled exception


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

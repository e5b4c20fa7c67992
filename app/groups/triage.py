"""The group status state machine: what one more event does to a group. Pure functions, no I/O; the clock
and the release order are passed in, so every rule is tested with time under the test's control.

- RESOLVED: an event regresses the group (UNRESOLVED / REGRESSED) unless its release is older than the
  resolution's line: the fixing release (IN_RELEASE), or the newest release seen when it was resolved
  (NOW: that release and newer ones regress; IN_NEXT_RELEASE: only strictly newer ones do). An event
  without a release, or a resolution without a line, cannot be placed and regresses.
- IGNORED: FOREVER stays; UNTIL_COUNT ends after `count` more events, UNTIL_RATE after `count` events
  within `window_minutes`, UNTIL_TIME with the first event at or after `until`; the group becomes
  UNRESOLVED / ONGOING.
- UNRESOLVED: ESCALATING when the events received in the current hour reach both `min_events` and
  `factor` times the group's average per hour over the previous hours (at most 24, none before the group
  was first counted; a group younger than one whole hour never escalates). NEW becomes ONGOING with the
  first event after NEW_GROUP_DAYS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.clock import to_ms
from app.groups.model import (
    NEW_GROUP_DAYS,
    ActivityCause,
    ErrorGroupRecord,
    GroupStatus,
    GroupSubstatus,
    IgnoreKind,
    ResolveKind,
)

HOUR_MS = 3_600_000
HOURS_KEPT = 24  # hourly counts before the current hour that escalation looks at

# https://semver.org, the recommended expression; an optional "package@" prefix (as Sentry names
# releases: "web@1.4.2") is ignored.
_SEMVER = re.compile(
    r"^(?:[^@\s]+@)?v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)

_Key = tuple[int, int, int, tuple[tuple[int, int | str], ...]]


def semver_key(release: str) -> _Key | None:
    """A sort key with semantic-version precedence (a pre-release is older than its release; build
    metadata is ignored), or None when `release` is not a semantic version."""
    match = _SEMVER.match(release)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        # A release sorts after every pre-release of it: (1,) beats any (0, ...).
        return int(major), int(minor), int(patch), ((1, 0),)
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    # Numeric identifiers sort before alphanumeric ones; a longer list wins when the prefix is equal.
    return int(major), int(minor), int(patch), ((0, 0), *parts)


def compare_releases(a: str, b: str, first_seen: dict[str, int]) -> int:
    """-1, 0 or 1 as release `a` is older than, the same as, or newer than `b`: by semantic version when
    both parse, else by the order they were first seen (`first_seen`: release -> position; a release
    never seen is newer than every seen one)."""
    if a == b:
        return 0
    ka, kb = semver_key(a), semver_key(b)
    if ka is not None and kb is not None:
        return (ka > kb) - (ka < kb)
    never = 1 << 62
    sa, sb = first_seen.get(a, never), first_seen.get(b, never)
    return (sa > sb) - (sa < sb)


def regresses(group: ErrorGroupRecord, release: str | None, first_seen: dict[str, int]) -> bool:
    """Whether an event of `release` brings a resolved group back."""
    resolution = group.resolution
    if resolution is None or release is None or resolution.release is None:
        return True
    order = compare_releases(release, resolution.release, first_seen)
    if resolution.kind is ResolveKind.IN_NEXT_RELEASE:
        return order > 0
    return order >= 0


def escalates(group: ErrorGroupRecord, now: datetime, factor: float, min_events: int) -> bool:
    """The escalation rule (see the module docstring) on the group's hourly counts."""
    hour = to_ms(now) // HOUR_MS * HOUR_MS
    current = group.hourly.get(hour, 0)
    if current < min_events:
        return False
    born = to_ms(group.created) if group.created is not None else to_ms(group.first_seen)
    oldest = max(hour - HOURS_KEPT * HOUR_MS, (born + HOUR_MS - 1) // HOUR_MS * HOUR_MS)
    hours = (hour - oldest) // HOUR_MS
    if hours < 1:
        return False
    before = sum(n for start, n in group.hourly.items() if oldest <= start < hour)
    return current >= factor * before / hours


@dataclass(frozen=True, slots=True)
class Transition:
    status: GroupStatus
    substatus: GroupSubstatus
    cause: ActivityCause


def after_event(
    group: ErrorGroupRecord,
    release: str | None,
    now: datetime,
    *,
    first_seen: dict[str, int],
    window_count: int | None,
    factor: float,
    min_events: int,
) -> Transition | None:
    """The automatic change one more event (already counted into `group`) causes, if any.
    `window_count`: events of the group within an UNTIL_RATE ignore's window (None otherwise)."""
    if group.status is GroupStatus.RESOLVED:
        if regresses(group, release, first_seen):
            return Transition(GroupStatus.UNRESOLVED, GroupSubstatus.REGRESSED, ActivityCause.REGRESSION)
        return None
    if group.status is GroupStatus.IGNORED:
        ignore = group.ignore
        if ignore is None or ignore.kind is IgnoreKind.FOREVER:
            return None
        ended = (
            (
                ignore.kind is IgnoreKind.UNTIL_COUNT
                and group.occurrences - ignore.baseline >= (ignore.count or 0)
            )
            or (ignore.kind is IgnoreKind.UNTIL_RATE and (window_count or 0) >= (ignore.count or 0))
            or (ignore.kind is IgnoreKind.UNTIL_TIME and ignore.until is not None and now >= ignore.until)
        )
        if ended:
            return Transition(GroupStatus.UNRESOLVED, GroupSubstatus.ONGOING, ActivityCause.IGNORE_ENDED)
        return None
    if group.substatus is not GroupSubstatus.ESCALATING and escalates(group, now, factor, min_events):
        return Transition(GroupStatus.UNRESOLVED, GroupSubstatus.ESCALATING, ActivityCause.ESCALATION)
    if group.substatus is GroupSubstatus.NEW and now - group.first_seen >= timedelta(days=NEW_GROUP_DAYS):
        return Transition(GroupStatus.UNRESOLVED, GroupSubstatus.ONGOING, ActivityCause.AGED)
    return None

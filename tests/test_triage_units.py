"""The group status state machine (app.groups.triage) with the clock and the release order in the test's
hands: regression by release, ignore conditions running out, escalation, NEW aging into ONGOING."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.core.clock import to_ms
from app.events.model import Severity
from app.groups.model import (
    ActivityCause,
    ErrorGroupRecord,
    GroupStatus,
    GroupSubstatus,
    IgnoreCondition,
    IgnoreKind,
    Resolution,
    ResolveKind,
)
from app.groups.triage import HOUR_MS, Transition, after_event, compare_releases, escalates, semver_key

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
HOUR = to_ms(NOW) // HOUR_MS * HOUR_MS
GROUP = ErrorGroupRecord(
    org_id="o",
    fingerprint="f",
    message="m",
    source=None,
    code=None,
    occurrences=10,
    first_seen=NOW - timedelta(days=1),
    last_seen=NOW,
    max_severity=Severity.HIGH,
    latest_event_id="e",
    substatus=GroupSubstatus.ONGOING,
    created=NOW - timedelta(days=1),
)
REGRESSED = Transition(GroupStatus.UNRESOLVED, GroupSubstatus.REGRESSED, ActivityCause.REGRESSION)
BACK = Transition(GroupStatus.UNRESOLVED, GroupSubstatus.ONGOING, ActivityCause.IGNORE_ENDED)


def step(
    group: ErrorGroupRecord,
    release: str | None = None,
    now: datetime = NOW,
    first_seen: dict[str, int] | None = None,
    window_count: int | None = None,
) -> Transition | None:
    return after_event(
        group,
        release,
        now,
        first_seen=first_seen or {},
        window_count=window_count,
        factor=10,
        min_events=20,
    )


def resolved(kind: ResolveKind, release: str | None) -> ErrorGroupRecord:
    return replace(GROUP, status=GroupStatus.RESOLVED, resolution=Resolution(kind, release))


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.4.2", "1.4.10", -1),  # numbers, not text
        ("1.5.0", "1.4.10", 1),
        ("1.4.2-rc.1", "1.4.2", -1),  # a pre-release precedes its release
        ("1.4.2-alpha", "1.4.2-alpha.1", -1),
        ("1.4.2-alpha.2", "1.4.2-alpha.10", -1),
        ("1.4.2-2", "1.4.2-alpha", -1),  # numeric identifiers before alphanumeric ones
        ("web@2.0.0", "web@10.0.0", -1),  # a package prefix is ignored
        ("1.4.2+build.7", "1.4.2+build.9", 0),  # build metadata is ignored
    ],
)
def test_semantic_versions_compare_by_precedence(a: str, b: str, order: int) -> None:
    assert compare_releases(a, b, {}) == order
    assert compare_releases(b, a, {}) == -order


def test_other_releases_compare_by_first_seen_order() -> None:
    seen = {"blue": 5, "green": 9}
    assert semver_key("blue") is None
    assert compare_releases("blue", "green", seen) == -1
    assert compare_releases("green", "blue", seen) == 1
    # One side is a semantic version, the other not: first-seen order decides.
    assert compare_releases("2.0.0", "green", {"2.0.0": 12, "green": 9}) == 1
    # A release never seen is newer than every one seen.
    assert compare_releases("purple", "green", seen) == 1


def test_resolved_in_a_release_regresses_on_that_release_or_newer_only() -> None:
    group = resolved(ResolveKind.IN_RELEASE, "1.4.2")
    assert step(group, "1.4.1") is None  # an old client: never a regression
    assert step(group, "1.4.2-rc.3") is None
    assert step(group, "1.4.2") == REGRESSED
    assert step(group, "1.5.0") == REGRESSED
    assert step(group, None) == REGRESSED  # cannot be placed


def test_resolved_now_regresses_unless_the_release_is_older_than_the_newest_seen() -> None:
    group = resolved(ResolveKind.NOW, "2026.11.a")
    order = {"2026.10.z": 1, "2026.11.a": 2, "2026.11.b": 3}
    assert step(group, "2026.10.z", first_seen=order) is None
    assert step(group, "2026.11.a", first_seen=order) == REGRESSED
    assert step(group, "2026.11.b", first_seen=order) == REGRESSED
    assert step(resolved(ResolveKind.NOW, None), "anything") == REGRESSED


def test_resolved_in_the_next_release_regresses_only_on_a_newer_release() -> None:
    group = resolved(ResolveKind.IN_NEXT_RELEASE, "1.4.2")
    assert step(group, "1.4.2") is None
    assert step(group, "1.3.0") is None
    assert step(group, "1.4.3") == REGRESSED


def test_ignored_forever_stays_ignored() -> None:
    group = replace(GROUP, status=GroupStatus.IGNORED, ignore=IgnoreCondition(IgnoreKind.FOREVER))
    assert step(group, "9.9.9", now=NOW + timedelta(days=365)) is None


def test_ignored_until_more_events_counts_from_the_ignore() -> None:
    group = replace(
        GROUP,
        status=GroupStatus.IGNORED,
        ignore=IgnoreCondition(IgnoreKind.UNTIL_COUNT, count=5, baseline=10),
    )
    assert step(replace(group, occurrences=14)) is None
    assert step(replace(group, occurrences=15)) == BACK


def test_ignored_until_a_rate_uses_the_window_count() -> None:
    group = replace(
        GROUP,
        status=GroupStatus.IGNORED,
        ignore=IgnoreCondition(IgnoreKind.UNTIL_RATE, count=100, window_minutes=60),
    )
    assert step(group, window_count=99) is None
    assert step(group, window_count=100) == BACK


def test_ignored_until_a_time_ends_with_the_first_event_from_then() -> None:
    until = NOW + timedelta(hours=2)
    group = replace(
        GROUP, status=GroupStatus.IGNORED, ignore=IgnoreCondition(IgnoreKind.UNTIL_TIME, until=until)
    )
    assert step(group, now=until - timedelta(milliseconds=1)) is None
    assert step(group, now=until) == BACK


def _hourly(previous_per_hour: int, hours: int, current: int) -> dict[int, int]:
    counts = {HOUR - i * HOUR_MS: previous_per_hour for i in range(1, hours + 1)}
    counts[HOUR] = current
    return counts


def test_escalation_needs_both_the_factor_and_the_minimum() -> None:
    steady = replace(GROUP, hourly=_hourly(4, 24, 39))
    assert not escalates(steady, NOW, 10, 20)  # 39 < 10 x 4
    assert escalates(replace(GROUP, hourly=_hourly(4, 24, 40)), NOW, 10, 20)
    quiet = replace(GROUP, hourly=_hourly(0, 24, 19))  # far above a zero rate, but under the minimum
    assert not escalates(quiet, NOW, 10, 20)
    assert step(replace(GROUP, hourly=_hourly(4, 24, 40))) == Transition(
        GroupStatus.UNRESOLVED, GroupSubstatus.ESCALATING, ActivityCause.ESCALATION
    )
    # Already escalating: no second change.
    assert step(replace(GROUP, substatus=GroupSubstatus.ESCALATING, hourly=_hourly(4, 24, 400))) is None


def test_escalation_averages_only_the_hours_the_group_existed() -> None:
    # Counted for the first time three hours ago (and a half): the average is over the three whole
    # hours since, not over a day of zeros.
    young = replace(GROUP, created=NOW - timedelta(hours=3, minutes=30), hourly=_hourly(10, 3, 99))
    assert not escalates(young, NOW, 10, 20)
    assert escalates(replace(young, hourly=_hourly(10, 3, 100)), NOW, 10, 20)
    # Younger than one whole hour: never escalates.
    newborn = replace(GROUP, created=NOW - timedelta(minutes=50), hourly={HOUR: 10_000})
    assert not escalates(newborn, NOW, 10, 20)


def test_new_becomes_ongoing_after_a_week() -> None:
    new = replace(GROUP, substatus=GroupSubstatus.NEW, first_seen=NOW - timedelta(days=6, hours=23))
    assert step(new) is None
    aged = step(new, now=NOW + timedelta(hours=1))
    assert aged == Transition(GroupStatus.UNRESOLVED, GroupSubstatus.ONGOING, ActivityCause.AGED)

"""Uptime computed from a scripted history, checked against figures worked out by hand."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from app.status.model import ServiceState as S
from app.statuspage.uptime import combine, days, figure, timeline

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # ten hours across midnight: 20:00 to 06:00
END = T0 + timedelta(hours=10)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# Component A: 30 min major outage, 2 h partial, 1 h degraded, 1 h maintenance.
A_CHANGES = [
    (h(1), S.MAJOR_OUTAGE),
    (h(1.5), S.OPERATIONAL),
    (h(3), S.PARTIAL_OUTAGE),
    (h(5), S.DEGRADED_PERFORMANCE),
    (h(6), S.OPERATIONAL),
    (h(8), S.UNDER_MAINTENANCE),
    (h(9), S.OPERATIONAL),
]
# Component B: 45 min major outage overlapping A's.
B_CHANGES = [(h(1.25), S.MAJOR_OUTAGE), (h(2), S.OPERATIONAL)]


def test_seconds_per_state_and_weighted_uptime() -> None:
    result = figure(timeline(S.OPERATIONAL, A_CHANGES, T0, END), T0, END)
    assert result.seconds == {
        S.OPERATIONAL: 5.5 * 3600,
        S.MAJOR_OUTAGE: 1800,
        S.PARTIAL_OUTAGE: 7200,
        S.DEGRADED_PERFORMANCE: 3600,
        S.UNDER_MAINTENANCE: 3600,
    }
    # counted = 36000 - 3600 maintenance = 32400; down = 1800 + 0.3 * 7200 = 3960 (degraded counts as up)
    assert result.downtime_seconds == pytest.approx(3960)
    assert result.uptime == pytest.approx((32400 - 3960) / 32400)  # 87.78 %


def test_a_group_is_down_when_any_component_is() -> None:
    a = timeline(S.OPERATIONAL, A_CHANGES, T0, END)
    b = timeline(S.OPERATIONAL, B_CHANGES, T0, END)
    result = figure(combine([a, b], T0, END), T0, END)
    # Major outage from 1:00 (A) to 2:00 (B): 3600 s; the rest as for A.
    assert result.seconds[S.MAJOR_OUTAGE] == 3600
    assert result.uptime == pytest.approx((32400 - (3600 + 0.3 * 7200)) / 32400)  # 82.22 %


def test_per_day_figures_split_at_utc_midnight() -> None:
    per_day = days(timeline(S.OPERATIONAL, A_CHANGES, T0, END), T0, END)
    assert [d.day for d in per_day] == [date(2026, 3, 1), date(2026, 3, 2)]
    first, second = per_day
    # 20:00-24:00: 30 min major, 1 h partial (23:00-24:00): (14400 - (1800 + 1080)) / 14400
    assert first.figure.uptime == pytest.approx(0.8)
    # 00:00-06:00: 1 h partial, 1 h degraded, 1 h maintenance: (18000 - 1080) / 18000
    assert second.figure.uptime == pytest.approx(0.94)


def test_time_before_a_component_existed_is_not_counted() -> None:
    created = h(2)
    result = figure(timeline(None, A_CHANGES[2:], T0, END, created_at=created), T0, END)
    assert result.no_data_seconds == 7200
    # From 2:00: 1 h partial, 1 h degraded, 1 h maintenance out of 8 h: (25200 - 2160) / 25200
    assert result.uptime == pytest.approx((25200 - 2160) / 25200)


def test_the_state_before_the_range_carries_in() -> None:
    result = figure(timeline(S.MAJOR_OUTAGE, [(h(1), S.OPERATIONAL)], T0, END), T0, END)
    assert result.seconds[S.MAJOR_OUTAGE] == 3600
    assert result.uptime == pytest.approx(0.9)


def test_all_maintenance_has_no_uptime_figure() -> None:
    result = figure(timeline(S.UNDER_MAINTENANCE, [], T0, END), T0, END)
    assert result.uptime is None


def test_per_day_figures_match_the_range_figure_of_each_day() -> None:
    """The one-pass split by day gives, for every day, the figure of that day computed on its own
    (200 scripted histories from a fixed seed)."""
    rng = random.Random(14)
    states = list(S)
    for _ in range(200):
        changes = sorted(
            (T0 + timedelta(seconds=rng.randrange(1, 36_000)), rng.choice(states))
            for _ in range(rng.randrange(0, 30))
        )
        segments = timeline(rng.choice(states), changes, T0, END)
        for day in days(segments, T0, END):
            lo = max(T0, datetime.combine(day.day, datetime.min.time(), UTC))
            hi = min(END, lo.replace(hour=0) + timedelta(days=1))
            assert day.figure == figure(segments, lo, hi)

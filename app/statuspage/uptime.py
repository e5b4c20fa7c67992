"""Exact uptime from recorded transitions: seconds spent in each state over a range.

Weighting as Statuspage's uptime showcase documents it: time in MAJOR_OUTAGE counts fully as downtime,
time in PARTIAL_OUTAGE counts 30%, DEGRADED_PERFORMANCE counts as up, UNDER_MAINTENANCE and time without
data (before a component existed) are left out of the range altogether:

    uptime = (counted - (major + 0.3 * partial)) / counted,   counted = range - maintenance - no data

A group is up only when all its components are: its state at each instant is the worst of theirs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from app.status.model import ServiceState, worst
from app.statuspage.model import DayUptime, Segment, UptimeFigure

PARTIAL_WEIGHT = 0.3


def timeline(
    initial: ServiceState | None,
    changes: Sequence[tuple[datetime, ServiceState]],
    start: datetime,
    end: datetime,
    created_at: datetime | None = None,
) -> list[Segment]:
    """The component's states over [start, end): `initial` before the first change (in time order),
    no data before `created_at`."""
    points: list[tuple[datetime, ServiceState | None]] = [(start, initial)]
    if created_at is not None and created_at > start:
        points = [(start, None), (created_at, initial if initial is not None else ServiceState.OPERATIONAL)]
    elif initial is None:
        points = [(start, ServiceState.OPERATIONAL)]
    for at, changed in changes:
        if at <= start:
            points[0] = (start, changed) if points[0][1] is not None else points[0]
        else:
            points.append((at, changed))
    points.sort(key=lambda p: p[0])
    segments: list[Segment] = []
    for i, (at, state) in enumerate(points):
        seg_end = points[i + 1][0] if i + 1 < len(points) else end
        seg_start, seg_end = max(at, start), min(seg_end, end)
        if seg_end > seg_start:
            segments.append(Segment(seg_start, seg_end, state))
    return segments


def combine(timelines: Sequence[list[Segment]], start: datetime, end: datetime) -> list[Segment]:
    """A group's timeline: at each instant the worst state of the components that have data."""
    cuts = sorted(
        {start, end, *(s.start for t in timelines for s in t), *(s.end for t in timelines for s in t)}
    )
    cuts = [c for c in cuts if start <= c <= end]
    segments: list[Segment] = []
    for a, b in itertools.pairwise(cuts):
        states = [s.state for t in timelines for s in t if s.start <= a < s.end and s.state is not None]
        state = worst(states) if states else None
        if segments and segments[-1].state == state and segments[-1].end == a:
            segments[-1] = Segment(segments[-1].start, b, state)
        else:
            segments.append(Segment(a, b, state))
    return segments


def figure(segments: Sequence[Segment], start: datetime, end: datetime) -> UptimeFigure:
    seconds: dict[ServiceState, float] = {}
    no_data = 0.0
    for s in segments:
        a, b = max(s.start, start), min(s.end, end)
        if b <= a:
            continue
        length = (b - a).total_seconds()
        if s.state is None:
            no_data += length
        else:
            seconds[s.state] = seconds.get(s.state, 0.0) + length
    counted = sum(v for k, v in seconds.items() if k is not ServiceState.UNDER_MAINTENANCE)
    down = seconds.get(ServiceState.MAJOR_OUTAGE, 0.0) + PARTIAL_WEIGHT * seconds.get(
        ServiceState.PARTIAL_OUTAGE, 0.0
    )
    ratio = (counted - down) / counted if counted > 0 else None
    return UptimeFigure(start, end, seconds, no_data, ratio)


def days(segments: Sequence[Segment], start: datetime, end: datetime) -> list[DayUptime]:
    """One figure per UTC day touching [start, end), each clipped to the range; one pass over the
    segments (each is cut at the midnights it spans)."""
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    bounds: list[tuple[datetime, datetime]] = []
    day = first
    while day < end:
        bounds.append((max(day, start), min(day + timedelta(days=1), end)))
        day += timedelta(days=1)
    pieces: list[list[Segment]] = [[] for _ in bounds]
    for s in segments:
        a, b = max(s.start, start), min(s.end, end)
        while a < b:
            index = (a - first).days
            cut = min(b, first + timedelta(days=index + 1))
            pieces[index].append(Segment(a, cut, s.state))
            a = cut
    return [DayUptime(lo.date(), figure(p, lo, hi)) for (lo, hi), p in zip(bounds, pieces, strict=True)]

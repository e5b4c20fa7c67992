"""The speed and memory targets, checked against a run's own figures: `make bench` ends each part with a
verdict table (met, or missed by how much), so a run says where the project stands without reading
the numbers against the docs. Where the remaining time goes is the profile's job: rerun a part with
`--profile FILE` (py-spy) and read docs/performance.md.

Every target compares figures measured in the same run (ratios to the fair peer and the raw route,
medians of interleaved rounds), except the absolute ones, which hold only on a machine like the one
they were set on (2 cores, nothing else running)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    label: str
    workload: str  # the row's workload name (for HTTP rows: without the peer prefix)
    metric: str  # "cpu_ms", "cpu_vs_peer", "cpu_vs_raw"
    limit: float
    unit: str
    connections: tuple[int, ...] = (8, 32)  # the concurrencies it applies to (those the run measured)


HTTP_TARGETS = (
    Target(
        "orgErrors(first: 20), all fields: server CPU",
        "orgErrors(first: 20), all fields",
        "cpu_ms",
        1.3,
        "ms",
    ),
    Target(
        "orgErrors(first: 20), all fields: x the peer",
        "orgErrors(first: 20), all fields",
        "cpu_vs_peer",
        0.3,
        "x",
    ),
    Target("errorEvent: x the peer", "errorEvent", "cpu_vs_peer", 0.25, "x"),
    Target(
        "logError: server CPU",
        "logError (fresh idempotency keys)",
        "cpu_ms",
        0.9,
        "ms",
        (32,),
    ),
    Target("serviceStatus: x the raw route", "serviceStatus", "cpu_vs_raw", 2.5, "x"),
)
SDK_TARGETS = (
    Target("SDK envelope (one ~5 KB event): server CPU", "SDK envelope", "cpu_ms", 0.6, "ms", (32,)),
)


def _verdict(value: float, limit: float, unit: str) -> str:
    if value <= limit:
        return "met"
    return f"missed by {value - limit:.2f} {unit} ({value / limit:.2f}x the target)"


def _fmt(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}"


def _table(lines: Iterable[tuple[str, str, str, str]]) -> str:
    out = ["| target | limit | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in lines]
    return "\n".join(out)


def _row_checks(
    rows: list[dict], targets: Iterable[Target], matches: Callable[[str, str], bool]
) -> list[tuple[str, str, str, str]]:
    lines = []
    for target in targets:
        for row in rows:
            if not matches(row["workload"], target.workload) or row["connections"] not in target.connections:
                continue
            value = row.get(target.metric)
            if value is None:
                continue
            lines.append(
                (
                    f"{target.label} ({row['connections']} conns)",
                    f"≤ {_fmt(target.limit, target.unit)}",
                    _fmt(value, target.unit),
                    _verdict(value, target.limit, target.unit),
                )
            )
    return lines


def http_table(rows: list[dict]) -> str:
    """bench/run.py's rows (the project's, not the peer's), against HTTP_TARGETS."""
    return _table(_row_checks(rows, HTTP_TARGETS, str.__eq__))


def sdk_table(rows: list[dict]) -> str:
    """bench/sdk_ingest.py's rows, against SDK_TARGETS (the envelope row's name carries its size)."""
    return _table(_row_checks(rows, SDK_TARGETS, str.startswith))


def subscriptions_table(results: list[dict]) -> str:
    """bench/subscriptions.py's results: 1,000 subscribers within 100 ms p99, 5,000 within 600 ms, at
    most 50 KiB per idle subscriber."""
    lines = []
    for r in results:
        limit = {1000: 100.0, 5000: 600.0}.get(r["subscribers"])
        if limit is not None:
            p99 = float(r["last_subscriber_ms"]["p99"])
            lines.append(
                (
                    f"{r['subscribers']:,} subscribers: last one reached, p99",
                    f"≤ {_fmt(limit, 'ms')}",
                    _fmt(p99, "ms"),
                    _verdict(p99, limit, "ms"),
                )
            )
        kib = float(r["rss_kib_per_idle_subscriber"])
        lines.append(
            (
                f"{r['subscribers']:,} subscribers: RSS per idle subscriber",
                "≤ 50.00 KiB",
                _fmt(kib, "KiB"),
                _verdict(kib, 50.0, "KiB"),
            )
        )
    return _table(lines)

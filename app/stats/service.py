"""errorStats: a time series of event counts computed by the database, bounded in size."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from app.core.clock import from_ms, to_ms
from app.core.errors import FieldProblem, InvalidRequest
from app.core.principal import Principal
from app.events.service import EventService
from app.stats.model import MAX_BUCKETS, Bucket, Interval, Series, StatsQuery


def _floor(moment: datetime, interval: Interval) -> int:
    ms = to_ms(moment)
    return ms - ms % interval.ms


class StatsService:
    def __init__(self, events: EventService) -> None:
        self._events = events

    async def series(self, principal: Principal, args: StatsQuery) -> Series:
        start_ms, end_ms = _floor(args.from_, args.interval), to_ms(args.to)
        n_buckets = -(-(end_ms - start_ms) // args.interval.ms)
        if n_buckets > MAX_BUCKETS:
            raise InvalidRequest(
                details=[
                    FieldProblem(
                        "interval",
                        f"{n_buckets} {args.interval.value} buckets between from and to; at most "
                        f"{MAX_BUCKETS}: choose a longer interval or a shorter range",
                    )
                ]
            )
        rows = await self._events.bucket_counts(
            principal,
            args.org_id,
            start_ms,
            end_ms,
            args.interval.ms,
            args.field,
        )
        per_bucket: dict[int, dict[str | None, int]] = defaultdict(dict)
        totals: dict[str | None, int] = defaultdict(int)
        for bucket_ms, key, count in rows:
            per_bucket[bucket_ms][key] = count
            totals[key] += count
        buckets = []
        for i in range(n_buckets):
            bucket_ms = start_ms + i * args.interval.ms
            counts = per_bucket.get(bucket_ms, {})
            breakdown = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))
            start = from_ms(bucket_ms)
            buckets.append(Bucket(start, sum(counts.values()), breakdown if args.group_by else []))
        keys = sorted(totals, key=lambda k: (-totals[k], k or "")) if args.group_by else []
        return Series(
            start=from_ms(start_ms),
            end=args.to,
            interval=args.interval,
            group_by=args.group_by,
            total=sum(totals.values()),
            keys=keys,
            buckets=buckets,
        )

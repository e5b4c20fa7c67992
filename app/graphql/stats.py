"""GraphQL types and resolver of errorStats."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types.unset import UNSET

from app.graphql.args import raw_args
from app.graphql.context import RequestContext
from app.graphql.scalars import DateTime
from app.stats.inputs import validate_stats
from app.stats.model import Interval as IntervalEnum
from app.stats.model import Series
from app.stats.model import StatsGroupBy as StatsGroupByEnum

Info = strawberry.Info[RequestContext, None]

StatsInterval = strawberry.enum(IntervalEnum, name="StatsInterval", description="Bucket width (UTC).")
StatsGroupBy = strawberry.enum(StatsGroupByEnum, name="StatsGroupBy")


@strawberry.type
class ErrorStatsCount:
    key: str | None = strawberry.field(description="The severity, source or code; null where none was sent.")
    count: int


@strawberry.type
class ErrorStatsBucket:
    start: DateTime
    count: int
    breakdown: list[ErrorStatsCount] = strawberry.field(
        description="Counts per key in this bucket, most frequent first (empty without groupBy)."
    )


@strawberry.type(description="Event counts per time bucket, empty buckets included.")
class ErrorStats:
    from_: DateTime = strawberry.field(
        name="from", description="Start of the first bucket (from, rounded down)."
    )
    to: DateTime
    interval: IntervalEnum
    group_by: StatsGroupByEnum | None
    total: int
    keys: list[str | None] = strawberry.field(description="Every key in the range, most frequent first.")
    buckets: list[ErrorStatsBucket]

    @classmethod
    def from_series(cls, s: Series) -> ErrorStats:
        return cls(
            from_=DateTime(s.start),
            to=DateTime(s.end),
            interval=s.interval,
            group_by=s.group_by,
            total=s.total,
            keys=s.keys,
            buckets=[
                ErrorStatsBucket(
                    start=DateTime(b.start),
                    count=b.count,
                    breakdown=[ErrorStatsCount(key=k, count=c) for k, c in b.breakdown],
                )
                for b in s.buckets
            ],
        )


@strawberry.type
class StatsQueries:
    @strawberry.field(
        description="Counts of an organization's events between from (inclusive) and to (exclusive) per "
        "interval, computed by the database; at most 1000 buckets."
    )
    async def error_stats(
        self,
        info: Info,
        org_id: strawberry.ID,
        from_: Annotated[DateTime, strawberry.argument(name="from")],
        to: DateTime,
        interval: IntervalEnum = IntervalEnum.HOUR,
        group_by: StatsGroupByEnum | None = UNSET,
        tag_key: Annotated[
            str | None, strawberry.argument(description="The tag whose values groupBy: TAG counts.")
        ] = UNSET,
    ) -> ErrorStats:
        ctx = info.context
        principal = ctx.principal_for(org_id)
        raw = raw_args(orgId=org_id, to=to, interval=interval, groupBy=group_by, tagKey=tag_key)
        raw["from"] = from_
        series = await ctx.services.stats.series(principal, validate_stats(raw))
        return ErrorStats.from_series(series)

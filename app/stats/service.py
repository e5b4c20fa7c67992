"""errorStats: a time series of event counts computed by the database, bounded in size."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.core.clock import from_ms, to_ms
from app.core.errors import ErrorCode, FieldProblem, InvalidRequest
from app.core.principal import Principal
from app.core.validation import app_error_from
from app.events.inputs import DateTimeIn, OrgId, TagKey
from app.events.service import EventService

MAX_BUCKETS = 1000


class Interval(str, Enum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def ms(self) -> int:
        return {"MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}[self.value]


class StatsGroupBy(str, Enum):
    SEVERITY = "SEVERITY"
    SOURCE = "SOURCE"
    CODE = "CODE"
    ENVIRONMENT = "ENVIRONMENT"
    RELEASE = "RELEASE"
    TAG = "TAG"  # the values of the tag named by tagKey


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    count: int
    breakdown: list[tuple[str | None, int]]  # most frequent first


@dataclass(frozen=True, slots=True)
class Series:
    start: datetime
    end: datetime
    interval: Interval
    group_by: StatsGroupBy | None
    total: int
    keys: list[str | None]  # every key seen in the range, most frequent first
    buckets: list[Bucket]


class _StatsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    org_id: OrgId = Field(alias="orgId")
    interval: Interval = Interval.HOUR
    group_by: StatsGroupBy | None = Field(default=None, alias="groupBy")
    tag_key: TagKey | None = Field(default=None, alias="tagKey")
    from_: DateTimeIn = Field(alias="from")
    to: DateTimeIn

    @model_validator(mode="after")
    def _tag_key_with_tag(self) -> _StatsArgs:
        if (self.group_by is StatsGroupBy.TAG) != (self.tag_key is not None):
            raise ValueError("tagKey is required with groupBy: TAG, and only then")
        return self

    @property
    def field(self) -> str | None:
        if self.group_by is None:
            return None
        if self.group_by is StatsGroupBy.TAG:
            return f"tags.{self.tag_key}"  # the store maps the tag key to its stored form
        return str(self.group_by.value).lower()

    @field_validator("to")
    @classmethod
    def _after_from(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("from_")
        if start is not None and value <= start:
            raise ValueError("to must be later than from")
        return value


def _floor(moment: datetime, interval: Interval) -> int:
    ms = to_ms(moment)
    return ms - ms % interval.ms


class StatsService:
    def __init__(self, events: EventService) -> None:
        self._events = events

    async def series(self, principal: Principal, raw: dict[str, Any]) -> Series:
        try:
            args = _StatsArgs.model_validate(raw)
        except ValidationError as exc:
            raise app_error_from(exc, {}, default=ErrorCode.INVALID_REQUEST) from None
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

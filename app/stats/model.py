"""The statistics domain: intervals, groupings and the series errorStats answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

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


@dataclass(frozen=True, slots=True)
class StatsQuery:
    org_id: str
    interval: Interval
    group_by: StatsGroupBy | None
    from_: datetime
    to: datetime
    tag_key: str | None = None  # with group_by TAG

    @property
    def field(self) -> str | None:
        """The event field counted per value (`tags.<key>` for a tag: the store maps the key)."""
        if self.group_by is None:
            return None
        if self.group_by is StatsGroupBy.TAG:
            return f"tags.{self.tag_key}"
        return str(self.group_by.value).lower()

"""The ingestion domain: plain data and plain counters (the web layer exports them as metrics)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

# Item types that become error events. Everything else is read past, counted and announced as not
# wanted in X-Sentry-Rate-Limits so that SDKs stop sending it.
EVENT_ITEMS = frozenset({"event"})
# Rate-limit categories of what this server does not store (Sentry's data categories).
UNSTORED_CATEGORIES = (
    "transaction",
    "span",
    "session",
    "replay",
    "profile",
    "profile_chunk",
    "attachment",
    "check_in",
    "monitor",
    "log_item",
    "feedback",
    "metric_bucket",
)
UNSTORED_RETRY_SECONDS = 3600
# Categories an event item counts against (the budget's 429 names them).
EVENT_CATEGORIES = ("error", "default", "security")


class Outcome(str, Enum):
    ACCEPTED = "accepted"
    DEDUPLICATED = "deduplicated"
    RATE_LIMITED = "rate_limited"
    DROPPED = "dropped"


@dataclass(slots=True)
class IngestCounters:
    """(outcome, reason, project id) -> count; plain integers, read by the metrics exporter."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, outcome: Outcome, reason: str, project_id: int | str, n: int = 1) -> None:
        self.counts[(outcome.value, reason, str(project_id))] += n


@dataclass(frozen=True, slots=True)
class IngestRequest:
    project_id: str  # as written in the path
    kind: str  # "envelope" or "store"
    body: bytes
    content_encoding: str | None
    auth_header: str | None
    query_key: str | None
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str | None
    accepted: int
    deduplicated: int
    skipped: dict[str, int]

    @property
    def rate_limits_header(self) -> str:
        """Announces the categories this server never stores (X-Sentry-Rate-Limits)."""
        return f"{UNSTORED_RETRY_SECONDS}:{';'.join(UNSTORED_CATEGORIES)}:organization"

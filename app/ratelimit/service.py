"""Request budgets per credential: one for reads, one for writes (logError), in fixed windows.

Fixed windows make the budget easy to show (limit, remaining, reset time) in headers and in the
`rateLimit` field, GitHub-style. Budgets live in this process: with N instances behind a balancer a
credential can spend up to N times its budget (docs/operations.md).
The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from app.core.errors import RateLimited

_MAX_TRACKED = 100_000


class Resource(str, Enum):
    READ = "READ"
    WRITE = "WRITE"


@dataclass(frozen=True, slots=True)
class Budget:
    resource: Resource
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the window ends
    cost: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(int(self.reset_at)),
            "X-RateLimit-Resource": self.resource.value.lower(),
        }


class RateLimiter:
    def __init__(
        self, reads: int, writes: int, window_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = {Resource.READ: reads, Resource.WRITE: writes}
        self.window = window_seconds
        self.clock = clock
        # (key id, resource) -> (window start, units spent)
        self._spent: dict[tuple[str, Resource], tuple[float, int]] = {}

    def charge(self, key_id: str, resource: Resource, cost: int = 1) -> Budget:
        """Spends `cost` units, or raises RATE_LIMITED (spending nothing) when they do not fit."""
        now = self.clock()
        start = now - now % self.window
        limit = self.limits[resource]
        window_start, spent = self._spent.get((key_id, resource), (start, 0))
        if window_start != start:
            spent = 0
        reset_at = start + self.window
        if spent + cost > limit:
            retry_after = max(1, int(reset_at - now + 0.999))
            raise RateLimited(
                f"Rate limit of {limit} {resource.value.lower()} units per {self.window:g} s exceeded",
                retry_after=retry_after,
                budget=Budget(resource, limit, max(limit - spent, 0), reset_at, cost),
            )
        if len(self._spent) >= _MAX_TRACKED:
            self._spent = {k: v for k, v in self._spent.items() if v[0] == start}
        self._spent[(key_id, resource)] = (start, spent + cost)
        return Budget(resource, limit, limit - spent - cost, reset_at, cost)

"""Request budgets per credential: one for reads, one for writes (logError), in fixed windows.

Fixed windows make the budget easy to show (limit, remaining, reset time) in headers and in the
`rateLimit` field, GitHub-style. The clock is injectable for tests.

Across instances (with a `BudgetStore`): the units of a window are shared through MongoDB, reserved in
blocks of `block` units (a twentieth of the limit) so that the hot path adds no round trip. A process
spends its current block locally and reserves the next one in the background when half of it is spent.
The first block of a window is granted at once, before the database confirms it: if the window's units
were already gone, that block is the overshoot, so all instances together grant at most
`limit + instances x block` units per window (5% per instance). Units reserved but not spent when the
window ends are lost (undershoot of at most a block per instance). Without a store, or while the
database is away, budgets are per process, as N instances granting N times the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from app.core.errors import AppError, RateLimited

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


class SharedBudgets(Protocol):
    async def reserve(self, budget_id: str, units: int, expires_at_s: float) -> int: ...


@dataclass(slots=True)
class _Window:
    start: float
    spent: int = 0  # units this process spent in the window
    granted: int = 0  # units this process may spend (its blocks)
    seen: int = 0  # the window's reserved total (all instances) when last reserved
    need: int = 0  # units a refused charge lacked: the next reservation takes at least these
    refill: asyncio.Task[None] | None = field(default=None, repr=False)


class RateLimiter:
    def __init__(
        self,
        reads: int,
        writes: int,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
        shared: SharedBudgets | None = None,
    ) -> None:
        self.limits = {Resource.READ: reads, Resource.WRITE: writes}
        self.window = window_seconds
        self.clock = clock
        self.shared = shared
        self._windows: dict[tuple[str, Resource], _Window] = {}
        self.reservations = 0  # round trips made to reserve blocks (plain counter)

    def block(self, resource: Resource) -> int:
        return max(1, self.limits[resource] // 20)

    def charge(self, key_id: str, resource: Resource, cost: int = 1) -> Budget:
        """Spends `cost` units, or raises RATE_LIMITED (spending nothing) when they do not fit."""
        now = self.clock()
        start = now - now % self.window
        limit = self.limits[resource]
        window = self._windows.get((key_id, resource))
        if window is None or window.start != start:
            window = self._open(key_id, resource, start)
        reset_at = start + self.window
        allowed = window.granted if self.shared is not None else limit
        if window.spent + cost > min(allowed, limit):
            retry_after = max(1, int(reset_at - now + 0.999))
            if self.shared is not None and window.spent + cost <= limit and window.seen < limit:
                window.need = window.spent + cost - window.granted
                self._reserve_later(key_id, resource, window)
                retry_after = 1  # more units may be reserved at once
            raise RateLimited(
                f"Rate limit of {limit} {resource.value.lower()} units per {self.window:g} s exceeded",
                retry_after=retry_after,
                budget=Budget(resource, limit, self._remaining(window, limit), reset_at, cost),
            )
        window.spent += cost
        if self.shared is not None and window.granted - window.spent < self.block(resource) // 2 + cost:
            self._reserve_later(key_id, resource, window)
        return Budget(resource, limit, self._remaining(window, limit), reset_at, cost)

    async def spend(self, key_id: str, resource: Resource, cost: int = 1) -> Budget:
        """`charge`, except that when this process's block is spent while the next one is being
        reserved, it waits for that reservation (one round trip, in bursts only) rather than refuse."""
        try:
            return self.charge(key_id, resource, cost)
        except RateLimited:
            window = self._windows.get((key_id, resource))
            if window is None or window.refill is None or window.refill.done():
                raise
            with contextlib.suppress(Exception):
                await window.refill
            return self.charge(key_id, resource, cost)

    def _remaining(self, window: _Window, limit: int) -> int:
        if self.shared is None:
            return max(limit - window.spent, 0)
        # What the others reserved, plus what this process spent.
        others = max(window.seen - window.granted, 0)
        return max(limit - others - window.spent, 0)

    def _open(self, key_id: str, resource: Resource, start: float) -> _Window:
        if len(self._windows) >= _MAX_TRACKED:
            self._windows = {k: w for k, w in self._windows.items() if w.start == start}
        window = _Window(start)
        if self.shared is not None:
            # The window's first block is granted at once (the hot path does not wait for the
            # database); its reservation confirms or takes it back (the bounded overshoot).
            window.granted = self.block(resource)
            self._reserve_later(key_id, resource, window, provisional=True)
        self._windows[(key_id, resource)] = window
        return window

    def _reserve_later(
        self, key_id: str, resource: Resource, window: _Window, provisional: bool = False
    ) -> None:
        if window.refill is not None and not window.refill.done():
            return
        window.refill = asyncio.get_running_loop().create_task(
            self._reserve(key_id, resource, window, provisional)
        )

    async def _reserve(self, key_id: str, resource: Resource, window: _Window, provisional: bool) -> None:
        """Reserves blocks until this process holds at least half a block unspent (or what a refused
        charge lacked), or the window's units are gone."""
        assert self.shared is not None
        block, limit = self.block(resource), self.limits[resource]
        budget_id = f"{key_id}:{resource.value}:{int(window.start)}"
        while True:
            units = block if provisional else max(block, window.need)
            if not provisional:  # the provisional block is already granted: a need is served next
                window.need = 0
            self.reservations += 1
            try:
                total = await self.shared.reserve(budget_id, units, window.start + 2 * self.window)
            except AppError:  # the database is away: this process grants on its own, as without a store
                if not provisional:
                    window.granted += units
                return
            available = min(max(limit - (total - units), 0), units)
            window.seen = max(window.seen, total)
            window.granted += available - (units if provisional else 0)
            provisional = False
            short = window.need > 0 or window.granted - window.spent <= block // 2
            if not short or window.seen >= limit:
                return

    async def settle(self) -> None:
        """Waits for the reservations in flight (tests; a clean shutdown)."""
        for window in list(self._windows.values()):
            if window.refill is not None:
                with contextlib.suppress(Exception):
                    await window.refill

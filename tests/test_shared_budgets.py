"""Rate-limit budgets hold across instances: two limiters (two processes' worth) sharing one database
grant together at most the limit plus a block each per window, without a round trip on the hot path."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.errors import RateLimited
from app.ratelimit.service import RateLimiter, Resource
from app.ratelimit.store import BudgetStore
from tests.conftest import LiveServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_020.0  # 20 s into a 60 s window

    def __call__(self) -> float:
        return self.now


async def spend_until_refused(limiter: RateLimiter, key: str, tries: int) -> int:
    granted = 0
    for _ in range(tries):
        try:
            await limiter.spend(key, Resource.READ)
        except RateLimited:
            break
        granted += 1
    return granted


def test_two_instances_share_one_budget(server: LiveServer) -> None:
    limit, clock = 100, Clock()
    key = f"shared-{id(clock)}"

    async def run(services: Any) -> tuple[int, int, int, int]:
        store = BudgetStore(services.events._store._col.database)
        await store.ensure_indexes()
        first, second = (RateLimiter(limit, limit, 60, clock=clock, shared=store) for _ in range(2))
        # The instances take turns, as a balancer spreads one client's requests.
        total = 0
        for _ in range(30):
            total += await spend_until_refused(first, key, 7)
            total += await spend_until_refused(second, key, 7)
        await first.settle()
        await second.settle()
        refused_first = await spend_until_refused(first, key, 50)
        return total, refused_first, first.reservations, second.reservations

    total, after, reservations_a, reservations_b = server.call(run)
    block = limit // 20
    assert limit - 2 * block <= total <= limit + 2 * block  # the documented bounds
    assert after == 0  # the window's units are gone for every instance
    # Reserved in blocks: far fewer round trips than requests.
    assert reservations_a + reservations_b <= total // block + 6


def test_a_new_window_starts_afresh_and_a_burst_waits_for_its_block(server: LiveServer) -> None:
    limit, clock = 40, Clock()
    key = f"window-{id(clock)}"

    async def run(services: Any) -> tuple[int, int]:
        store = BudgetStore(services.events._store._col.database)
        limiter = RateLimiter(limit, limit, 60, clock=clock, shared=store)
        first = await spend_until_refused(limiter, key, 100)  # blocks of 2 units, refilled on the way
        clock.now += 60
        second = await spend_until_refused(limiter, key, 100)
        return first, second

    first, second = server.call(run)
    assert limit - 2 <= first <= limit + 2 and limit - 2 <= second <= limit + 2


def test_without_a_database_each_instance_keeps_its_own_budget() -> None:
    limiter = RateLimiter(3, 3, 60, clock=Clock())
    for _ in range(3):
        limiter.charge("k", Resource.READ)
    with pytest.raises(RateLimited):
        limiter.charge("k", Resource.READ)


def test_a_charge_larger_than_a_block_waits_for_enough_units(server: LiveServer) -> None:
    clock = Clock()
    key = f"large-{id(clock)}"

    async def run(services: Any) -> int:
        store = BudgetStore(services.events._store._col.database)
        limiter = RateLimiter(600, 600, 60, clock=clock, shared=store)  # blocks of 30
        budget = await limiter.spend(key, Resource.READ, 31)  # an errorStats over a long range
        return budget.remaining

    assert server.call(run) == 600 - 31

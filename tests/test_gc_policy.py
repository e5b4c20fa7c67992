"""The GC policy (app.runtime.gc_policy): survivors of a slow full collection are frozen, so later full passes
skip them; the periodic sweep walks everything again and reclaims what died while frozen."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette

from app.runtime.gc_policy import MIDDLE_THRESHOLD, FreezeSurvivors, set_young_threshold
from app.runtime.server import GracefulServer


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def tracked(obj: object) -> bool:
    """Whether the collector tracks `obj` (frozen objects it does not). By identity: `in` would compare
    with every live object's __eq__, and some (PyMongo's connections) raise for a stranger."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
async def policy() -> AsyncIterator[FreezeSurvivors]:
    # Every full collection counts as slow here, and freezes may follow each other at once.
    installed = FreezeSurvivors(sweep_seconds=3600, slow_seconds=0, min_interval=0)
    installed.install(asyncio.get_running_loop())
    try:
        yield installed
    finally:
        installed.uninstall()
    assert gc.get_freeze_count() == 0 and installed._after_collection not in gc.callbacks


async def test_survivors_of_a_full_collection_are_frozen(policy: FreezeSurvivors) -> None:
    gc.unfreeze()
    survivor = Node()
    gc.collect()
    await asyncio.sleep(0)  # the freeze is scheduled on the loop, after the collection
    assert gc.get_freeze_count() > 0
    assert not tracked(survivor)  # frozen objects are not the collector's any more


async def test_the_sweep_reclaims_a_cycle_that_died_while_frozen(policy: FreezeSurvivors) -> None:
    doomed = Node()
    alive = weakref.ref(doomed)
    gc.collect()
    await asyncio.sleep(0)
    del doomed
    gc.collect()
    assert alive() is not None  # frozen: the full collection did not look at it
    policy.sweep()
    assert alive() is None
    await asyncio.sleep(0)
    assert gc.get_freeze_count() > 0  # the sweep's survivors are frozen again


class Ticks:
    """A clock under the test's control: each reading advances it by `step` seconds."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_a_full_collection_is_slow_by_its_cpu_time_not_the_wall_clock() -> None:
    # A fast pass (no CPU time between its start and its end) does not freeze, however loaded the machine.
    fast = FreezeSurvivors(sweep_seconds=3600, slow_seconds=0.05, min_interval=0, clock=Ticks(0.0))
    fast.install(asyncio.get_running_loop())
    try:
        survivor = Node()
        gc.collect()
        await asyncio.sleep(0)
        assert tracked(survivor)  # not frozen: only start-up's freeze
        assert gc.get_freeze_count() <= fast.baseline
    finally:
        fast.uninstall()
    slow = FreezeSurvivors(sweep_seconds=3600, slow_seconds=0.05, min_interval=0, clock=Ticks(0.1))
    slow.install(asyncio.get_running_loop())
    try:
        survivor = Node()
        gc.collect()
        await asyncio.sleep(0)
        assert not tracked(survivor)  # frozen
    finally:
        slow.uninstall()


async def test_garbage_pinned_by_freezes_is_swept_once_the_frozen_set_doubles(
    policy: FreezeSurvivors,
) -> None:
    live = policy.baseline
    assert live > 0
    # Cycles frozen while alive, then dropped (documents evicted from a cache): the collector skips them.
    pinned = [Node() for _ in range(live // 2)]
    first = weakref.ref(pinned[0])
    gc.collect()
    await asyncio.sleep(0)
    assert policy.sweeps == 0 and gc.get_freeze_count() > live
    del pinned
    gc.collect()
    assert first() is not None  # pinned: half the live heap again, under the limit
    # More of the same: past the size of the live heap, the next freeze sweeps at once.
    more = [Node() for _ in range(2 * live // 3)]
    gc.collect()
    await asyncio.sleep(0)
    assert policy.early_sweeps == 1 and policy.sweeps == 1
    assert first() is None  # the sweep reclaimed the dead cycles
    assert policy.baseline < live + len(more) + live // 2  # the reference is the live heap again
    assert not tracked(more[-1])  # the live ones are frozen again


async def test_closed_connections_are_reclaimed_by_an_early_sweep() -> None:
    """A closed subscriber's objects are cycles; frozen, they wait for a sweep: once as many connections
    have closed since the last sweep as are open, one comes (bench/closed_sockets.py measures the RSS)."""
    open_now = [300]
    policy = FreezeSurvivors(
        sweep_seconds=3600, slow_seconds=0, min_interval=0, min_closed=100, poll_seconds=0.01
    )
    policy.install(asyncio.get_running_loop(), open_connections=lambda: open_now[0])
    try:
        doomed = Node()
        alive = weakref.ref(doomed)
        gc.collect()
        await asyncio.sleep(0)  # frozen with the connection it stands for
        del doomed
        open_now[0] = 250  # 50 closed: fewer than the minimum and than those open
        await asyncio.sleep(0.05)
        assert policy.closed_sweeps == 0 and alive() is not None
        open_now[0] = 100  # 200 closed since the last sweep, 100 open
        for _ in range(100):
            if policy.closed_sweeps:
                break
            await asyncio.sleep(0.01)
        assert policy.closed_sweeps == 1 and alive() is None
        assert policy.closed_since_sweep == 0
    finally:
        policy.uninstall()


async def test_a_server_raises_the_young_threshold_while_it_runs_and_puts_it_back() -> None:
    app = Starlette()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    config.load()
    server = GracefulServer(config, app, gc_young_threshold=12_345)
    server.lifespan = config.lifespan_class(config)
    before = gc.get_threshold()
    await server.startup()
    try:
        assert gc.get_threshold() == (12_345, MIDDLE_THRESHOLD, before[2])
    finally:
        await server.shutdown()
    assert gc.get_threshold() == before


def test_setting_the_young_threshold_keeps_the_oldest_generations() -> None:
    before = gc.get_threshold()
    previous = set_young_threshold(before[0] + 1)
    try:
        assert previous == before
        assert gc.get_threshold() == (before[0] + 1, MIDDLE_THRESHOLD, before[2])
    finally:
        gc.set_threshold(*previous)

"""The GC policy (app.runtime.gc_policy): survivors of a slow full collection are frozen, so later full passes
skip them; the periodic sweep walks everything again and reclaims what died while frozen."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from app.runtime.gc_policy import FreezeSurvivors


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


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
    assert survivor not in gc.get_objects()  # frozen objects are not the collector's any more


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

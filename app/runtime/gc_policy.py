"""Short garbage-collection pauses with thousands of open subscriptions.

CPython's full collection (generation 2) walks every tracked object: an open subscription keeps about
240 (uvicorn, Starlette, Strawberry, graphql-core), so at 5,000 subscribers a full pass took ~450 ms, and
each broadcast leaves a few objects per subscriber to promote, so one came every ~10 status changes: the
slowest deliveries (bench/subscriptions.py). Long-lived objects do not need walking again and again:

- after a full collection that took long (a big heap: many subscribers), the survivors are frozen
  (`gc.freeze`: moved to a generation the collector skips), so the next full pass walks only what was
  created since. A freeze also catches objects that are about to die in cycles (an in-flight request's):
  those wait for the sweep, so freezes are rare (at most one a second) and only on a big heap;
- every `sweep_seconds` they are unfrozen and one full pass walks everything, which reclaims the cycles
  of objects that died while frozen (closed connections, mostly): memory is held for at most that long;
- and sooner once as many connections have closed since the last sweep as are open now (at least
  MIN_CLOSED_FOR_SWEEP; counted by polling the open WebSockets every second): a closed subscriber's
  objects are cycles (uvicorn's protocol, Starlette's WebSocket, Strawberry's handler and tasks), and
  once frozen only a sweep reclaims them. Measured (bench/closed_sockets.py, rounds of 1,000
  subscribers opened and closed): without this, RSS after each round's close grew 122, 137, 161 MiB;
  with it, it stays flat as with the policy off, the sweep walking only what is left;
- and sooner when the frozen set has doubled since the last sweep (`MAX_FROZEN_GROWTH`): what a
  freeze pinned is then mostly garbage (documents evicted from the bounded caches are cycles of tokens;
  in-flight requests' objects), not a heap of subscribers. A sweep resets the reference to the live heap,
  so a heap that really grows is swept each time it doubles (amortised: a few sweeps while thousands of
  subscribers arrive, none once they are there), and dead cycles never hold more than the live heap.

The youngest generation's threshold is raised too (`young_threshold`, GC_YOUNG_THRESHOLD). CPython collects
it whenever 700 more container objects have been made than freed. A request's objects are nearly all
freed by reference counting as it ends, but an SDK event parses into several hundred (its JSON, then
its frames and breadcrumbs), so with 32 requests in flight the young generation filled every request
or two; every collection walked the in-flight objects, found nothing to free, and moved them into the
next generation, whose own passes walked them again. Measured with `gc.callbacks` under
bench/sdk_ingest.py (envelopes at 32 connections): 6% of the server's CPU, 1,227 young and 111 middle
collections in 8 s, which freed 5 objects. With 10,000 there was one young collection in the same run.
What waits longer between collections is garbage in cycles, which these requests make rarely; the
middle generation is collected more often in return (MIDDLE_THRESHOLD, below).

"Took long" is the collecting thread's CPU time, not wall time: on a busy machine a small heap's pass
can take 50 ms of wall time while other processes run, and freezing then pins the garbage of ordinary
traffic for nothing (measured: the frozen set grew with every request under mixed HTTP load).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("app.gc")


# With the young threshold raised, the middle generation is collected at every other young collection:
# at CPython's 10 it came every 110,000 net allocations instead of 7,700, and the cycles that die there
# (documents evicted from the bounded caches) then held memory longer. Measured with bench/memory.py
# (40,000 requests, RSS at 20,000 and 40,000): CPython's thresholds 124.6 and 126.6 MiB; young 10,000 with
# the middle at 10 113.5 and 134.1 MiB (flat at 135 only after 40,000: the full run's growth from 20,000
# to 100,000 was 19%, over its 10% target); with the middle at 1, 126.4 and 126.9 MiB.
MIDDLE_THRESHOLD = 1


def set_young_threshold(threshold: int) -> tuple[int, int, int]:
    """Sets the youngest generation's threshold, and the middle one's to MIDDLE_THRESHOLD (the oldest is
    kept); returns the thresholds before, for `gc.set_threshold(*before)` to undo."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, MIDDLE_THRESHOLD, before[2])
    return before


SLOW_COLLECTION_SECONDS = 0.05  # a full pass this long means a big heap worth freezing (measured: an
# idle server's full pass takes about 12 ms; with 1,000 subscribers about 100 ms)
MIN_FREEZE_INTERVAL = 1.0  # what a freeze catches mid-flight (a request's cycles) waits for the sweep
MAX_FROZEN_GROWTH = 1.0  # a sweep comes early once the frozen set is this much larger than after the last
MIN_CLOSED_FOR_SWEEP = 200  # closed connections (about 240 objects each) worth an early sweep
CONNECTIONS_POLL_SECONDS = 1.0


class FreezeSurvivors:
    def __init__(
        self,
        sweep_seconds: float,
        slow_seconds: float = SLOW_COLLECTION_SECONDS,
        min_interval: float = MIN_FREEZE_INTERVAL,
        max_growth: float = MAX_FROZEN_GROWTH,
        clock: Callable[[], float] = time.thread_time,
        min_closed: int = MIN_CLOSED_FOR_SWEEP,
        poll_seconds: float = CONNECTIONS_POLL_SECONDS,
    ) -> None:
        self.sweep_seconds = sweep_seconds
        self.slow_seconds = slow_seconds
        self.min_interval = min_interval
        self.max_growth = max_growth
        self.clock = clock  # CPU time of the collecting thread: the heap's size, not the machine's load
        self.baseline = 0  # objects frozen right after the last sweep (or start-up): the live heap then
        self.sweeps = 0
        self.early_sweeps = 0
        self.min_closed = min_closed
        self.poll_seconds = poll_seconds
        self.closed_since_sweep = 0  # connections seen closing since the last sweep (a lower bound)
        self.closed_sweeps = 0
        self._open_connections: Callable[[], int] | None = None
        self._last_open = 0
        self._poller: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._freeze_due = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._started = 0.0
        self._last_freeze = float("-inf")  # time.monotonic()

    def install(
        self, loop: asyncio.AbstractEventLoop, open_connections: Callable[[], int] | None = None
    ) -> None:
        """`open_connections`: how many long-lived connections (WebSockets) are open now."""
        self._loop = loop
        gc.freeze()  # what start-up built (modules, the schema) lives as long as the process
        self.baseline = gc.get_freeze_count()
        gc.callbacks.append(self._after_collection)
        self._sweeper = loop.call_later(self.sweep_seconds, self.sweep)
        if open_connections is not None:
            self._open_connections = open_connections
            self._last_open = open_connections()
            self._poller = loop.call_later(self.poll_seconds, self._poll_connections)

    def _poll_connections(self) -> None:
        assert self._open_connections is not None and self._loop is not None
        now_open = self._open_connections()
        self.closed_since_sweep += max(0, self._last_open - now_open)
        self._last_open = now_open
        # Whether frozen or not yet (in the oldest generation, which CPython collects only once it has
        # grown by a quarter), the closed connections' cycles wait for a full pass: this is one.
        if self.closed_since_sweep >= max(self.min_closed, now_open):
            self.closed_sweeps += 1
            self.sweep()
        self._poller = self._loop.call_later(self.poll_seconds, self._poll_connections)

    def uninstall(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._poller is not None:
            self._poller.cancel()
        gc.unfreeze()

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        now = self.clock()
        if phase == "start":
            self._started = now
            return
        slow = now - self._started >= self.slow_seconds
        wall = time.monotonic()
        if slow and not self._freeze_due and wall - self._last_freeze >= self.min_interval and self._loop:
            # Called inside the collector: freezing here would change its lists under it. Soon after.
            self._freeze_due = True
            self._loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        self._freeze_due = False
        self._last_freeze = time.monotonic()
        gc.freeze()
        if gc.get_freeze_count() > self.baseline * (1 + self.max_growth):
            self.early_sweeps += 1
            self.sweep()

    def sweep(self) -> None:
        """One full pass over everything, then the survivors frozen again: they are the live heap."""
        started = time.perf_counter()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.baseline = gc.get_freeze_count()
        self.sweeps += 1
        self.closed_since_sweep = 0
        log.info(
            "gc sweep: %d frozen objects walked, %d collected, %d live in %.0f ms",
            frozen,
            collected,
            self.baseline,
            (time.perf_counter() - started) * 1000,
        )
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._loop is not None:
            self._sweeper = self._loop.call_later(self.sweep_seconds, self.sweep)

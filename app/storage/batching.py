"""Group commit: concurrent callers of one database write share a round trip.

Every round trip through PyMongo costs the server about 0.15 ms of CPU (measured with py-spy on
logError: retryable-write bookkeeping, session, server selection, pool checkout), whatever it carries.
A `Batcher` runs at most one flush at a time; what is submitted while a flush is in flight waits for
it and goes out together in the next one. A lone caller is flushed at once, so nothing waits on a
timer: under load batches grow by themselves, idle the latency is one round trip as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# flush(items) -> one result per item, in order, or the exception that item's caller should see.
Flush = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    def __init__(self, flush: Flush[Item, Result], max_batch: int = 256) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        return await self.post(item)

    def post(self, item: Item) -> asyncio.Future[Result]:
        """Queues `item` for the next flush without waiting for it: its future holds the result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:  # the whole batch failed: every caller sees why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException:  # cancelled (shutdown): no caller is left waiting for nothing
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []
            raise
        finally:
            self._task = None


class _Group:
    __slots__ = ("gate", "members")

    def __init__(self, gate: asyncio.Future[None] | None) -> None:
        self.gate = gate
        self.members = 0


class Cohort:
    """Callers of a pipeline of batched steps go through it in cohorts.

    At most `concurrent` cohorts are inside at a time; newcomers meanwhile wait at the gate and enter
    together, as the next cohort, when one inside has left. Each step's `Batcher` then sees whole
    cohorts: one round trip per step for all of one. Without the gate, callers spread over the steps
    under steady load and every flush carries only those that happened to reach its step meanwhile.
    A caller finding room enters at once, so idle nothing waits. Use: `cohort = await c.enter()`,
    then `c.leave(cohort)` in a `finally`.

    The price: the steps of one cohort no longer overlap those of the next, and a slow member (a
    resend answered from its first copy, a new group) holds its cohort's place for its extra round
    trips (the database's timeouts bound every one). Logging an event (docs/performance.md,
    "Cohorts") therefore answers before its last step, the count mark, is written.
    """

    def __init__(self, concurrent: int = 1) -> None:
        self._concurrent = concurrent
        self._inside: list[_Group] = []
        self._forming: _Group | None = None  # at the gate

    async def enter(self) -> _Group:
        """Returns the caller's cohort, to `leave` when done (always: `try/finally`)."""
        if self._forming is None and len(self._inside) < self._concurrent:
            group = _Group(None)
            group.members = 1
            self._inside.append(group)
            return group
        if self._forming is None:
            self._forming = _Group(asyncio.get_running_loop().create_future())
        group = self._forming
        assert group.gate is not None
        group.members += 1
        try:
            # Shielded: a waiter's cancellation must not cancel the gate the others wait on.
            await asyncio.shield(group.gate)
        except asyncio.CancelledError:
            if group.gate.done():  # let in already, and counted inside: leave
                self.leave(group)
            else:
                group.members -= 1
            raise
        return group

    def leave(self, group: _Group) -> None:
        group.members -= 1
        if group.members:
            return
        self._inside.remove(group)
        forming = self._forming
        if forming is None or forming.gate is None:
            return
        self._forming = None
        if forming.members:
            self._inside.append(forming)
            forming.gate.set_result(None)
        else:  # every waiter was cancelled: nobody to let in
            forming.gate.cancel()

    @property
    def waiting(self) -> int:
        return self._forming.members if self._forming is not None else 0

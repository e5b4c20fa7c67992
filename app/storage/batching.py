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
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

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


class Cohort:
    """Callers of a pipeline of batched steps go through it in cohorts: `async with cohort: ...`.

    While callers are inside, newcomers wait at the gate and enter together once the last one is out.
    Each step's `Batcher` then sees the whole cohort at once: one round trip per step for all of it.
    Without the gate, callers spread over the steps under steady load and every flush carries only
    those that happened to reach its step meanwhile. Logging an event takes four batched steps
    (position, insert, group count, count mark): at 32 concurrent reporters the flushes grew from 7.5
    to 16 events and the commands per event fell by a third (docs/performance.md, "Cohorts"). A lone
    caller enters at once, so idle nothing waits.

    The price is that a slow member (a resend answered from its first copy, a new group) holds the
    next cohort back for its extra round trips; the database's timeouts bound every one of them.
    """

    def __init__(self) -> None:
        self._inside = 0
        self._gate: asyncio.Future[None] | None = None
        self._waiting = 0  # at the gate

    async def __aenter__(self) -> None:
        if self._inside == 0 and self._gate is None:
            self._inside = 1
            return
        if self._gate is None:
            self._gate = asyncio.get_running_loop().create_future()
        gate = self._gate
        self._waiting += 1
        try:
            # Shielded: a waiter's cancellation must not cancel the gate the others wait on.
            await asyncio.shield(gate)
        except asyncio.CancelledError:
            if gate.done():  # let in already, and counted inside: leave
                self._leave()
            else:
                self._waiting -= 1
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._leave()

    def _leave(self) -> None:
        self._inside -= 1
        if self._inside == 0 and self._gate is not None:
            gate, self._gate = self._gate, None
            self._inside, self._waiting = self._waiting, 0
            if self._inside:
                gate.set_result(None)
            else:  # every waiter was cancelled: nobody to let in
                gate.cancel()

    @property
    def waiting(self) -> int:
        return self._waiting

"""Admission control in front of the database: at most `limit` calls in flight per process.

A call beyond that waits for a free slot for at most `max_wait` seconds, with at most `max_waiting` calls
waiting; past either it is refused at once with SERVICE_UNAVAILABLE (HTTP 503, Retry-After: 1). Without
it a storm queues thousands of calls in the driver's connection pool until each times out, the timeouts
open the breaker, and every client (an operator's included) is refused for the breaker's cooldown. A
refusal here says the server is busy, not that the database failed: it never counts for the breaker.
"""

from __future__ import annotations

import asyncio

from app.core.errors import ServiceUnavailable

BUSY_MESSAGE = "The server is busy; retry shortly"


class Admission:
    def __init__(self, limit: int = 64, max_wait: float = 2.0, max_waiting: int = 2000) -> None:
        self.limit = limit
        self.max_wait = max_wait
        self.max_waiting = max_waiting
        self.waiting = 0
        self.refused = 0  # plain counter: the web layer may export it
        self._slots = asyncio.Semaphore(limit)

    @property
    def in_flight(self) -> int:
        return self.limit - self._slots._value

    async def acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without suspending
            return
        if self.waiting >= self.max_waiting:
            self._refuse()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait):
                await self._slots.acquire()
        except TimeoutError:
            self._refuse()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()

    def _refuse(self) -> None:
        self.refused += 1
        raise ServiceUnavailable(BUSY_MESSAGE, retry_after=1)

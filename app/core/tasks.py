"""Stopping background tasks so that they really stop.

`task.cancel()` then `await task` waits forever for a task that lost its cancellation and went on
with its loop. Python 3.11 loses one in `asyncio.wait_for` when the cancellation arrives just as the
awaited operation completes (the result is returned and the CancelledError dropped; fixed in 3.12),
and PyMongo's async network layer sends every command through `wait_for`. Seen in practice: a
server asked to stop (SIGTERM) while its status-page tick was writing stayed up indefinitely, its
lifespan shutdown waiting on a tick loop that had gone back to sleep. `stop_tasks` cancels again
whatever is still running after `retry_seconds`, until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RETRY_SECONDS = 1.0


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None], retry_seconds: float = RETRY_SECONDS) -> None:
    """Cancels `tasks` (None entries are skipped) and returns once every one of them has ended. What a
    task raised on its way out other than its cancellation is retrieved and dropped: a background loop
    that failed has nothing left to report at shutdown."""
    started = [task for task in tasks if task is not None]
    pending = {task for task in started if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_seconds)
    for task in started:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not log it as never retrieved

"""Background tasks stop for good (app.core.tasks): one that lost its cancellation (as Python 3.11's
`asyncio.wait_for` loses one that arrives just as the awaited operation completes) is cancelled again
instead of being waited for forever, which kept a server asked to stop running."""

from __future__ import annotations

import asyncio

from app.core.tasks import stop_tasks


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    never, lost = asyncio.Event(), asyncio.Event()

    async def loses_one_cancellation() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            lost.set()  # dropped, and on with its loop
        await never.wait()

    task = asyncio.create_task(loses_one_cancellation())
    await asyncio.sleep(0)  # let it start waiting
    async with asyncio.timeout(10):  # a failure, not a hang
        await stop_tasks([task], retry_seconds=0.01)
    assert lost.is_set() and task.cancelled()


async def test_tasks_that_ended_or_failed_and_absent_ones_are_fine() -> None:
    async def fails() -> None:
        raise RuntimeError("a background loop that died earlier")

    async def waits() -> None:
        await asyncio.Event().wait()

    failed, done, running = (asyncio.create_task(c) for c in (fails(), asyncio.sleep(0), waits()))
    await asyncio.wait({failed, done})
    async with asyncio.timeout(10):
        await stop_tasks([failed, None, done, running])
    assert running.cancelled() and not failed.cancelled() and done.result() is None

"""Group commit (app.storage.batching): callers arriving while a flush is in flight share the next one,
and each gets its own result or its own failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.storage.batching import Batcher, Cohort


class Recorder:
    """A flush that records its batches and can be held open until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail_next: Exception | None = None

    async def flush(self, items: list[str]) -> Sequence[str | BaseException]:
        self.batches.append(items)
        self.entered.set()
        await self.gate.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


async def test_callers_arriving_during_a_flush_share_the_next_one() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit("a"))
    await recorder.entered.wait()  # the first flush is in flight, holding the gate
    later = [asyncio.create_task(batcher.submit(item)) for item in ("b", "c", "d")]
    await asyncio.sleep(0)  # let them queue
    recorder.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_each_caller_gets_its_own_failure() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.flush)
    results = await asyncio.gather(
        *(batcher.submit(item) for item in ("x", "bad-y", "z")), return_exceptions=True
    )
    assert results[0] == "X" and results[2] == "Z"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad-y"
    assert recorder.batches == [["x", "bad-y", "z"]]


async def test_a_failed_flush_fails_its_batch_and_the_next_one_runs() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.flush)
    recorder.fail_next = ConnectionError("database away")
    with pytest.raises(ConnectionError):
        await batcher.submit("a")
    assert await batcher.submit("b") == "B"


async def test_a_posted_item_goes_with_the_next_flush_and_its_future_tells_how() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit("a"))
    await recorder.entered.wait()
    posted = batcher.post("b")  # not awaited by anyone: the caller goes on
    failing = batcher.post("bad-c")
    assert not posted.done() and recorder.batches == [["a"]]
    later = asyncio.create_task(batcher.submit("d"))
    recorder.gate.set()
    assert (await first, await later, await posted) == ("A", "D", "B")
    assert recorder.batches == [["a"], ["b", "bad-c", "d"]]
    with pytest.raises(ValueError):
        await failing


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    gone = asyncio.create_task(batcher.submit("a"))
    stays = asyncio.create_task(batcher.submit("b"))
    await recorder.entered.wait()
    gone.cancel()
    recorder.gate.set()
    assert await stays == "B"
    with pytest.raises(asyncio.CancelledError):
        await gone


# --- cohorts -------------------------------------------------------------------------------------


class Pipeline:
    """Two batched steps behind a cohort, like logging an event (position, then insert)."""

    def __init__(self, concurrent: int = 1) -> None:
        self.first = Recorder()
        self.second = Recorder()
        self.steps = (Batcher(self.first.flush), Batcher(self.second.flush))
        self.cohort = Cohort(concurrent)

    async def run(self, item: str) -> str:
        cohort = await self.cohort.enter()
        try:
            await self.steps[0].submit(item)
            return await self.steps[1].submit(item)
        finally:
            self.cohort.leave(cohort)

    async def held(self, item: str) -> asyncio.Task[str]:
        """A caller inside, held at its second step until `second.gate` is set."""
        self.second.gate.clear()
        task = asyncio.create_task(self.run(item))
        await self.second.entered.wait()
        return task

    async def arriving(self, *items: str) -> list[asyncio.Task[str]]:
        """Callers arriving now, each as far as it gets."""
        tasks = [asyncio.create_task(self.run(item)) for item in items]
        await asyncio.sleep(0)
        return tasks


async def test_a_lone_caller_goes_straight_through() -> None:
    pipeline = Pipeline()
    assert await pipeline.run("a") == "A"
    assert await pipeline.run("b") == "B"
    assert pipeline.first.batches == [["a"], ["b"]] and pipeline.cohort.waiting == 0


async def test_callers_arriving_while_a_cohort_is_inside_go_through_every_step_together() -> None:
    pipeline = Pipeline()
    first = await pipeline.held("a")
    later = await pipeline.arriving("b", "c", "d")
    # Without the gate "b", "c" and "d" would already be at the first step while "a" is at the second.
    assert pipeline.first.batches == [["a"]] and pipeline.cohort.waiting == 3
    pipeline.second.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert pipeline.first.batches == [["a"], ["b", "c", "d"]]
    assert pipeline.second.batches == [["a"], ["b", "c", "d"]]


async def test_with_room_for_two_cohorts_the_second_enters_and_the_third_waits() -> None:
    pipeline = Pipeline(concurrent=2)
    first = await pipeline.held("a")  # cohort one, at its second step
    second = await pipeline.arriving("b")  # cohort two enters at once: its first step runs meanwhile
    later = await pipeline.arriving("c", "d")
    assert pipeline.first.batches == [["a"], ["b"]] and pipeline.cohort.waiting == 2
    pipeline.second.gate.set()
    assert [await first, *await asyncio.gather(*second, *later)] == ["A", "B", "C", "D"]
    assert pipeline.first.batches == [["a"], ["b"], ["c", "d"]]


async def test_a_failing_member_lets_the_next_cohort_in() -> None:
    pipeline = Pipeline()
    pipeline.second.fail_next = ValueError("database away")
    failing = await pipeline.held("a")
    (later,) = await pipeline.arriving("b")
    pipeline.second.gate.set()
    with pytest.raises(ValueError):
        await failing
    assert await later == "B"


async def test_a_waiter_cancelled_at_the_gate_leaves_the_others_to_enter() -> None:
    pipeline = Pipeline()
    first = await pipeline.held("a")
    gone, stays = await pipeline.arriving("x", "b")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert pipeline.cohort.waiting == 1
    pipeline.second.gate.set()
    assert (await first, await stays) == ("A", "B")
    assert pipeline.first.batches == [["a"], ["b"]]
    assert await pipeline.run("c") == "C"  # and nobody is left counted inside


async def test_a_waiter_cancelled_as_the_gate_opens_is_not_left_counted_inside() -> None:
    pipeline = Pipeline()
    first = await pipeline.held("a")
    (gone,) = await pipeline.arriving("x")
    pipeline.second.gate.set()
    assert await first == "A"  # the gate is open: "x" is let in but has not run yet
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await asyncio.wait_for(pipeline.run("b"), 1) == "B"  # not waiting for a member that left


async def test_when_every_waiter_was_cancelled_the_next_caller_enters_at_once() -> None:
    pipeline = Pipeline()
    first = await pipeline.held("a")
    (gone,) = await pipeline.arriving("x")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    pipeline.second.gate.set()
    assert await first == "A"
    assert await asyncio.wait_for(pipeline.run("b"), 1) == "B"

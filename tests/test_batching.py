"""Group commit (app.storage.batching): callers arriving while a flush is in flight share the next one,
and each gets its own result or its own failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from app.storage.batching import Batcher


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

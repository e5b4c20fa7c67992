"""The live feed of logged events: one watcher per process fans out to all its subscribers.

Events logged by this process are published at once. Events logged by other instances sharing the
database are found by polling `seq` (an atomic counter) every FEED_POLL_SECONDS: one query per process,
never one per subscriber. Positions are allocated before the insert, so position 7 can become visible
before 6; a missing position is waited for up to `grace` seconds (an insert in flight) and then given up
(an insert that failed). Each position is published once per process.

With FEED_MODE=stream (the default for a configured MONGODB_URI: "auto") a MongoDB change stream
pushes events as they commit, for lower latency; the poll keeps running as the safety net, so a
deployment without change streams (a standalone mongod) or a broken stream only costs latency. The
embedded database polls only: nx-27017's idle change-stream watcher costs about half a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from app.core.errors import AppError
from app.core.pubsub import Mailbox, PubSub
from app.core.tasks import stop_tasks
from app.events.model import ErrorEventRecord
from app.events.store import ChangeStreamsUnsupported, EventStore

log = logging.getLogger("app.feed")
EVENTS_TOPIC = "error-events"
BATCH = 1000
STREAM_RETRY_SECONDS = 5.0


class EventFeed:
    def __init__(
        self, store: EventStore, pubsub: PubSub, interval: float, grace: float = 5.0, stream: bool = False
    ) -> None:
        self._stream_wanted = stream
        self.streaming = False
        self._store = store
        self._pubsub = pubsub
        self._interval = interval
        self._grace = grace
        self._next = 1  # the lowest position not yet accounted for
        self._published: set[int] = set()  # positions >= _next already published
        self._holes: dict[int, float] = {}  # missing position -> when it was first noticed
        # Positions this process is storing an event at: it will publish them itself, so the poll
        # neither decodes them nor gives up waiting for them (see `expect`).
        self._expected: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.running = False

    async def start(self) -> None:
        self._next = await self._store.last_seq() + 1
        self._tasks = [asyncio.create_task(self._poll_forever(), name="event-feed")]
        if self._stream_wanted:
            self._tasks.append(asyncio.create_task(self._stream_forever(), name="event-stream"))
        self.running = True

    async def stop(self) -> None:
        self.running = False
        await stop_tasks(self._tasks)
        self._tasks = []

    def subscribe(self) -> Mailbox:
        """`with feed.subscribe() as mailbox:` receives every event published from then on."""
        return self._pubsub.subscribe(EVENTS_TOPIC)

    @contextlib.contextmanager
    def expect(self, seq: int) -> Iterator[None]:
        """`with feed.expect(seq):` around storing an event at `seq` that this process publishes itself
        (`publish_local`) within the block: meanwhile the poll skips that position without reading it.
        Whatever becomes of the block, the position is the poll's again afterwards, so an event stored
        but not published (a failure after the insert) is still found."""
        self._expected.add(seq)
        try:
            yield
        finally:
            self._expected.discard(seq)

    def publish_local(self, event: ErrorEventRecord) -> None:
        """An event this process just stored: subscribers get it now, the poll will skip it."""
        self._deliver(event)

    async def _stream_forever(self) -> None:
        while self.running:
            try:
                self.streaming = True
                async for event in self._store.watch_inserts(self._known):
                    self._deliver(event)
            except ChangeStreamsUnsupported as exc:
                log.info("no change streams on this deployment (%s): polling only", exc)
                return
            except AppError:
                # The driver can turn a cancellation into an error of its own: a stop must still stop.
                task = asyncio.current_task()
                if not self.running or (task is not None and task.cancelling()):
                    raise asyncio.CancelledError from None
                log.warning("change stream interrupted; polling meanwhile")
            finally:
                self.streaming = False
            await asyncio.sleep(STREAM_RETRY_SECONDS)

    def _known(self, seq: int) -> bool:
        """Published already, or behind the feed's position: `_deliver` would drop it."""
        return seq < self._next or seq in self._published

    def _coming(self, seq: int) -> bool:
        """Known, or about to be published by this process."""
        return self._known(seq) or seq in self._expected

    def _deliver(self, event: ErrorEventRecord) -> None:
        if event.seq is not None and event.seq >= self._next and event.seq not in self._published:
            self._published.add(event.seq)
            self._pubsub.publish(EVENTS_TOPIC, event)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except AppError as exc:  # database away: keep the position, try again next round
                log.debug("event feed poll failed: %s", exc.message)
            except Exception:
                log.exception("event feed poll failed")

    async def poll(self) -> None:
        for event in await self._store.after_seq(self._next - 1, BATCH, known=self._coming):
            self._deliver(event)
        self._advance()

    def _advance(self) -> None:
        now = time.monotonic()
        while self._published:
            if self._next in self._published:
                self._published.discard(self._next)
                self._holes.pop(self._next, None)
                self._next += 1
                continue
            if self._next in self._expected:  # being stored here: no grace runs out on it
                break
            noticed = self._holes.setdefault(self._next, now)
            if now - noticed < self._grace:
                break
            self._holes.pop(self._next)  # that insert never completed
            self._next += 1

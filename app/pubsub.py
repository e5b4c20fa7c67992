"""In-process publish/subscribe: one topic per kind of live update, one bounded queue per subscriber.

A slow subscriber whose queue is full loses its oldest pending message rather than blocking the
publisher (the logger of an error must never wait on a dashboard).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.metrics import active_subscriptions

QUEUE_SIZE = 256


class PubSub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Any]]] = defaultdict(set)

    def publish(self, topic: str, message: Any) -> None:
        for queue in self._subscribers.get(topic, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[asyncio.Queue[Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[topic].add(queue)
        active_subscriptions.labels(topic).inc()
        try:
            yield queue
        finally:
            active_subscriptions.labels(topic).dec()
            self._subscribers[topic].discard(queue)
            if not self._subscribers[topic]:
                del self._subscribers[topic]

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers.get(topic, ()))

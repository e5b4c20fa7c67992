"""In-process publish/subscribe: one topic per kind of live update, one bounded mailbox per subscriber.

A slow subscriber whose mailbox is full loses its oldest pending message rather than blocking the
publisher (the logger of an error must never wait on a dashboard).

A mailbox is a deque and at most one waiting future, not an asyncio.Queue: every open subscription
holds one, and a Queue (three deques, an Event, a loop reference) costs several KiB more per
subscriber, measured at 5,000 subscribers (bench/subscriptions.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

QUEUE_SIZE = 256


class Mailbox:
    """A subscriber's pending messages, read by that subscriber alone. Used as a context manager:
    registered with its topic on entry, removed on exit."""

    __slots__ = ("_messages", "_pubsub", "_topic", "_waiter")

    def __init__(self, pubsub: PubSub, topic: str) -> None:
        self._pubsub = pubsub
        self._topic = topic
        self._messages: deque[Any] = deque(maxlen=QUEUE_SIZE)  # full: appending drops the oldest
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: Any) -> None:
        self._messages.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()

    def __enter__(self) -> Mailbox:
        self._pubsub._add(self._topic, self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pubsub._remove(self._topic, self)


class PubSub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Mailbox]] = {}

    def publish(self, topic: str, message: Any) -> None:
        for mailbox in self._subscribers.get(topic, ()):
            mailbox.put(message)

    def subscribe(self, topic: str) -> Mailbox:
        """`with pubsub.subscribe(topic) as mailbox:` receives what is published from then on."""
        return Mailbox(self, topic)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers.get(topic, ()))

    def subscriber_counts(self) -> dict[str, int]:
        """Open subscriptions by topic (for the metrics)."""
        return {topic: len(mailboxes) for topic, mailboxes in self._subscribers.items()}

    def _add(self, topic: str, mailbox: Mailbox) -> None:
        self._subscribers.setdefault(topic, set()).add(mailbox)

    def _remove(self, topic: str, mailbox: Mailbox) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(mailbox)
            if not subscribers:
                del self._subscribers[topic]

"""This server's recent request outcomes: the share that failed on the server's side, over a sliding
window of one-second buckets. Failed means INTERNAL_ERROR or SERVICE_UNAVAILABLE (a client's bad input
or credential says nothing about the API's health)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

SERVER_FAILURES = frozenset({"INTERNAL_ERROR", "SERVICE_UNAVAILABLE"})


class ErrorRate:
    def __init__(self, window_seconds: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window_seconds
        self.clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, requests, failures]

    def record(self, outcome: str) -> None:
        second = int(self.clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += outcome in SERVER_FAILURES
        self._trim(second)

    def share(self, min_requests: int) -> float | None:
        """Failed share over the window, or None with too few requests to judge."""
        self._trim(int(self.clock()))
        total = sum(b[1] for b in self._buckets)
        if total < min_requests:
            return None
        return sum(b[2] for b in self._buckets) / total

    def counts(self) -> tuple[int, int]:
        """(requests, server failures) over the window."""
        self._trim(int(self.clock()))
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window:
            self._buckets.popleft()

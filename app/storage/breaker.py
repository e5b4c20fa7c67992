"""A circuit breaker in front of the database.

Closed: calls go through. After `threshold` consecutive failures (unreachable or timed out) it opens:
calls fail at once with SERVICE_UNAVAILABLE and a retryAfter of the time left, instead of each waiting for
the driver's timeout. After `cooldown` seconds it half-opens: one call goes through as a trial; success
closes it, failure opens it again. A successful status probe (a ping) also closes it, so the server
recovers by itself once the database is back, even with no traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import Enum

from app.core.errors import ServiceUnavailable
from app.storage.admission import Admission


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        admission: Admission | None = None,
    ) -> None:
        self.admission = admission  # consulted first by translate_errors: the server's own queue
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def healthy(self) -> bool:
        """False from the first failed call until a call (or a probe) succeeds."""
        return self.state is BreakerState.CLOSED and self._failures == 0

    def before_call(self) -> None:
        if self.state is BreakerState.CLOSED:
            return
        waited = self.clock() - self._opened_at
        if self.state is BreakerState.OPEN and waited >= self.cooldown:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return
        raise ServiceUnavailable(retry_after=max(1, math.ceil(self.cooldown - waited)))

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._trial_running = False

    def failed(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self.state is BreakerState.HALF_OPEN or self._failures >= self.threshold:
            self.state = BreakerState.OPEN
            self._opened_at = self.clock()

    def released(self) -> None:
        """A call ended without telling anything (cancelled): let another trial through."""
        self._trial_running = False

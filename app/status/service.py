"""Service status: each component's state and why, kept in memory, refreshed by a periodic probe.

- storage: a database ping (unreachable: MAJOR_OUTAGE; slower than STATUS_SLOW_PING_SECONDS:
  DEGRADED_PERFORMANCE). authentication: the credential store is that database (unreachable:
  PARTIAL_OUTAGE, since recently verified keys still work from the cache). api: this server's share of
  INTERNAL_ERROR / SERVICE_UNAVAILABLE answers over the last minute (above STATUS_ERROR_RATE_THRESHOLD:
  DEGRADED_PERFORMANCE).
- Probe and error-rate states are damped: a new state must be seen STATUS_DAMPING_PROBES times in a row.
- An operator's override (setServiceStatus) wins until set back to OPERATIONAL or until its `until`.
  Overrides are stored; every instance polls them (FEED_POLL_SECONDS) and shows another's at once.
- Every change of a component's state is recorded as a transition (component, from, to, cause, observed
  figure, time, instance) under a position that orders transitions across instances. A transition that
  cannot be stored while the database is away is kept and stored when it returns.
Reads (`snapshot`) never touch the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from app.core.clock import utc_now
from app.core.errors import AppError, FieldProblem, InvalidRequest
from app.core.paging import Page
from app.core.pubsub import PubSub
from app.core.tasks import stop_tasks
from app.status.error_rate import ErrorRate
from app.status.model import (
    COMPONENTS,
    Component,
    HistoryQuery,
    Layer,
    Override,
    ServiceState,
    StatusCause,
    StatusSnapshot,
    Transition,
    roll_up,
)
from app.status.store import StatusStore
from app.storage.breaker import CircuitBreaker

log = logging.getLogger("app.status")
STATUS_TOPIC = "service-status"
REPLAY_LIMIT = 100  # recorded statuses a resumed serviceStatusChanged replays at most
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
_LAYER_CAUSES = (StatusCause.INCIDENT, StatusCause.MAINTENANCE)
_Candidate = tuple[ServiceState, str | None, float | None, StatusCause]


@dataclass(frozen=True, slots=True)
class StatusSettings:
    probe_interval: float = 5.0
    damping_probes: int = 2
    slow_ping_seconds: float = 1.0
    error_rate_threshold: float = 0.05
    error_rate_min_requests: int = 20
    override_poll_seconds: float = 0.25


class StatusService:
    def __init__(
        self,
        store: StatusStore,
        pubsub: PubSub,
        settings: StatusSettings,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._store = store
        self._pubsub = pubsub
        self._settings = settings
        self._breaker = breaker
        self.error_rate = ErrorRate()
        # Time of every stamp this service writes; the tests put it under their control.
        self.clock: Callable[[], datetime] = utc_now
        started = self.clock()
        self._names: list[str] = list(COMPONENTS)  # the probed components, then the custom ones
        self._computed = {n: Component(n, ServiceState.OPERATIONAL, None, started) for n in COMPONENTS}
        self._layers: dict[str, Layer] = {}
        self._pending: dict[str, tuple[ServiceState, int]] = {}
        self._overrides: dict[str, Override] = {}
        self._effective = dict(self._computed)
        self._last_seq: int | None = None
        self._unrecorded: list[Transition] = []  # queued transitions, oldest first, until stored
        self._flushing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # The last database probe, for the operator's metrics: reachable, and the ping's seconds.
        self.database_up: bool | None = None
        self.last_ping_seconds: float | None = None

    async def start(self) -> None:
        with contextlib.suppress(AppError):
            await self._store.ensure_indexes()
            self._overrides = await self._store.overrides()
        await self.probe()
        self._tasks = [
            asyncio.create_task(self._probe_forever(), name="status-probe"),
            asyncio.create_task(self._follow_overrides(), name="status-overrides"),
        ]

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []

    async def _follow_overrides(self) -> None:
        """Overrides set through another instance reach this one's subscribers within a poll interval
        (the instance that set it recorded the transition; this one only shows it)."""
        while True:
            await asyncio.sleep(self._settings.override_poll_seconds)
            try:
                overrides = await self._store.overrides()
            except AppError:
                continue
            if overrides != self._overrides:
                self._overrides = overrides
                await self._refresh(record=False)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.probe_interval)
            try:
                await self.probe()
            except Exception:  # a probe must never kill the loop
                log.exception("status probe failed")

    def snapshot(self) -> StatusSnapshot:
        services = tuple(self._effective[n] for n in self._names)
        return StatusSnapshot(roll_up(services), services, self.clock(), self._last_seq)

    def state(self) -> tuple[tuple[Component, ...], int | None]:
        """What `snapshot` answers from but the clock: equal (and cheap to compare: the same frozen
        objects) until a component's state or the latest position changes."""
        return tuple(self._effective[n] for n in self._names), self._last_seq

    @property
    def names(self) -> list[str]:
        return list(self._names)

    async def reconcile(
        self,
        custom: dict[str, Component],
        layers: dict[str, Layer],
        *,
        record: frozenset[str],
    ) -> StatusSnapshot:
        """The custom components (their own computed states, e.g. heartbeats) and the layers set by
        incidents and maintenances; publishes what changed, and records the changes of the components
        named in `record` (those this instance changed; the others' changes were recorded elsewhere)."""
        removed = [n for n in self._names if n not in COMPONENTS and n not in custom]
        for name in removed:
            self._computed.pop(name, None)
            self._effective.pop(name, None)
        added = [n for n in custom if n not in self._names]
        self._names = list(COMPONENTS) + list(custom)
        for name, component in custom.items():
            previous = self._computed.get(name)
            if previous is None or previous.status != component.status:
                self._computed[name] = component
            else:
                self._computed[name] = replace(
                    component, updated_at=previous.updated_at, description=component.description
                )
            self._effective.setdefault(name, self._computed[name])
        self._layers = dict(layers)
        return await self._refresh(record=record, changed=bool(removed or added))

    async def probe(self) -> None:
        reachable, candidates = await self._observe()
        if reachable:
            await self._flush_unrecorded()
            # Overrides set through other instances arrive by _follow_overrides; here only expiry.
            for name, override in list(self._overrides.items()):
                if override.until is not None and override.until <= self.clock():
                    with contextlib.suppress(AppError):
                        await self._store.set_override(name, None)
                    self._overrides.pop(name, None)
        # No await between damping and deriving: a probe's new state is derived, and its transition
        # queued, by this probe. Were another derivation (a status page tick's reconcile, an override
        # followed from another instance) to run in between, it would show the new state without
        # recording it (it records only what it changed itself), and the transition would be lost.
        for name, candidate in candidates.items():
            self._damp(name, candidate)
        await self._refresh(record=True)

    async def _observe(self) -> tuple[bool, dict[str, _Candidate]]:
        started = time.perf_counter()
        try:
            await self._store.ping()
        except AppError:
            self.database_up = False
            return False, {
                "storage": (ServiceState.MAJOR_OUTAGE, "Database unreachable", None, StatusCause.PROBE),
                "authentication": (
                    ServiceState.PARTIAL_OUTAGE,
                    "Only recently verified API keys are accepted",
                    None,
                    StatusCause.PROBE,
                ),
                "api": self._api_candidate(),
            }
        elapsed = time.perf_counter() - started
        self.last_ping_seconds = elapsed
        self.database_up = True
        if self._breaker is not None:
            self._breaker.succeeded()  # the database is back: stop failing fast
        slow = elapsed > self._settings.slow_ping_seconds
        storage: _Candidate = (
            (
                ServiceState.DEGRADED_PERFORMANCE,
                f"Database ping took {elapsed * 1000:.0f} ms",
                elapsed,
                StatusCause.PROBE,
            )
            if slow
            else (ServiceState.OPERATIONAL, None, elapsed, StatusCause.PROBE)
        )
        auth: _Candidate = (ServiceState.OPERATIONAL, None, None, StatusCause.PROBE)
        return True, {"storage": storage, "authentication": auth, "api": self._api_candidate()}

    def _api_candidate(self) -> _Candidate:
        share = self.error_rate.share(self._settings.error_rate_min_requests)
        if share is not None and share > self._settings.error_rate_threshold:
            return (
                ServiceState.DEGRADED_PERFORMANCE,
                f"{share:.1%} of requests failed in the last minute",
                share,
                StatusCause.ERROR_RATE,
            )
        return ServiceState.OPERATIONAL, None, share, StatusCause.ERROR_RATE

    def _damp(self, name: str, candidate: _Candidate) -> None:
        state, description, observed, cause = candidate
        current = self._computed[name]
        if state == current.status:
            self._pending.pop(name, None)
            self._computed[name] = replace(current, description=description, observed=observed)
            return
        seen = self._pending.get(name, (state, 0))
        count = seen[1] + 1 if seen[0] == state else 1
        if count < self._settings.damping_probes:
            self._pending[name] = (state, count)
            return
        self._pending.pop(name, None)
        self._computed[name] = Component(name, state, description, self.clock(), cause, observed)

    async def _refresh(
        self, *, record: bool | frozenset[str], cause: StatusCause | None = None, changed: bool = False
    ) -> StatusSnapshot:
        """Recomputes the effective components; records and publishes what changed.

        The derivation runs without an await, so two derivations never interleave: each change of the
        effective state is seen by exactly one of them, which queues its transition (when it records
        that component) before anything else can run. The queue is then written in order."""
        for name in self._names:
            override = self._overrides.get(name)
            layer = self._layers.get(name)
            if override is not None:
                new = Component(
                    name, override.state, override.description, override.updated_at, StatusCause.MANUAL
                )
            elif layer is not None:
                new = Component(name, layer.state, layer.description, self.clock(), layer.cause)
            else:
                new = self._computed[name]
            old = self._effective[name]
            if new.status != old.status:
                new = replace(new, updated_at=self.clock())
                self._effective[name] = new
                changed = True
                if record is True or (isinstance(record, frozenset) and name in record):
                    # An incident or maintenance handing a component back is what caused the change.
                    handed_back = layer is None and override is None and old.cause in _LAYER_CAUSES
                    self._queue(old, new, cause or (old.cause if handed_back else new.cause))
            elif (
                new.cause is not StatusCause.PROBE
                and new.cause is not StatusCause.ERROR_RATE
                and (new.description != old.description or new.cause != old.cause)
            ):
                self._effective[name] = replace(new, updated_at=old.updated_at)
                changed = True  # an operator's new wording is news; a probe's new latency figure is not
            else:
                self._effective[name] = replace(new, updated_at=old.updated_at)
        await self._flush_unrecorded()
        snapshot = self.snapshot()
        if changed:
            self._pubsub.publish(STATUS_TOPIC, snapshot)
        return snapshot

    def _queue(self, old: Component, new: Component, cause: StatusCause) -> None:
        transition = Transition(
            seq=0,
            component=new.name,
            from_state=old.status,
            to_state=new.status,
            cause=cause,
            observed=new.observed,
            description=new.description,
            at=new.updated_at,
            instance=INSTANCE,
            snapshot=self.snapshot(),
        )
        self._unrecorded = [*self._unrecorded[-99:], transition]  # the last 100 wait for the database

    async def _flush_unrecorded(self) -> None:
        """Stores the queued transitions in order; those the database refuses wait for the next try
        (the next probe that reaches it, or the next change). One writer at a time: two would store
        the same transition twice and then drop the one behind it. A caller that finds a write under
        way leaves its transitions to that writer, which drains the queue, rather than wait for it."""
        if self._flushing.locked():
            return
        async with self._flushing:
            while self._unrecorded:
                head = self._unrecorded[0]
                try:
                    stored = await self._store.record(head)
                except AppError:
                    return
                self._last_seq = stored.seq
                if self._unrecorded and self._unrecorded[0] is head:
                    self._unrecorded.pop(0)

    async def override(
        self, service: str, state: ServiceState, description: str | None, until: datetime | None = None
    ) -> StatusSnapshot:
        """Operator override; OPERATIONAL clears it and hands the component back to the probes."""
        problems = []
        if service not in self._names:
            problems.append(FieldProblem("service", f"Unknown service; one of {', '.join(self._names)}"))
        if description is not None and len(description) > 512:
            problems.append(FieldProblem("description", "At most 512 characters"))
        if until is not None and until <= self.clock():
            problems.append(FieldProblem("until", "Must be in the future"))
        if problems:
            raise InvalidRequest(details=problems)
        if state is ServiceState.OPERATIONAL:
            await self._store.set_override(service, None)
            self._overrides.pop(service, None)
        else:
            override = Override(state, description, self.clock(), until)
            await self._store.set_override(service, override)
            self._overrides[service] = override
        return await self._refresh(record=True, cause=StatusCause.MANUAL)

    async def history(self, query: HistoryQuery) -> Page[Transition]:
        """Recorded transitions, newest first, from before `query.before` when given."""
        rows, more = await self._store.history(query.service, query.first, query.before)
        return Page(rows, has_next_page=more)

    async def transitions_after(self, seq: int, limit: int) -> list[Transition]:
        return await self._store.after(seq, limit)

    async def stream(self, resume: int | None) -> AsyncIterator[tuple[StatusSnapshot, bool]]:
        """The current status, then every change. With `resume` (a position), the recorded statuses
        since then instead of the current one (at most REPLAY_LIMIT), then every later change: listening
        starts before reading, so nothing falls between the two, and nothing is sent twice.

        Each item says whether it is a broadcast: the one snapshot object every subscriber receives
        (the GraphQL layer then executes a document on it once for all of them)."""
        with self._pubsub.subscribe(STATUS_TOPIC) as mailbox:
            last = resume
            if resume is None:
                yield self.snapshot(), False
            else:
                for transition in await self.transitions_after(resume, REPLAY_LIMIT):
                    last = transition.seq
                    yield transition.snapshot, False
            while True:
                snapshot: StatusSnapshot = await mailbox.get()
                if last is not None and snapshot.seq is not None and snapshot.seq <= last:
                    continue  # already replayed
                yield snapshot, True

    async def timeline(
        self, component: str, start: datetime, end: datetime
    ) -> tuple[ServiceState | None, list[tuple[datetime, ServiceState]]]:
        return await self._store.timeline(component, start, end)

"""Service status: what each component's state is and why, kept in memory and refreshed by probes.

Reads never touch the database: a background probe pings it every STATUS_PROBE_INTERVAL_SECONDS and
`snapshot()` answers from memory. Operator overrides (setServiceStatus) win over probes until cleared
by setting OPERATIONAL again, and are stored so that they survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum

from pymongo.asynchronous.database import AsyncDatabase

from app.errors import AppError, FieldProblem, InvalidRequest
from app.metrics import database_probe_seconds, database_up
from app.pubsub import PubSub
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import ping, translate_errors

log = logging.getLogger("app.status")
STATUS_TOPIC = "service-status"
COMPONENTS = ("api", "storage", "authentication")
SLOW_PING_SECONDS = 1.0


class ServiceState(str, Enum):
    OPERATIONAL = "OPERATIONAL"
    UNDER_MAINTENANCE = "UNDER_MAINTENANCE"
    DEGRADED_PERFORMANCE = "DEGRADED_PERFORMANCE"
    PARTIAL_OUTAGE = "PARTIAL_OUTAGE"
    MAJOR_OUTAGE = "MAJOR_OUTAGE"

    @property
    def rank(self) -> int:
        return list(ServiceState).index(self)

    @property
    def label(self) -> str:
        """The seed's human wording: "Operational", "Degraded Performance", ..."""
        return self.value.replace("_", " ").title()


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    status: ServiceState
    description: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    status: ServiceState
    services: tuple[Component, ...]
    timestamp: datetime


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class StatusService:
    def __init__(
        self, db: AsyncDatabase, pubsub: PubSub, probe_interval: float, breaker: CircuitBreaker | None = None
    ) -> None:
        self._db = db
        self._breaker = breaker
        self._overrides_col = db["status_overrides"]
        self._pubsub = pubsub
        self._interval = probe_interval
        started = _now()
        self._probed = {name: Component(name, ServiceState.OPERATIONAL, None, started) for name in COMPONENTS}
        self._overrides: dict[str, Component] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(AppError):
            async with translate_errors("status_overrides.load"):
                async for doc in self._overrides_col.find({}):
                    if doc["_id"] in COMPONENTS:
                        self._overrides[doc["_id"]] = Component(
                            doc["_id"], ServiceState(doc["status"]), doc.get("description"), doc["updated_at"]
                        )
        await self.probe()
        self._task = asyncio.create_task(self._probe_forever(), name="status-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.probe()
            except Exception:  # a probe must never kill the loop
                log.exception("status probe failed")

    async def probe(self) -> None:
        started = time.perf_counter()
        try:
            await ping(self._db)
            elapsed = time.perf_counter() - started
            database_probe_seconds.set(elapsed)
            database_up.set(1)
            if self._breaker is not None:
                self._breaker.succeeded()  # the database is back: stop failing fast
            if elapsed > SLOW_PING_SECONDS:
                storage = (ServiceState.DEGRADED_PERFORMANCE, f"Database ping took {elapsed * 1000:.0f} ms")
            else:
                storage = (ServiceState.OPERATIONAL, None)
            auth = (ServiceState.OPERATIONAL, None)
        except AppError:
            database_up.set(0)
            storage = (ServiceState.MAJOR_OUTAGE, "Database unreachable")
            auth = (ServiceState.PARTIAL_OUTAGE, "Only recently verified API keys are accepted")
        changed = self._set_probed("storage", *storage) | self._set_probed("authentication", *auth)
        if changed:
            self._pubsub.publish(STATUS_TOPIC, self.snapshot())

    def _set_probed(self, name: str, state: ServiceState, description: str | None) -> bool:
        current = self._probed[name]
        if current.status == state and current.description == description:
            return False
        self._probed[name] = Component(name, state, description, _now())
        return name not in self._overrides

    def snapshot(self) -> StatusSnapshot:
        services = tuple(self._overrides.get(name, self._probed[name]) for name in COMPONENTS)
        worst = max((c.status for c in services), key=lambda s: s.rank)
        return StatusSnapshot(status=worst, services=services, timestamp=_now())

    async def override(self, service: str, state: ServiceState, description: str | None) -> StatusSnapshot:
        """Operator override; OPERATIONAL clears it and hands the component back to the probes."""
        if service not in COMPONENTS:
            raise InvalidRequest(
                details=[FieldProblem("service", f"Unknown service; one of {', '.join(COMPONENTS)}")]
            )
        if description is not None and len(description) > 512:
            raise InvalidRequest(details=[FieldProblem("description", "At most 512 characters")])
        async with translate_errors("status_overrides.write", self._breaker):
            if state is ServiceState.OPERATIONAL:
                await self._overrides_col.delete_one({"_id": service})
            else:
                updated = _now()
                # Delete then insert rather than an upserting replace: nx-27017 drops the `_id` of
                # an upserted replacement. Overrides are rare operator actions; the gap is harmless.
                await self._overrides_col.delete_one({"_id": service})
                await self._overrides_col.insert_one(
                    {"_id": service, "status": state.value, "description": description, "updated_at": updated}
                )
        if state is ServiceState.OPERATIONAL:
            self._overrides.pop(service, None)
            self._probed[service] = replace(self._probed[service], updated_at=_now())
        else:
            self._overrides[service] = Component(service, state, description, updated)
        snapshot = self.snapshot()
        self._pubsub.publish(STATUS_TOPIC, snapshot)
        return snapshot

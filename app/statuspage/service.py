"""The status page: custom components and groups, heartbeat monitors, incidents, maintenances, uptime.

How a component's state is set (first that applies): an operator's override (setServiceStatus), then the
worst of the states set by open incidents and running maintenances (UNDER_MAINTENANCE), then the
component's own source: the probes for api/storage/authentication, the heartbeat monitor for a custom
component that has one, OPERATIONAL otherwise. Every change is a transition recorded by StatusService
with its cause (MANUAL, INCIDENT, MAINTENANCE, HEARTBEAT), which is what uptime is computed from.

Time-driven changes (a maintenance window starting or ending, a missed heartbeat) happen in `tick`, run
every STATUS_TICK_SECONDS and by tests after they move the clock; each is claimed atomically in the
database, so it happens exactly once across instances and restarts. Between claims every instance
re-reads components, open incidents and running maintenances on each tick (instances converge within a
tick); the instance that made a change records its transitions, the others only show them.

The incident and maintenance feed (`incidentUpdated`) is the `status_page_changes` collection under
positions; each instance publishes new entries in position order as it sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ulid import ULID

from app.core.errors import AppError, Conflict, FieldProblem, InvalidRequest, NotFound
from app.core.pubsub import PubSub
from app.core.tasks import stop_tasks
from app.ratelimit.service import RateLimiter, Resource
from app.status.model import COMPONENTS, Component, Layer, ServiceState, StatusCause, worst
from app.status.service import StatusService
from app.statuspage import uptime as calc
from app.statuspage.inputs import (
    ComponentChanges,
    ComponentInput,
    IncidentInput,
    IncidentUpdateInput,
    MaintenanceInput,
    MaintenanceUpdateInput,
    validate,
)
from app.statuspage.model import (
    AffectedComponent,
    CustomComponent,
    Heartbeat,
    Incident,
    IncidentStatus,
    Maintenance,
    MaintenanceStatus,
    PageChange,
    StatusUpdate,
    Uptime,
    UptimeRange,
)
from app.statuspage.store import StatusPageStore

log = logging.getLogger("app.statuspage")
PAGE_TOPIC = "status-page"
REPLAY_LIMIT = 100
HOLE_SECONDS = 5.0  # how long the feed waits for a position taken by a writer that has not written yet
_MOVES: dict[MaintenanceStatus, set[MaintenanceStatus]] = {
    MaintenanceStatus.SCHEDULED: {MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.COMPLETED},
    MaintenanceStatus.IN_PROGRESS: {MaintenanceStatus.VERIFYING, MaintenanceStatus.COMPLETED},
    MaintenanceStatus.VERIFYING: {MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.COMPLETED},
    MaintenanceStatus.COMPLETED: set(),
}


@dataclass(frozen=True, slots=True)
class PageSettings:
    tick_seconds: float = 1.0
    damping: int = 2  # the probes' damping: missed beats (or down pushes) in a row before MAJOR_OUTAGE
    push_budget: int = 60  # pushes per token per minute


@dataclass(frozen=True, slots=True)
class PageView:
    """What the public page shows, from the last reconcile (no database read)."""

    components: tuple[CustomComponent, ...]
    open_incidents: tuple[Incident, ...]
    active_maintenances: tuple[Maintenance, ...]


def _new_id() -> str:
    return str(ULID()).lower()


class StatusPageService:
    def __init__(
        self, store: StatusPageStore, status: StatusService, pubsub: PubSub, settings: PageSettings
    ) -> None:
        self._store = store
        self._status = status
        self._pubsub = pubsub
        self._settings = settings
        self._pushes = RateLimiter(settings.push_budget, settings.push_budget, 60, self._epoch)
        self._lock = asyncio.Lock()
        self._published = 0
        self._hole_since: float | None = None
        self._view = PageView((), (), ())
        self._bars: dict[str, tuple[float, Uptime]] = {}  # the public page's 90-day bars, briefly kept
        self._task: asyncio.Task[None] | None = None
        self._serving = False  # a management command changes records; serving instances show them

    def _epoch(self) -> float:
        return self._status.clock().timestamp()

    def now(self) -> datetime:
        return self._status.clock()

    @property
    def view(self) -> PageView:
        return self._view

    def version(self) -> int:
        """Changes whenever what the public page shows may have (other than the passing of time)."""
        live = tuple((c.name, c.status, c.description) for c in self._status.snapshot().services)
        return hash((self._published, live, self._view.components))

    async def start(self) -> None:
        self._serving = True
        with contextlib.suppress(AppError):
            await self._store.ensure_indexes()
            self._published = await self._store.last_change()
        with contextlib.suppress(AppError):
            await self.tick()
        self._task = asyncio.create_task(self._tick_forever(), name="status-page-tick")

    async def stop(self) -> None:
        await stop_tasks([self._task])
        self._task = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.tick_seconds)
            try:
                await self.tick()
            except AppError:
                pass  # the database is away: the next tick tries again
            except Exception:  # a tick must never kill the loop
                log.exception("status page tick failed")

    # Time-driven changes ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Claims due maintenance starts and ends and missed heartbeats, then shows the current state."""
        async with self._lock:
            await self._reconcile()  # what other instances changed: shown, not recorded
            claimed = await self._claims()
            await self._reconcile(record=claimed)
            await self._publish_new()

    async def _claims(self) -> frozenset[str]:
        """The time-driven changes this instance won; the names of the components they move."""
        now = self.now()
        claimed: set[str] = set()
        starting, ending = await self._store.due_maintenances(now)
        for m in starting:
            update = StatusUpdate(_new_id(), MaintenanceStatus.IN_PROGRESS.value, "Maintenance started", now)
            moved = await self._store.move_maintenance(m, [MaintenanceStatus.SCHEDULED], update, now)
            if moved is not None:
                claimed.update(moved.components)
                await self._store.record_change(None, moved)
        for m in ending:
            update = StatusUpdate(_new_id(), MaintenanceStatus.COMPLETED.value, "Maintenance completed", now)
            active = [MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING]
            moved = await self._store.move_maintenance(m, active, update, now)
            if moved is not None:
                claimed.update(moved.components)
                await self._store.record_change(None, moved)
        for c in self._view.components:
            hb = c.heartbeat
            if hb is None or hb.down:
                continue
            missed = timedelta(seconds=hb.grace + self._settings.damping * hb.interval)
            if now - hb.last_beat >= missed:
                since = hb.last_beat.isoformat().replace("+00:00", "Z")
                if await self._store.claim_missed(c.name, now - missed, f"No heartbeat since {since}"):
                    claimed.add(c.name)
        return frozenset(claimed)

    async def _reconcile(self, *, record: frozenset[str] = frozenset()) -> None:
        components = await self._store.components()
        incidents = await self._store.incidents(open_only=True, limit=1000)
        active = await self._store.maintenances(
            [MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING], 1000
        )
        self._view = PageView(tuple(components), tuple(incidents), tuple(active))
        now = self.now()
        custom: dict[str, Component] = {}
        for c in components:
            hb = c.heartbeat
            if hb is not None and hb.down:
                custom[c.name] = Component(
                    c.name, ServiceState.MAJOR_OUTAGE, hb.message, now, StatusCause.HEARTBEAT, hb.ping
                )
            elif hb is not None:
                custom[c.name] = Component(
                    c.name, ServiceState.OPERATIONAL, None, now, StatusCause.HEARTBEAT, hb.ping
                )
            else:
                custom[c.name] = Component(c.name, ServiceState.OPERATIONAL, None, now, StatusCause.MANUAL)
        layers: dict[str, list[Layer]] = {}
        for incident in reversed(incidents):  # oldest first: the newest wording wins a tie
            for a in incident.components:
                layers.setdefault(a.component, []).append(Layer(a.state, incident.name, StatusCause.INCIDENT))
        for m in active:
            for name in m.components:
                layers.setdefault(name, []).append(
                    Layer(ServiceState.UNDER_MAINTENANCE, m.name, StatusCause.MAINTENANCE)
                )
        chosen: dict[str, Layer] = {}
        for name, found in layers.items():
            state = worst([layer.state for layer in found])
            chosen[name] = next(layer for layer in reversed(found) if layer.state is state)
        await self._status.reconcile(custom, chosen, record=record if self._serving else frozenset())

    # The feed -----------------------------------------------------------------------------------

    async def _publish_new(self) -> None:
        """Publishes the feed's new entries in position order. A position is taken before its entry is
        written, so another instance's entry may appear after a later one: publishing waits at a hole
        (the next tick looks again) for up to HOLE_SECONDS, then gives the missing position up."""
        while True:
            changes = await self._store.changes_after(self._published, REPLAY_LIMIT)
            for entry in changes:
                if entry.seq != self._published + 1:
                    if self._hole_since is None:
                        self._hole_since = time.monotonic()
                    if time.monotonic() - self._hole_since < HOLE_SECONDS:
                        return
                self._hole_since = None
                self._published = entry.seq
                self._pubsub.publish(PAGE_TOPIC, entry)
            if len(changes) < REPLAY_LIMIT:
                return

    async def _changed(
        self, incident: Incident | None, maintenance: Maintenance | None, touched: set[str]
    ) -> None:
        """After a write (under the lock, after a `_reconcile` that took in the other instances' changes):
        the feed entry, the components' states (the changes of `touched` recorded), the live update."""
        await self._store.record_change(incident, maintenance)
        await self._reconcile(record=frozenset(touched))
        await self._publish_new()

    async def stream(self, after: int | None) -> AsyncGenerator[PageChange, None]:
        """Changes of incidents and maintenances as they happen; with `after`, first those recorded since
        that position (at most REPLAY_LIMIT). Listening starts before reading: no gap, no duplicate."""
        with self._pubsub.subscribe(PAGE_TOPIC) as mailbox:
            last = after
            if after is not None:
                for replayed in await self._store.changes_after(after, REPLAY_LIMIT):
                    last = replayed.seq
                    yield replayed
            while True:
                change: PageChange = await mailbox.get()
                if last is not None and change.seq <= last:
                    continue  # already replayed
                last = change.seq
                yield change

    # Components ---------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        return [*COMPONENTS, *(c.name for c in self._view.components)]

    async def components(self) -> list[CustomComponent]:
        return await self._store.components()

    async def create_component(self, raw: dict[str, Any]) -> CustomComponent:
        data = validate(ComponentInput, raw, reserved=COMPONENTS)
        now = self.now()
        heartbeat = None
        if data.heartbeat_interval is not None:
            heartbeat = Heartbeat(
                secrets.token_urlsafe(18), data.heartbeat_interval, data.heartbeat_grace, now
            )
        component = CustomComponent(
            data.name, data.description, data.group, data.order, data.show_uptime, now, heartbeat
        )
        async with self._lock:
            await self._store.create_component(component)
            await self._reconcile()
        return component

    async def update_component(self, name: str, raw: dict[str, Any]) -> CustomComponent:
        data = validate(ComponentChanges, raw)
        changes = {k: v for k, v in data.model_dump().items() if k in data.model_fields_set}
        async with self._lock:
            updated = await self._store.update_component(name, changes)
            if updated is None:
                raise NotFound(f"No custom component named {name!r}")
            await self._reconcile()
        return updated

    async def delete_component(self, name: str) -> None:
        async with self._lock:
            if not await self._store.delete_component(name):
                raise NotFound(f"No custom component named {name!r}")
            await self._reconcile()

    async def push(self, token: str, status: str | None, message: str | None, ping: str | None) -> None:
        """A heartbeat (Uptime Kuma's push shape). Unknown token: NOT_FOUND, nothing recorded."""
        problems = []
        state = (status or "up").lower()
        if state not in ("up", "down"):
            problems.append(FieldProblem("status", "One of up, down"))
        figure: float | None = None
        if ping not in (None, ""):
            try:
                figure = float(ping)
            except ValueError:
                problems.append(FieldProblem("ping", "A number (milliseconds)"))
        if message is not None and len(message) > 512:
            problems.append(FieldProblem("msg", "At most 512 characters"))
        if problems:
            raise InvalidRequest(details=problems)
        component = await self._store.by_token(token)
        if component is None:
            raise NotFound("No monitor with this push token")
        self._pushes.charge(token, Resource.WRITE)
        async with self._lock:
            result = await self._store.beat(
                token, self.now(), state == "up", message or None, figure, self._settings.damping
            )
            if result is None:
                raise NotFound("No monitor with this push token")
            await self._reconcile(record=frozenset({result[0].name}) if result[1] else frozenset())

    # Incidents ----------------------------------------------------------------------------------

    async def incident(self, incident_id: str) -> Incident:
        found = await self._store.incident(incident_id)
        if found is None:
            raise NotFound(f"No incident {incident_id!r}")
        return found

    async def incidents(self, *, open_only: bool, first: int) -> list[Incident]:
        return await self._store.incidents(open_only=open_only, limit=first)

    async def create_incident(self, raw: dict[str, Any]) -> Incident:
        data = validate(IncidentInput, raw, names=self._names())
        now = self.now()
        incident = Incident(
            id=_new_id(),
            name=data.name,
            status=data.status,
            impact=data.impact,
            components=tuple(AffectedComponent(a.component, a.status) for a in data.components),
            updates=(StatusUpdate(_new_id(), data.status.value, data.message, now),),
            postmortem=None,
            created_at=now,
            updated_at=now,
            resolved_at=now if data.status is IncidentStatus.RESOLVED else None,
        )
        async with self._lock:
            await self._reconcile()
            await self._store.insert_incident(incident)
            await self._changed(incident, None, {a.component for a in incident.components})
        return incident

    async def update_incident(self, incident_id: str, raw: dict[str, Any]) -> Incident:
        data = validate(IncidentUpdateInput, raw, names=self._names())
        async with self._lock:
            await self._reconcile()
            current = await self.incident(incident_id)
            if current.status is IncidentStatus.RESOLVED:
                raise Conflict(
                    "This incident is resolved; open a new incident instead",
                    details=[FieldProblem("id", "Incident is resolved")],
                )
            now = self.now()
            components = current.components
            if data.components is not None:
                components = tuple(AffectedComponent(a.component, a.status) for a in data.components)
            updated = replace(
                current,
                status=data.status,
                impact=data.impact or current.impact,
                components=components,
                updates=(*current.updates, StatusUpdate(_new_id(), data.status.value, data.message, now)),
                updated_at=now,
                resolved_at=now if data.status is IncidentStatus.RESOLVED else None,
            )
            if not await self._store.replace_open_incident(updated):
                raise Conflict(
                    "This incident was resolved meanwhile", details=[FieldProblem("id", "Resolved")]
                )
            touched = {a.component for a in (*current.components, *updated.components)}
            await self._changed(updated, None, touched)
        return updated

    async def set_postmortem(self, incident_id: str, text: str) -> Incident:
        if not 1 <= len(text) <= 50_000:
            raise InvalidRequest(details=[FieldProblem("postmortem", "1 to 50000 characters")])
        async with self._lock:
            updated = await self._store.set_postmortem(incident_id, text, self.now())
            if updated is None:
                raise NotFound(f"No incident {incident_id!r}")
            await self._changed(updated, None, set())
        return updated

    # Maintenances -------------------------------------------------------------------------------

    async def maintenance(self, maintenance_id: str) -> Maintenance:
        found = await self._store.maintenance(maintenance_id)
        if found is None:
            raise NotFound(f"No maintenance {maintenance_id!r}")
        return found

    async def maintenances(self, statuses: list[MaintenanceStatus] | None, first: int) -> list[Maintenance]:
        return await self._store.maintenances(statuses, first)

    async def schedule_maintenance(self, raw: dict[str, Any]) -> Maintenance:
        data = validate(MaintenanceInput, raw, names=self._names())
        now = self.now()
        maintenance = Maintenance(
            id=_new_id(),
            name=data.name,
            status=MaintenanceStatus.SCHEDULED,
            components=tuple(data.components),
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            updates=(StatusUpdate(_new_id(), MaintenanceStatus.SCHEDULED.value, data.message, now),),
            created_at=now,
            updated_at=now,
        )
        async with self._lock:
            await self._store.insert_maintenance(maintenance)
            await self._changed(None, maintenance, set())
        if maintenance.starts_at <= now:
            await self.tick()  # a window that has already begun starts now
            return await self.maintenance(maintenance.id)
        return maintenance

    async def update_maintenance(self, maintenance_id: str, raw: dict[str, Any]) -> Maintenance:
        data = validate(MaintenanceUpdateInput, raw)
        async with self._lock:
            await self._reconcile()
            current = await self.maintenance(maintenance_id)
            if data.status not in _MOVES[current.status] and data.status is not current.status:
                raise Conflict(
                    f"A {current.status.value} maintenance cannot become {data.status.value}",
                    details=[FieldProblem("input.status", f"Not allowed from {current.status.value}")],
                )
            now = self.now()
            update = StatusUpdate(_new_id(), data.status.value, data.message, now)
            moved = await self._store.move_maintenance(current, [current.status], update, now)
            if moved is None:
                raise Conflict("The maintenance changed meanwhile; read it again")
            await self._changed(None, moved, set(moved.components))
        return moved

    # Uptime -------------------------------------------------------------------------------------

    async def ninety_days(self, component: str, max_age: float) -> Uptime:
        """The component's 90-day uptime for the public page, reused for `max_age` seconds (the bars
        change slowly; a page rebuilt on every state change must not recompute them each time)."""
        kept = self._bars.get(component)
        if kept is not None and time.monotonic() - kept[0] < max_age:
            return kept[1]
        now = self.now()
        result = await self.uptime(component, None, now - timedelta(days=90), now)
        if len(self._bars) > 10_000:
            self._bars.clear()
        self._bars[component] = (time.monotonic(), result)
        return result

    def range_of(
        self, preset: UptimeRange | None, start: datetime | None, end: datetime | None
    ) -> tuple[datetime, datetime]:
        now = self.now()
        if start is None and end is None:
            span = (preset or UptimeRange.DAYS_90).seconds
            return now - timedelta(seconds=span), now
        problems = []
        if start is None:
            problems.append(FieldProblem("from", "Give both from and to, or a range"))
        if end is None:
            problems.append(FieldProblem("to", "Give both from and to, or a range"))
        if start is not None and end is not None and end <= start:
            problems.append(FieldProblem("to", "Must be after from"))
        if start is not None and end is not None and end - start > timedelta(days=366):
            problems.append(FieldProblem("from", "A range of at most 366 days"))
        if problems:
            raise InvalidRequest(details=problems)
        assert start is not None and end is not None
        return start, min(end, now)

    async def uptime(
        self, component: str | None, group: str | None, start: datetime, end: datetime
    ) -> Uptime:
        """Exact uptime of one component, or of a group (up only when all its uptime-shown components
        are), over [start, end), with one figure per UTC day."""
        if (component is None) == (group is None):
            raise InvalidRequest(details=[FieldProblem("component", "Give a component or a group")])
        customs = {c.name: c for c in await self._store.components()}
        if component is not None:
            if component not in COMPONENTS and component not in customs:
                raise NotFound(f"No component {component!r}")
            members = [component]
        else:
            members = [c.name for c in customs.values() if c.group == group and c.show_uptime]
            if not members:
                raise NotFound(f"No group {group!r} with uptime-shown components")
        timelines = []
        for name in members:
            initial, changes = await self._status.timeline(name, start, end)
            created = customs[name].created_at if name in customs else None
            timelines.append(calc.timeline(initial, changes, start, end, created))
        segments = timelines[0] if len(timelines) == 1 else calc.combine(timelines, start, end)
        return Uptime(
            target=component or group or "",
            group=group is not None,
            figure=calc.figure(segments, start, end),
            days=tuple(calc.days(segments, start, end)),
        )

"""The status page's records: custom components and their heartbeat monitors, incidents, maintenances,
the change feed of incidents and maintenances, and uptime figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum

from app.core import cursors
from app.status.model import ServiceState

_POSITION_TAG = "p1"


def page_position(seq: int) -> str:
    """A position in the incident and maintenance feed: `incidentUpdated(after:)` takes it."""
    return cursors.encode_position(_POSITION_TAG, seq)


def decode_page_position(token: str) -> int:
    return cursors.decode_position(token, _POSITION_TAG)


class IncidentStatus(str, Enum):
    INVESTIGATING = "INVESTIGATING"
    IDENTIFIED = "IDENTIFIED"
    MONITORING = "MONITORING"
    RESOLVED = "RESOLVED"


class IncidentImpact(str, Enum):
    NONE = "NONE"
    MINOR = "MINOR"
    MAJOR = "MAJOR"
    CRITICAL = "CRITICAL"


class MaintenanceStatus(str, Enum):
    SCHEDULED = "SCHEDULED"
    IN_PROGRESS = "IN_PROGRESS"
    VERIFYING = "VERIFYING"
    COMPLETED = "COMPLETED"

    @property
    def active(self) -> bool:
        return self in (MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING)


class UptimeRange(str, Enum):
    HOURS_24 = "HOURS_24"
    DAYS_7 = "DAYS_7"
    DAYS_30 = "DAYS_30"
    DAYS_90 = "DAYS_90"

    @property
    def seconds(self) -> int:
        return {"HOURS_24": 86_400, "DAYS_7": 7 * 86_400, "DAYS_30": 30 * 86_400, "DAYS_90": 90 * 86_400}[
            self.value
        ]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A push monitor: beats are expected every `interval` seconds, `grace` seconds late at most."""

    token: str
    interval: float
    grace: float
    last_beat: datetime
    down: bool = False
    down_streak: int = 0  # consecutive `status=down` pushes
    message: str | None = None
    ping: float | None = None


@dataclass(frozen=True, slots=True)
class CustomComponent:
    name: str
    description: str | None
    group: str | None
    order: int
    show_uptime: bool
    created_at: datetime
    heartbeat: Heartbeat | None = None


@dataclass(frozen=True, slots=True)
class AffectedComponent:
    component: str
    state: ServiceState


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One posted update of an incident or a maintenance, in order."""

    id: str
    status: str  # an IncidentStatus or MaintenanceStatus value
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    name: str
    status: IncidentStatus
    impact: IncidentImpact
    components: tuple[AffectedComponent, ...]
    updates: tuple[StatusUpdate, ...]
    postmortem: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Maintenance:
    id: str
    name: str
    status: MaintenanceStatus
    components: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    updates: tuple[StatusUpdate, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PageChange:
    """One entry of the incident and maintenance feed: the record as it was after the change."""

    seq: int
    incident: Incident | None = None
    maintenance: Maintenance | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    state: ServiceState | None  # None: no data (before the component existed)


@dataclass(frozen=True, slots=True)
class UptimeFigure:
    start: datetime
    end: datetime
    seconds: dict[ServiceState, float] = field(default_factory=dict)
    no_data_seconds: float = 0.0
    uptime: float | None = None  # a ratio in [0, 1]; None when nothing counted (all maintenance / no data)

    @property
    def downtime_seconds(self) -> float:
        return self.seconds.get(ServiceState.MAJOR_OUTAGE, 0.0) + 0.3 * self.seconds.get(
            ServiceState.PARTIAL_OUTAGE, 0.0
        )


@dataclass(frozen=True, slots=True)
class DayUptime:
    day: date
    figure: UptimeFigure


@dataclass(frozen=True, slots=True)
class Uptime:
    target: str  # a component name, or a group name
    group: bool
    figure: UptimeFigure
    days: tuple[DayUptime, ...]

"""The service-status domain: states, causes, components, snapshots and transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from app.core import cursors

COMPONENTS = ("api", "storage", "authentication")


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
        """The original REST API's human wording: "Operational", "Degraded Performance", ..."""
        return self.value.replace("_", " ").title()


class StatusCause(str, Enum):
    PROBE = "PROBE"  # a database or credential-store probe
    ERROR_RATE = "ERROR_RATE"  # this server's recent share of failed requests
    MANUAL = "MANUAL"  # an operator's setServiceStatus (or its expiry)
    HEARTBEAT = "HEARTBEAT"  # a push monitor's beat, or its missed deadline
    INCIDENT = "INCIDENT"  # an open incident sets the component's state (handed back on resolve)
    MAINTENANCE = "MAINTENANCE"  # a scheduled maintenance in progress


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    status: ServiceState
    description: str | None
    updated_at: datetime
    cause: StatusCause = StatusCause.PROBE
    observed: float | None = None  # the figure behind the state: ping seconds, error share


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    status: ServiceState
    services: tuple[Component, ...]
    timestamp: datetime
    seq: int | None = None  # the position of the transition that produced it, if any


@dataclass(frozen=True, slots=True)
class Transition:
    seq: int
    component: str
    from_state: ServiceState
    to_state: ServiceState
    cause: StatusCause
    observed: float | None
    description: str | None
    at: datetime
    instance: str
    snapshot: StatusSnapshot


@dataclass(frozen=True, slots=True)
class Override:
    state: ServiceState
    description: str | None
    updated_at: datetime
    until: datetime | None


def roll_up(services: tuple[Component, ...]) -> ServiceState:
    return max((c.status for c in services), key=lambda s: s.rank)


def worst(states: list[ServiceState]) -> ServiceState:
    return max(states, key=lambda s: s.rank)


@dataclass(frozen=True, slots=True)
class Layer:
    """A state set on a component from outside its probe: incidents, maintenances (app.statuspage)."""

    state: ServiceState
    description: str | None
    cause: StatusCause


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    service: str | None  # None: every component
    first: int
    before: int | None  # the position the page starts before (newest first)


_POSITION_TAG = "s1"


def status_position(seq: int) -> str:
    """A recorded status's position: `serviceStatusChanged(after:)` and `statusHistory(after:)` take it."""
    return cursors.encode_position(_POSITION_TAG, seq)


def decode_status_position(token: str) -> int:
    return cursors.decode_position(token, _POSITION_TAG)

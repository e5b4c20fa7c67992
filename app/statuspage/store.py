"""Persistence of the status page: `status_components` (custom components and their heartbeat monitors),
`status_incidents`, `status_maintenances`, and `status_page_changes` (the incident and maintenance feed,
positions from the `counters` collection).

Every time-driven change (a maintenance starting or ending, a heartbeat missed) is claimed with one
conditional find_one_and_update: of all instances, exactly one sees the document in its old state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.core.errors import Conflict
from app.status.model import ServiceState
from app.statuspage.model import (
    AffectedComponent,
    CustomComponent,
    Heartbeat,
    Incident,
    IncidentImpact,
    IncidentStatus,
    Maintenance,
    MaintenanceStatus,
    PageChange,
    StatusUpdate,
)
from app.storage.breaker import CircuitBreaker
from app.storage.counters import Counters
from app.storage.mongo import Database, as_datetime, translate_errors

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(value: Any) -> datetime:
    return as_datetime(value) or _EPOCH


def _component(d: dict[str, Any]) -> CustomComponent:
    hb = d.get("heartbeat")
    return CustomComponent(
        name=d["_id"],
        description=d.get("description"),
        group=d.get("group"),
        order=int(d.get("order", 0)),
        show_uptime=bool(d.get("show_uptime", True)),
        created_at=_dt(d["created_at"]),
        heartbeat=Heartbeat(
            token=hb["token"],
            interval=float(hb["interval"]),
            grace=float(hb["grace"]),
            last_beat=_dt(hb["last_beat"]),
            down=bool(hb.get("down", False)),
            down_streak=int(hb.get("down_streak", 0)),
            message=hb.get("message"),
            ping=hb.get("ping"),
        )
        if hb
        else None,
    )


def _update_doc(u: StatusUpdate) -> dict[str, Any]:
    return {"id": u.id, "status": u.status, "message": u.message, "at": u.at}


def _updates(docs: list[dict[str, Any]]) -> tuple[StatusUpdate, ...]:
    return tuple(StatusUpdate(u["id"], u["status"], u["message"], _dt(u["at"])) for u in docs)


def incident_doc(i: Incident) -> dict[str, Any]:
    return {
        "_id": i.id,
        "name": i.name,
        "status": i.status.value,
        "impact": i.impact.value,
        "components": [{"component": c.component, "state": c.state.value} for c in i.components],
        "updates": [_update_doc(u) for u in i.updates],
        "postmortem": i.postmortem,
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "resolved_at": i.resolved_at,
    }


def _incident(d: dict[str, Any]) -> Incident:
    return Incident(
        id=d["_id"],
        name=d["name"],
        status=IncidentStatus(d["status"]),
        impact=IncidentImpact(d["impact"]),
        components=tuple(
            AffectedComponent(c["component"], ServiceState(c["state"])) for c in d.get("components", [])
        ),
        updates=_updates(d.get("updates", [])),
        postmortem=d.get("postmortem"),
        created_at=_dt(d["created_at"]),
        updated_at=_dt(d["updated_at"]),
        resolved_at=as_datetime(d.get("resolved_at")),
    )


def maintenance_doc(m: Maintenance) -> dict[str, Any]:
    return {
        "_id": m.id,
        "name": m.name,
        "status": m.status.value,
        "components": list(m.components),
        "starts_at": m.starts_at,
        "ends_at": m.ends_at,
        "updates": [_update_doc(u) for u in m.updates],
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    }


def _maintenance(d: dict[str, Any]) -> Maintenance:
    return Maintenance(
        id=d["_id"],
        name=d["name"],
        status=MaintenanceStatus(d["status"]),
        components=tuple(d.get("components", [])),
        starts_at=_dt(d["starts_at"]),
        ends_at=_dt(d["ends_at"]),
        updates=_updates(d.get("updates", [])),
        created_at=_dt(d["created_at"]),
        updated_at=_dt(d["updated_at"]),
    )


class StatusPageStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._components = db["status_components"]
        self._incidents = db["status_incidents"]
        self._maintenances = db["status_maintenances"]
        self._changes = db["status_page_changes"]
        self._counters = Counters(db, breaker)
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("status_page.indexes", self._breaker):
            await self._components.create_index(
                "heartbeat.token", name="push_token", unique=True, sparse=True
            )
            await self._incidents.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
            await self._maintenances.create_index([("status", ASCENDING), ("starts_at", ASCENDING)])
            await self._changes.create_index([("seq", ASCENDING)], name="feed", unique=True)

    # Components ---------------------------------------------------------------------------------

    async def components(self) -> list[CustomComponent]:
        async with translate_errors("status_components.read", self._breaker):
            docs = await self._components.find({}).to_list()
        return sorted((_component(d) for d in docs), key=lambda c: (c.order, c.name))

    async def create_component(self, c: CustomComponent) -> None:
        doc: dict[str, Any] = {
            "_id": c.name,
            "description": c.description,
            "group": c.group,
            "order": c.order,
            "show_uptime": c.show_uptime,
            "created_at": c.created_at,
        }
        if c.heartbeat is not None:
            doc["heartbeat"] = {
                "token": c.heartbeat.token,
                "interval": c.heartbeat.interval,
                "grace": c.heartbeat.grace,
                "last_beat": c.heartbeat.last_beat,
                "down": False,
                "down_streak": 0,
            }
        async with translate_errors("status_components.insert", self._breaker):
            try:
                await self._components.insert_one(doc)
            except DuplicateKeyError:
                raise Conflict(f"A component named {c.name!r} exists already") from None

    async def update_component(self, name: str, changes: dict[str, Any]) -> CustomComponent | None:
        async with translate_errors("status_components.update", self._breaker):
            doc = await self._components.find_one_and_update(
                {"_id": name}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        return _component(doc) if doc else None

    async def delete_component(self, name: str) -> bool:
        async with translate_errors("status_components.delete", self._breaker):
            result = await self._components.delete_one({"_id": name})
        return result.deleted_count == 1

    async def by_token(self, token: str) -> CustomComponent | None:
        async with translate_errors("status_components.token", self._breaker):
            doc = await self._components.find_one({"heartbeat.token": token})
        return _component(doc) if doc else None

    async def beat(
        self, token: str, at: datetime, up: bool, message: str | None, ping: float | None, damping: int
    ) -> tuple[CustomComponent, bool] | None:
        """Records a push; returns the component after it and whether this push flipped its state
        (claimed: the conditional update matched the old state)."""
        async with translate_errors("status_components.beat", self._breaker):
            if up:  # one update: a deadline claim cannot slip in between recovery and the new beat
                before = await self._components.find_one_and_update(
                    {"heartbeat.token": token},
                    {
                        "$set": {
                            "heartbeat.down": False,
                            "heartbeat.last_beat": at,
                            "heartbeat.down_streak": 0,
                            "heartbeat.message": message,
                            "heartbeat.ping": ping,
                        }
                    },
                    return_document=ReturnDocument.BEFORE,
                )
                if before is None:
                    return None
                hb = before["heartbeat"]
                was_down = bool(hb.get("down", False))
                hb.update(down=False, last_beat=at, down_streak=0, message=message, ping=ping)
                return _component(before), was_down
            doc = await self._components.find_one_and_update(
                {"heartbeat.token": token},
                {
                    "$set": {"heartbeat.last_beat": at, "heartbeat.message": message, "heartbeat.ping": ping},
                    "$inc": {"heartbeat.down_streak": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return None
            flipped = None
            if int(doc["heartbeat"]["down_streak"]) >= damping:
                flipped = await self._components.find_one_and_update(
                    {"heartbeat.token": token, "heartbeat.down": False},
                    {"$set": {"heartbeat.down": True}},
                    return_document=ReturnDocument.AFTER,
                )
            return (_component(flipped or doc), flipped is not None)

    async def claim_missed(self, name: str, deadline: datetime, message: str) -> bool:
        """Marks a heartbeat down when its last beat is at or before `deadline`; True for the one claimant."""
        async with translate_errors("status_components.missed", self._breaker):
            doc = await self._components.find_one_and_update(
                {"_id": name, "heartbeat.down": False, "heartbeat.last_beat": {"$lte": deadline}},
                {"$set": {"heartbeat.down": True, "heartbeat.message": message}},
            )
        return doc is not None

    # Incidents ----------------------------------------------------------------------------------

    async def insert_incident(self, incident: Incident) -> None:
        async with translate_errors("status_incidents.insert", self._breaker):
            await self._incidents.insert_one(incident_doc(incident))

    async def incident(self, incident_id: str) -> Incident | None:
        async with translate_errors("status_incidents.read", self._breaker):
            doc = await self._incidents.find_one({"_id": incident_id})
        return _incident(doc) if doc else None

    async def replace_open_incident(self, incident: Incident) -> bool:
        """Writes the incident only while it is still open (an update racing a resolve loses)."""
        doc = incident_doc(incident)
        doc.pop("_id")
        async with translate_errors("status_incidents.update", self._breaker):
            result = await self._incidents.update_one(
                {"_id": incident.id, "status": {"$ne": IncidentStatus.RESOLVED.value}}, {"$set": doc}
            )
        return result.matched_count == 1

    async def set_postmortem(self, incident_id: str, text: str, at: datetime) -> Incident | None:
        async with translate_errors("status_incidents.postmortem", self._breaker):
            doc = await self._incidents.find_one_and_update(
                {"_id": incident_id},
                {"$set": {"postmortem": text, "updated_at": at}},
                return_document=ReturnDocument.AFTER,
            )
        return _incident(doc) if doc else None

    async def incidents(self, *, open_only: bool, limit: int) -> list[Incident]:
        # `$in` the open statuses rather than `$ne` RESOLVED: an index range, not a scan of history.
        open_statuses = [s.value for s in IncidentStatus if s is not IncidentStatus.RESOLVED]
        query = {"status": {"$in": open_statuses}} if open_only else {}
        async with translate_errors("status_incidents.list", self._breaker):
            docs = await self._incidents.find(query, sort=[("created_at", DESCENDING)], limit=limit).to_list()
        return [_incident(d) for d in docs]

    # Maintenances -------------------------------------------------------------------------------

    async def insert_maintenance(self, maintenance: Maintenance) -> None:
        async with translate_errors("status_maintenances.insert", self._breaker):
            await self._maintenances.insert_one(maintenance_doc(maintenance))

    async def maintenance(self, maintenance_id: str) -> Maintenance | None:
        async with translate_errors("status_maintenances.read", self._breaker):
            doc = await self._maintenances.find_one({"_id": maintenance_id})
        return _maintenance(doc) if doc else None

    async def move_maintenance(
        self, current: Maintenance, old: list[MaintenanceStatus], update: StatusUpdate, at: datetime
    ) -> Maintenance | None:
        """Claims the maintenance's change from one of `old` to `update.status`: None if another
        instance (or an operator) moved it first."""
        # The whole update list is $set rather than $push-ed: the embedded database stores a
        # $push-ed document as text. The status condition keeps the claim atomic on both.
        updates = [_update_doc(u) for u in (*current.updates, update)]
        async with translate_errors("status_maintenances.move", self._breaker):
            doc = await self._maintenances.find_one_and_update(
                {"_id": current.id, "status": {"$in": [s.value for s in old]}},
                {"$set": {"status": update.status, "updated_at": at, "updates": updates}},
                return_document=ReturnDocument.AFTER,
            )
        return _maintenance(doc) if doc else None

    async def due_maintenances(self, now: datetime) -> tuple[list[Maintenance], list[Maintenance]]:
        """(scheduled ones whose window has started, active ones whose window has ended)."""
        async with translate_errors("status_maintenances.due", self._breaker):
            starting = await self._maintenances.find(
                {"status": MaintenanceStatus.SCHEDULED.value, "starts_at": {"$lte": now}}
            ).to_list()
            ending = await self._maintenances.find(
                {
                    "status": {
                        "$in": [MaintenanceStatus.IN_PROGRESS.value, MaintenanceStatus.VERIFYING.value]
                    },
                    "ends_at": {"$lte": now},
                }
            ).to_list()
        return [_maintenance(d) for d in starting], [_maintenance(d) for d in ending]

    async def maintenances(self, statuses: list[MaintenanceStatus] | None, limit: int) -> list[Maintenance]:
        query = {"status": {"$in": [s.value for s in statuses]}} if statuses else {}
        async with translate_errors("status_maintenances.list", self._breaker):
            docs = await self._maintenances.find(
                query, sort=[("starts_at", ASCENDING)], limit=limit
            ).to_list()
        return [_maintenance(d) for d in docs]

    # The feed -----------------------------------------------------------------------------------

    async def record_change(self, incident: Incident | None, maintenance: Maintenance | None) -> int:
        (seq,) = await self._counters.take("status_page_changes")
        async with translate_errors("status_page_changes.insert", self._breaker):
            await self._changes.insert_one(
                {
                    "seq": seq,
                    "incident": incident_doc(incident) if incident else None,
                    "maintenance": maintenance_doc(maintenance) if maintenance else None,
                }
            )
        return seq

    async def changes_after(self, seq: int, limit: int) -> list[PageChange]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"seq": {"$gt": seq}}},
            {"$sort": {"seq": ASCENDING}},
            {"$limit": limit},
        ]
        async with translate_errors("status_page_changes.after", self._breaker):
            docs = await (await self._changes.aggregate(pipeline)).to_list()
        return [
            PageChange(
                int(d["seq"]),
                _incident(d["incident"]) if d.get("incident") else None,
                _maintenance(d["maintenance"]) if d.get("maintenance") else None,
            )
            for d in docs
        ]

    async def last_change(self) -> int:
        return await self._counters.last("status_page_changes")

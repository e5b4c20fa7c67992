"""Persistence of status: operator overrides (`status_overrides`) and the transition history
(`status_transitions`, positions from the `counters` collection)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from app.status.model import Component, Override, ServiceState, StatusCause, StatusSnapshot, Transition
from app.storage.breaker import CircuitBreaker
from app.storage.counters import Counters
from app.storage.mongo import Database, as_datetime, ping, translate_errors
from app.storage.paging import keyset_page


def _snapshot_doc(s: StatusSnapshot) -> dict[str, Any]:
    return {
        "status": s.status.value,
        "timestamp": s.timestamp,
        "services": [
            {
                "name": c.name,
                "status": c.status.value,
                "description": c.description,
                "updated_at": c.updated_at,
                "cause": c.cause.value,
                "observed": c.observed,
            }
            for c in s.services
        ],
    }


def _snapshot(doc: dict[str, Any], seq: int) -> StatusSnapshot:
    return StatusSnapshot(
        status=ServiceState(doc["status"]),
        timestamp=as_datetime(doc["timestamp"]) or datetime.now(UTC),
        services=tuple(
            Component(
                c["name"],
                ServiceState(c["status"]),
                c.get("description"),
                as_datetime(c["updated_at"]) or datetime.now(UTC),
                StatusCause(c["cause"]),
                c.get("observed"),
            )
            for c in doc["services"]
        ),
        seq=seq,
    )


def _transition(doc: dict[str, Any]) -> Transition:
    return Transition(
        seq=int(doc["seq"]),
        component=doc["component"],
        from_state=ServiceState(doc["from"]),
        to_state=ServiceState(doc["to"]),
        cause=StatusCause(doc["cause"]),
        observed=doc.get("observed"),
        description=doc.get("description"),
        at=as_datetime(doc["at"]) or datetime.now(UTC),
        instance=doc.get("instance", ""),
        snapshot=_snapshot(doc["snapshot"], int(doc["seq"])),
    )


class StatusStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._db = db
        self._overrides = db["status_overrides"]
        self._transitions = db["status_transitions"]
        self._counters = Counters(db, breaker)
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("status_transitions.indexes", self._breaker):
            # statusHistory(service): one component's transitions, newest first; replay: all by position.
            await self._transitions.create_index(
                [("component", ASCENDING), ("seq", DESCENDING)], name="history"
            )
            await self._transitions.create_index([("seq", ASCENDING)], name="feed")
            # Uptime: one component's transitions over a time range.
            await self._transitions.create_index([("component", ASCENDING), ("at", ASCENDING)], name="uptime")

    async def ping(self) -> None:
        """The storage probe: deliberately not behind the breaker, so it can see the database return."""
        await ping(self._db)

    async def overrides(self) -> dict[str, Override]:
        async with translate_errors("status_overrides.read", self._breaker):
            docs = await self._overrides.find({}).to_list()
        return {
            d["_id"]: Override(
                ServiceState(d["status"]),
                d.get("description"),
                as_datetime(d["updated_at"]) or datetime.now(UTC),
                as_datetime(d.get("until")),
            )
            for d in docs
        }

    async def set_override(self, component: str, override: Override | None) -> None:
        async with translate_errors("status_overrides.write", self._breaker):
            # Delete then insert rather than an upserting replace: nx-27017 drops the `_id` of an
            # upserted replacement. Overrides are rare operator actions; the gap is harmless.
            await self._overrides.delete_one({"_id": component})
            if override is not None:
                await self._overrides.insert_one(
                    {
                        "_id": component,
                        "status": override.state.value,
                        "description": override.description,
                        "updated_at": override.updated_at,
                        "until": override.until,
                    }
                )

    async def record(self, transition: Transition) -> Transition:
        """Stores a transition under the next position (unique across instances) and returns it."""
        async with translate_errors("status_transitions.insert", self._breaker):
            (seq,) = await self._counters.take("status_transitions")
            await self._transitions.insert_one(
                {
                    "seq": seq,
                    "component": transition.component,
                    "from": transition.from_state.value,
                    "to": transition.to_state.value,
                    "cause": transition.cause.value,
                    "observed": transition.observed,
                    "description": transition.description,
                    "at": transition.at,
                    "instance": transition.instance,
                    "snapshot": _snapshot_doc(transition.snapshot),
                }
            )
        return replace(transition, seq=seq, snapshot=replace(transition.snapshot, seq=seq))

    async def history(
        self, component: str | None, first: int, before_seq: int | None
    ) -> tuple[list[Transition], bool]:
        """Transitions newest first (of one component when given), before a position when given, and
        whether more follow."""
        match: dict[str, Any] = {} if component is None else {"component": component}
        docs, more = await keyset_page(
            self._transitions,
            match,
            [("seq", DESCENDING)],
            (before_seq,) if before_seq is not None else None,
            first,
            operation="status_transitions.history",
            breaker=self._breaker,
        )
        return [_transition(d) for d in docs], more

    async def after(self, seq: int, limit: int) -> list[Transition]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"seq": {"$gt": seq}}},
            {"$sort": {"seq": ASCENDING}},
            {"$limit": limit},
        ]
        async with translate_errors("status_transitions.after", self._breaker):
            docs = await (await self._transitions.aggregate(pipeline)).to_list()
        return [_transition(d) for d in docs]

    async def timeline(
        self, component: str, start: datetime, end: datetime
    ) -> tuple[ServiceState | None, list[tuple[datetime, ServiceState]]]:
        """The component's state just before `start` (None: no transition yet) and its changes in
        [start, end), in position order. Dates are matched through `find`, not an aggregate `$match`
        (the embedded database's aggregate ignores date comparisons)."""
        async with translate_errors("status_transitions.timeline", self._breaker):
            before = await self._transitions.find_one(
                {"component": component, "at": {"$lt": start}}, sort=[("seq", DESCENDING)]
            )
            docs = await self._transitions.find(
                {"component": component, "at": {"$gte": start, "$lt": end}},
                projection={"at": 1, "to": 1, "seq": 1},
                sort=[("seq", ASCENDING)],
            ).to_list()
        initial = ServiceState(before["to"]) if before else None
        return initial, [(as_datetime(d["at"]) or start, ServiceState(d["to"])) for d in docs]

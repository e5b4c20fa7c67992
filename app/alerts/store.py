"""Alert rules (`alert_rules`), deliveries (`alert_deliveries`) and throttle slots (`alert_throttle`).

Times are epoch milliseconds (integers compare the same on MongoDB and nx-27017). A delivery is claimed by
one worker at a time: find_one_and_update on `state` PENDING, `due_ms <= now` and `lease_ms <= now` sets a
lease; a worker that dies mid-attempt leaves a lease that runs out, and the delivery is claimed again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.alerts.model import (
    AlertFilter,
    AlertRule,
    Attempt,
    Delivery,
    DeliveryState,
    DestinationKind,
    FrequencyScope,
    Trigger,
)
from app.core.clock import from_ms, to_ms
from app.events.model import Severity
from app.status.model import ServiceState
from app.storage.breaker import CircuitBreaker
from app.storage.mongo import Database, translate_errors


def _rule_doc(rule: AlertRule) -> dict[str, Any]:
    f = rule.filter
    return {
        "_id": rule.id,
        "org_id": rule.org_id,
        "name": rule.name,
        "trigger": rule.trigger.value,
        "destination": rule.destination.value,
        "url": rule.url,
        "secrets": list(rule.secrets),
        "min_severity": f.min_severity.value if f.min_severity else None,
        "environment": f.environment,
        "source": f.source,
        "tag": list(f.tag) if f.tag else None,
        "threshold": rule.threshold,
        "window_minutes": rule.window_minutes,
        "scope": rule.scope.value,
        "component": rule.component,
        "state": rule.state.value if rule.state else None,
        "throttle_minutes": rule.throttle_minutes,
        "enabled": rule.enabled,
        "disabled_reason": rule.disabled_reason,
        "failing_since_ms": to_ms(rule.failing_since) if rule.failing_since else None,
        "created_ms": to_ms(rule.created_at) if rule.created_at else None,
    }


def _rule(doc: dict[str, Any]) -> AlertRule:
    tag = doc.get("tag")
    return AlertRule(
        id=doc["_id"],
        org_id=doc["org_id"],
        name=doc["name"],
        trigger=Trigger(doc["trigger"]),
        destination=DestinationKind(doc["destination"]),
        url=doc["url"],
        secrets=tuple(doc.get("secrets") or ()),
        filter=AlertFilter(
            min_severity=Severity(doc["min_severity"]) if doc.get("min_severity") else None,
            environment=doc.get("environment"),
            source=doc.get("source"),
            tag=(tag[0], tag[1]) if tag else None,
        ),
        threshold=doc.get("threshold"),
        window_minutes=doc.get("window_minutes"),
        scope=FrequencyScope(doc.get("scope") or "GROUP"),
        component=doc.get("component"),
        state=ServiceState(doc["state"]) if doc.get("state") else None,
        throttle_minutes=int(doc.get("throttle_minutes") or 0),
        enabled=bool(doc.get("enabled", True)),
        disabled_reason=doc.get("disabled_reason"),
        failing_since=from_ms(doc["failing_since_ms"]) if doc.get("failing_since_ms") is not None else None,
        created_at=from_ms(doc["created_ms"]) if doc.get("created_ms") is not None else None,
    )


class RuleStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["alert_rules"]
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("alert_rules.indexes", self._breaker):
            await self._col.create_index([("org_id", ASCENDING), ("created_ms", ASCENDING)], name="org")

    async def put(self, rule: AlertRule) -> None:
        async with translate_errors("alert_rules.put", self._breaker):
            await self._col.replace_one({"_id": rule.id}, _rule_doc(rule), upsert=True)

    async def get(self, org_id: str, rule_id: str) -> AlertRule | None:
        async with translate_errors("alert_rules.get", self._breaker):
            doc = await self._col.find_one({"_id": rule_id, "org_id": org_id})
        return _rule(doc) if doc else None

    async def delete(self, org_id: str, rule_id: str) -> bool:
        async with translate_errors("alert_rules.delete", self._breaker):
            result = await self._col.delete_one({"_id": rule_id, "org_id": org_id})
        return result.deleted_count == 1

    async def of_org(self, org_id: str) -> list[AlertRule]:
        async with translate_errors("alert_rules.list", self._breaker):
            docs = await self._col.find({"org_id": org_id}).sort("created_ms", ASCENDING).to_list()
        return [_rule(d) for d in docs]

    async def enabled(self, trigger: Trigger | None = None) -> list[AlertRule]:
        match: dict[str, Any] = {"enabled": True}
        if trigger is not None:
            match["trigger"] = trigger.value
        async with translate_errors("alert_rules.enabled", self._breaker):
            docs = await self._col.find(match).to_list()
        return [_rule(d) for d in docs]

    async def failed(self, rule_id: str, at: datetime) -> AlertRule | None:
        """Marks the start of a failing streak (kept if one is running); the rule after."""
        async with translate_errors("alert_rules.failed", self._breaker):
            await self._col.update_one(
                {"_id": rule_id, "failing_since_ms": None}, {"$set": {"failing_since_ms": to_ms(at)}}
            )
            doc = await self._col.find_one({"_id": rule_id})
        return _rule(doc) if doc else None

    async def succeeded(self, rule_id: str) -> None:
        async with translate_errors("alert_rules.succeeded", self._breaker):
            await self._col.update_one({"_id": rule_id}, {"$set": {"failing_since_ms": None}})

    async def disable(self, rule_id: str, reason: str) -> None:
        async with translate_errors("alert_rules.disable", self._breaker):
            await self._col.update_one(
                {"_id": rule_id}, {"$set": {"enabled": False, "disabled_reason": reason}}
            )


def _delivery_doc(d: Delivery) -> dict[str, Any]:
    return {
        "_id": d.id,
        "org_id": d.org_id,
        "rule_id": d.rule_id,
        "trigger": d.trigger.value,
        "body": d.body,
        "url": d.url,
        "state": d.state.value,
        "attempts": [],
        "due_ms": to_ms(d.due_at),
        "lease_ms": 0,
        "created_ms": to_ms(d.created_at),
        "test": d.test,
        "fingerprint": d.fingerprint,
    }


def _delivery(doc: dict[str, Any]) -> Delivery:
    return Delivery(
        id=doc["_id"],
        org_id=doc["org_id"],
        rule_id=doc["rule_id"],
        trigger=Trigger(doc["trigger"]),
        body=doc["body"],
        url=doc["url"],
        state=DeliveryState(doc["state"]),
        attempts=tuple(_attempt(a) for a in doc.get("attempts") or []),
        due_at=from_ms(int(doc["due_ms"])),
        created_at=from_ms(int(doc["created_ms"])),
        test=bool(doc.get("test")),
        fingerprint=doc.get("fingerprint"),
    )


def _attempt(stored: str | dict[str, Any]) -> Attempt:
    a = orjson.loads(stored) if isinstance(stored, str) else stored
    return Attempt(from_ms(a["at_ms"]), a.get("status_code"), float(a["latency_ms"]), a.get("error"))


class DeliveryStore:
    def __init__(self, db: Database, breaker: CircuitBreaker | None = None) -> None:
        self._col = db["alert_deliveries"]
        self._throttle = db["alert_throttle"]
        self._breaker = breaker

    async def ensure_indexes(self) -> None:
        async with translate_errors("alert_deliveries.indexes", self._breaker):
            await self._col.create_index([("state", ASCENDING), ("due_ms", ASCENDING)], name="due")
            await self._col.create_index(
                [("org_id", ASCENDING), ("rule_id", ASCENDING), ("created_ms", DESCENDING)], name="org_rule"
            )

    async def add(self, delivery: Delivery, firing_key: str | None = None) -> bool:
        """Stores a new delivery; False when a delivery of the same firing exists (another instance made
        it): `firing_key` is then its `_id`, so the firing is delivered once."""
        doc = _delivery_doc(delivery)
        if firing_key is not None:
            doc["firing"] = firing_key
        async with translate_errors("alert_deliveries.add", self._breaker):
            try:
                if firing_key is not None:
                    await self._throttle.insert_one(
                        {"_id": f"firing:{firing_key}", "at_ms": doc["created_ms"]}
                    )
                await self._col.insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    async def take_throttle(self, key: str, now_ms: int, until_ms: int) -> bool:
        """Claims the throttle slot `key` until `until_ms` if it is free at `now_ms`; one caller wins."""
        async with translate_errors("alert_throttle.take", self._breaker):
            try:
                doc = await self._throttle.find_one_and_update(
                    {"_id": key, "until_ms": {"$lte": now_ms}},
                    {"$set": {"until_ms": until_ms}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # the slot exists and is still taken
                return False
        return doc is not None

    async def claim(self, now_ms: int, lease_ms: int) -> Delivery | None:
        """The most overdue pending delivery nobody holds, leased to the caller until `lease_ms`."""
        async with translate_errors("alert_deliveries.claim", self._breaker):
            doc = await self._col.find_one_and_update(
                {
                    "state": DeliveryState.PENDING.value,
                    "due_ms": {"$lte": now_ms},
                    "lease_ms": {"$lte": now_ms},
                },
                {"$set": {"lease_ms": lease_ms}},
                sort=[("due_ms", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
        return _delivery(doc) if doc else None

    async def record(
        self, delivery_id: str, attempt: Attempt, state: DeliveryState, due_ms: int, lease_ms: int
    ) -> None:
        """Appends an attempt and sets what follows; only by the holder of lease `lease_ms`."""
        entry = {
            "at_ms": to_ms(attempt.at),
            "status_code": attempt.status_code,
            "latency_ms": attempt.latency_ms,
            "error": attempt.error,
        }
        async with translate_errors("alert_deliveries.record", self._breaker):
            await self._col.update_one(
                {"_id": delivery_id, "lease_ms": lease_ms},
                {
                    "$push": {"attempts": entry},
                    "$set": {"state": state.value, "due_ms": due_ms, "lease_ms": 0},
                },
            )

    async def again(self, org_id: str, delivery_id: str, now_ms: int) -> Delivery | None:
        """Makes a delivery due now (redelivery), whatever its state; None when there is none."""
        async with translate_errors("alert_deliveries.again", self._breaker):
            doc = await self._col.find_one_and_update(
                {"_id": delivery_id, "org_id": org_id},
                {"$set": {"state": DeliveryState.PENDING.value, "due_ms": now_ms, "lease_ms": 0}},
                return_document=ReturnDocument.AFTER,
            )
        return _delivery(doc) if doc else None

    async def fail_pending(self, rule_id: str) -> None:
        async with translate_errors("alert_deliveries.fail", self._breaker):
            await self._col.update_many(
                {"rule_id": rule_id, "state": DeliveryState.PENDING.value},
                {"$set": {"state": DeliveryState.FAILED.value}},
            )

    async def get(self, org_id: str, delivery_id: str) -> Delivery | None:
        async with translate_errors("alert_deliveries.get", self._breaker):
            doc = await self._col.find_one({"_id": delivery_id, "org_id": org_id})
        return _delivery(doc) if doc else None

    async def of_rule(self, org_id: str, rule_id: str | None, first: int) -> list[Delivery]:
        match: dict[str, Any] = {"org_id": org_id}
        if rule_id is not None:
            match["rule_id"] = rule_id
        async with translate_errors("alert_deliveries.list", self._breaker):
            docs = await (
                await self._col.aggregate(
                    [{"$match": match}, {"$sort": {"created_ms": -1}}, {"$limit": first}]
                )
            ).to_list()
        return [_delivery(d) for d in docs]

"""Alert rules: kept per organization, evaluated off the logging path, delivered by a background worker.

Evaluation listens to what the process publishes: group activity (NEW_GROUP, REGRESSION, ESCALATING, from
the instance that made the change), the event feed (FREQUENCY; every instance sees every event) and the
service status (SERVICE_STATUS). A firing first takes its rule's throttle slot for the group (or component),
then stores a delivery under a key of the firing: both are atomic in the database, so with several instances
each firing is stored, and delivered, once.

The worker claims due deliveries with a lease (find_one_and_update on state, due time and lease), sends them
with bounded timeouts, and records every attempt. A failure is retried with exponential backoff and jitter
until ALERT_RETRY_HOURS after the firing; a rule whose destination has failed for ALERT_DISABLE_AFTER_HOURS
without a success is disabled, with the reason on the rule. Nothing here runs on the logError path: logging
publishes in memory and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from ulid import ULID

from app.alerts.model import (
    AlertRule,
    Attempt,
    Delivery,
    DeliveryState,
    FrequencyScope,
    RuleSpec,
    Trigger,
)
from app.alerts.store import DeliveryStore, RuleStore
from app.alerts.webhooks import body_for, new_secret, signed_headers
from app.core.clock import format_datetime, to_ms, utc_now
from app.core.errors import AppError, NotFound, ValidationFailed
from app.core.principal import Principal
from app.core.pubsub import Mailbox, PubSub
from app.core.tasks import stop_tasks
from app.events.feed import EVENTS_TOPIC
from app.events.model import ErrorEventRecord
from app.groups.model import ActivityCause, ActivityKind, ActivityRecord, ErrorGroupRecord
from app.groups.service import ACTIVITY_TOPIC, GroupService
from app.orgs.service import OrgService
from app.status.model import ServiceState, StatusCause, StatusSnapshot
from app.status.service import STATUS_TOPIC, StatusService

log = logging.getLogger("app.alerts")
MAX_RULES_PER_ORG = 100
_ACTIVITY_TRIGGER = {
    ActivityCause.FIRST_EVENT: Trigger.NEW_GROUP,
    ActivityCause.REGRESSION: Trigger.REGRESSION,
    ActivityCause.ESCALATION: Trigger.ESCALATING,
}


@dataclass(frozen=True, slots=True)
class AlertSettings:
    timeout_seconds: float = 5.0  # connect, read and write each; the whole attempt at most twice that
    backoff_base_seconds: float = 10.0
    backoff_max_seconds: float = 3600.0
    retry_hours: float = 25.0
    disable_after_hours: float = 24.0
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    rules_refresh_seconds: float = 5.0
    concurrency: int = 8  # deliveries attempted at once by this process's worker
    worker: bool = True  # deliver in this process (off: it evaluates and stores; other instances deliver)


def backoff(attempts: int, settings: AlertSettings, rand: Callable[[], float]) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from the base, capped, with
    +-20% jitter so that receivers coming back are not hit by every sender at once."""
    delay = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2.0 ** (attempts - 1))
    return delay * (0.8 + 0.4 * rand())


def _event_view(e: ErrorEventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "message": e.message,
        "severity": e.severity.value,
        "timestamp": format_datetime(e.timestamp),
        "code": e.code,
        "source": e.source,
        "environment": e.environment,
        "release": e.release,
        "fingerprint": e.fingerprint,
    }


def _group_view(g: ErrorGroupRecord) -> dict[str, Any]:
    return {
        "fingerprint": g.fingerprint,
        "message": g.message,
        "status": g.status.value,
        "substatus": g.substatus.value,
        "occurrences": g.occurrences,
        "first_seen": format_datetime(g.first_seen),
        "last_seen": format_datetime(g.last_seen),
        "max_severity": g.max_severity.value,
        "assignee": g.assignee,
    }


def matches(rule: AlertRule, event: ErrorEventRecord | None) -> bool:
    """The rule's filters on the event (a filter on a field the event lacks does not match)."""
    f = rule.filter
    if event is None:
        return f.min_severity is None and f.environment is None and f.source is None and f.tag is None
    if f.min_severity is not None and event.severity.rank < f.min_severity.rank:
        return False
    if f.environment is not None and event.environment != f.environment:
        return False
    if f.source is not None and event.source != f.source:
        return False
    return f.tag is None or (event.tags or {}).get(f.tag[0]) == f.tag[1]


class AlertService:
    def __init__(
        self,
        rules: RuleStore,
        deliveries: DeliveryStore,
        orgs: OrgService,
        groups: GroupService,
        pubsub: PubSub,
        settings: AlertSettings | None = None,
        *,
        status: StatusService | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._rules = rules
        self._deliveries = deliveries
        self._orgs = orgs
        self._groups = groups
        self._pubsub = pubsub
        self._status = status
        self.settings = settings or AlertSettings()
        self.clock = clock
        self._rand = rand
        timeout = self.settings.timeout_seconds
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport
        )
        self._cache: list[AlertRule] = []
        self._cache_at = float("-inf")
        self._windows: dict[str, deque[int]] = {}  # FREQUENCY: received times (ms) per rule and scope
        self._states: dict[str, ServiceState] = {}  # SERVICE_STATUS: last state seen per component
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.delivered = 0  # counters for the metrics
        self.failed_attempts = 0

    # -- rules -----------------------------------------------------------------------------------

    async def create(self, principal: Principal, org_id: str, spec: RuleSpec) -> AlertRule:
        await self._orgs.authorize(principal, org_id)
        if len(await self._rules.of_org(org_id)) >= MAX_RULES_PER_ORG:
            raise ValidationFailed(f"An organization has at most {MAX_RULES_PER_ORG} alert rules")
        rule = AlertRule(
            id=f"rule_{ULID()}",
            org_id=org_id,
            secrets=(new_secret(),),
            created_at=self.clock(),
            **_spec_fields(spec),
        )
        await self._rules.put(rule)
        self._cache_at = float("-inf")
        return rule

    async def update(self, principal: Principal, org_id: str, rule_id: str, spec: RuleSpec) -> AlertRule:
        rule = await self.get(principal, org_id, rule_id)
        updated = replace(rule, **_spec_fields(spec))
        if spec.enabled and not rule.enabled:  # enabled again by a person: a fresh start
            updated = replace(updated, disabled_reason=None, failing_since=None)
        await self._rules.put(updated)
        self._cache_at = float("-inf")
        return updated

    async def rotate_secret(self, principal: Principal, org_id: str, rule_id: str) -> AlertRule:
        """A new secret signs beside the newest old one (receivers switch at their pace); older ones end."""
        rule = await self.get(principal, org_id, rule_id)
        rotated = replace(rule, secrets=(new_secret(), *rule.secrets[:1]))
        await self._rules.put(rotated)
        self._cache_at = float("-inf")
        return rotated

    async def delete(self, principal: Principal, org_id: str, rule_id: str) -> bool:
        await self._orgs.authorize(principal, org_id)
        deleted = await self._rules.delete(org_id, rule_id)
        if deleted:
            await self._deliveries.fail_pending(rule_id)
        self._cache_at = float("-inf")
        return deleted

    async def get(self, principal: Principal, org_id: str, rule_id: str) -> AlertRule:
        await self._orgs.authorize(principal, org_id)
        rule = await self._rules.get(org_id, rule_id)
        if rule is None:
            raise NotFound("Alert rule not found")
        return rule

    async def rules(self, principal: Principal, org_id: str) -> list[AlertRule]:
        await self._orgs.authorize(principal, org_id)
        return await self._rules.of_org(org_id)

    async def deliveries(
        self, principal: Principal, org_id: str, rule_id: str | None, first: int
    ) -> list[Delivery]:
        await self._orgs.authorize(principal, org_id)
        return await self._deliveries.of_rule(org_id, rule_id, first)

    async def redeliver(self, principal: Principal, org_id: str, delivery_id: str) -> Delivery:
        await self._orgs.authorize(principal, org_id)
        delivery = await self._deliveries.again(org_id, delivery_id, to_ms(self.clock()))
        if delivery is None:
            raise NotFound("Delivery not found")
        self._wake.set()
        return delivery

    async def send_test(self, principal: Principal, org_id: str, rule_id: str) -> Delivery:
        rule = await self.get(principal, org_id, rule_id)
        delivery = await self._fire(rule, {"text": "A test of this rule's destination"}, None, test=True)
        assert delivery is not None  # a test has no firing key: never a duplicate
        return delivery

    # -- evaluation ------------------------------------------------------------------------------

    async def _enabled_rules(self) -> list[AlertRule]:
        now = time.monotonic()
        if now - self._cache_at >= self.settings.rules_refresh_seconds:
            self._cache = await self._rules.enabled()
            self._cache_at = now
        return self._cache

    async def on_activity(self, entry: ActivityRecord) -> None:
        trigger = _ACTIVITY_TRIGGER.get(entry.cause)
        if trigger is None or entry.kind not in (ActivityKind.FIRST_SEEN, ActivityKind.STATUS_CHANGED):
            return
        if entry.event is None:  # made by another instance (read back from the database): evaluated there
            return
        rules = [
            r
            for r in await self._enabled_rules()
            if r.org_id == entry.org_id and r.trigger is trigger and matches(r, entry.event)
        ]
        if not rules:
            return
        group = await self._groups.lookup(entry.org_id, entry.fingerprint)
        for rule in rules:
            extra: dict[str, Any] = {"event": _event_view(entry.event) if entry.event else None}
            if group is not None:
                extra["group"] = _group_view(group)
            await self._fire(rule, extra, f"{rule.id}:{entry.seq}", scope=entry.fingerprint)

    async def on_event(self, event: ErrorEventRecord) -> None:
        rules = [
            r
            for r in await self._enabled_rules()
            if r.org_id == event.org_id and r.trigger is Trigger.FREQUENCY and matches(r, event)
        ]
        now_ms = to_ms(self.clock())
        for rule in rules:
            scope = event.fingerprint if rule.scope is FrequencyScope.GROUP else "*"
            window = self._windows.setdefault(f"{rule.id}:{scope}", deque())
            window.append(now_ms)  # when this instance saw it: every instance sees the same events
            start = now_ms - (rule.window_minutes or 1) * 60_000
            while window and window[0] < start:
                window.popleft()
            if len(window) <= (rule.threshold or 0):
                continue
            extra: dict[str, Any] = {
                "event": _event_view(event),
                "count": len(window),
                "window_minutes": rule.window_minutes,
            }
            if rule.scope is FrequencyScope.GROUP:
                group = await self._groups.lookup(event.org_id, event.fingerprint)
                if group is not None:
                    extra["group"] = _group_view(group)
            else:
                extra["text"] = f"{len(window)} events within {rule.window_minutes} minutes"
            if await self._fire(rule, extra, f"{rule.id}:{scope}:{event.id}", scope=scope):
                window.clear()  # counted afresh after a firing

    async def on_status(self, snapshot: StatusSnapshot) -> None:
        entered = []
        for component in snapshot.services:
            before = self._states.get(component.name)
            self._states[component.name] = component.status
            if before is not None and before is not component.status:
                entered.append(component)
        if not entered:
            return
        # A scheduled maintenance in progress holds its components' status alerts: the state it sets
        # (and any change it hides) is planned work, not news. Its end is a change like any other.
        entered = [c for c in entered if c.cause is not StatusCause.MAINTENANCE]
        if not entered:
            return
        for rule in await self._enabled_rules():
            if rule.trigger is not Trigger.SERVICE_STATUS:
                continue
            for component in entered:
                if component.status is rule.state and rule.component in (None, component.name):
                    status = {
                        "component": component.name,
                        "state": component.status.value,
                        "description": component.description,
                    }
                    key = f"{rule.id}:{component.name}:{component.status.value}:{snapshot.seq}"
                    await self._fire(rule, {"status": status}, key, scope=component.name)

    async def _fire(
        self,
        rule: AlertRule,
        extra: dict[str, Any],
        firing_key: str | None,
        *,
        scope: str = "*",
        test: bool = False,
    ) -> Delivery | None:
        now = self.clock()
        if not test and rule.throttle_minutes > 0:
            until = now + timedelta(minutes=rule.throttle_minutes)
            if not await self._deliveries.take_throttle(f"{rule.id}:{scope}", to_ms(now), to_ms(until)):
                return None
        delivery_id = f"msg_{ULID()}"
        payload: dict[str, Any] = {
            "id": delivery_id,
            "type": "alert.test" if test else "alert",
            "trigger": rule.trigger.value,
            "org_id": rule.org_id,
            "rule": {"id": rule.id, "name": rule.name},
            "group": None,
            "event": None,
            "status": None,
            "time": format_datetime(now),
            **extra,
        }
        delivery = Delivery(
            id=delivery_id,
            org_id=rule.org_id,
            rule_id=rule.id,
            trigger=rule.trigger,
            body=body_for(rule.destination, payload),
            url=rule.url,
            state=DeliveryState.PENDING,
            attempts=(),
            due_at=now,
            created_at=now,
            test=test,
            fingerprint=(payload.get("group") or {}).get("fingerprint"),
        )
        if not await self._deliveries.add(delivery, firing_key):
            return None  # another instance stored this firing
        self._wake.set()
        return delivery

    # -- delivery --------------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Attempts every delivery due now that nobody holds; how many were attempted."""
        done = 0
        while True:
            now = self.clock()
            lease = to_ms(now + timedelta(seconds=self.settings.lease_seconds))
            delivery = await self._deliveries.claim(to_ms(now), lease)
            if delivery is None:
                return done
            await self._attempt(delivery, lease)
            done += 1

    async def _attempt(self, delivery: Delivery, lease: int) -> None:
        rule = await self._rules.get(delivery.org_id, delivery.rule_id)
        now = self.clock()
        if rule is None or (not rule.enabled and not delivery.test):
            reason = (
                "rule deleted" if rule is None else f"rule disabled: {rule.disabled_reason or 'by a person'}"
            )
            attempt = Attempt(now, None, 0.0, reason)
            await self._deliveries.record(delivery.id, attempt, DeliveryState.FAILED, to_ms(now), lease)
            return
        timestamp = int(now.timestamp())
        headers = signed_headers(rule.secrets, delivery.id, timestamp, delivery.body)
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.timeout_seconds * 2):
                response = await self._http.post(delivery.url, content=delivery.body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (httpx.HTTPError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        attempt = Attempt(now, status_code, round(latency, 3), error)
        if error is None:
            self.delivered += 1
            await self._deliveries.record(delivery.id, attempt, DeliveryState.DELIVERED, to_ms(now), lease)
            if rule.failing_since is not None:
                await self._rules.succeeded(rule.id)
            return
        self.failed_attempts += 1
        tries = len(delivery.attempts) + 1
        next_at = now + timedelta(seconds=backoff(tries, self.settings, self._rand))
        give_up = next_at - delivery.created_at > timedelta(hours=self.settings.retry_hours)
        state = DeliveryState.FAILED if give_up or delivery.test else DeliveryState.PENDING
        await self._deliveries.record(delivery.id, attempt, state, to_ms(next_at), lease)
        if delivery.test:
            return
        failing = await self._rules.failed(rule.id, now)
        since = failing.failing_since if failing else None
        if since is not None and now - since >= timedelta(hours=self.settings.disable_after_hours):
            reason = (
                f"Disabled at {format_datetime(now)}: every delivery failed since {format_datetime(since)} "
                f"(last: {error})"
            )
            await self._rules.disable(rule.id, reason)
            await self._deliveries.fail_pending(rule.id)
            self._cache_at = float("-inf")
            log.warning("alert rule disabled", extra={"rule": rule.id, "reason": reason})

    # -- background ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._status is not None:  # the states components are in now: a change from them alerts
            self._states = {c.name: c.status for c in self._status.snapshot().services}
        self._tasks = [
            asyncio.create_task(self._listen(ACTIVITY_TOPIC, self.on_activity), name="alerts-activity"),
            asyncio.create_task(self._listen(EVENTS_TOPIC, self.on_event), name="alerts-events"),
            asyncio.create_task(self._listen(STATUS_TOPIC, self.on_status), name="alerts-status"),
        ]
        if self.settings.worker:
            self._tasks.append(asyncio.create_task(self._deliver_forever(), name="alerts-delivery"))

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks = []
        await self._http.aclose()

    async def _listen(self, topic: str, handle: Callable[[Any], Any]) -> None:
        mailbox: Mailbox
        with self._pubsub.subscribe(topic) as mailbox:
            while True:
                message = await mailbox.get()
                try:
                    await handle(message)
                except AppError as exc:
                    log.warning("alert evaluation failed: %s", exc.message)
                except Exception:
                    log.exception("alert evaluation failed")

    async def _deliver_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                # Several claimers: a slow or dead receiver holds one of them, not every delivery.
                await asyncio.gather(*(self.deliver_due() for _ in range(self.settings.concurrency)))
            except AppError as exc:  # database away: try again next round
                log.debug("alert delivery round failed: %s", exc.message)
            except Exception:
                log.exception("alert delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)


def _spec_fields(spec: RuleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "trigger": spec.trigger,
        "destination": spec.destination,
        "url": spec.url,
        "filter": spec.filter,
        "threshold": spec.threshold,
        "window_minutes": spec.window_minutes,
        "scope": spec.scope,
        "component": spec.component,
        "state": spec.state,
        "throttle_minutes": spec.throttle_minutes,
        "enabled": spec.enabled,
    }

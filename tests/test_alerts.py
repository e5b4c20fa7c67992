"""Alert rules delivered to a real HTTP receiver started here, signatures verified with the Standard
Webhooks reference library; retries, restarts and several instances with the delivery clock in the
test's hands (the delivery worker of the in-thread servers is off: the test runs each round)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from ulid import ULID

from app.alerts.service import AlertSettings, backoff
from app.core.clock import utc_now
from app.core.principal import Principal
from app.graphql.context import Services
from app.runtime.settings import Settings
from app.status.model import Component, ServiceState, StatusCause, StatusSnapshot
from tests.conftest import (
    GraphQLClient,
    LiveServer,
    Org,
    make_org,
    server_process,
    settings_for,
    start_server,
)
from tests.documents import SET_SERVICE_STATUS

TIMEOUT = 10
CREATE = """mutation($o: ID!, $i: AlertRuleInput!) { createAlertRule(orgId: $o, input: $i) {
  id signingSecrets enabled disabledReason } }"""
RULES = (
    "query($o: ID!) { alertRules(orgId: $o) { id name enabled disabledReason failingSince signingSecrets } }"
)
LOG = """query($o: ID!, $r: ID) { alertDeliveries(orgId: $o, ruleId: $r) {
  id state test fingerprint nextAttemptAt attempts { statusCode latencyMs error } } }"""
LOG_ERROR = (
    "mutation($o: ID!, $e: LogErrorInput!) { logError(orgId: $o, error: $e) { error { fingerprint } } }"
)
UPDATE = """mutation($o: ID!, $f: String!, $i: UpdateErrorGroupInput!) {
  updateErrorGroup(orgId: $o, fingerprint: $f, input: $i) { status } }"""


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on a free loopback port: answers `statuses` in turn (then 200), after `hold`
    is set when given."""

    statuses: deque[int] = field(default_factory=deque)
    hold: asyncio.Event | None = None
    requests: list[Received] = field(default_factory=list)
    arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()  # request line
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            received = Received(headers, body)
            self.requests.append(received)
            self.arrivals.put_nowait(received)
            if self.hold is not None:
                await self.hold.wait()
            status = self.statuses.popleft() if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    async def next(self) -> Received:
        return await asyncio.wait_for(self.arrivals.get(), TIMEOUT)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()
    server = await asyncio.start_server(box.handle, "127.0.0.1", 0)
    box.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"
    async with server:
        yield box


class Clock:
    """The delivery clock, moved by the test; starts at the real time so events and alerts agree."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def alert_settings(db: str, mongo_uri: str) -> Settings:
    return settings_for(
        mongo_uri,
        mongodb_db=db,
        feed_poll_seconds=0.05,
        alert_worker=False,  # the test runs each delivery round
        alert_timeout_seconds=2,
    )


@dataclass
class Alerting:
    server: LiveServer
    clock: Clock
    stop: Any
    mongo_uri: str

    async def deliver(self) -> int:
        """One delivery round on the server's loop (every due delivery attempted and recorded), waited for
        in a thread so that the receiver on this loop can answer meanwhile."""
        return await asyncio.to_thread(self.server.call, lambda s: s.alerts.deliver_due())

    def restart(self) -> None:
        self.stop()
        self.server, self.stop = start_server(alert_settings(self.server.settings.mongodb_db, self.mongo_uri))
        self.server.services.alerts.clock = self.clock


@pytest.fixture
def alerting(mongo_uri: str) -> Iterator[Alerting]:
    """A server of its own database, its alert clock under the test's control."""
    live, stop = start_server(alert_settings(f"alerts_{str(ULID()).lower()}", mongo_uri))
    clock = Clock()
    live.services.alerts.clock = clock
    box = Alerting(live, clock, stop, mongo_uri)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
async def client(alerting: Alerting) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=alerting.server.url, timeout=30) as http:
        yield GraphQLClient(http)


async def create_rule(gql: GraphQLClient, org: Org, **rule: Any) -> dict[str, Any]:
    rule.setdefault("name", "on call")
    data = await gql.data(CREATE, {"o": org.id, "i": rule}, key=org.key)
    return data["createAlertRule"]


async def log(gql: GraphQLClient, org: Org, message: str = "Card declined", **fields: Any) -> str:
    error = {"message": message, "severity": "HIGH"} | fields
    return (await gql.data(LOG_ERROR, {"o": org.id, "e": error}, key=org.key))["logError"]["error"][
        "fingerprint"
    ]


async def deliveries(gql: GraphQLClient, org: Org, rule_id: str | None = None) -> list[dict[str, Any]]:
    return (await gql.data(LOG, {"o": org.id, "r": rule_id}, key=org.key))["alertDeliveries"]


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload, if the signature verifies as the Standard Webhooks reference library checks it."""
    return Webhook(secret).verify(request.body, request.headers)


async def wait_stored(live: LiveServer, org: Org, count: int) -> None:
    """Firings are evaluated off the logging path: wait until `count` deliveries are stored."""

    async def stored(services: Services) -> int:
        return len(await services.alerts.deliveries(Principal("t", org.id, False, None), org.id, None, 100))

    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while await asyncio.to_thread(live.call, stored) < count:
        assert asyncio.get_running_loop().time() < deadline, "the firing was never stored"
        await asyncio.sleep(0.01)


async def test_a_regression_from_a_newer_release_is_delivered_once_signed(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    rule = await create_rule(client, org, trigger="REGRESSION", url=receiver.url)
    assert rule["signingSecrets"][0].startswith("whsec_") and rule["enabled"] is True
    fp = await log(client, org, release="1.4.1", environment="production")
    await client.data(
        UPDATE,
        {
            "o": org.id,
            "f": fp,
            "i": {"status": "RESOLVED", "resolution": {"kind": "IN_RELEASE", "release": "1.4.2"}},
        },
        key=org.key,
    )
    await log(client, org, release="1.4.0")  # an old client: no regression, no alert
    await log(client, org, release="1.5.0", environment="production")
    await wait_stored(alerting.server, org, 1)
    alerting.restart()  # stored before it is sent: a restart in between loses nothing
    assert await alerting.deliver() == 1

    request = await receiver.next()
    payload = verified(rule["signingSecrets"][0], request)
    assert payload["trigger"] == "REGRESSION" and payload["rule"]["id"] == rule["id"]
    assert payload["group"]["fingerprint"] == fp and payload["group"]["substatus"] == "REGRESSED"
    assert payload["event"]["release"] == "1.5.0" and payload["event"]["environment"] == "production"
    assert request.headers["webhook-id"] == payload["id"]
    async with httpx.AsyncClient(base_url=alerting.server.url, timeout=30) as http:
        logged = await deliveries(GraphQLClient(http), org, rule["id"])
    assert [(d["state"], [a["statusCode"] for a in d["attempts"]]) for d in logged] == [("DELIVERED", [200])]
    assert await alerting.deliver() == 0 and len(receiver.requests) == 1


async def test_a_failing_receiver_is_retried_with_backoff_across_a_restart(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    rule = await create_rule(client, org, trigger="NEW_GROUP", url=receiver.url, destination="WEBHOOK")
    receiver.statuses.extend([500, 503])
    await log(client, org)
    await wait_stored(alerting.server, org, 1)

    assert await alerting.deliver() == 1  # 500
    (pending,) = await deliveries(client, org)
    assert pending["state"] == "PENDING" and pending["attempts"][0]["statusCode"] == 500
    assert await alerting.deliver() == 0  # not due yet: the backoff holds
    alerting.clock.advance(seconds=13)  # past the first wait (10 s, +-20%)
    assert await alerting.deliver() == 1  # 503
    alerting.restart()  # mid-schedule: the next attempt is in the database, not in memory
    assert await alerting.deliver() == 0
    alerting.clock.advance(seconds=25)  # past the second wait (20 s, +-20%)
    assert await alerting.deliver() == 1  # 200

    async with httpx.AsyncClient(base_url=alerting.server.url, timeout=30) as http:
        (done,) = await deliveries(GraphQLClient(http), org)
    assert done["state"] == "DELIVERED" and done["nextAttemptAt"] is None
    assert [a["statusCode"] for a in done["attempts"]] == [500, 503, 200]
    assert all(a["error"] for a in done["attempts"][:2]) and done["attempts"][2]["error"] is None
    # The same message on every attempt, each one signed afresh.
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert all(verified(rule["signingSecrets"][0], r)["trigger"] == "NEW_GROUP" for r in receiver.requests)


async def test_a_destination_failing_for_a_day_is_disabled_with_the_reason(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    rule = await create_rule(client, org, trigger="NEW_GROUP", url=receiver.url)
    receiver.statuses.extend([502] * 100)
    await log(client, org)
    await wait_stored(alerting.server, org, 1)
    attempts, hours = 0, -1
    for hour in range(60):
        attempts += await alerting.deliver()
        alerting.clock.advance(hours=1)  # past any wait (at most an hour and 20%)
        (found,) = (await client.data(RULES, {"o": org.id}, key=org.key))["alertRules"]
        if not found["enabled"]:
            hours = hour
            break
    assert (
        found["enabled"] is False
        and "failed" in found["disabledReason"]
        and "HTTP 502" in found["disabledReason"]
    )
    # Failing since the first attempt, disabled at the first failure a day later: hour 24, or 25 when the
    # jitter put that attempt just past the hour.
    assert hours in (24, 25)
    assert 15 <= attempts <= 25  # the waits double up to an hour
    (delivery,) = await deliveries(client, org, rule["id"])
    assert delivery["state"] == "FAILED"


async def test_rotation_signs_with_both_secrets_and_chat_bodies(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    rule = await create_rule(client, org, trigger="NEW_GROUP", url=receiver.url, destination="SLACK")
    rotated = await client.data(
        "mutation($o: ID!, $id: ID!) { rotateAlertRuleSecret(orgId: $o, id: $id) { signingSecrets } }",
        {"o": org.id, "id": rule["id"]},
        key=org.key,
    )
    new, old = rotated["rotateAlertRuleSecret"]["signingSecrets"]
    assert old == rule["signingSecrets"][0]
    test = await client.data(
        "mutation($o: ID!, $id: ID!) { sendTestAlert(orgId: $o, id: $id) { id test state } }",
        {"o": org.id, "id": rule["id"]},
        key=org.key,
    )
    assert test["sendTestAlert"]["test"] is True
    assert await alerting.deliver() == 1
    request = await receiver.next()
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(new, request) == verified(old, request)  # a receiver on either secret accepts it
    assert set(request.json) == {"text"} and request.json["text"].startswith("[on call]")
    with pytest.raises(Exception, match="signature"):
        verified("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQyNDI=", request)


async def test_a_slow_receiver_does_not_hold_up_logging(client: GraphQLClient, mongo_uri: str) -> None:
    """With the delivery worker running: logging answers while the receiver has not answered yet."""
    held = Receiver(hold=asyncio.Event())
    server = await asyncio.start_server(held.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/slow"
    settings = alert_settings(f"alerts_{str(ULID()).lower()}", mongo_uri).model_copy(
        update={"alert_worker": True, "alert_poll_seconds": 0.05}
    )
    live, stop = start_server(settings)
    try:
        org = make_org(live)
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            gql = GraphQLClient(http)
            await create_rule(gql, org, trigger="NEW_GROUP", url=url)
            await log(gql, org, message="first")
            await held.next()  # the worker is now stuck on the receiver
            for i in range(5):  # every one answers although the receiver has not
                await asyncio.wait_for(log(gql, org, message=f"problem {'abcde'[i]}"), 2)
            held.hold.set()  # type: ignore[union-attr]
            for _ in range(5):
                await held.next()
    finally:
        stop()
        server.close()


async def test_two_instances_deliver_each_firing_once(receiver: Receiver, mongo_uri: str) -> None:
    """An in-thread server and a second `python -m app serve` process on one database, both delivering
    (real clocks). New groups are evaluated where they were counted; FREQUENCY by both instances from the
    feed (the throttle slot and the firing key make it one delivery)."""
    settings = alert_settings(f"alerts_{str(ULID()).lower()}", mongo_uri).model_copy(
        update={"alert_worker": True, "alert_poll_seconds": 0.02}
    )
    live, stop = start_server(settings)
    try:
        org = make_org(live)
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            gql = GraphQLClient(http)
            await create_rule(gql, org, trigger="NEW_GROUP", url=receiver.url)
            await create_rule(
                gql,
                org,
                trigger="FREQUENCY",
                scope="ORGANIZATION",
                threshold=2,
                windowMinutes=60,
                throttleMinutes=60,
                url=receiver.url,
            )
            with server_process(live, ALERT_POLL_SECONDS="0.02", FEED_POLL_SECONDS="0.05"):
                for i in range(6):
                    await log(gql, org, message=f"problem {'abc'[i % 3]}")
                # Three new groups, and one FREQUENCY firing (6 events > 2, then throttled for the hour).
                ids = {(await receiver.next()).headers["webhook-id"] for _ in range(4)}
                assert len(ids) == 4
                while any(d["state"] != "DELIVERED" for d in await deliveries(gql, org)):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                # Every attempt is recorded after it is sent: with all delivered, none is in flight.
                assert len(receiver.requests) == 4
                assert len(await deliveries(gql, org)) == 4
    finally:
        stop()


async def test_every_problem_of_a_rule_is_reported(client: GraphQLClient, alerting: Alerting) -> None:
    org = make_org(alerting.server)
    error = await client.error(
        CREATE,
        {
            "o": org.id,
            "i": {
                "name": "",
                "trigger": "FREQUENCY",
                "url": "ftp://example.com",
                "state": "MAJOR_OUTAGE",
                "throttleMinutes": -1,
            },
        },
        key=org.key,
    )
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["extensions"]["details"]} == {
        "input.name",
        "input.url",
        "input.throttleMinutes",
        "input.threshold",
        "input.windowMinutes",
        "input.state",
    }


def test_backoff_doubles_within_the_jitter_and_is_capped() -> None:
    settings = AlertSettings(backoff_base_seconds=10, backoff_max_seconds=3600)
    assert [backoff(n, settings, lambda: 0.5) for n in (1, 2, 3)] == [10, 20, 40]
    assert backoff(1, settings, lambda: 0.0) == pytest.approx(8)
    assert backoff(1, settings, lambda: 1.0) == pytest.approx(12)
    assert backoff(30, settings, lambda: 0.5) == 3600
    # Retried for at least a day: the waits of a schedule add up past 24 hours before the cap ends it.
    total, n = 0.0, 0
    while total < 24 * 3600:
        n += 1
        total += backoff(n, settings, lambda: 0.0)
    assert n < 40


async def test_a_claim_abandoned_mid_attempt_is_taken_again_after_its_lease(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    """An instance that claimed a delivery and stopped before recording the attempt: nobody else sends
    it while the lease holds, and another instance sends it once the lease has run out."""
    org = make_org(alerting.server)
    await create_rule(client, org, trigger="NEW_GROUP", url=receiver.url)
    await log(client, org)
    await wait_stored(alerting.server, org, 1)
    now = alerting.clock.now
    lease = now + timedelta(seconds=60)

    async def claim_and_vanish(services: Services) -> object:
        store = services.alerts._deliveries  # what a worker does first, before it dies
        return await store.claim(int(now.timestamp() * 1000), int(lease.timestamp() * 1000))

    assert await asyncio.to_thread(alerting.server.call, claim_and_vanish) is not None
    assert await alerting.deliver() == 0  # held by the vanished instance
    alerting.clock.advance(seconds=61)
    assert await alerting.deliver() == 1
    assert len(receiver.requests) == 1
    (done,) = await deliveries(client, org)
    assert done["state"] == "DELIVERED" and [a["statusCode"] for a in done["attempts"]] == [200]


async def test_a_component_entering_a_state_alerts(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    admin = alerting.server.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="ops")).plaintext
    rule = await create_rule(
        client, org, trigger="SERVICE_STATUS", component="storage", state="MAJOR_OUTAGE", url=receiver.url
    )
    await client.data(SET_SERVICE_STATUS, {"service": "api", "status": "MAJOR_OUTAGE"}, key=admin)
    await client.data(SET_SERVICE_STATUS, {"service": "storage", "status": "DEGRADED_PERFORMANCE"}, key=admin)
    await client.data(
        SET_SERVICE_STATUS, {"service": "storage", "status": "MAJOR_OUTAGE", "description": "disk"}, key=admin
    )
    try:
        await wait_stored(alerting.server, org, 1)
        assert await alerting.deliver() == 1
        payload = verified(rule["signingSecrets"][0], await receiver.next())
        assert payload["trigger"] == "SERVICE_STATUS"
        assert payload["status"] == {"component": "storage", "state": "MAJOR_OUTAGE", "description": "disk"}
        assert len(await deliveries(client, org)) == 1  # neither the api nor the degraded state alerted
    finally:
        for service in ("api", "storage"):
            await client.data(SET_SERVICE_STATUS, {"service": service, "status": "OPERATIONAL"}, key=admin)


async def test_a_running_maintenance_holds_the_status_alerts_of_its_components(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    for state in ("UNDER_MAINTENANCE", "MAJOR_OUTAGE"):
        await create_rule(
            client,
            org,
            name=state,
            trigger="SERVICE_STATUS",
            component="storage",
            state=state,
            url=receiver.url,
        )
    services = alerting.server.services
    now = services.status.snapshot().timestamp

    def entering(state: ServiceState, cause: StatusCause, seq: int) -> StatusSnapshot:
        current = services.status.snapshot()
        changed = tuple(
            Component(c.name, state, "planned", now, cause) if c.name == "storage" else c
            for c in current.services
        )
        return StatusSnapshot(state, changed, now, seq)

    baseline = services.status.snapshot()
    try:
        # The maintenance starts (UNDER_MAINTENANCE, set by it): held. It ends and the probe finds the
        # component down: no maintenance any more, so that alerts.
        held = entering(ServiceState.UNDER_MAINTENANCE, StatusCause.MAINTENANCE, 10**9)
        alerting.server.call(lambda s: s.alerts.on_status(held))
        after = entering(ServiceState.MAJOR_OUTAGE, StatusCause.PROBE, 10**9 + 1)
        alerting.server.call(lambda s: s.alerts.on_status(after))
        await wait_stored(alerting.server, org, 1)
        stored = await deliveries(client, org)
        assert len(stored) == 1
        assert await alerting.deliver() == 1
        assert (await receiver.next()).json["status"]["state"] == "MAJOR_OUTAGE"
    finally:
        alerting.server.call(lambda s: s.alerts.on_status(baseline))


UPDATE_RULE = """mutation($o: ID!, $id: ID!, $i: AlertRuleInput!) {
  updateAlertRule(orgId: $o, id: $id, input: $i) {
    id name trigger enabled throttleMinutes filter { minSeverity environment tag { key value } } } }"""
DELETE_RULE = "mutation($o: ID!, $id: ID!) { deleteAlertRule(orgId: $o, id: $id) }"


async def test_filters_decide_which_events_alert_and_rules_are_replaced_and_deleted(
    alerting: Alerting, client: GraphQLClient, receiver: Receiver
) -> None:
    org = make_org(alerting.server)
    rule = await create_rule(
        client,
        org,
        trigger="NEW_GROUP",
        url=receiver.url,
        filter={"minSeverity": "HIGH", "environment": "production"},
    )
    await log(client, org, message="Quiet one", severity="LOW", environment="production")
    await log(client, org, message="Staging one", environment="staging")
    await log(client, org, message="No environment")
    await log(client, org, message="The real one", severity="CRITICAL", environment="production")
    await wait_stored(alerting.server, org, 1)
    assert await alerting.deliver() == 1
    assert (await receiver.next()).json["event"]["message"] == "The real one"

    replaced = await client.data(
        UPDATE_RULE,
        {
            "o": org.id,
            "id": rule["id"],
            "i": {"name": "renamed", "trigger": "REGRESSION", "url": receiver.url, "throttleMinutes": 5},
        },
        key=org.key,
    )
    assert replaced["updateAlertRule"] == {
        "id": rule["id"],
        "name": "renamed",
        "trigger": "REGRESSION",
        "enabled": True,
        "throttleMinutes": 5,
        "filter": {"minSeverity": None, "environment": None, "tag": None},
    }
    assert (await client.data(DELETE_RULE, {"o": org.id, "id": rule["id"]}, key=org.key))["deleteAlertRule"]
    assert not (await client.data(DELETE_RULE, {"o": org.id, "id": rule["id"]}, key=org.key))[
        "deleteAlertRule"
    ]
    missing = await client.error(
        UPDATE_RULE,
        {"o": org.id, "id": rule["id"], "i": {"name": "x", "trigger": "NEW_GROUP", "url": receiver.url}},
        key=org.key,
    )
    assert missing["extensions"]["code"] == "NOT_FOUND"
    other = make_org(alerting.server)  # another organization's rules are not visible
    assert (await client.data(RULES, {"o": other.id}, key=other.key))["alertRules"] == []

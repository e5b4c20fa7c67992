"""The status page through its public API: custom components, heartbeats, incidents, maintenances,
uptime, the public Statuspage-format surface and the incidentUpdated feed.

The server here has its own database and the public page on; its clock is a ManualClock the tests move,
and time-driven work (maintenance windows, heartbeat deadlines) runs when a test calls `tick`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ulid import ULID

from app.core.pubsub import PubSub
from app.graphql.context import Services
from app.status.service import StatusService, StatusSettings
from app.status.store import StatusStore
from app.statuspage.service import PageSettings, StatusPageService
from app.statuspage.store import StatusPageStore
from tests.browser import BrowserPage, browser_page  # noqa: F401  (the fixture)
from tests.conftest import GraphQLClient, LiveServer, _free_port, start_server
from tests.test_subscriptions import receive, session, subscribe


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(scope="module")
def page_server(server: LiveServer) -> Iterator[LiveServer]:
    live, stop = start_server(
        server.settings.model_copy(
            update={
                "port": _free_port(),
                "mongodb_db": f"test_page_{str(ULID()).lower()}",
                "public_status_page": True,
                "status_page_name": "Acme Status",
                "status_page_cache_seconds": 5,
                "status_tick_seconds": 3600,  # the tests tick
                "status_push_budget": 5,
            }
        )
    )
    try:
        yield live
    finally:
        stop()


@pytest.fixture(scope="module")
def page_admin(page_server: LiveServer) -> str:
    return page_server.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="page")).plaintext


@pytest.fixture
def clock(page_server: LiveServer) -> Iterator[ManualClock]:
    """The server's clock, after every time it has already stamped (whole minutes, for easy figures)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    manual = ManualClock(start)
    status = page_server.services.status
    original = status.clock
    status.clock = manual
    try:
        yield manual
    finally:
        status.clock = original


@pytest.fixture
async def pgql(page_server: LiveServer) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=page_server.url, timeout=30) as client:
        yield GraphQLClient(client)


def tick(live: LiveServer) -> None:
    live.call(lambda s: s.status_page.tick())


def unique(prefix: str) -> str:
    return f"{prefix}-{str(ULID()).lower()[-8:]}"


CREATE_COMPONENT = """mutation($input: StatusComponentInput!) { createStatusComponent(input: $input) {
  name group status cause heartbeat { pushToken intervalSeconds graceSeconds } } }"""
COMPONENTS = "{ statusComponents { name builtIn group status cause reason } }"
INCIDENT_FIELDS = (
    "id name status impact components { component status } updates { status message at } resolvedAt"
)
CREATE_INCIDENT = (
    "mutation($input: IncidentInput!) { createIncident(input: $input) { " + INCIDENT_FIELDS + " } }"
)
UPDATE_INCIDENT = (
    "mutation($id: String!, $input: IncidentUpdateInput!) { updateIncident(id: $id, input: $input) { "
    + INCIDENT_FIELDS
    + " } }"
)
RESOLVE = (
    "mutation($id: String!, $m: String!) { resolveIncident(id: $id, message: $m) { status resolvedAt } }"
)
SCHEDULE = """mutation($input: MaintenanceInput!) { scheduleMaintenance(input: $input) {
  id status startsAt endsAt components } }"""
MAINTENANCES = "{ maintenances(first: 100) { id status updates { status message } } }"
HISTORY = """query($s: String) { statusHistory(service: $s, first: 20) { nodes { from to cause } } }"""
UPTIME = """query($c: String, $g: String, $from: DateTime, $to: DateTime, $r: UptimeRange) {
  uptime(component: $c, group: $g, from: $from, to: $to, range: $r) {
    target group figures { uptime downtimeSeconds noDataSeconds seconds { status seconds } }
    days { date figures { uptime } } } }"""


async def component_state(gql: GraphQLClient, key: str, name: str) -> dict[str, Any]:
    rows = (await gql.data(COMPONENTS, key=key))["statusComponents"]
    return next(r for r in rows if r["name"] == name)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def test_incident_and_maintenance_end_to_end_with_exact_uptime(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    """The issue's bar: an incident with two updates, resolved; a maintenance that starts and ends by
    itself; a customer without a key sees it all, with exact uptime, in summary.json and on /status."""
    name = unique("Website")
    created_at = clock.now
    made = (await pgql.data(CREATE_COMPONENT, {"input": {"name": name, "group": "Edge"}}, key=page_admin))[
        "createStatusComponent"
    ]
    assert (made["name"], made["group"], made["status"], made["heartbeat"]) == (
        name,
        "Edge",
        "OPERATIONAL",
        None,
    )

    clock.advance(minutes=60)  # 60 min operational
    incident = (
        await pgql.data(
            CREATE_INCIDENT,
            {
                "input": {
                    "name": "Checkout errors",
                    "message": "We are looking into failed checkouts",
                    "impact": "MAJOR",
                    "components": [{"component": name, "status": "MAJOR_OUTAGE"}],
                }
            },
            key=page_admin,
        )
    )["createIncident"]
    assert incident["status"] == "INVESTIGATING" and len(incident["updates"]) == 1
    state = await component_state(pgql, page_admin, name)
    assert (state["status"], state["cause"], state["reason"]) == (
        "MAJOR_OUTAGE",
        "INCIDENT",
        "Checkout errors",
    )

    clock.advance(minutes=20)  # 20 min major outage
    update = {
        "status": "IDENTIFIED",
        "message": "A bad deploy",
        "components": [{"component": name, "status": "PARTIAL_OUTAGE"}],
    }
    updated = (await pgql.data(UPDATE_INCIDENT, {"id": incident["id"], "input": update}, key=page_admin))[
        "updateIncident"
    ]
    assert [u["status"] for u in updated["updates"]] == ["INVESTIGATING", "IDENTIFIED"]
    clock.advance(minutes=30)  # 30 min partial outage
    monitoring = {"status": "MONITORING", "message": "Rolled back"}
    await pgql.data(UPDATE_INCIDENT, {"id": incident["id"], "input": monitoring}, key=page_admin)
    clock.advance(minutes=10)  # 10 more min partial (the update kept the components)
    resolved = (await pgql.data(RESOLVE, {"id": incident["id"], "m": "All good"}, key=page_admin))[
        "resolveIncident"
    ]
    assert resolved["status"] == "RESOLVED" and resolved["resolvedAt"] == iso(clock.now).replace("Z", ".000Z")
    assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"

    late = await pgql.error(
        UPDATE_INCIDENT,
        {"id": incident["id"], "input": {"status": "MONITORING", "message": "?"}},
        key=page_admin,
    )
    assert late["extensions"]["code"] == "CONFLICT" and late["extensions"]["status"] == 409

    # A maintenance an hour from now, for an hour.
    starts = clock.now + timedelta(hours=1)
    maintenance = (
        await pgql.data(
            SCHEDULE,
            {
                "input": {
                    "name": "Database upgrade",
                    "message": "Expect a short read-only period",
                    "startsAt": iso(starts),
                    "endsAt": iso(starts + timedelta(hours=1)),
                    "components": [name],
                }
            },
            key=page_admin,
        )
    )["scheduleMaintenance"]
    assert maintenance["status"] == "SCHEDULED"
    clock.advance(minutes=59)
    tick(page_server)
    assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"
    clock.advance(minutes=1)
    tick(page_server)
    tick(page_server)  # once only, however often it is checked
    state = await component_state(pgql, page_admin, name)
    assert (state["status"], state["cause"]) == ("UNDER_MAINTENANCE", "MAINTENANCE")

    # The customer's view while it runs: no key.
    async with httpx.AsyncClient(base_url=page_server.url) as public:
        page_server.services.status_page  # noqa: B018 (the page reads the last tick)
        summary = (await public.get("/api/v2/summary.json")).json()
        ours = next(c for c in summary["components"] if c["name"] == name)
        assert ours["status"] == "under_maintenance"
        assert any(m["id"] == maintenance["id"] for m in summary["scheduled_maintenances"])

    clock.advance(hours=1)
    tick(page_server)
    assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"
    done = next(
        m
        for m in (await pgql.data(MAINTENANCES, key=page_admin))["maintenances"]
        if m["id"] == maintenance["id"]
    )
    assert done["status"] == "COMPLETED"
    assert [u["status"] for u in done["updates"]] == ["SCHEDULED", "IN_PROGRESS", "COMPLETED"]

    history = (await pgql.data(HISTORY, {"s": name}, key=page_admin))["statusHistory"]["nodes"]
    assert [(n["from"], n["to"], n["cause"]) for n in reversed(history)] == [
        ("OPERATIONAL", "MAJOR_OUTAGE", "INCIDENT"),
        ("MAJOR_OUTAGE", "PARTIAL_OUTAGE", "INCIDENT"),
        ("PARTIAL_OUTAGE", "OPERATIONAL", "INCIDENT"),
        ("OPERATIONAL", "UNDER_MAINTENANCE", "MAINTENANCE"),
        ("UNDER_MAINTENANCE", "OPERATIONAL", "MAINTENANCE"),
    ]

    clock.advance(minutes=30)
    # Since creation (4 h 30 min = 16200 s): 20 min major, 40 min partial, 1 h maintenance (not counted).
    # counted = 16200 - 3600 = 12600 s; down = 1200 + 0.3 * 2400 = 1920 s; uptime = 10680 / 12600.
    figures = (
        await pgql.data(UPTIME, {"c": name, "from": iso(created_at), "to": iso(clock.now)}, key=page_admin)
    )["uptime"]["figures"]
    assert figures["downtimeSeconds"] == pytest.approx(1920)
    assert figures["uptime"] == pytest.approx(100 * 10680 / 12600)  # 84.76 %
    by_state = {s["status"]: s["seconds"] for s in figures["seconds"]}
    assert by_state == {
        "OPERATIONAL": 9000,
        "UNDER_MAINTENANCE": 3600,
        "PARTIAL_OUTAGE": 2400,
        "MAJOR_OUTAGE": 1200,
    }
    # The 90-day preset: the rest of the range is before the component existed.
    ninety = (await pgql.data(UPTIME, {"c": name, "r": "DAYS_90"}, key=page_admin))["uptime"]
    assert ninety["figures"]["uptime"] == pytest.approx(100 * 10680 / 12600)
    assert len(ninety["days"]) in (90, 91) and ninety["days"][0]["figures"]["uptime"] is None
    group = await pgql.data(
        UPTIME, {"g": "Edge", "from": iso(created_at), "to": iso(clock.now)}, key=page_admin
    )
    assert group["uptime"]["group"] is True

    async with httpx.AsyncClient(base_url=page_server.url) as public:
        await asyncio.sleep(0)  # nothing to wait for: the bodies are rebuilt from the service
        incidents = (await public.get("/api/v2/incidents.json")).json()["incidents"]
        ours = next(i for i in incidents if i["id"] == incident["id"])
        assert ours["status"] == "resolved" and ours["impact"] == "major"
        assert [u["status"] for u in ours["incident_updates"]] == [
            "resolved",
            "monitoring",
            "identified",
            "investigating",
        ]
        assert [u["body"] for u in ours["incident_updates"]][-1] == "We are looking into failed checkouts"


async def test_summary_json_has_statuspage_shape_and_is_cached(
    page_server: LiveServer, page_admin: str
) -> None:
    async with httpx.AsyncClient(base_url=page_server.url) as public:
        response = await public.get("/api/v2/summary.json")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
        assert set(body["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
        assert body["page"]["name"] == "Acme Status"
        assert body["status"]["indicator"] in ("none", "minor", "major", "critical")
        component_keys = {
            "id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
            "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
        }  # fmt: skip
        assert {c["name"] for c in body["components"]} >= {"api", "storage", "authentication"}
        for c in body["components"]:
            assert component_keys <= set(c)
            assert c["status"] in (
                "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"
            )  # fmt: skip
        etag = response.headers["etag"]
        assert "max-age=5" in response.headers["cache-control"]
        again = await public.get("/api/v2/summary.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        status = (await public.get("/api/v2/status.json")).json()
        assert set(status) == {"page", "status"}
        for path in (
            "/api/v2/components.json",
            "/api/v2/incidents/unresolved.json",
            "/api/v2/scheduled-maintenances/upcoming.json",
            "/api/v2/scheduled-maintenances/active.json",
        ):
            assert (await public.get(path)).status_code == 200, path
        atom = await public.get("/history.atom")
        assert atom.headers["content-type"].startswith("application/atom+xml") and b"<feed" in atom.content
        badge = await public.get("/badge/storage.svg")
        assert badge.headers["content-type"].startswith("image/svg+xml") and b"storage" in badge.content
        assert (await public.get("/badge/nope.svg")).status_code == 404
        page = await public.get("/status")
        assert page.status_code == 200 and b"Acme Status" in page.content and b"<script" not in page.content


async def test_the_public_page_is_off_by_default(http: httpx.AsyncClient) -> None:
    for path in ("/api/v2/summary.json", "/status", "/history.atom", "/badge/api.svg"):
        assert (await http.get(path)).status_code == 404, path


async def test_heartbeat_monitor_misses_recovers_and_is_budgeted(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    name = unique("Nightly job")
    made = (
        await pgql.data(
            CREATE_COMPONENT,
            {"input": {"name": name, "heartbeatInterval": 60, "heartbeatGrace": 30}},
            key=page_admin,
        )
    )["createStatusComponent"]
    token = made["heartbeat"]["pushToken"]
    assert made["cause"] == "HEARTBEAT" and token
    async with httpx.AsyncClient(base_url=page_server.url) as client:
        assert (
            await client.get(f"/api/push/{token}", params={"status": "up", "msg": "OK", "ping": "12"})
        ).json() == {"ok": True}
        before = (await pgql.data(HISTORY, {"s": None}, key=page_admin))["statusHistory"]["nodes"]
        unknown = await client.get("/api/push/not-a-token", params={"status": "down"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
        assert (await pgql.data(HISTORY, {"s": None}, key=page_admin))["statusHistory"]["nodes"] == before

        # Damping 2: down after grace + 2 intervals without a beat (150 s), not a second earlier.
        clock.advance(seconds=149)
        tick(page_server)
        assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"
        clock.advance(seconds=1)
        tick(page_server)
        tick(page_server)
        state = await component_state(pgql, page_admin, name)
        assert (state["status"], state["cause"]) == ("MAJOR_OUTAGE", "HEARTBEAT")
        assert state["reason"].startswith("No heartbeat since")

        assert (await client.post(f"/api/push/{token}?status=up")).status_code == 200  # the next beat
        assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"

        # Two down pushes in a row (the damping) put it down; one is not enough.
        assert (
            await client.get(f"/api/push/{token}", params={"status": "down", "msg": "disk full"})
        ).status_code == 200
        assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"
        await client.get(f"/api/push/{token}", params={"status": "down", "msg": "disk full"})
        state = await component_state(pgql, page_admin, name)
        assert (state["status"], state["reason"]) == ("MAJOR_OUTAGE", "disk full")

        history = (await pgql.data(HISTORY, {"s": name}, key=page_admin))["statusHistory"]["nodes"]
        assert [(n["to"], n["cause"]) for n in reversed(history)] == [
            ("MAJOR_OUTAGE", "HEARTBEAT"),
            ("OPERATIONAL", "HEARTBEAT"),
            ("MAJOR_OUTAGE", "HEARTBEAT"),
        ]
        # Budget: 5 pushes per token per minute; this minute of the clock has seen 3 (up, down, down).
        for _ in range(2):
            assert (await client.get(f"/api/push/{token}")).status_code == 200
        flood = await client.get(f"/api/push/{token}")
        assert flood.status_code == 429 and flood.json()["error"]["code"] == "RATE_LIMITED"
        assert int(flood.headers["retry-after"]) >= 1
        bad = await client.get(f"/api/push/{token}", params={"status": "sideways", "ping": "fast"})
        assert bad.status_code == 400
        assert {d["field"] for d in bad.json()["error"]["details"]} == {"status", "ping"}
    # A monitor left behind would miss its beats in the later tests' time.
    await pgql.data("mutation($n: String!) { deleteStatusComponent(name: $n) }", {"n": name}, key=page_admin)
    assert name not in [c["name"] for c in (await pgql.data(COMPONENTS, key=page_admin))["statusComponents"]]


async def test_bad_input_gets_every_problem_at_once(
    pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    error = await pgql.error(
        SCHEDULE,
        {
            "input": {
                "name": "Backwards",
                "message": "x",
                "startsAt": iso(clock.now + timedelta(hours=2)),
                "endsAt": iso(clock.now + timedelta(hours=1)),
                "components": ["no-such-component"],
            }
        },
        key=page_admin,
    )
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    fields = {d["field"] for d in error["extensions"]["details"]}
    assert fields == {"input.components", "input.endsAt"}
    unknown = await pgql.error(
        CREATE_INCIDENT,
        {
            "input": {
                "name": "x",
                "message": "y",
                "components": [{"component": "nope", "status": "MAJOR_OUTAGE"}],
            }
        },
        key=page_admin,
    )
    assert unknown["extensions"]["details"] == [
        {"field": "input.components.0.component", "message": "Unknown component 'nope'"}
    ]
    missing = await pgql.error(RESOLVE, {"id": "nope", "m": "x"}, key=page_admin)
    assert missing["extensions"]["code"] == "NOT_FOUND"
    builtin = await pgql.error(CREATE_COMPONENT, {"input": {"name": "api"}}, key=page_admin)
    assert builtin["extensions"]["code"] == "VALIDATION_ERROR"


async def test_only_admins_change_the_page(page_server: LiveServer, pgql: GraphQLClient) -> None:
    async def org_key(s: Services) -> str:
        org = unique("org")
        await s.orgs.create(org)
        return (await s.auth.create_key(org_id=org)).plaintext

    key = page_server.call(org_key)
    error = await pgql.error(CREATE_COMPONENT, {"input": {"name": unique("x")}}, key=key)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_a_maintenance_start_is_claimed_once_across_instances(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    name = unique("Queue")
    await pgql.data(CREATE_COMPONENT, {"input": {"name": name}}, key=page_admin)
    starts = clock.now + timedelta(minutes=5)
    made = (
        await pgql.data(
            SCHEDULE,
            {
                "input": {
                    "name": "Broker swap",
                    "message": "m",
                    "startsAt": iso(starts),
                    "endsAt": iso(starts + timedelta(minutes=5)),
                    "components": [name],
                }
            },
            key=page_admin,
        )
    )["scheduleMaintenance"]
    clock.advance(minutes=5)

    async def race(s: Services) -> None:
        """Three more instances on the same database, each with its own status service, ticking at the
        same moment as this one (a restart is one more instance that comes late)."""
        db = page_server.app.state.runtime.client[page_server.settings.mongodb_db]
        others = []
        for _ in range(3):
            status = StatusService(StatusStore(db), PubSub(), StatusSettings())
            status.clock = clock
            others.append(StatusPageService(StatusPageStore(db), status, PubSub(), PageSettings()))
            others[-1]._serving = True  # as started, without its own tick loop
        await asyncio.gather(s.status_page.tick(), *(o.tick() for o in others))
        for instance in (s.status_page, *others):  # every instance shows the maintenance
            assert instance.view.active_maintenances[0].id == made["id"]

    page_server.call(race)
    history = (await pgql.data(HISTORY, {"s": name}, key=page_admin))["statusHistory"]["nodes"]
    assert [(n["to"], n["cause"]) for n in history] == [("UNDER_MAINTENANCE", "MAINTENANCE")]
    done = next(
        m for m in (await pgql.data(MAINTENANCES, key=page_admin))["maintenances"] if m["id"] == made["id"]
    )
    assert [u["status"] for u in done["updates"]] == ["SCHEDULED", "IN_PROGRESS"]  # one start, not four
    clock.advance(minutes=5)
    tick(page_server)
    tick(page_server)
    history = (await pgql.data(HISTORY, {"s": name}, key=page_admin))["statusHistory"]["nodes"]
    assert [(n["to"], n["cause"]) for n in history] == [
        ("OPERATIONAL", "MAINTENANCE"),
        ("UNDER_MAINTENANCE", "MAINTENANCE"),
    ]


async def test_incident_feed_resumes_without_gap_or_duplicate(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    feed = (
        "subscription($after: String) { incidentUpdated(after: $after) "
        "{ position incident { name status } } }"
    )
    first = (await pgql.data(CREATE_INCIDENT, {"input": {"name": "Feed A", "message": "a"}}, key=page_admin))[
        "createIncident"
    ]
    async with session(page_server, {"apiKey": page_admin}) as ws:
        await subscribe(ws, "live", feed)
        await pgql.data(
            UPDATE_INCIDENT,
            {"id": first["id"], "input": {"status": "IDENTIFIED", "message": "b"}},
            key=page_admin,
        )
        live = (await receive(ws))["payload"]["data"]["incidentUpdated"]
        assert live["incident"] == {"name": "Feed A", "status": "IDENTIFIED"}
    await pgql.data(RESOLVE, {"id": first["id"], "m": "c"}, key=page_admin)
    async with session(page_server, {"apiKey": page_admin}) as ws:
        await subscribe(ws, "resume", feed, {"after": live["position"]})
        replayed = (await receive(ws))["payload"]["data"]["incidentUpdated"]
        assert replayed["incident"] == {"name": "Feed A", "status": "RESOLVED"}
        await pgql.data(CREATE_INCIDENT, {"input": {"name": "Feed B", "message": "d"}}, key=page_admin)
        nxt = (await receive(ws))["payload"]["data"]["incidentUpdated"]
        assert nxt["incident"] == {"name": "Feed B", "status": "INVESTIGATING"}
        assert nxt["position"] != replayed["position"]
        refused = await pgql.error(RESOLVE, {"id": first["id"], "m": "again"}, key=page_admin)
        assert refused["extensions"]["code"] == "CONFLICT"  # refused: nothing recorded, nothing sent
        await pgql.data(CREATE_INCIDENT, {"input": {"name": "Feed C", "message": "e"}}, key=page_admin)
        last = (await receive(ws))["payload"]["data"]["incidentUpdated"]
        assert last["incident"] == {"name": "Feed C", "status": "INVESTIGATING"}


async def test_status_subscription_carries_custom_components(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    name = unique("Search")
    sub = "subscription { serviceStatusChanged { services { name status } } }"
    async with session(page_server, {"apiKey": page_admin}) as ws:
        await subscribe(ws, "s", sub)
        await receive(ws)  # the current status
        await pgql.data(CREATE_COMPONENT, {"input": {"name": name}}, key=page_admin)
        services = (await receive(ws))["payload"]["data"]["serviceStatusChanged"]["services"]
        assert {"name": name, "status": "OPERATIONAL"} in services


async def test_the_status_page_in_a_real_browser(
    page_server: LiveServer,
    pgql: GraphQLClient,
    page_admin: str,
    browser_page: BrowserPage,  # noqa: F811
) -> None:
    """Headless Chromium with JavaScript off: the page shows components, 90-day bars, open incidents and
    maintenances with their updates, all from the server; a screenshot is kept in tests/output/."""
    name = unique("Payments")
    made = {"name": name, "group": "Money", "description": "Card payments"}
    await pgql.data(CREATE_COMPONENT, {"input": made}, key=page_admin)
    incident = {
        "name": "Slow card payments",
        "message": "Payments take up to a minute",
        "impact": "MINOR",
        "components": [{"component": name, "status": "DEGRADED_PERFORMANCE"}],
    }
    opened = (await pgql.data(CREATE_INCIDENT, {"input": incident}, key=page_admin))["createIncident"]
    identified = {"status": "IDENTIFIED", "message": "A slow upstream"}
    await pgql.data(UPDATE_INCIDENT, {"id": opened["id"], "input": identified}, key=page_admin)
    soon = datetime.now(UTC) + timedelta(days=3)
    window = {
        "name": "Payment provider switch",
        "message": "Card payments pause for ten minutes",
        "startsAt": iso(soon),
        "endsAt": iso(soon + timedelta(minutes=10)),
        "components": [name],
    }
    await pgql.data(SCHEDULE, {"input": window}, key=page_admin)
    page: Any = browser_page.page
    session = await page.context.new_cdp_session(page)
    await session.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        response = await page.goto(f"{page_server.url}/status")
        assert response is not None and response.status == 200
        assert await page.title() == "Acme Status"
        async with httpx.AsyncClient(base_url=page_server.url) as public:
            overall = (await public.get("/api/v2/status.json")).json()["status"]
        assert overall["indicator"] != "none"  # the open incident's impact at least
        assert await page.locator("#overall").inner_text() == overall["description"]
        row = page.locator(f'[data-component="{name}"]')
        assert "Degraded Performance" in await row.inner_text()
        assert await row.locator(".bars span").count() in (90, 91)
        assert await page.locator(".group", has_text="Money").count() == 1
        box = page.locator(f"#incident-{opened['id']}")
        assert await box.is_visible()
        texts = await box.locator(".update").all_inner_texts()
        assert [t.split(" - ")[0] for t in texts] == ["Identified", "Investigating"]
        assert await page.locator(".maintenance", has_text="Payment provider switch").is_visible()
        for builtin in ("api", "storage", "authentication"):
            assert await page.locator(f'[data-component="{builtin}"]').is_visible()
        shot = await browser_page.screenshot("status-page")
        assert shot.stat().st_size > 10_000
        assert browser_page.external_requests == []  # the page needs nothing from elsewhere
    finally:
        await pgql.data(RESOLVE, {"id": opened["id"], "m": "Fixed"}, key=page_admin)


async def test_operators_move_a_maintenance_and_attach_a_postmortem(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    name = unique("Cache")
    await pgql.data(CREATE_COMPONENT, {"input": {"name": name}}, key=page_admin)
    window = {
        "name": "Cache resize",
        "message": "Started already",
        "startsAt": iso(clock.now - timedelta(minutes=1)),  # a window that has begun starts at once
        "endsAt": iso(clock.now + timedelta(hours=1)),
        "components": [name],
    }
    made = (await pgql.data(SCHEDULE, {"input": window}, key=page_admin))["scheduleMaintenance"]
    assert made["status"] == "IN_PROGRESS"
    assert (await component_state(pgql, page_admin, name))["status"] == "UNDER_MAINTENANCE"
    move = """mutation($id: String!, $input: MaintenanceUpdateInput!) {
      updateMaintenance(id: $id, input: $input) { status updates { status message } } }"""
    verifying = {"status": "VERIFYING", "message": "Checking hit rates"}
    assert (await pgql.data(move, {"id": made["id"], "input": verifying}, key=page_admin))[
        "updateMaintenance"
    ]["status"] == "VERIFYING"
    assert (await component_state(pgql, page_admin, name))["status"] == "UNDER_MAINTENANCE"
    early = {"status": "COMPLETED", "message": "Done early"}
    done = (await pgql.data(move, {"id": made["id"], "input": early}, key=page_admin))["updateMaintenance"]
    assert [u["status"] for u in done["updates"]] == ["SCHEDULED", "IN_PROGRESS", "VERIFYING", "COMPLETED"]
    assert (await component_state(pgql, page_admin, name))["status"] == "OPERATIONAL"
    again = await pgql.error(move, {"id": made["id"], "input": verifying}, key=page_admin)
    assert again["extensions"]["code"] == "CONFLICT"
    clock.advance(hours=2)
    tick(page_server)  # the window's end finds it completed already: nothing more happens
    history = (await pgql.data(HISTORY, {"s": name}, key=page_admin))["statusHistory"]["nodes"]
    assert [n["to"] for n in history] == ["OPERATIONAL", "UNDER_MAINTENANCE"]

    opened = (
        await pgql.data(
            CREATE_INCIDENT, {"input": {"name": "Cache misses", "message": "Slow pages"}}, key=page_admin
        )
    )["createIncident"]
    await pgql.data(RESOLVE, {"id": opened["id"], "m": "Warm again"}, key=page_admin)
    postmortem = (
        "mutation($id: String!, $p: String!) { setIncidentPostmortem(id: $id, postmortem: $p) { id } }"
    )
    text = "The resize emptied the cache; we now warm it first."
    await pgql.data(postmortem, {"id": opened["id"], "p": text}, key=page_admin)
    async with httpx.AsyncClient(base_url=page_server.url) as public:
        incidents = (await public.get("/api/v2/incidents.json")).json()["incidents"]
        assert next(i for i in incidents if i["id"] == opened["id"])["postmortem_body"] == text
        feed = (await public.get("/history.atom")).text
        assert "Cache misses" in feed and "Warm again" in feed


async def test_the_feed_keeps_position_order_when_a_writer_is_late(
    page_server: LiveServer, pgql: GraphQLClient, page_admin: str, clock: ManualClock
) -> None:
    """Another instance took a position and has not written its entry yet: a later entry waits for it,
    and the subscriber gets both in position order."""
    feed = "subscription { incidentUpdated { position incident { name } } }"
    page = page_server.services.status_page

    async def take(s: Services) -> int:
        (seq,) = await s.status_page._store._counters.take("status_page_changes")
        return seq

    async with session(page_server, {"apiKey": page_admin}) as ws:
        await subscribe(ws, "f", feed)
        await pgql.data(CREATE_INCIDENT, {"input": {"name": "Before", "message": "x"}}, key=page_admin)
        assert (await receive(ws))["payload"]["data"]["incidentUpdated"]["incident"]["name"] == "Before"
        hole = page_server.call(take)
        await pgql.data(CREATE_INCIDENT, {"input": {"name": "After", "message": "y"}}, key=page_admin)
        assert page._published == hole - 1  # waiting at the hole

        async def late_writer(s: Services) -> None:
            from app.statuspage.store import incident_doc

            late = await s.status_page.incidents(open_only=False, first=1)
            doc = {"seq": hole, "incident": {**incident_doc(late[0]), "name": "Late"}, "maintenance": None}
            await s.status_page._store._changes.insert_one(doc)
            await s.status_page.tick()

        page_server.call(late_writer)
        names = [
            (await receive(ws))["payload"]["data"]["incidentUpdated"]["incident"]["name"] for _ in range(2)
        ]
        assert names == ["Late", "After"]

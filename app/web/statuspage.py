"""The status page over HTTP.

    GET|POST /api/push/{token}?status=up|down&msg=&ping=   a heartbeat (Uptime Kuma's push shape); always on

With PUBLIC_STATUS_PAGE=true, without a credential, read-only, in Atlassian Statuspage's public format
(field names and vocabulary of its /api/v2):

    GET /api/v2/summary.json | status.json | components.json | incidents.json | incidents/unresolved.json
        | scheduled-maintenances/upcoming.json | scheduled-maintenances/active.json
    GET /history.atom                 Atom feed of incidents
    GET /badge/{component}.svg        an SVG badge
    GET /status                       the server-rendered page (no JavaScript)

Public bodies are reused for STATUS_PAGE_CACHE_SECONDS unless what they show changed (a component's
state, an incident or maintenance change), and carry an ETag (If-None-Match answers 304) and a short
Cache-Control.
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core.clock import format_datetime
from app.core.errors import AppError, InternalError, NotFound
from app.core.wire import rest_error_body
from app.graphql.context import Services
from app.status.model import COMPONENTS, Component, ServiceState
from app.statuspage.model import (
    CustomComponent,
    Incident,
    IncidentImpact,
    Maintenance,
    MaintenanceStatus,
    StatusUpdate,
)
from app.web.middleware import json_response
from app.web.state import request_state

log = logging.getLogger("app.web.statuspage")
BARS_SECONDS = 60.0  # the 90-day bars are recomputed at most this often
PAGE_ID = "status"
_INDICATOR = {
    ServiceState.OPERATIONAL: "none",
    ServiceState.UNDER_MAINTENANCE: "none",
    ServiceState.DEGRADED_PERFORMANCE: "minor",
    ServiceState.PARTIAL_OUTAGE: "major",
    ServiceState.MAJOR_OUTAGE: "critical",
}
_IMPACT = {
    IncidentImpact.NONE: 0,
    IncidentImpact.MINOR: 1,
    IncidentImpact.MAJOR: 2,
    IncidentImpact.CRITICAL: 3,
}
_LEVELS = ["none", "minor", "major", "critical"]
_DESCRIPTION = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major System Outage",
}
_COLOR = {
    ServiceState.OPERATIONAL: "#2fcc66",
    ServiceState.UNDER_MAINTENANCE: "#3498db",
    ServiceState.DEGRADED_PERFORMANCE: "#f1c40f",
    ServiceState.PARTIAL_OUTAGE: "#e67e22",
    ServiceState.MAJOR_OUTAGE: "#e74c3c",
}


@dataclass(frozen=True, slots=True)
class PageConfig:
    """What the public page needs from the settings (PUBLIC_STATUS_PAGE, STATUS_PAGE_*)."""

    enabled: bool = False
    name: str = "Status"
    url: str = "/status"
    cache_seconds: float = 10.0


def _t(value: datetime | None) -> str | None:
    return format_datetime(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class _Body:
    content: bytes
    media_type: str
    etag: str
    built: float
    version: int


class PublicPages:
    """Builds the public bodies from the services; reuses each for `cache_seconds`."""

    def __init__(self, settings: PageConfig) -> None:
        self.settings = settings
        self._cache: dict[str, _Body] = {}

    async def serve(
        self, request: Request, key: str, media_type: str, build: Callable[[Services], Awaitable[bytes]]
    ) -> Response:
        services: Services = request.app.state.runtime.services
        ttl = self.settings.cache_seconds
        body = self._cache.get(key)
        version = services.status_page.version()
        if body is None or time.monotonic() - body.built >= ttl or body.version != version:
            try:
                content = await build(services)
            except AppError as error:
                return json_response(
                    rest_error_body(error, request_state(request.scope).request_id), error.code.status
                )
            etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
            body = _Body(content, media_type, etag, time.monotonic(), version)
            if ttl > 0:
                self._cache[key] = body
        headers = {
            "ETag": body.etag,
            "Cache-Control": f"public, max-age={int(ttl)}",
            "Access-Control-Allow-Origin": "*",
        }
        match = request.headers.get("if-none-match")
        if match is not None and body.etag in [m.strip() for m in match.split(",")] + ["*"]:
            return Response(status_code=304, headers=headers)
        return Response(body.content, media_type=body.media_type, headers=headers)


# Statuspage's JSON ------------------------------------------------------------------------------


def _page(services: Services, settings: PageConfig) -> dict[str, Any]:
    snap = services.status.snapshot()
    updated = max((c.updated_at for c in snap.services), default=snap.timestamp)
    return {
        "id": PAGE_ID,
        "name": settings.name,
        "url": settings.url,
        "time_zone": "Etc/UTC",
        "updated_at": _t(updated),
    }


def _ordered(services: Services) -> list[tuple[Component, CustomComponent | None]]:
    records = {c.name: c for c in services.status_page.view.components}
    live = services.status.snapshot().services
    rows = [(c, records.get(c.name)) for c in live]
    return sorted(rows, key=lambda r: (r[1].order if r[1] else COMPONENTS.index(r[0].name) - 1000, r[0].name))


def _component_json(c: Component, record: CustomComponent | None, position: int) -> dict[str, Any]:
    return {
        "id": c.name,
        "name": c.name,
        "status": c.status.value.lower(),
        "created_at": _t(record.created_at if record else None),
        "updated_at": _t(c.updated_at),
        "position": position,
        "description": record.description if record else None,
        "showcase": record.show_uptime if record else True,
        "start_date": record.created_at.date().isoformat() if record else None,
        "group_id": f"group-{record.group}" if record and record.group else None,
        "page_id": PAGE_ID,
        "group": False,
        "only_show_if_degraded": False,
    }


def _components(services: Services) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for position, (c, record) in enumerate(_ordered(services), start=1):
        row = _component_json(c, record, position)
        if record is not None and record.group:
            group = groups.get(record.group)
            if group is None:
                group = {
                    **row,
                    "id": f"group-{record.group}",
                    "name": record.group,
                    "description": None,
                    "group_id": None,
                    "group": True,
                    "components": [],
                    "created_at": row["created_at"],
                }
                groups[record.group] = group
                out.append(group)
            group["components"].append(c.name)
            rank = max(ServiceState(group["status"].upper()).rank, c.status.rank)
            group["status"] = list(ServiceState)[rank].value.lower()
        out.append(row)
    return out


def _update_json(u: StatusUpdate, parent: str, affected: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": u.id,
        "status": u.status.lower(),
        "body": u.message,
        "incident_id": parent,
        "created_at": _t(u.at),
        "updated_at": _t(u.at),
        "display_at": _t(u.at),
        "affected_components": affected,
        "deliver_notifications": False,
        "custom_tweet": None,
        "tweet_id": None,
    }


def _by_name(services: Services) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in _components(services) if not row["group"]}


def _incident_json(i: Incident, components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    affected = [
        {
            "code": a.component,
            "name": a.component,
            "old_status": "operational",
            "new_status": a.state.value.lower(),
        }
        for a in i.components
    ]
    monitoring = next((u.at for u in i.updates if u.status == "MONITORING"), None)
    return {
        "id": i.id,
        "name": i.name,
        "status": i.status.value.lower(),
        "created_at": _t(i.created_at),
        "updated_at": _t(i.updated_at),
        "monitoring_at": _t(monitoring),
        "resolved_at": _t(i.resolved_at),
        "impact": i.impact.value.lower(),
        "shortlink": None,
        "started_at": _t(i.created_at),
        "page_id": PAGE_ID,
        "postmortem_body": i.postmortem,
        "incident_updates": [_update_json(u, i.id, affected) for u in reversed(i.updates)],
        "components": [components[a.component] for a in i.components if a.component in components],
    }


def _maintenance_json(m: Maintenance, components: dict[str, dict[str, Any]]) -> dict[str, Any]:
    affected = [
        {"code": n, "name": n, "old_status": "operational", "new_status": "under_maintenance"}
        for n in m.components
    ]
    return {
        "id": m.id,
        "name": m.name,
        "status": m.status.value.lower(),
        "created_at": _t(m.created_at),
        "updated_at": _t(m.updated_at),
        "monitoring_at": None,
        "resolved_at": _t(m.updated_at) if m.status is MaintenanceStatus.COMPLETED else None,
        "impact": "maintenance",
        "shortlink": None,
        "started_at": _t(m.starts_at),
        "page_id": PAGE_ID,
        "scheduled_for": _t(m.starts_at),
        "scheduled_until": _t(m.ends_at),
        "incident_updates": [_update_json(u, m.id, affected) for u in reversed(m.updates)],
        "components": [components[n] for n in m.components if n in components],
    }


def _status(services: Services) -> dict[str, str]:
    snap = services.status.snapshot()
    level = _LEVELS.index(_INDICATOR[snap.status])
    for incident in services.status_page.view.open_incidents:
        level = max(level, _IMPACT[incident.impact])
    indicator = _LEVELS[level]
    description = _DESCRIPTION[indicator]
    if indicator == "none" and services.status_page.view.active_maintenances:
        description = "Service Under Maintenance"
    return {"indicator": indicator, "description": description}


async def _upcoming(services: Services) -> list[Maintenance]:
    return await services.status_page.maintenances([MaintenanceStatus.SCHEDULED], 50)


def _json(body: object) -> bytes:
    return orjson.dumps(body)


def json_builders(settings: PageConfig) -> dict[str, Callable[[Services], Awaitable[bytes]]]:
    async def summary(s: Services) -> bytes:
        comps = _by_name(s)
        maint = [*s.status_page.view.active_maintenances, *await _upcoming(s)]
        return _json(
            {
                "page": _page(s, settings),
                "components": _components(s),
                "incidents": [_incident_json(i, comps) for i in s.status_page.view.open_incidents],
                "scheduled_maintenances": [_maintenance_json(m, comps) for m in maint],
                "status": _status(s),
            }
        )

    async def status(s: Services) -> bytes:
        return _json({"page": _page(s, settings), "status": _status(s)})

    async def components(s: Services) -> bytes:
        return _json({"page": _page(s, settings), "components": _components(s)})

    async def incidents(s: Services) -> bytes:
        comps = _by_name(s)
        rows = await s.status_page.incidents(open_only=False, first=50)
        return _json({"page": _page(s, settings), "incidents": [_incident_json(i, comps) for i in rows]})

    async def unresolved(s: Services) -> bytes:
        comps = _by_name(s)
        rows = s.status_page.view.open_incidents
        return _json({"page": _page(s, settings), "incidents": [_incident_json(i, comps) for i in rows]})

    async def upcoming(s: Services) -> bytes:
        comps = _by_name(s)
        rows = [_maintenance_json(m, comps) for m in await _upcoming(s)]
        return _json({"page": _page(s, settings), "scheduled_maintenances": rows})

    async def active(s: Services) -> bytes:
        comps = _by_name(s)
        rows = [_maintenance_json(m, comps) for m in s.status_page.view.active_maintenances]
        return _json({"page": _page(s, settings), "scheduled_maintenances": rows})

    return {
        "summary.json": summary,
        "status.json": status,
        "components.json": components,
        "incidents.json": incidents,
        "incidents/unresolved.json": unresolved,
        "scheduled-maintenances/upcoming.json": upcoming,
        "scheduled-maintenances/active.json": active,
    }


# Atom, badge, HTML ------------------------------------------------------------------------------


def _x(text: object) -> str:
    return html.escape(str(text), quote=True)


async def atom(s: Services, settings: PageConfig) -> bytes:
    base = settings.url
    rows = await s.status_page.incidents(open_only=False, first=25)
    updated = max((i.updated_at for i in rows), default=s.status_page.now())
    entries = []
    for i in rows:
        content = "".join(
            f"<p><small>{_x(format_datetime(u.at))}</small><br><strong>{_x(u.status.title())}</strong> - "
            f"{_x(u.message)}</p>"
            for u in reversed(i.updates)
        )
        entries.append(
            f"<entry><id>tag:status,{i.created_at.date().isoformat()}:incident/{_x(i.id)}</id>"
            f"<published>{format_datetime(i.created_at)}</published>"
            f"<updated>{format_datetime(i.updated_at)}</updated>"
            f'<link rel="alternate" type="text/html" href="{_x(base)}#incident-{_x(i.id)}"/>'
            f'<title>{_x(i.name)}</title><content type="html">{_x(content)}</content></entry>'
        )
    feed = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xml:lang="en-US" xmlns="http://www.w3.org/2005/Atom">'
        f"<id>tag:status,2025:/history</id>"
        f'<link rel="alternate" type="text/html" href="{_x(base)}"/>'
        f"<title>{_x(settings.name)} - Incident History</title>"
        f"<updated>{format_datetime(updated)}</updated>"
        f"<author><name>{_x(settings.name)}</name></author>" + "".join(entries) + "</feed>"
    )
    return feed.encode()


def badge_svg(label: str, state: ServiceState) -> bytes:
    message = state.label
    lw, mw = 6 * len(label) + 12, 6 * len(message) + 12
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + mw}" height="20" role="img" '
        f'aria-label="{_x(label)}: {_x(message)}"><title>{_x(label)}: {_x(message)}</title>'
        f'<rect width="{lw}" height="20" fill="#555"/>'
        f'<rect x="{lw}" width="{mw}" height="20" fill="{_COLOR[state]}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{lw / 2}" y="14">{_x(label)}</text><text x="{lw + mw / 2}" y="14">{_x(message)}</text>'
        "</g></svg>"
    )
    return svg.encode()


def _bar_color(uptime: float | None) -> str:
    if uptime is None:
        return "#b0b8c0"
    if uptime >= 0.9999:
        return _COLOR[ServiceState.OPERATIONAL]
    if uptime >= 0.99:
        return _COLOR[ServiceState.DEGRADED_PERFORMANCE]
    if uptime >= 0.95:
        return _COLOR[ServiceState.PARTIAL_OUTAGE]
    return _COLOR[ServiceState.MAJOR_OUTAGE]


def _updates_html(updates: tuple[StatusUpdate, ...]) -> str:
    return "".join(
        f'<li class="update"><strong>{_x(u.status.replace("_", " ").title())}</strong> - {_x(u.message)} '
        f"<time>{_x(format_datetime(u.at))}</time></li>"
        for u in reversed(updates)
    )


_CSS = """
body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#222}
.banner{padding:1em;border-radius:6px;color:#fff;font-size:1.3em;margin-bottom:1.5em}
.component{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:.5em 0}
.component header{display:flex;justify-content:space-between}
.state{font-weight:600}
.bars{display:flex;gap:1px;height:28px;margin:.5em 0 .2em}
.bars span{flex:1;border-radius:1px}
.legend{display:flex;justify-content:space-between;color:#777;font-size:.8em}
.incident,.maintenance{border-left:4px solid #e67e22;padding:.5em 1em;margin:1em 0;background:#fafafa}
.maintenance{border-color:#3498db}
.update{margin:.3em 0} time{color:#777;font-size:.85em}
h2.group{margin-top:1.5em;font-size:1.1em}
"""


async def status_html(s: Services, settings: PageConfig) -> bytes:
    page = s.status_page
    now = page.now()
    status = _status(s)
    banner_state = {
        "none": ServiceState.OPERATIONAL,
        "minor": ServiceState.DEGRADED_PERFORMANCE,
        "major": ServiceState.PARTIAL_OUTAGE,
        "critical": ServiceState.MAJOR_OUTAGE,
    }[status["indicator"]]
    if page.view.active_maintenances and status["indicator"] == "none":
        banner_state = ServiceState.UNDER_MAINTENANCE
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_x(settings.name)}</title><style>{_CSS}</style>",
        '<link rel="alternate" type="application/atom+xml" href="/history.atom" title="Incident history">',
        f"</head><body><h1>{_x(settings.name)}</h1>",
        f'<div class="banner" id="overall" style="background:{_COLOR[banner_state]}">'
        f"{_x(status['description'])}</div>",
    ]
    for i in page.view.open_incidents:
        parts.append(
            f'<section class="incident" id="incident-{_x(i.id)}"><h3>{_x(i.name)}</h3>'
            f"<p>Impact: {_x(i.impact.value.lower())} &middot; {_x(i.status.value.title())}</p>"
            f"<ul>{_updates_html(i.updates)}</ul></section>"
        )
    maintenances = [*page.view.active_maintenances, *await _upcoming(s)]
    for m in maintenances:
        parts.append(
            f'<section class="maintenance" id="maintenance-{_x(m.id)}"><h3>{_x(m.name)}</h3>'
            f"<p>{_x(m.status.value.replace('_', ' ').title())}: {_x(format_datetime(m.starts_at))} to "
            f"{_x(format_datetime(m.ends_at))} &middot; {_x(', '.join(m.components))}</p>"
            f"<ul>{_updates_html(m.updates)}</ul></section>"
        )
    group: str | None = None
    for c, record in _ordered(s):
        this_group = record.group if record else None
        if this_group != group and this_group is not None:
            parts.append(f'<h2 class="group">{_x(this_group)}</h2>')
        group = this_group
        parts.append(
            f'<div class="component" data-component="{_x(c.name)}"><header><span>{_x(c.name)}</span>'
            f'<span class="state" style="color:{_COLOR[c.status]}">{_x(c.status.label)}</span></header>'
        )
        if record is None or record.show_uptime:
            uptime = await page.ninety_days(c.name, max(settings.cache_seconds, BARS_SECONDS))
            bars = "".join(
                f'<span style="background:{_bar_color(d.figure.uptime)}" title="{d.day.isoformat()}: '
                + (f"{d.figure.uptime * 100:.2f}% up" if d.figure.uptime is not None else "no data")
                + '"></span>'
                for d in uptime.days[-90:]
            )
            figure = uptime.figure.uptime
            shown = f"{figure * 100:.3f} % uptime" if figure is not None else "no data"
            parts.append(
                f'<div class="bars" aria-label="90-day uptime">{bars}</div>'
                '<div class="legend"><span>90 days ago</span>'
                f'<span class="uptime">{shown}</span><span>Today</span></div>'
            )
        parts.append("</div>")
    parts.append(
        f"<p><small>Updated {_x(format_datetime(now))} &middot; "
        '<a href="/history.atom">Atom feed</a> &middot; '
        '<a href="/api/v2/summary.json">summary.json</a></small></p></body></html>'
    )
    return "".join(parts).encode()


# Routes -----------------------------------------------------------------------------------------


async def push(request: Request) -> Response:
    services: Services = request.app.state.runtime.services
    state = request_state(request.scope)
    request_id = state.request_id
    params = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        if body and request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = orjson.loads(body)
                if isinstance(data, dict):
                    params = {**{k: str(v) for k, v in data.items()}, **params}
            except orjson.JSONDecodeError:
                pass
    try:
        await services.status_page.push(
            request.path_params["token"], params.get("status"), params.get("msg"), params.get("ping")
        )
    except AppError as error:
        state.outcome = error.code.value
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
        return json_response(rest_error_body(error, request_id), error.code.status, headers)
    except Exception:
        log.exception("unexpected error in a heartbeat push")
        state.outcome = "INTERNAL_ERROR"
        return json_response(rest_error_body(InternalError(), request_id), 500)
    return json_response({"ok": True}, 200)


def routes(settings: PageConfig) -> list[Route]:
    out = [Route("/api/push/{token}", push, methods=["GET", "POST"])]
    if not settings.enabled:
        return out
    pages = PublicPages(settings)
    for path, build in json_builders(settings).items():

        def handler(
            build: Callable[[Services], Awaitable[bytes]] = build, key: str = path
        ) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                return await pages.serve(request, key, "application/json", build)

            return run

        out.append(Route(f"/api/v2/{path}", handler(), methods=["GET"]))

    async def history(request: Request) -> Response:
        return await pages.serve(request, "history.atom", "application/atom+xml", lambda s: atom(s, settings))

    async def badge(request: Request) -> Response:
        name = request.path_params["component"]

        async def build(s: Services) -> bytes:
            found = next((c for c in s.status.snapshot().services if c.name == name), None)
            if found is None:
                raise NotFound(f"No component {name!r}")
            return badge_svg(name, found.status)

        return await pages.serve(request, f"badge/{name}", "image/svg+xml", build)

    async def page(request: Request) -> Response:
        return await pages.serve(
            request, "status", "text/html; charset=utf-8", lambda s: status_html(s, settings)
        )

    out += [
        Route("/history.atom", history, methods=["GET"]),
        Route("/badge/{component}.svg", badge, methods=["GET"]),
        Route("/status", page, methods=["GET"]),
    ]
    return out

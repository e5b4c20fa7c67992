"""Health routes for load balancers and orchestrators: /health (ready, with checks) and /livez (alive)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.core.clock import format_datetime, utc_now
from app.status.model import ServiceState
from app.web.middleware import json_response
from app.web.state import services_of


async def health(request: Request) -> Response:
    """200 while the database answers (healthy or degraded), 503 when it does not (unhealthy)."""
    services = services_of(request)
    snapshot = services.status.snapshot()
    # The database's own verdict: the last probe, and unhealthy as soon as database calls fail (or the
    # embedded database is down), not only once the damped probe agrees. Not the `storage` component's
    # shown state: an operator's override or an incident on it must not make orchestrators pull healthy
    # instances out of service.
    calls_succeed = getattr(request.app.state, "database_healthy", None)
    database = services.status.database_up is not False and (calls_succeed is None or calls_succeed())
    state = {ServiceState.OPERATIONAL: "healthy", ServiceState.UNDER_MAINTENANCE: "degraded"}.get(
        snapshot.status, "degraded" if database else "unhealthy"
    )
    body = {
        "status": state,
        "checks": {"database": database, "messageQueue": services.feed.running, "websocket": True},
        "timestamp": format_datetime(utc_now()),
    }
    return json_response(body, 200 if database else 503, None if database else {"Retry-After": "1"})


async def live(_: Request) -> Response:
    return json_response({"status": "alive"}, 200)

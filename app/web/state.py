"""What the web layer knows about one request or WebSocket, in one typed object on the ASGI scope.

The middleware creates it with the request id; the GraphQL view and the REST routes fill in the rest;
the middleware reads it back for the request's log line and metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import Scope

from app.core.request_ids import new_request_id
from app.graphql.context import RequestContext, Services
from app.graphql.execution.replay import Tape
from app.ratelimit.service import Budget

_KEY = "app"  # under scope["state"], which Starlette exposes as request.state


@dataclass(slots=True)
class RequestState:
    request_id: str
    ctx: RequestContext | None = None  # the GraphQL context, when the request reached the GraphQL view
    outcome: str | None = None  # the catalogued code of a refusal outside GraphQL execution
    org_id: str | None = None  # the organization a REST route addressed
    graphql_response: bool = False  # the client accepts application/graphql-response+json
    request_error: bool = False  # a GraphQL request error (answers 400 under graphql-response+json)
    prepaid: Budget | None = None  # the budget the view's direct lane charged before handing over
    replay: Tape | None = None  # a mutation's outcomes the lane recorded, for the full path (used once)
    expiry_task: asyncio.Task[None] | None = None  # closes a WebSocket when its credential expires
    unavailable: int | None = None  # Retry-After when the whole GraphQL result is SERVICE_UNAVAILABLE
    key_id: str | None = None  # the WebSocket's credential, for the per-key registry (app.web.sockets)
    persisted_get: bool = False  # a GET naming its document by hash (cacheable when it succeeds)
    had_errors: bool = False  # the GraphQL result carried errors
    costs: list[int | None] | None = None  # `X-GraphQL-Cost: include`: each operation's estimated cost


def request_state(scope: Scope) -> RequestState:
    """The request's state, created with a new request id if the middleware did not run (tests, mounts)."""
    state = scope.setdefault("state", {})
    found = state.get(_KEY)
    if not isinstance(found, RequestState):
        found = state[_KEY] = RequestState(request_id=new_request_id())
    return found


def start_request(scope: Scope, request_id: str) -> RequestState:
    state = RequestState(request_id=request_id)
    scope.setdefault("state", {})[_KEY] = state
    return state


def services_of(request: HTTPConnection) -> Services:
    """The services the app's lifespan built (routes reach them through the app, never a global)."""
    return services_in(request.scope)


def services_in(scope: Scope) -> Services:
    """`services_of` for plain ASGI code: from the app Starlette puts on the scope."""
    services = getattr(scope["app"].state, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the app's lifespan has not started")
    return services

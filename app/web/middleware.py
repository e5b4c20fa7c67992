"""ASGI middleware (request id, one log line per request, body size limit) and JSON responses."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable

import orjson
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import FieldProblem, InternalError, InvalidRequest
from app.core.request_ids import new_request_id, request_id_var
from app.core.wire import error_body
from app.web import metrics
from app.web.state import request_state, start_request

log = logging.getLogger("app.request")
_UNCOUNTED_PATHS = frozenset({"/metrics", "/health", "/livez"})  # not API traffic for the error rate
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def json_response(body: object, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_ID_RE.match(text) else None
    return None


class RequestIdMiddleware:
    """Keeps a well-formed client X-Request-ID or makes `req_<ULID>`; echoes it on every response;
    logs one line per HTTP request with what the GraphQL layer recorded in the request context."""

    def __init__(self, app: ASGIApp, record_outcome: Callable[[str], None] | None = None) -> None:
        self.app = app
        # Told every API request's outcome code (the `api` component's error rate).
        self.record_outcome = record_outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or new_request_id()
        start_request(scope, request_id)
        token = request_id_var.set(request_id)
        if scope["type"] == "websocket":  # its messages go straight through: no response headers to add
            try:
                await self.app(scope, receive, send)
            finally:
                request_id_var.reset(token)
            return
        status = 500
        started = time.perf_counter()

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the client went away mid-body: nothing to answer, one log line
            request_state(scope).outcome = "CLIENT_DISCONNECTED"
            status = 499
        except Exception:
            # Anything unexpected: a catalogued INTERNAL_ERROR with the request id (not uvicorn's plain
            # text), the stack trace logged once.
            log.exception("unexpected error", extra={"request_id": request_id})
            request_state(scope).outcome = "INTERNAL_ERROR"
            if not response_started:
                error = InternalError()
                with contextlib.suppress(Exception):
                    await json_response(error_body(error, request_id), 500)(scope, receive, send_with_id)
        finally:
            self._log(scope, status, time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    def _log(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        state = request_state(scope)
        ctx = state.ctx
        outcome = state.outcome or (ctx.outcome if ctx is not None else None) or "OK"
        path = scope["path"]
        if self.record_outcome is not None and path not in _UNCOUNTED_PATHS:
            self.record_outcome(outcome)
        if ctx is not None:
            operation, op_type, org_id = ctx.operation_name, ctx.operation_type, ctx.org_id
            principal = ctx.principal.label if ctx.principal is not None else None
        else:
            operation = op_type = org_id = principal = None
        if path != "/metrics":
            metrics.count_request(operation, op_type or "none", outcome, elapsed)
        extras = {
            "request_id": request_id,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "operation": operation,
            "operation_type": op_type,
            "outcome": outcome,
            "org_id": org_id or state.org_id,
            "principal": principal,
        }
        write = _line_writer()
        if write is None or not write(log.name, f"{scope['method']} {path} {status}", extras):
            log.info("%s %s %s", scope["method"], path, status, extra=extras)


def _line_writer() -> Callable[[str, str, dict[str, object]], bool] | None:
    """The production handler's preformatted write (app.runtime.logging) when the request line would
    reach that handler alone, at INFO; None when a LogRecord must be made (another handler, a filter,
    a level, logging disabled)."""
    if not log.isEnabledFor(logging.INFO):
        return None
    found = None
    logger: logging.Logger | None = log
    while logger is not None:
        if logger.filters or logger.disabled:
            return None
        for handler in logger.handlers:
            if found is not None:
                return None
            found = handler
        logger = logger.parent if logger.propagate else None
    writer = getattr(found, "write_line", None)
    return writer if callable(writer) else None


class WebSocketShortcut:
    """The GraphQL WebSocket goes straight to its endpoint. An open subscription keeps every ASGI layer
    it came through suspended for as long as it lives (a few KiB and objects per idle subscriber, which
    every full garbage collection walks), and none of the HTTP layers (CORS, body limit, routing)
    applies to it."""

    def __init__(self, app: ASGIApp, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class GraphQLRoute:
    """The innermost layer: a GET or POST to the GraphQL path goes straight to its endpoint, past
    Starlette's exception middleware, router and route (three more awaits and scope copies on every API
    request, none of which the view uses: it answers every error itself). Anything else goes on to the
    router as before."""

    def __init__(self, app: ASGIApp, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] in ("GET", "POST"):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413, whether declared by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = b"", False
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and not declared:
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if declared.isdigit() and not chunked:
            # The HTTP parser delivers exactly the declared length (more is the next request, less an
            # incomplete one): nothing to count, and no receive and send wrappers on every request.
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = request_state(scope)
        state.outcome = "INVALID_REQUEST"
        message = f"Request body is larger than {self.max_bytes} bytes"
        error = InvalidRequest(message, details=[FieldProblem("body", message)])
        await json_response(error_body(error, state.request_id, 413), 413)(scope, receive, send)


def cors_middleware(origins: list[str]) -> Middleware:
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=[
            "X-API-KEY",
            "Authorization",
            "Content-Type",
            "X-Request-ID",
            "X-Idempotency-Key",
            "X-GraphQL-Cost",
        ],
        expose_headers=[
            "X-Request-ID",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
        ],
        max_age=600,
    )

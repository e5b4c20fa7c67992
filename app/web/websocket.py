"""The GraphQL WebSocket protocols with the catalogue's refusals: graphql-transport-ws and the legacy
graphql-ws, text frames with pre-encoded shared data, and the close codes of docs/errors.md."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.core.errors import AppError, ErrorCode, FieldProblem, RateLimited
from app.core.wire import extensions
from app.graphql.context import RequestContext
from app.graphql.execution.fanout import EncodedData
from app.graphql.limits import document_too_long
from app.ratelimit.service import Resource


def _ws_too_long(handler: Any, message: Any) -> dict[str, Any] | None:
    """The catalogued error payload for a subscribe/start message whose document is too long."""
    payload = message.get("payload") if isinstance(message, dict) else None
    query = payload.get("query") if isinstance(payload, dict) else None
    error = document_too_long(query, handler.view.max_query_bytes)
    if error is None:
        return None
    request_id = getattr(handler.context, "request_id", "-")
    return {"message": error.message, "extensions": extensions(error.code, request_id, error.details)}


async def _ws_refusal(handler: Any, message: Any) -> dict[str, Any] | None:
    """The catalogued error payload refusing a subscribe/start message: a document too long, or the
    credential's read budget spent. A socket's first operation is free (a reconnect storm re-subscribes
    once per socket; sockets per key are capped by WS_MAX_PER_KEY); each further one spends a read unit,
    as a query does."""
    if not handler.connection_acknowledged:
        return None  # the protocol handler closes the socket itself
    refused = _ws_too_long(handler, message)
    if refused is not None:
        return refused
    context = handler.context
    principal = getattr(context, "principal", None)
    handler.operations_started = getattr(handler, "operations_started", 0) + 1
    if principal is None or handler.operations_started == 1:
        return None
    try:
        await context.services.rate_limiter.spend(principal.key_id, Resource.READ)
    except RateLimited as error:
        request_id = getattr(context, "request_id", "-")
        ext = extensions(error.code, request_id, error.details, error.retry_after)
        return {"message": error.message, "extensions": ext}
    return None


TRY_AGAIN_LATER = 1013  # RFC 6455: "try again later"


class WebSocketRefusal(Exception):
    """Raised by on_ws_connect; the protocol handler closes the socket with `code` and `reason`."""

    def __init__(self, code: int, error: AppError) -> None:
        super().__init__(error.message)
        self.code = code
        self.reason = f"{error.code.value}: {error.message}"[:120]  # a close reason holds 123 bytes
        self.error = error


class CataloguedTransportWS(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws with every `error` message in the catalogue's shape. Strawberry words a
    few refusals itself (the per-connection subscription limit); those get a code and a request id.
    A busy or unreachable database closes with 1013 "try again later", too many sockets for one key
    with 4429; a bad credential stays 4403."""

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except WebSocketRefusal as refusal:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=refusal.code, reason=refusal.reason)
            return
        # Cancelled by now; kept, the task (its coroutine, CancelledError and traceback) would live as
        # long as the connection: about a KiB per idle subscriber, measured.
        self.connection_init_timeout_task = None

    async def handle_subscribe(self, message: Any) -> None:
        refused = await _ws_refusal(self, message)
        if refused is not None:
            await self.send_message({"type": "error", "id": message.get("id"), "payload": [refused]})
            return
        await super().handle_subscribe(message)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            request_id = getattr(self.context, "request_id", "-")
            for error in message.get("payload") or []:
                if "code" not in (error.get("extensions") or {}):
                    problem = FieldProblem("subscription", error.get("message", ""))
                    error["extensions"] = extensions(ErrorCode.INVALID_REQUEST, request_id, [problem])
        await super().send_message(message)


class CataloguedLegacyWS(BaseGraphQLWSHandler[RequestContext, None]):
    """The legacy graphql-ws protocol with the same refusals (a `connection_error` carrying the
    catalogued error, then the close code), and the connection_init deadline it lacks: a socket that
    has not been acknowledged within WS_INIT_TIMEOUT_SECONDS is closed with 4408."""

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._init_deadline())
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def _init_deadline(self) -> None:
        await asyncio.sleep(getattr(self.view, "ws_init_timeout", 10.0))
        if not self.connection_acknowledged:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_start(self, message: Any) -> None:
        refused = await _ws_refusal(self, message)
        if refused is not None:
            await self.send_message(cast(Any, {"type": "error", "id": message.get("id"), "payload": refused}))
            return
        await super().handle_start(message)

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except WebSocketRefusal as refusal:
            request_id = getattr(self.context, "request_id", "-")
            payload = {
                "message": refusal.error.message,
                "extensions": extensions(refusal.error.code, request_id),
            }
            with contextlib.suppress(Exception):
                await self.send_message(cast(Any, {"type": "connection_error", "payload": payload}))
                await self.websocket.close(code=refusal.code, reason=refusal.reason)


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    """Sends every message as a text frame, as graphql-transport-ws requires (Strawberry's adapter sends
    the view's orjson bytes as binary frames, which browser clients such as graphql-ws cannot parse),
    splicing in the `data` a subscription event shares with other subscribers, already encoded
    (app.graphql.execution.fanout)."""

    async def send_json(self, message: Any) -> None:
        payload = message.get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("data"), EncodedData):
            message = {**message, "payload": {**payload, "data": payload["data"].fragment}}
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


async def close_when_expired(websocket: WebSocket, delay: float) -> None:
    await asyncio.sleep(max(delay, 0))
    with contextlib.suppress(Exception):  # already closed
        await websocket.close(code=4403, reason="Forbidden: credential expired")

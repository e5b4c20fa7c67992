"""uvicorn's httptools protocol with connection hygiene: deadlines for a request's headers and body,
and a cap on connections per process.

- Headers: from a connection's first byte of a request (or its opening) to the end of the headers,
  at most `header_timeout` seconds; the body, from there to its last byte, at most `body_timeout`.
  A client that is too slow gets 408 (INVALID_REQUEST, in the catalogued JSON shape) and the connection
  is closed: half-sent requests cannot pile up and hold file descriptors.
- Connections: past `max_connections` open connections (HTTP and WebSocket) a new one is answered 503
  (SERVICE_UNAVAILABLE, Retry-After: 1) and closed at once.
- Responses of a declared length: the status line and headers are written with the first body bytes,
  in one socket write (one system call and, with TCP_NODELAY, one segment) instead of two
  (`CoalescingCycle`). A streamed response (no Content-Length: server-sent events, multipart) still
  has its headers written at once, as the client may wait for them before anything else arrives.
Idle keep-alive connections are closed by uvicorn's own keep-alive timeout, as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.core.errors import AppError, FieldProblem, InvalidRequest, ServiceUnavailable
from app.core.request_ids import new_request_id
from app.core.wire import error_body

log = logging.getLogger("app.runtime.protocol")


def _raw_response(status: int, reason: str, error: AppError) -> bytes:
    request_id = new_request_id()
    body = orjson.dumps(error_body(error, request_id, status))
    headers = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        f"x-request-id: {request_id}",
        "connection: close",
    ]
    if error.retry_after is not None:
        headers.append(f"retry-after: {error.retry_after}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


class _HeldWrite:
    """Stands in for the transport while uvicorn writes a response's head: keeps the bytes."""

    data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class CoalescingCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, holding the head of a response of declared length until its
    first body message, then writing both at once (uvicorn checks and counts the body as before)."""

    _head: bytes | None = None

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            transport = self.transport
            held = _HeldWrite()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if (
                self.chunked_encoding is False
                and self.expected_content_length > 0
                and self.scope["method"] != "HEAD"
            ):
                self._head = held.data  # a body must follow: written with it
            elif held.data:
                transport.write(held.data)
            return
        head = self._head
        if head is not None and message["type"] == "http.response.body":
            self._head = None
            self.expected_content_length += len(head)  # counted as body: written with it
            message = {**message, "body": head + message.get("body", b"")}
        await super().send(message)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10_000

    _deadline: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            error = ServiceUnavailable(
                f"The server holds its maximum of {self.max_connections} connections; retry shortly",
                retry_after=1,
            )
            log.warning("connection refused: %s open", len(self.connections))
            self._refuse(503, "Service Unavailable", error)
            return
        self._arm(self.header_timeout, "headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:  # (its ASGI task has not run yet: it sends through this)
            cycle.__class__ = CoalescingCycle
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        message = f"The request {part} did not arrive within {seconds:g} seconds"
        log.info("closing a slow connection: %s", message)
        self._refuse(408, "Request Timeout", InvalidRequest(message, details=[FieldProblem(part, message)]))

    def _refuse(self, status: int, reason: str, error: AppError) -> None:
        cycle: Any = self.cycle
        self._refused = True
        if cycle is not None:
            # The application, if it is reading the body, sees the client disconnect (and sends nothing).
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            self.transport.write(_raw_response(status, reason, error))
        # Half-close, then drop whatever the client still sends: closing a socket with unread input
        # resets the connection, and the client may lose the answer. The client's own close ends it.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(2.0, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_connections: int
) -> type[HttpToolsProtocol]:
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections},
    )

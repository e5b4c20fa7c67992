"""Sentry SDK ingestion routes: POST /api/{project_id}/envelope/ and /api/{project_id}/store/.

An ASGI app of its own, reached before the general middleware (like the GraphQL WebSocket): it has its
own body limit (envelopes are bigger than GraphQL requests, and compressed) and its own CORS policy
(browser SDKs post from any page with the public key in the query string, as `text/plain`).
Answers as Sentry does: `{"id": "<event id>"}`; errors carry `detail` and this API's error envelope.
"""

from __future__ import annotations

import logging
import re

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import AppError, FieldProblem, InternalError, PayloadTooLarge, RateLimited
from app.core.wire import rest_error_body
from app.ingest.model import EVENT_CATEGORIES, IngestRequest
from app.web.state import request_state, services_in

log = logging.getLogger("app.web.ingest")
PATH_RE = re.compile(r"^/api/([^/]+)/(envelope|store)/?$")
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "X-Sentry-Rate-Limits, Retry-After, X-Sentry-Error, X-Request-ID",
}
_PREFLIGHT = {
    **_CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Sentry-Auth, Authentication, "
    "Authorization, X-Requested-With, sentry-trace, baggage",
    "Access-Control-Max-Age": "3600",
}
# The request headers the routes read (ASGI gives names in lower case).
_READ = frozenset({b"content-length", b"content-encoding", b"x-sentry-auth", b"authorization"})

RawHeaders = list[tuple[bytes, bytes]]
Answer = tuple[int, RawHeaders, bytes]


def _raw(headers: dict[str, str]) -> RawHeaders:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


_CORS_RAW = _raw(_CORS)
_PREFLIGHT_RAW = _raw(_PREFLIGHT)
_JSON_TYPE = (b"content-type", b"application/json")


def _json(body: object, status: int, headers: RawHeaders) -> Answer:
    return status, [*headers, _JSON_TYPE], orjson.dumps(body)


class IngestRoutes:
    """Dispatches /api/<id>/envelope|store/ to the ingest service; anything else goes on to `app`.

    Plain ASGI, without Starlette's Request and Response: every SDK event comes through here, and those
    objects (a header map built per request, the body stream, the response's header list) were 14 µs
    a request of the ~0.6 ms an envelope costs; the few headers read are picked out in one pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH_RE.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = await self._handle(scope, receive, match.group(1), match.group(2))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, project_id: str, kind: str) -> Answer:
        state = request_state(scope)
        request_id = state.request_id
        method = scope["method"]
        if method == "OPTIONS":
            return 200, list(_PREFLIGHT_RAW), b""
        if method != "POST":
            return 405, [*_CORS_RAW, (b"allow", b"POST, OPTIONS")], b""
        ingest = services_in(scope).ingest
        read: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _READ:
                read.setdefault(name, value)  # the first of a repeated header, as Starlette's `get`
        try:
            body = await _read_body(receive, read.get(b"content-length", b""), ingest.limits.max_body_bytes)
            result = await ingest.submit(
                IngestRequest(
                    project_id=project_id,
                    kind=kind,
                    body=body,
                    content_encoding=_text(read.get(b"content-encoding")),
                    auth_header=_text(read.get(b"x-sentry-auth"))
                    or _sentry_authorization(_text(read.get(b"authorization"))),
                    query_key=_query_key(scope),
                    client_ip=scope["client"][0] if scope.get("client") else None,
                )
            )
        except AppError as error:
            state.outcome = error.code.value
            headers = {**_CORS, "X-Sentry-Error": error.message}
            if isinstance(error, RateLimited) and error.retry_after is not None:
                headers["Retry-After"] = str(error.retry_after)
                categories = ";".join(EVENT_CATEGORIES)
                headers["X-Sentry-Rate-Limits"] = f"{error.retry_after}:{categories}:key"
            body_json = {"detail": error.message, **rest_error_body(error, request_id)}
            return _json(body_json, error.code.status, _raw(headers))
        except ClientDisconnect:
            raise  # nobody to answer: the request id middleware logs it
        except Exception:
            log.exception("unexpected error in %s %s", method, scope["path"])
            state.outcome = "INTERNAL_ERROR"
            return _json(rest_error_body(InternalError(), request_id), 500, _CORS_RAW)
        limits = (b"x-sentry-rate-limits", result.rate_limits_header.encode("latin-1"))
        return _json({"id": result.event_id}, 200, [*_CORS_RAW, limits])


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _query_key(scope: Scope) -> str | None:
    """`sentry_key` from the query string, parsed only when there is one: browser SDKs send the key
    there, the others send none."""
    query: bytes = scope.get("query_string", b"")
    return QueryParams(query).get("sentry_key") if query else None


def _sentry_authorization(value: str | None) -> str | None:
    """Some older SDKs send the X-Sentry-Auth fields as `Authorization: Sentry ...`."""
    return value if value and value.lower().startswith("sentry ") else None


async def _read_body(receive: Receive, declared: bytes, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    message = f"Request body is larger than {limit} bytes"
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(message, details=[FieldProblem("body", message)])
    chunks = bytearray()
    while True:
        received = await receive()
        if received["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks += received.get("body", b"")
        if len(chunks) > limit:
            raise PayloadTooLarge(message, details=[FieldProblem("body", message)])
        if not received.get("more_body", False):
            return bytes(chunks)

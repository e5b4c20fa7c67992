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
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import AppError, FieldProblem, InternalError, PayloadTooLarge, RateLimited
from app.core.wire import rest_error_body
from app.ingest.model import EVENT_CATEGORIES, IngestRequest
from app.web.state import request_state, services_of

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


def _json(body: object, status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class IngestRoutes:
    """Dispatches /api/<id>/envelope|store/ to the ingest service; anything else goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH_RE.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self._handle(request, match.group(1), match.group(2))
        await response(scope, receive, send)

    async def _handle(self, request: Request, project_id: str, kind: str) -> Response:
        state = request_state(request.scope)
        request_id = state.request_id
        if request.method == "OPTIONS":
            return Response(status_code=200, headers=_PREFLIGHT)
        if request.method != "POST":
            return Response(status_code=405, headers={**_CORS, "Allow": "POST, OPTIONS"})
        ingest = services_of(request).ingest
        try:
            body = await _read_body(request, ingest.limits.max_body_bytes)
            result = await ingest.submit(
                IngestRequest(
                    project_id=project_id,
                    kind=kind,
                    body=body,
                    content_encoding=request.headers.get("content-encoding"),
                    auth_header=request.headers.get("x-sentry-auth")
                    or _sentry_authorization(request.headers.get("authorization")),
                    query_key=_query_key(request),
                    client_ip=request.client.host if request.client else None,
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
            return _json(body_json, error.code.status, headers)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            state.outcome = "INTERNAL_ERROR"
            return _json(rest_error_body(InternalError(), request_id), 500, dict(_CORS))
        headers = {**_CORS, "X-Sentry-Rate-Limits": result.rate_limits_header}
        return _json({"id": result.event_id}, 200, headers)


def _query_key(request: Request) -> str | None:
    """`sentry_key` from the query string, parsed only when there is one: browser SDKs send the key
    there, the others send none."""
    return request.query_params.get("sentry_key") if request.scope.get("query_string") else None


def _sentry_authorization(value: str | None) -> str | None:
    """Some older SDKs send the X-Sentry-Auth fields as `Authorization: Sentry ...`."""
    return value if value and value.lower().startswith("sentry ") else None


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    message = f"Request body is larger than {limit} bytes"
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(message, details=[FieldProblem("body", message)])
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise PayloadTooLarge(message, details=[FieldProblem("body", message)])
    return bytes(chunks)

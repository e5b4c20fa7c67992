"""The GraphQL transport: Strawberry's ASGI view with authentication before execution, the request
context, catalogued errors for requests refused before execution, and orjson bodies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from app.auth.service import credential_from_headers
from app.context import RequestContext, Services
from app.error_mapping import error_body
from app.errors import AppError, FieldProblem, InvalidRequest
from app.http import json_response, new_request_id

KEEP_ALIVE_SECONDS = 15.0
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)


def refusal(error: AppError, request_id: str) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error_body(error, request_id), error.code.status, headers)


class GraphQLView(GraphQL):
    services: Services | None = None  # set by the app's lifespan before the first request

    def __init__(self, *, graphiql: bool) -> None:
        super().__init__(
            schema=None,  # type: ignore[arg-type]  # assigned by create_app
            graphql_ide="graphiql" if graphiql else None,
            keep_alive=True,
            keep_alive_interval=KEEP_ALIVE_SECONDS,
            connection_init_wait_timeout=CONNECTION_INIT_TIMEOUT,
            max_subscriptions_per_connection=50,
        )

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = scope.setdefault("state", {}).get("request_id") or new_request_id()
        try:
            response = await self.run(request)
        except AppError as error:
            scope["state"]["outcome"] = error.code.value
            response = refusal(error, request_id)
        except HTTPException as exc:
            # Transport-level problems (bad JSON, wrong method, no query): same body shape.
            error = InvalidRequest(exc.reason, details=[FieldProblem("body", exc.reason)])
            scope["state"]["outcome"] = error.code.value
            response = json_response(error_body(error, request_id, exc.status_code), exc.status_code)
        await response(scope, receive, send)

    async def get_context(self, request: Request | WebSocket, response: Any) -> RequestContext:
        assert self.services is not None, "the lifespan did not start"
        state = request.scope.setdefault("state", {})
        ctx = RequestContext(
            request_id=state.get("request_id") or new_request_id(),
            services=self.services,
            request=request,
            response=response,
        )
        state["ctx"] = ctx
        if isinstance(request, WebSocket):
            return ctx  # authenticated in on_ws_connect, from connection_init or the upgrade headers
        if not self.should_render_graphql_ide(self.request_adapter_class(request)):
            # Before parsing or executing anything: a bad credential is a 401, not a GraphQL result.
            ctx.principal = await self.services.auth.authenticate(credential_from_headers(request.headers))
        ctx.idempotency_key = request.headers.get("x-idempotency-key")
        return ctx

    async def on_ws_connect(self, context: RequestContext) -> UnsetType:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        headers = params.get("headers") if isinstance(params.get("headers"), dict) else {}
        credential = (
            params.get("apiKey")
            or credential_from_headers({str(k).lower(): str(v) for k, v in headers.items()})
            or credential_from_headers(context.request.headers)
        )
        try:
            context.principal = await context.services.auth.authenticate(
                credential if isinstance(credential, str) else None
            )
        except AppError as error:
            raise ConnectionRejectionError({"code": error.code.value, "message": error.message}) from None
        return UNSET  # acknowledge without a payload

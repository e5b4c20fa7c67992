"""The GraphQL transport: Strawberry's ASGI view with authentication before execution, the request
context, catalogued errors for requests refused before execution, and orjson bodies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from app.auth.service import credential_from_headers
from app.core.clock import format_datetime
from app.core.errors import AppError, ErrorCode, FieldProblem, InvalidRequest, RateLimited
from app.core.wire import error_body, extensions
from app.graphql.context import RequestContext, Services
from app.graphql.execution.document_cache import cached_parse
from app.graphql.execution.fanout import EncodedData
from app.graphql.limits import Limits, operation_cost
from app.persisted.inputs import persisted_request
from app.ratelimit.service import Resource
from app.web.graphiql import render_page
from app.web.middleware import json_response
from app.web.state import RequestState, request_state

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
COST_HEADER = "x-graphql-cost"  # `X-GraphQL-Cost: include` adds extensions.cost to the response
KEEP_ALIVE_SECONDS = 15.0
MAX_SUBSCRIPTIONS_PER_CONNECTION = 50
# What ends each kind of stream cleanly (sent at shutdown, like a WebSocket's 1001).
_STREAM_END = {
    "text/event-stream": "event: complete\r\ndata: \r\n\r\n",
    "multipart/mixed": "\r\n--graphql--\r\n",
}


def prefers_graphql_response(accept: str) -> bool:
    """GraphQL over HTTP: answer `application/graphql-response+json` when the client accepts it at
    least as much as `application/json` (an unweighted Accept lists both at q=1)."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=") and _is_number(p[2:])), 1.0)
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    ours = weights.get(GRAPHQL_RESPONSE_JSON, 0.0)
    return ours > 0 and ours >= weights.get("application/json", 0.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def refusal(error: AppError, request_id: str) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error_body(error, request_id), error.code.status, headers)


class CataloguedTransportWS(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws with every `error` message in the catalogue's shape. Strawberry words a
    few refusals itself (the per-connection subscription limit); those get a code and a request id."""

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        # Cancelled by now; kept, the task (its coroutine, CancelledError and traceback) would live as
        # long as the connection: about a KiB per idle subscriber, measured.
        self.connection_init_timeout_task = None

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            request_id = getattr(self.context, "request_id", "-")
            for error in message.get("payload") or []:
                if "code" not in (error.get("extensions") or {}):
                    problem = FieldProblem("subscription", error.get("message", ""))
                    error["extensions"] = extensions(ErrorCode.INVALID_REQUEST, request_id, [problem])
        await super().send_message(message)


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


class GraphQLView(GraphQL[RequestContext, None]):
    services: Services | None = None  # set by the app's lifespan before the first request
    # GraphiQL opens with these (development: the demo credential and organization), set by the lifespan.
    graphiql_key: str | None = None
    graphiql_org: str | None = None
    graphql_transport_ws_handler_class = CataloguedTransportWS
    websocket_adapter_class = TextWebSocketAdapter

    def __init__(
        self,
        *,
        graphiql: bool,
        max_tokens: int,
        init_timeout: float = 10.0,
        persisted_max_age: int = 10,
        max_cost: int = Limits.max_cost,
        max_http_streams_per_key: int = MAX_SUBSCRIPTIONS_PER_CONNECTION,
    ) -> None:
        # Subscriptions over plain HTTP (graphql-sse, multipart) are one stream per request, so a cap like
        # the WebSocket's per connection applies per credential instead.
        self.max_http_streams_per_key = max_http_streams_per_key
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.persisted_max_age = persisted_max_age
        self.open_sockets: set[WebSocket] = set()  # closed with 1001 at shutdown (app.runtime.server)
        self.open_streams: set[asyncio.Task[Any]] = set()  # HTTP subscriptions, ended at shutdown
        self.streams_per_key: dict[str, int] = {}
        self.shutting_down = False
        super().__init__(
            schema=None,  # type: ignore[arg-type]  # assigned by create_app
            graphql_ide="graphiql" if graphiql else None,
            keep_alive=True,
            keep_alive_interval=KEEP_ALIVE_SECONDS,
            connection_init_wait_timeout=timedelta(seconds=init_timeout),
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                GRAPHQL_WS_PROTOCOL,
                GRAPHQL_SSE_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
            ),
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        page = render_page(request.url.path, self.graphiql_key, self.graphiql_org)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            websocket = WebSocket(scope, receive=receive, send=send)
            self.open_sockets.add(websocket)
            try:
                await self.run(websocket)
            finally:
                self.open_sockets.discard(websocket)
                expiry = request_state(scope).expiry_task
                if expiry is not None:
                    expiry.cancel()
            return
        request = Request(scope, receive)
        state = request_state(scope)
        request_id = state.request_id
        graphql_response = state.graphql_response = prefers_graphql_response(
            request.headers.get("accept", "")
        )
        try:
            response = await self.run(request)
            if graphql_response and state.request_error:
                response.status_code = 400
        except AppError as error:
            state.outcome = error.code.value
            response = refusal(error, request_id)
            if isinstance(error, RateLimited) and error.budget is not None:
                response.headers.update(error.budget.headers())
        except HTTPException as exc:
            response = self._transport_refusal(exc, request, request_id)
        budget = state.ctx.rate_limit if state.ctx is not None else None
        if budget is not None:
            response.headers.update(budget.headers())
        if state.persisted_get:
            self._cache_headers(response, state)
        if (
            graphql_response
            and response.media_type != "text/html"
            and not isinstance(response, StreamingResponse)
        ):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        await response(scope, receive, send)

    def _cache_headers(self, response: Response, state: RequestState) -> None:
        """A GET naming its document by hash is cacheable (the point of sending only the hash), per
        credential: a CDN keys the copy on the credential headers. Failures are never cached."""
        if response.status_code == 200 and not state.had_errors and self.persisted_max_age > 0:
            response.headers["Cache-Control"] = f"public, max-age={self.persisted_max_age}"
            vary = response.headers.get("vary")
            response.headers["Vary"] = ", ".join([*([vary] if vary else []), "X-API-KEY", "Authorization"])
        else:
            response.headers["Cache-Control"] = "no-store" if response.status_code != 200 else "no-cache"

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET carrying only a persisted query's hash (no `query`) is an operation, not the IDE.
        return super().should_render_graphql_ide(request) and "extensions" not in request.query_params

    @staticmethod
    def _transport_refusal(exc: HTTPException, request: Request, request_id: str) -> Response:
        """Bad JSON, wrong method or media type, no query: the same body shape, the fitting status."""
        status, headers = exc.status_code, None
        if isinstance(exc.__cause__, InvalidOperationTypeError) and request.method == "GET":
            status, headers = 405, {"Allow": "POST"}  # mutations and subscriptions are POST-only
        elif exc.reason == "Unsupported content type":
            status = 415
        error = InvalidRequest(exc.reason, details=[FieldProblem("body", exc.reason)])
        request_state(request.scope).outcome = error.code.value
        return json_response(error_body(error, request_id, status), status, headers)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: RequestContext,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        """Resolves persisted documents, then charges the credential's budget before anything executes
        (429 when it is spent)."""
        await self._resolve_persisted(request, request_data)
        batch = request_data if isinstance(request_data, list) else [request_data]
        if context.principal is not None:
            for data in batch:
                resource, cost = self._price(data)
                context.rate_limit = context.services.rate_limiter.charge(
                    context.principal.key_id, resource, cost
                )
        if request.headers.get(COST_HEADER, "").lower() == "include":
            request_state(request.scope).costs = [self._cost(data) for data in batch]
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def _resolve_persisted(
        self, request: Request, request_data: GraphQLRequestData | list[GraphQLRequestData]
    ) -> None:
        """Persisted documents (app.persisted): the hash in `extensions.persistedQuery` becomes its
        document, or is verified against the document sent with it, before anything is priced or run."""
        assert self.services is not None
        persisted = self.services.persisted
        for data in request_data if isinstance(request_data, list) else [request_data]:
            ask = persisted_request(data.extensions, data.query)
            if ask is None and not persisted.trusted_only:
                continue
            if ask is not None and request.method == "GET":
                request_state(request.scope).persisted_get = True
            data.query = await persisted.resolve(ask, data.query)

    def _cost(self, data: GraphQLRequestData) -> int | None:
        document = cached_parse(data.query, self.max_tokens) if data.query else None
        return operation_cost(document, data.operation_name) if document is not None else None

    def _cost_extension(self, request: Request, cost: int | None) -> dict[str, Any]:
        """Like Shopify's `extensions.cost`: what the query is estimated to cost (the QUERY_TOO_COMPLEX
        limit counts the same way) and the request budget this credential has left."""
        ctx = request_state(request.scope).ctx
        budget = ctx.rate_limit if ctx is not None else None
        throttle = None
        if budget is not None:
            throttle = {
                "resource": budget.resource.value,
                "charged": budget.cost,
                "maximumAvailable": budget.limit,
                "currentlyAvailable": budget.remaining,
                "resetAt": format_datetime(datetime.fromtimestamp(budget.reset_at, UTC)),
            }
        return {"requestedQueryCost": cost, "maximumQueryCost": self.max_cost, "throttleStatus": throttle}

    def _price(self, data: GraphQLRequestData) -> tuple[Resource, int]:
        """Mutations spend the write budget, one unit per root field (each logError); the rest one read."""
        document = cached_parse(data.query, self.max_tokens) if data.query else None
        if document is None:
            return Resource.READ, 1
        try:
            operation = get_operation_ast(document, data.operation_name)
        except GraphQLError:
            operation = None
        if operation is None or operation.operation is not OperationType.MUTATION:
            return Resource.READ, 1
        return Resource.WRITE, max(1, len(operation.selection_set.selections))

    async def create_streaming_response(
        self,
        request: Request | WebSocket,
        stream: Callable[[], AsyncIterator[str]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        """A subscription over HTTP (SSE or multipart): at most max_http_streams_per_key at once per
        credential (RATE_LIMITED beyond), ended with the protocol's `complete` when the server stops."""
        ctx = request_state(request.scope).ctx
        key_id = ctx.principal.key_id if ctx is not None and ctx.principal is not None else "-"
        if self.streams_per_key.get(key_id, 0) >= self.max_http_streams_per_key:
            raise RateLimited(
                f"At most {self.max_http_streams_per_key} subscriptions over HTTP at once per credential",
                retry_after=1,
            )
        self.streams_per_key[key_id] = self.streams_per_key.get(key_id, 0) + 1
        media_type = headers.get("Content-Type", "").split(";", 1)[0]
        end = _STREAM_END.get(media_type, "")

        async def guarded() -> AsyncIterator[str]:
            task = asyncio.current_task()
            assert task is not None
            self.open_streams.add(task)
            try:
                async for chunk in stream():
                    yield chunk
            except asyncio.CancelledError:
                if not self.shutting_down:
                    raise
                yield end  # the server is stopping: end the stream as the protocol says
            finally:
                self.open_streams.discard(task)
                left = self.streams_per_key.pop(key_id, 1) - 1
                if left > 0:
                    self.streams_per_key[key_id] = left

        response_headers = {**sub_response.headers, **headers}
        response_headers.pop("content-length", None)
        return StreamingResponse(
            guarded(), status_code=sub_response.status_code or 200, headers=response_headers
        )

    async def end_streams(self) -> None:
        """At shutdown: every HTTP subscription gets its protocol's end and its response completes."""
        self.shutting_down = True
        for task in list(self.open_streams):
            task.cancel()

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        body = process_result(result)
        state = request_state(request.scope)
        if result.errors:
            state.had_errors = True
        costs = state.costs
        if costs:  # asked for with `X-GraphQL-Cost: include`; one per operation of a batch, in order
            extension = self._cost_extension(request, costs.pop(0))
            body["extensions"] = {**(body.get("extensions") or {}), "cost": extension}
        if isinstance(result.data, EncodedData):
            # A subscription event shared with other subscribers (app.graphql.execution.fanout): its data is
            # already encoded once for all of them; orjson splices the fragment into this body.
            body["data"] = result.data.fragment  # type: ignore[typeddict-item]
        # A request error (the document did not parse or validate, variables did not coerce) has no
        # `data` entry under application/graphql-response+json and answers 400.
        if (
            state.graphql_response
            and result.data is None
            and result.errors
            and all(not error.path for error in result.errors)
        ):
            body.pop("data", None)
            state.request_error = True
        return body

    async def get_context(self, request: Request | WebSocket, response: Any) -> RequestContext:
        assert self.services is not None, "the lifespan did not start"
        state = request_state(request.scope)
        ctx = RequestContext(
            request_id=state.request_id,
            services=self.services,
            request=request,
            response=response,
        )
        state.ctx = ctx
        if isinstance(request, WebSocket):
            return ctx  # authenticated in on_ws_connect, from connection_init or the upgrade headers
        if not self.should_render_graphql_ide(self.request_adapter_class(request)):
            # Before parsing or executing anything: a bad credential is a 401, not a GraphQL result.
            ctx.principal = await self.services.auth.authenticate(credential_from_headers(request.headers))
        ctx.idempotency_key = request.headers.get("x-idempotency-key")
        return ctx

    async def on_ws_connect(self, context: RequestContext) -> UnsetType:
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        given_headers = params.get("headers")
        headers: dict[Any, Any] = given_headers if isinstance(given_headers, dict) else {}
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
        expires_at = context.principal.expires_at
        if expires_at is not None:  # a credential that expires while connected ends the connection
            delay = (expires_at - datetime.now(UTC)).total_seconds()
            task = asyncio.create_task(_close_when_expired(context.request, delay))
            request_state(context.request.scope).expiry_task = task
        return UnsetType()  # acknowledge without a payload (UnsetType is a singleton: UNSET)


async def _close_when_expired(websocket: WebSocket, delay: float) -> None:
    await asyncio.sleep(max(delay, 0))
    with contextlib.suppress(Exception):  # already closed
        await websocket.close(code=4403, reason="Forbidden: credential expired")

"""The GraphQL transport: Strawberry's ASGI view with authentication before execution, the request
context, catalogued errors for requests refused before execution, and orjson bodies."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from cross_web import HTTPException
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationType, execute, get_operation_ast
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.schema import Schema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from app.auth.service import credential_from_headers
from app.core.clock import format_datetime
from app.core.errors import (
    AppError,
    ErrorCode,
    FieldProblem,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
)
from app.core.wire import error_body
from app.graphql.context import RequestContext, Services
from app.graphql.execution.answers import AnswerCache
from app.graphql.execution.document_cache import cached_parse, is_valid
from app.graphql.execution.fanout import EncodedData
from app.graphql.execution.replay import ReplayExecutor, Tape
from app.graphql.limits import Limits, document_too_long, operation_cost
from app.graphql.pricing import price
from app.graphql.status import CLOCK_FIELDS, MEMORY_FIELDS
from app.persisted.inputs import persisted_request
from app.ratelimit.service import Resource
from app.web.graphiql import render_page
from app.web.middleware import json_response
from app.web.sockets import TOO_MANY, SocketRegistry
from app.web.state import RequestState, request_state
from app.web.websocket import (
    TRY_AGAIN_LATER,
    CataloguedLegacyWS,
    CataloguedTransportWS,
    TextWebSocketAdapter,
    WebSocketRefusal,
    close_when_expired,
)

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
COST_HEADER = "x-graphql-cost"  # `X-GraphQL-Cost: include` adds extensions.cost to the response
KEEP_ALIVE_SECONDS = 15.0
MAX_SUBSCRIPTIONS_PER_CONNECTION = 50
# Request bodies nest at most this deep: a batch of operations with variables holding an event context
# (itself at most 5 deep) stays far below.
MAX_JSON_DEPTH = 32
# What ends each kind of stream cleanly (sent at shutdown, like a WebSocket's 1001).
_STREAM_END = {
    "text/event-stream": "event: complete\r\ndata: \r\n\r\n",
    "multipart/mixed": "\r\n--graphql--\r\n",
}
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def prefers_graphql_response(accept: str) -> bool:
    """Whether to answer `application/graphql-response+json` (below); remembered for short Accept values,
    of which clients send a handful again and again (parsing one costs more than the rest of the check)."""
    return _prefers_cached(accept) if len(accept) <= 200 else _prefers(accept)


@functools.lru_cache(maxsize=256)
def _prefers_cached(accept: str) -> bool:
    return _prefers(accept)


def _prefers(accept: str) -> bool:
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


def _too_deep(value: object, limit: int) -> bool:
    """Whether a decoded JSON value nests deeper than `limit` (iterative: no recursion to exhaust)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def _unavailable(result: ExecutionResult) -> int | None:
    """The retry delay when every error is SERVICE_UNAVAILABLE and no field has data (errors are in
    their wire shape by now, see app.graphql.errors), else None."""
    if not result.errors or (result.data is not None and not isinstance(result.data, dict)):
        return None  # (a shared subscription event's data is already encoded: it has data)
    if any(value is not None for value in (result.data or {}).values()):
        return None
    delays = []
    for error in result.errors:
        ext = error.extensions or {}
        if ext.get("code") != ErrorCode.SERVICE_UNAVAILABLE.value:
            return None
        delays.append(int(ext.get("retryAfter") or 1))
    return max(delays)


def refusal(error: AppError, request_id: str) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error_body(error, request_id), error.code.status, headers)


_DIRECT_KEYS = frozenset({"query", "variables", "operationName", "extensions"})
_JSON_TYPE = (b"content-type", b"application/json")
_GRAPHQL_RESPONSE_TYPE = (b"content-type", f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8".encode())


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, the first of repeated ones (as Starlette's
    `Headers.get` answers), decoded once: every `Headers.get` scans and decodes the whole list again."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in found:
            found[key] = value.decode("latin-1")
    return found


def _plain_accept(accept: str) -> bool:
    """No streamed answer asked for (multipart or server-sent events): a JSON body is what is wanted."""
    return "multipart" not in accept and "event-stream" not in accept


class DirectLane:
    answered = 0  # requests the direct lane answered, in this process


class GraphQLView(GraphQL[RequestContext, None]):
    services: Services | None = None  # set by the app's lifespan before the first request
    direct_lane = True  # off when operations are traced: the spans come from Strawberry's extension
    sockets: SocketRegistry | None = None  # set by the lifespan: open WebSockets per credential
    # GraphiQL opens with these (development: the demo credential and organization), set by the lifespan.
    graphiql_key: str | None = None
    graphiql_org: str | None = None
    graphql_transport_ws_handler_class = CataloguedTransportWS
    graphql_ws_handler_class = CataloguedLegacyWS
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
        max_query_bytes: int = 65_536,
    ) -> None:
        self.max_query_bytes = max_query_bytes
        self.ws_init_timeout = init_timeout  # the legacy protocol's deadline (CataloguedLegacyWS)
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
        self.answers = AnswerCache(MEMORY_FIELDS, CLOCK_FIELDS)  # the direct lane's reusable answers
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

    def decode_json(self, data: str | bytes) -> object:
        """Invalid UTF-8, integers over CPython's 4,300 digits and nesting past the recursion limit are
        request errors (400) rather than exceptions; so is anything nested deeper than MAX_JSON_DEPTH."""
        # orjson first (several times faster on a logError body); whatever it refuses (NaN, lone
        # surrogates, deep nesting) is decided by the standard parser as before, and so is a body with a
        # run of 19 digits, which may be an integer past 64 bits (orjson would make it a float).
        if not _LONG_DIGITS.search(data if isinstance(data, bytes) else data.encode(errors="replace")):
            try:
                value = orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
            else:
                if not _too_deep(value, MAX_JSON_DEPTH):
                    return value
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = str(exc).split(";")[0][:200]
            raise HTTPException(400, f"Unable to parse request body as JSON: {reason}") from None
        if _too_deep(value, MAX_JSON_DEPTH):
            raise HTTPException(400, f"The request body is nested deeper than {MAX_JSON_DEPTH} levels")
        return value

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """A body that is JSON but not an object (null, 42, "text", [1]) is a 400, not a crash in
        Strawberry's `data.get`."""
        try:
            return await super().parse_http_body(request)
        except (AttributeError, TypeError):
            raise HTTPException(
                400, "The request body must be a JSON object (or a list of objects for a batch)"
            ) from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            websocket = WebSocket(scope, receive=receive, send=send)
            self.open_sockets.add(websocket)
            try:
                await self.run(websocket)
            finally:
                self.open_sockets.discard(websocket)
                if self.sockets is not None:
                    self.sockets.discard(websocket)
                expiry = request_state(scope).expiry_task
                if expiry is not None:
                    expiry.cancel()
            return
        request = Request(scope, receive)
        state = request_state(scope)
        request_id = state.request_id
        headers = request_headers(scope)  # read once here: the direct lane asks for several
        graphql_response = state.graphql_response = prefers_graphql_response(headers.get("accept", ""))
        try:
            body = await self._direct(request, state, headers) if scope["method"] == "POST" else None
            if body is not None:  # answered by the lane: its few headers, sent without a Response object
                await self._send_direct(body, state, graphql_response, send)
                return
            response = await self.run(request)
            if graphql_response and state.request_error:
                response.status_code = 400
            retry_after = state.unavailable
            if retry_after is not None:  # the whole result is SERVICE_UNAVAILABLE: say so in HTTP too
                response.status_code = 503
                response.headers["Retry-After"] = str(retry_after)
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

    @staticmethod
    async def _send_direct(body: bytes, state: RequestState, graphql_response: bool, send: Send) -> None:
        """The direct lane's 200: the same status, headers (names, values, order) and body a Starlette
        `Response(body, 200, media_type="application/json")` would send with the budget's headers
        appended and the content type replaced under graphql-response+json, written as the two ASGI
        messages directly (no Response, MutableHeaders or header dict per request)."""
        raw_headers = [
            (b"content-length", str(len(body)).encode()),
            _GRAPHQL_RESPONSE_TYPE if graphql_response else _JSON_TYPE,
        ]
        budget = state.ctx.rate_limit if state.ctx is not None else None
        if budget is not None:
            raw_headers += [(k.lower().encode(), v.encode()) for k, v in budget.headers().items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    def _trusted_only(self) -> bool:
        return self.services is not None and self.services.persisted.trusted_only

    async def _direct(self, request: Request, state: RequestState, headers: dict[str, str]) -> bytes | None:
        """The direct lane: a POSTed JSON query whose document this schema has already parsed and
        validated is executed by graphql-core with the schema's executor, without Strawberry's HTTP view
        and extension runner, and answered if it succeeds. None when anything is unusual (another body
        shape or media type, a document not seen before, a mutation or subscription, an execution with
        errors): Strawberry's full path answers instead, with the budget already charged here."""
        content_type, accept = headers.get("content-type", ""), headers.get("accept", "")
        if content_type.partition(";")[0].strip().lower() != "application/json" or not _plain_accept(accept):
            return None
        if COST_HEADER in headers or not self.direct_lane or self._trusted_only():
            return None  # the cost extension, operation spans, persisted-only documents: the full path
        raw = await request.body()  # Starlette keeps the body for the full path
        if _LONG_DIGITS.search(raw):
            return None  # perhaps an integer past 64 bits, which orjson reads as a float (decode_json)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict or not data.keys() <= _DIRECT_KEYS or data.get("extensions") is not None:
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if type(query) is not str or not (variables is None or type(variables) is dict):
            return None
        if not (name is None or type(name) is str) or len(query) > self.max_query_bytes:
            return None  # a document too long is refused unparsed by the full path (parsing is the cost)
        schema = cast(
            Schema, self.schema
        )  # (create_app assigns it; an isinstance on it costs a Protocol check)
        document = cached_parse(query, self.max_tokens)
        if document is None or not is_valid(schema._schema, document):
            return None
        try:
            operation = get_operation_ast(document, name)
        except GraphQLError:
            return None
        if operation is None:
            return None
        kind = operation.operation
        # A mutation only with an executor that tapes its root fields (app.graphql.execution.replay):
        # handed over, it must not run its resolvers again. Subscriptions never.
        mutation = kind is OperationType.MUTATION and issubclass(
            schema.execution_context_class, ReplayExecutor
        )
        if kind is not OperationType.QUERY and not mutation:
            return None
        context = await self._http_context(request, headers)  # authenticates, as the full path does
        services = context.services
        if context.principal is not None:  # priced as the full path prices it (errorStats by its range)
            resource, units = price(document, operation, variables or {})
            context.rate_limit = state.prepaid = await services.rate_limiter.spend(
                context.principal.key_id, resource, units
            )
        # The operation's name for the log line: the one asked for, else the document's only operation's.
        context.operation_name = (
            name if name is not None else operation.name.value if operation.name else None
        )
        context.operation_type = kind.value
        # An answer from in-memory state, computed before for this document: reused while that state is
        # the same (app.graphql.execution.answers). Anonymous callers are refused by the resolver.
        answer_state = (
            self.answers.state(document, operation, services)
            if context.principal is not None and not mutation
            else None
        )
        if mutation:
            context.tape = Tape()
        if answer_state is not None:
            body = self.answers.get(document, name, variables, answer_state)
            if body is not None:
                DirectLane.answered += 1
                return body
        result: Any = execute(
            schema._schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=name,
            executor_class=schema.execution_context_class,
            is_awaitable=cast(Any, optimized_is_awaitable),  # Strawberry's, as its own execution passes
        )
        if optimized_is_awaitable(result):
            result = await result
        if not isinstance(result, GraphQLExecutionResult) or result.errors or result.data is None:
            context.operation_name = context.operation_type = None  # the full path records them again
            if context.tape is not None:  # a mutation: the full path replays what its resolvers did
                state.replay = context.tape.for_replay()
            return None  # a query reads only: the full path runs it again and reports its errors
        DirectLane.answered += 1
        body = orjson.dumps({"data": result.data})
        if answer_state is not None and self.answers.state(document, operation, services) == answer_state:
            self.answers.put(document, name, variables, answer_state, body)
        return body

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
        for data in batch:
            too_long = document_too_long(data.query, self.max_query_bytes)
            if too_long is not None:
                raise too_long
            if data.protocol == "http" and self._operation_type(data) is OperationType.SUBSCRIPTION:
                raise InvalidRequest(
                    "A subscription needs a stream: send it with `Accept: text/event-stream` (graphql-sse) "
                    "or `multipart/mixed`, or over a WebSocket to this URL (graphql-transport-ws, or the "
                    "legacy graphql-ws) in a `subscribe` message",
                    details=[FieldProblem("query", "A subscription cannot be answered as one JSON response")],
                )
        prepaid = request_state(request.scope).prepaid
        if prepaid is not None:  # charged by the direct lane, which handed the request over
            context.rate_limit = prepaid
        elif context.principal is not None:
            for data in batch:
                resource, cost = self._price(data)
                context.rate_limit = await context.services.rate_limiter.spend(
                    context.principal.key_id, resource, cost
                )
        if request.headers.get(COST_HEADER, "").lower() == "include":
            request_state(request.scope).costs = [self._cost(data) for data in batch]
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def _operation_type(self, data: GraphQLRequestData) -> OperationType | None:
        document = cached_parse(data.query, self.max_tokens) if data.query else None
        if document is None:
            return None
        try:
            operation = get_operation_ast(document, data.operation_name)
        except GraphQLError:
            return None
        return operation.operation if operation is not None else None

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
        """Mutations spend the write budget, one unit per root field (each logError); the rest one read,
        and errorStats more by the range and buckets it scans (app.graphql.pricing, as the lane)."""
        document = cached_parse(data.query, self.max_tokens) if data.query else None
        if document is None:
            return Resource.READ, 1
        try:
            operation = get_operation_ast(document, data.operation_name)
        except GraphQLError:
            operation = None
        if operation is None:
            return Resource.READ, 1
        return price(document, operation, data.variables or {})

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
        unavailable = _unavailable(result)
        if unavailable is not None:
            state.unavailable = unavailable
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
        state = request_state(request.scope)
        lane = state.ctx  # the direct lane's context, when the lane handed this request over
        ctx = self._new_context(request, response)
        if isinstance(request, WebSocket):
            return ctx  # authenticated in on_ws_connect, from connection_init or the upgrade headers
        ctx.tape, state.replay = state.replay, None  # handed over by the direct lane; used once
        if ctx.tape is not None and lane is not None:
            # A mutation the lane ran: replayed for the caller it ran for. Authenticating again could
            # answer 401 for a key revoked meanwhile, about a mutation that did happen.
            ctx.principal = lane.principal
        elif request.scope["method"] == "POST" or not self.should_render_graphql_ide(
            self.request_adapter_class(request)
        ):  # (A POST never renders the IDE: no request adapter to build for it.)
            # Before parsing or executing anything: a bad credential is a 401, not a GraphQL result.
            await self._authenticate(ctx, request.headers)
        ctx.idempotency_key = request.headers.get("x-idempotency-key")
        return ctx

    def _new_context(self, request: Request | WebSocket, response: Any) -> RequestContext:
        """The request's context, recorded in its state for the log line."""
        assert self.services is not None, "the lifespan did not start"
        state = request_state(request.scope)
        state.ctx = RequestContext(
            request_id=state.request_id, services=self.services, request=request, response=response
        )
        return state.ctx

    async def _authenticate(self, ctx: RequestContext, headers: Mapping[str, str]) -> None:
        ctx.principal = await ctx.services.auth.authenticate(credential_from_headers(headers))

    async def _http_context(self, request: Request, headers: dict[str, str]) -> RequestContext:
        """`get_context` for a POST, from the headers already read (the direct lane)."""
        ctx = self._new_context(request, None)
        await self._authenticate(ctx, headers)
        ctx.idempotency_key = headers.get("x-idempotency-key")
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
        except ServiceUnavailable as error:  # a busy or absent database is no verdict on the key
            raise WebSocketRefusal(TRY_AGAIN_LATER, error) from None
        except AppError as error:
            raise ConnectionRejectionError({"code": error.code.value, "message": error.message}) from None
        if self.sockets is not None and not self.sockets.add(context.principal.key_id, context.request):
            limit = self.sockets.max_per_key
            too_many = RateLimited(f"More than {limit} WebSockets for this API key", retry_after=1)
            raise WebSocketRefusal(TOO_MANY, too_many)
        expires_at = context.principal.expires_at
        if expires_at is not None:  # a credential that expires while connected ends the connection
            delay = (expires_at - datetime.now(UTC)).total_seconds()
            task = asyncio.create_task(close_when_expired(context.request, delay))
            request_state(context.request.scope).expiry_task = task
        return UnsetType()  # acknowledge without a payload (UnsetType is a singleton: UNSET)

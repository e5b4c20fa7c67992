"""The ASGI application: routes, middleware, and the lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.auth.service import AuthService
from app.auth.store import KeyStore
from app.core.pubsub import PubSub
from app.events.feed import EventFeed
from app.events.service import EventService
from app.events.store import EventStore
from app.graphql.context import Services
from app.graphql.scalars import format_datetime
from app.graphql.schema import build_schema
from app.groups.service import GroupService
from app.groups.store import GroupStore
from app.orgs.service import OrgService
from app.orgs.store import OrgStore
from app.persisted.inputs import load_manifest
from app.persisted.service import PersistedDocumentService
from app.persisted.store import PersistedDocumentStore
from app.ratelimit.service import RateLimiter
from app.runtime.demo import DEMO_ORG, ensure_demo
from app.runtime.settings import Settings
from app.runtime.tracing import DatabaseTracing, tracer_provider, tracing_requested
from app.stats.service import StatsService
from app.status.model import ServiceState
from app.status.service import StatusService, StatusSettings
from app.status.store import StatusStore
from app.storage.breaker import CircuitBreaker
from app.storage.embedded import EmbeddedMongo
from app.storage.mongo import create_client
from app.web import rest
from app.web.graphiql import ASSETS_DIR, ASSETS_PATH
from app.web.middleware import BodySizeLimit, RequestIdMiddleware, WebSocketShortcut, json_response
from app.web.view import GraphQLView

log = logging.getLogger("app")


@dataclass(slots=True)
class Runtime:
    """What the lifespan opened; kept on app.state for the health route and for tests."""

    services: Services
    client: Any  # the AsyncMongoClient (only app.storage and the stores speak pymongo)
    embedded: EmbeddedMongo | None
    demo_key: str | None


async def open_runtime(settings: Settings, *, serving: bool = True) -> Runtime:
    """Connect (starting the embedded database if no MONGODB_URI), ensure indexes, build services.

    `serving=False` is for the management commands: no index changes, no probes, no demo data; the embedded
    database's pid file goes to a temporary folder so it can run beside a serving instance."""
    embedded = None
    uri = settings.mongodb_uri
    if uri is None:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedMongo(data_dir / "nx-27017.db", run_dir=data_dir if serving else None)
        uri = await asyncio.to_thread(embedded.start)
        log.info("no MONGODB_URI: started the embedded database", extra={"data_dir": str(settings.data_dir)})
    client = create_client(uri, settings.mongodb_timeout_ms)
    try:
        db = client[settings.mongodb_db]
        pubsub = PubSub()
        breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds)
        orgs = OrgService(OrgStore(db, breaker))
        key_store, event_store, group_store = (
            KeyStore(db, breaker),
            EventStore(db, breaker),
            GroupStore(db, breaker),
        )
        if serving:  # a management command must not, say, change retention with its own settings
            await key_store.ensure_indexes()
            await event_store.ensure_indexes(settings.retention_days)
            await group_store.ensure_indexes()
        feed = EventFeed(event_store, pubsub, settings.feed_poll_seconds, stream=settings.feed_streams)
        events = EventService(event_store, group_store, orgs, feed)
        services = Services(
            auth=AuthService(key_store, orgs, settings.auth_cache_ttl_seconds),
            orgs=orgs,
            events=events,
            groups=GroupService(group_store, events),
            stats=StatsService(event_store, events),
            status=StatusService(
                StatusStore(db, breaker),
                pubsub,
                StatusSettings(
                    probe_interval=settings.status_probe_interval_seconds,
                    damping_probes=settings.status_damping_probes,
                    slow_ping_seconds=settings.status_slow_ping_seconds,
                    error_rate_threshold=settings.status_error_rate_threshold,
                    override_poll_seconds=settings.feed_poll_seconds,
                ),
                breaker,
            ),
            pubsub=pubsub,
            feed=feed,
            rate_limiter=RateLimiter(
                settings.rate_limit_reads, settings.rate_limit_writes, settings.rate_limit_window_seconds
            ),
            persisted=PersistedDocumentService(
                PersistedDocumentStore(db, breaker),
                load_manifest(settings.trusted_documents) if settings.trusted_documents else None,
            ),
        )
        demo_key = None
        if serving:
            await feed.start()
            await services.status.start()
            if settings.demo_data_enabled:
                demo_key = await ensure_demo(services, settings.data_dir)
    except BaseException:
        await client.close()
        if embedded:
            embedded.stop()
        raise
    return Runtime(services=services, client=client, embedded=embedded, demo_key=demo_key)


async def close_runtime(runtime: Runtime) -> None:
    await runtime.services.feed.stop()
    await runtime.services.status.stop()
    await runtime.client.close()
    if runtime.embedded is not None:
        await asyncio.to_thread(runtime.embedded.stop)


def print_banner(settings: Settings, demo_key: str | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"GraphQL endpoint: {base}/graphql"]
    if settings.graphiql_enabled:
        lines.append(f"GraphiQL:         {base}/graphql  (open in a browser)")
    if demo_key:
        lines += [
            f"Demo credential:  {demo_key}  (organization 'demo')",
            f'  GraphiQL opens with it in the Headers tab: {{"X-API-KEY": "{demo_key}"}}',
            f"  curl -s {base}/graphql -H 'X-API-KEY: {demo_key}' \\",
            "    -H 'Content-Type: application/json' \\",
            """    -d '{"query": "{ orgErrors(orgId: \\"demo\\") { totalCount nodes { id message } } }"}'""",
        ]
    print("\n".join(lines), flush=True)


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


def create_app(
    settings: Settings, *, banner: bool = False, tracing: TracerProvider | None = None
) -> Starlette:
    """`tracing`: the provider to trace with; None reads the OTEL_* variables (app.runtime.tracing), and
    without them nothing is traced."""
    if tracing is None and tracing_requested():
        tracing = tracer_provider()
    view = GraphQLView(
        persisted_max_age=settings.persisted_query_max_age_seconds,
        max_cost=settings.max_query_cost,
        max_http_streams_per_key=settings.max_http_subscriptions_per_key,
        graphiql=settings.graphiql_enabled,
        max_tokens=settings.max_query_tokens,
        init_timeout=settings.ws_init_timeout_seconds,
    )
    view.schema = build_schema(
        settings.query_limits,
        introspection=settings.introspection_enabled,
        tracer=tracing.get_tracer("app.graphql") if tracing is not None else None,
    )
    database_tracing = DatabaseTracing(tracing) if tracing is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if database_tracing is not None:
            database_tracing.start()  # before the client exists: it registers a command listener
        runtime = await open_runtime(settings)
        view.services = runtime.services
        if runtime.demo_key is not None:
            view.graphiql_key, view.graphiql_org = runtime.demo_key, DEMO_ORG
        app.state.runtime = runtime
        if banner:
            print_banner(settings, runtime.demo_key)
        try:
            yield
        finally:
            await close_runtime(runtime)
            if database_tracing is not None:
                database_tracing.stop()
            if tracing is not None:
                tracing.force_flush()

    async def health(request: Request) -> Response:
        services = request.app.state.runtime.services
        snapshot = services.status.snapshot()
        storage = next(c for c in snapshot.services if c.name == "storage")
        database = storage.status is not ServiceState.MAJOR_OUTAGE
        state = {ServiceState.OPERATIONAL: "healthy", ServiceState.UNDER_MAINTENANCE: "degraded"}.get(
            snapshot.status, "degraded" if database else "unhealthy"
        )
        body = {
            "status": state,
            "checks": {"database": database, "messageQueue": services.feed.running, "websocket": True},
            "timestamp": format_datetime(datetime.now(UTC)),
        }
        return json_response(body, 200 if database else 503)

    async def live(_: Request) -> Response:
        return json_response({"status": "alive"}, 200)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            Route("/health", health),
            Route("/livez", live),
            Route("/orgs/{org_id}/errors", rest.list_errors, methods=["GET"]),
            Route("/orgs/{org_id}/errors", rest.log_error, methods=["POST"]),
            Route("/service_status", rest.service_status, methods=["GET"]),
            *([Route("/metrics", metrics)] if settings.metrics_enabled else []),
            *(
                [Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="graphiql-assets")]
                if settings.graphiql_enabled
                else []
            ),
        ],
        middleware=[
            # Outermost, so the request's span covers everything and continues an incoming traceparent.
            *([Middleware(OpenTelemetryMiddleware, tracer_provider=tracing)] if tracing is not None else []),
            Middleware(RequestIdMiddleware),
            Middleware(WebSocketShortcut, path="/graphql", endpoint=view),
            # No origin allowed (production without CORS_ORIGINS): no CORS layer on every request.
            *([cors_middleware(settings.allowed_origins)] if settings.allowed_origins else []),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.graphql_view = view
    return app

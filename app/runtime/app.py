"""The ASGI application: routes and middleware from app.web, and the lifespan that owns the container."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.graphql.schema import build_schema
from app.runtime.container import Runtime, close_runtime, open_runtime, print_banner
from app.runtime.demo import DEMO_ORG
from app.runtime.settings import Settings
from app.runtime.tracing import DatabaseTracing, tracer_provider, tracing_requested
from app.web import rest
from app.web import statuspage as status_web
from app.web.graphiql import ASSETS_DIR, ASSETS_PATH
from app.web.health import health, live
from app.web.ingest import IngestRoutes
from app.web.metrics import MetricsEndpoint
from app.web.middleware import (
    BodySizeLimit,
    GraphQLRoute,
    RequestIdMiddleware,
    WebSocketShortcut,
    cors_middleware,
)
from app.web.sockets import SocketRegistry
from app.web.view import GraphQLView


def create_app(
    settings: Settings, *, banner: bool = False, tracing: TracerProvider | None = None
) -> Starlette:
    """`tracing`: the provider to trace with; None reads the OTEL_* variables (app.runtime.tracing), and
    without them nothing is traced."""
    if tracing is None and tracing_requested():
        tracing = tracer_provider()
    view = GraphQLView(
        graphiql=settings.graphiql_enabled,
        max_tokens=settings.max_query_tokens,
        init_timeout=settings.ws_init_timeout_seconds,
        max_query_bytes=settings.max_query_bytes,
        persisted_max_age=settings.persisted_query_max_age_seconds,
        max_cost=settings.max_query_cost,
        max_http_streams_per_key=settings.max_http_subscriptions_per_key,
    )
    view.direct_lane = tracing is None
    view.schema = build_schema(
        settings.query_limits,
        introspection=settings.introspection_enabled,
        tracer=tracing.get_tracer("app.graphql") if tracing is not None else None,
    )
    database_tracing = DatabaseTracing(tracing) if tracing is not None else None
    metrics = MetricsEndpoint()
    opened: list[Runtime] = []

    def record_outcome(outcome: str) -> None:
        if opened:
            opened[0].services.status.error_rate.record(outcome)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if database_tracing is not None:
            database_tracing.start()  # before the client exists: it registers a command listener
        runtime = await open_runtime(settings)
        opened.append(runtime)
        view.services = runtime.services
        view.sockets = SocketRegistry(settings.ws_max_per_key, settings.auth_cache_ttl_seconds)
        view.sockets.start(runtime.services.auth)
        if runtime.demo_key is not None:
            view.graphiql_key, view.graphiql_org = runtime.demo_key, DEMO_ORG
        metrics.attach(runtime.services)
        app.state.runtime = runtime
        app.state.services = runtime.services
        app.state.database_healthy = lambda: runtime.database_healthy  # for /health (app.web.health)
        if banner:
            print_banner(settings, runtime.demo_key)
        try:
            yield
        finally:
            opened.clear()
            await view.sockets.stop()
            await close_runtime(runtime)
            if database_tracing is not None:
                database_tracing.stop()
            if tracing is not None:
                tracing.force_flush()

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            Route("/health", health),
            Route("/livez", live),
            Route("/orgs/{org_id}/errors", rest.list_errors, methods=["GET"]),
            Route("/orgs/{org_id}/errors", rest.log_error, methods=["POST"]),
            Route("/service_status", rest.service_status, methods=["GET"]),
            *([Route("/metrics", metrics.endpoint)] if settings.metrics_enabled else []),
            *(
                [Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="graphiql-assets")]
                if settings.graphiql_enabled
                else []
            ),
            *status_web.routes(
                status_web.PageConfig(
                    enabled=settings.public_status_page,
                    name=settings.status_page_name,
                    url=settings.status_page_url or f"http://{settings.host}:{settings.port}/status",
                    cache_seconds=settings.status_page_cache_seconds,
                )
            ),
        ],
        middleware=[
            # Outermost, so the request's span covers everything and continues an incoming traceparent.
            *([Middleware(OpenTelemetryMiddleware, tracer_provider=tracing)] if tracing is not None else []),
            Middleware(RequestIdMiddleware, record_outcome=record_outcome),
            Middleware(WebSocketShortcut, path="/graphql", endpoint=view),
            # SDK ingestion has its own body limits and CORS policy: it goes before both.
            Middleware(IngestRoutes),
            # No origin allowed (production without CORS_ORIGINS): no CORS layer on every request.
            *([cors_middleware(settings.allowed_origins)] if settings.allowed_origins else []),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(GraphQLRoute, path="/graphql", endpoint=view),  # past the router (docs/performance.md)
        ],
        lifespan=lifespan,
    )
    app.state.graphql_view = view
    app.state.settings = settings
    return app

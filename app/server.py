"""Running the app under uvicorn with the project's logging and a graceful WebSocket shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from app.demo import ensure_demo
from app.log_config import configure
from app.main import close_runtime, create_app, open_runtime, print_banner
from app.settings import Settings, load_settings
from app.storage.embedded import EmbeddedMongo

GOING_AWAY = 1001


class GracefulServer(uvicorn.Server):
    """Before uvicorn drops its connections (WebSockets get 1012), our subscribers are told 1001
    "going away", the code clients treat as "reconnect elsewhere"."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.starlette_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        view = getattr(self.starlette_app.state, "graphql_view", None)
        if view is not None and view.open_sockets:
            closing = [
                ws.close(code=GOING_AWAY, reason="Server shutting down") for ws in list(view.open_sockets)
            ]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 5)
        await super().shutdown(sockets)


def uvicorn_options(ws_compression: bool = False) -> dict[str, Any]:
    return {
        # asyncio's loop rather than uvloop: uvloop is unfair under overload (p99 in seconds at 64
        # connections on a saturated worker); httptools is where the HTTP CPU is saved.
        "loop": "asyncio",
        "http": "httptools",
        "log_config": None,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        # Protocol-level pings of every WebSocket (both sub-protocols), so that proxies keep idle
        # subscribers connected; legacy graphql-ws clients also get the protocol's own `ka` messages.
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        # permessage-deflate keeps compression state per socket (about 40-50 KiB each, measured): off by
        # default, since status and event messages are a few hundred bytes.
        "ws_per_message_deflate": ws_compression,
    }


def config_for(app: Starlette, host: str, port: int, ws_compression: bool = False) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, **uvicorn_options(ws_compression))


def serve(settings: Settings) -> int:
    configure(settings.log_level, json_lines=settings.is_production)
    if settings.workers > 1:
        return serve_workers(settings)
    app = create_app(settings, banner=True)
    GracefulServer(config_for(app, settings.host, settings.port, settings.ws_compression), app).run()
    return 0


def serve_workers(settings: Settings) -> int:
    """WORKERS > 1: uvicorn's worker processes on one port. This parent process starts the embedded
    database once (when there is no MONGODB_URI) and makes the demo data; every worker connects to the
    same database, and the live feed carries events and status between them. uvicorn's supervisor
    closes WebSockets with 1012 at shutdown rather than 1001."""
    embedded = None
    if settings.mongodb_uri is None:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedMongo(data_dir / "nx-27017.db", run_dir=data_dir)
        os.environ["MONGODB_URI"] = embedded.start()
        if settings.feed_mode == "auto":
            os.environ["FEED_MODE"] = "poll"  # still the embedded database: no idle change-stream watcher
    # Workers read their settings from the environment: hand them the command line's overrides too.
    os.environ.update({"HOST": settings.host, "PORT": str(settings.port), "DEMO_DATA": "false"})
    try:
        worker_settings = load_settings()
        demo_key = asyncio.run(_demo(worker_settings, settings)) if settings.demo_data_enabled else None
        print_banner(settings, demo_key)
        config = uvicorn.Config(
            "app.server:worker_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            **uvicorn_options(settings.ws_compression),
        )
        Multiprocess(config, sockets=[_listening_socket(settings.host, settings.port)]).run()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _listening_socket(host: str, port: int) -> socket.socket:
    """The shared listening socket of the workers. Unlike uvicorn's own, it names its protocol
    (IPPROTO_TCP): asyncio turns TCP_NODELAY on only for such sockets' connections, and without it
    every keep-alive response waited ~40 ms for a delayed ACK (measured: 0.4 ms vs 44 ms per request)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def _demo(worker_settings: Settings, settings: Settings) -> str:
    runtime = await open_runtime(worker_settings, serving=False)
    try:
        return await ensure_demo(runtime.services, settings.data_dir)
    finally:
        await close_runtime(runtime)


def worker_app() -> Starlette:
    """The application of one worker process (WORKERS > 1), from the environment."""
    settings = load_settings()
    configure(settings.log_level, json_lines=settings.is_production)
    return create_app(settings)

"""Running the app under uvicorn with the project's logging and a graceful WebSocket shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette

from app.runtime.app import create_app
from app.runtime.container import close_runtime, open_runtime, print_banner
from app.runtime.demo import ensure_demo
from app.runtime.gc_policy import FreezeSurvivors, set_young_threshold
from app.runtime.logging import configure
from app.runtime.protocol import guarded_protocol
from app.runtime.settings import Settings, load_settings
from app.storage.embedded import EmbeddedMongo

GOING_AWAY = 1001
log = logging.getLogger("app.runtime.server")


class GracefulServer(uvicorn.Server):
    """Before uvicorn drops its connections (WebSockets get 1012), our subscribers are told 1001
    "going away", the code clients treat as "reconnect elsewhere". With `gc_sweep_seconds` and
    `gc_young_threshold`, the process it serves runs the GC policy of app.runtime.gc_policy (`serve`
    passes GC_SWEEP_SECONDS and GC_YOUNG_THRESHOLD; tests do not)."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        gc_sweep_seconds: float = 0,
        gc_young_threshold: int = 0,
    ) -> None:
        super().__init__(config)
        self.starlette_app = app
        self.gc_policy = FreezeSurvivors(gc_sweep_seconds) if gc_sweep_seconds > 0 else None
        self.gc_young_threshold = gc_young_threshold
        self._gc_thresholds_before: tuple[int, int, int] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.gc_young_threshold > 0:
            self._gc_thresholds_before = set_young_threshold(self.gc_young_threshold)
        if self.gc_policy is not None:
            view = getattr(self.starlette_app.state, "graphql_view", None)
            open_sockets: set[Any] = view.open_sockets if view is not None else set()
            self.gc_policy.install(asyncio.get_running_loop(), open_connections=open_sockets.__len__)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        view = getattr(self.starlette_app.state, "graphql_view", None)
        if view is not None:
            await view.end_streams()  # subscriptions over HTTP: their protocol's `complete`
        if view is not None and view.open_sockets:
            closing = [
                ws.close(code=GOING_AWAY, reason="Server shutting down") for ws in list(view.open_sockets)
            ]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 5)
        await super().shutdown(sockets)
        if self.gc_policy is not None:
            self.gc_policy.uninstall()
        if self._gc_thresholds_before is not None:
            gc.set_threshold(*self._gc_thresholds_before)


def uvicorn_options(ws_compression: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    header_timeout, body_timeout, max_connections, max_body = (
        getattr(settings, name) if settings is not None else defaults[name]
        for name in (
            "http_header_timeout_seconds",
            "http_body_timeout_seconds",
            "max_connections",
            "max_body_bytes",
        )
    )
    return {
        # asyncio's loop rather than uvloop: uvloop is unfair under overload (p99 in seconds at 64
        # connections on a saturated worker); httptools is where the HTTP CPU is saved, here with
        # header and body deadlines and a connection cap (app.runtime.protocol).
        "loop": "asyncio",
        "http": guarded_protocol(header_timeout, body_timeout, max_connections),
        "log_config": None,
        # Our request line replaces uvicorn's access line (its logger is disabled too, app.runtime.logging);
        # off here, uvicorn does not even compute the line's client address and path on every response.
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        # Protocol-level pings of every WebSocket (both sub-protocols), so that proxies keep idle
        # subscribers connected; legacy graphql-ws clients also get the protocol's own `ka` messages.
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        # permessage-deflate keeps compression state per socket (about 40-50 KiB each, measured): off by
        # default, since status and event messages are a few hundred bytes.
        "ws_per_message_deflate": ws_compression,
        # A WebSocket message is at most as large as an HTTP body (uvicorn's default is 16 MiB).
        "ws_max_size": max_body,
    }


def config_for(app: Starlette, host: str, port: int, ws_compression: bool = False) -> uvicorn.Config:
    settings = getattr(app.state, "settings", None)  # set by create_app
    return uvicorn.Config(app, host=host, port=port, **uvicorn_options(ws_compression, settings))


def serve(settings: Settings, *, reuse_port: bool = False) -> int:
    """One server process; with `reuse_port`, on its own SO_REUSEPORT socket next to others on the
    same port (a worker of `serve_workers`, or instances an operator starts by hand)."""
    configure(settings.log_level, json_lines=settings.is_production)
    if settings.workers > 1:
        return serve_workers(settings)
    app = create_app(settings, banner=not reuse_port)
    config = config_for(app, settings.host, settings.port, settings.ws_compression)
    server = GracefulServer(config, app, settings.gc_sweep_seconds, settings.gc_young_threshold)
    server.run(sockets=[_reuse_port_socket(settings.host, settings.port)] if reuse_port else None)
    return 0


def serve_workers(settings: Settings) -> int:
    """WORKERS > 1: that many `serve --reuse-port` processes on one port, each with its own listening
    socket, so that the kernel spreads connections evenly between them (with one shared socket, a
    burst of connections mostly went to whichever worker was accepting: measured, no throughput gain).
    This parent starts the embedded database once (when there is no MONGODB_URI) and makes the demo
    data; the workers share the database and the live feed carries events and status between them. A
    worker that dies is started again; SIGINT or SIGTERM stops them all (each closes its WebSockets
    with 1001, as a single server does)."""
    embedded = None
    if settings.mongodb_uri is None:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedMongo(data_dir / "nx-27017.db", run_dir=data_dir)
        os.environ["MONGODB_URI"] = embedded.start()
        if settings.feed_mode == "auto":
            os.environ["FEED_MODE"] = "poll"  # still the embedded database: no idle change-stream watcher
    # Workers read their settings from the environment: hand them the command line's overrides too.
    os.environ.update(
        {"HOST": settings.host, "PORT": str(settings.port), "DEMO_DATA": "false", "WORKERS": "1"}
    )
    try:
        worker_settings = load_settings()
        demo_key = asyncio.run(_demo(worker_settings, settings)) if settings.demo_data_enabled else None
        print_banner(settings, demo_key)
        _supervise(settings.workers, embedded)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _supervise(count: int, embedded: EmbeddedMongo | None = None) -> None:
    command = [sys.executable, "-m", "app", "serve", "--reuse-port"]
    workers = [subprocess.Popen(command) for _ in range(count)]
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            if embedded is not None and not embedded.running:  # killed or crashed: same port, same data
                log.warning("embedded database exited; starting it again")
                try:
                    embedded.start()  # on this (main) thread, which lives as long as the workers
                except RuntimeError:
                    log.exception("embedded database did not start; retrying")
            for i, worker in enumerate(workers):
                if worker.poll() is not None:
                    log.warning("worker %s exited with %s; starting another", worker.pid, worker.returncode)
                    time.sleep(1)  # a worker that cannot start must not spin
                    workers[i] = subprocess.Popen(command)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A SO_REUSEPORT listening socket that names its protocol (IPPROTO_TCP): asyncio turns TCP_NODELAY
    on only for such sockets' connections, and without it every keep-alive response waited ~40 ms for a
    delayed ACK (measured: 0.4 ms vs 44 ms per request)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _demo(worker_settings: Settings, settings: Settings) -> str:
    runtime = await open_runtime(worker_settings, serving=False)
    try:
        return await ensure_demo(runtime.services, settings.data_dir)
    finally:
        await close_runtime(runtime)

"""Running the app under uvicorn with the project's logging and a graceful WebSocket shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from starlette.applications import Starlette

from app.log_config import configure
from app.main import create_app
from app.settings import Settings

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


def config_for(app: Starlette, host: str, port: int, ws_compression: bool = False) -> uvicorn.Config:
    # asyncio's loop rather than uvloop: uvloop is unfair under overload (p99 in seconds at 64
    # connections on a saturated worker); httptools is where the HTTP CPU is saved.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        http="httptools",
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
        # Protocol-level pings of every WebSocket (both sub-protocols), so that proxies keep idle
        # subscribers connected; legacy graphql-ws clients also get the protocol's own `ka` messages.
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # permessage-deflate keeps compression state per socket (about 40-50 KiB each, measured): off by
        # default, since status and event messages are a few hundred bytes.
        ws_per_message_deflate=ws_compression,
    )


def serve(settings: Settings) -> int:
    configure(settings.log_level, json_lines=settings.is_production)
    app = create_app(settings, banner=True)
    GracefulServer(config_for(app, settings.host, settings.port, settings.ws_compression), app).run()
    return 0

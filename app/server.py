"""Running the app under uvicorn with the project's logging."""

from __future__ import annotations

import uvicorn

from app.log_config import configure
from app.main import create_app
from app.settings import Settings


def serve(settings: Settings) -> int:
    configure(settings.log_level, json_lines=settings.is_production)
    app = create_app(settings, banner=True)
    # asyncio's loop rather than uvloop: uvloop is unfair under overload (p99 in seconds at 64
    # connections on a saturated worker); httptools is where the HTTP CPU is saved.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="asyncio",
        http="httptools",
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0

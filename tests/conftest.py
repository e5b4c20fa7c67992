"""Test harness: a real wire-protocol database, a real uvicorn server, one organization per test.

The database is `MONGODB_URI` when set (run the same suite against a real MongoDB), otherwise an
in-memory nx-27017 started here on a free port. The server runs in a thread with its own event loop,
exactly as in production (lifespan, middleware, WebSockets); tests talk to it over HTTP and WebSocket.
Set-up that has no public API (creating organizations and keys, which the CLI does) runs on the
server's own loop through `admin_call`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from ulid import ULID

from app.graphql.context import Services
from app.runtime.app import create_app
from app.runtime.server import GracefulServer, config_for
from app.runtime.settings import Settings
from app.storage.embedded import EmbeddedMongo


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    embedded = EmbeddedMongo("memory")
    uri = embedded.start()
    try:
        yield uri
    finally:
        embedded.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    ws_url: str
    app: Any
    loop: asyncio.AbstractEventLoop
    settings: Settings

    @property
    def services(self) -> Services:
        return self.app.state.runtime.services

    def call(self, make: Callable[[Services], Awaitable[Any]]) -> Any:
        """Run a coroutine on the server's loop (where its database client lives) and wait for it."""
        return asyncio.run_coroutine_threadsafe(make(self.services), self.loop).result(timeout=30)


def start_server(settings: Settings, **app_options: Any) -> tuple[LiveServer, Callable[[], None]]:
    app = create_app(settings, **app_options)
    config = config_for(app, "127.0.0.1", settings.port, settings.ws_compression)  # as `python -m app serve`
    server = GracefulServer(config, app)
    loop_box: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_box.append(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("test server did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    base = f"127.0.0.1:{settings.port}"
    return LiveServer(f"http://{base}", f"ws://{base}/graphql", app, loop_box[0], settings), stop


@contextmanager
def server_on_own_database(
    path: Path, db: str, **settings: Any
) -> Iterator[tuple[LiveServer, EmbeddedMongo]]:
    """A server on a file-backed embedded database of its own (which a test may stop and start), with
    `settings` beside the usual test ones; both stopped at the end."""
    database = EmbeddedMongo(path)
    live, stop = start_server(
        Settings(
            mongodb_uri=database.start(),
            mongodb_db=db,
            port=_free_port(),
            demo_data=False,
            **settings,
            _env_file=None,  # type: ignore[call-arg]
        )
    )
    try:
        yield live, database
    finally:
        stop()
        database.stop()


def settings_for(mongo_uri: str, **overrides: Any) -> Settings:
    """The test server's settings, in a database of its own; `overrides` change single settings."""
    values: dict[str, Any] = {
        "mongodb_uri": mongo_uri,
        "mongodb_db": f"test_{str(ULID()).lower()}",
        "port": _free_port(),
        "demo_data": False,
        # Revocations apply at once in tests; the cache itself is covered by a unit test.
        "auth_cache_ttl_seconds": 0,
        "status_probe_interval_seconds": 60,
        "ws_init_timeout_seconds": 1,
        "feed_mode": "poll",  # the change-stream path has a test of its own (an idle nx watcher costs CPU)
        # Generated timestamps reach back to 1970; the retention tests check the TTL index itself.
        "retention_days": 24000,
        # The count repair runs at start-up only: the tests that leave an event as a crash would call it
        # themselves, and a background pass landing in the middle of one would race it.
        "count_repair_seconds": 3600,
    }
    return Settings(**{**values, **overrides}, _env_file=None)


@pytest.fixture(scope="session")
def server(mongo_uri: str) -> Iterator[LiveServer]:
    live, stop = start_server(settings_for(mongo_uri))
    try:
        yield live
    finally:
        stop()


@pytest.fixture(scope="session")
def admin_key(server: LiveServer) -> str:
    return server.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="tests")).plaintext


@dataclass
class Org:
    id: str
    key: str


def make_org(server: LiveServer, expires_at: datetime | None = None) -> Org:
    org_id = f"org-{str(ULID()).lower()}"

    async def create(services: Services) -> str:
        await services.orgs.create(org_id)
        return (await services.auth.create_key(org_id=org_id, expires_at=expires_at)).plaintext

    return Org(org_id, server.call(create))


@pytest.fixture
def org(server: LiveServer) -> Org:
    """A fresh organization with its own key: tests never see each other's data."""
    return make_org(server)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        key: str | None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {"X-API-KEY": key} if key else {}
        all_headers.update(headers or {})
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers
        )

    async def data(self, query: str, variables: dict[str, Any] | None = None, *, key: str) -> dict[str, Any]:
        """The `data` of a response that must have no errors."""
        response = await self.post(query, variables, key=key)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        key: str | None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The single error of a response that must fail."""
        response = await self.post(query, variables, key=key, headers=headers)
        errors = response.json()["errors"]
        assert len(errors) == 1, errors
        return errors[0]


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(http)


@contextmanager
def server_process(server: LiveServer, **env: str) -> Iterator[LiveServer]:
    """Another server process (`python -m app serve`) on the same database as `server`."""
    port = _free_port()
    environment = {
        **os.environ,
        "MONGODB_URI": server.settings.mongodb_uri or "",
        "MONGODB_DB": server.settings.mongodb_db,
        "PORT": str(port),
        "DEMO_DATA": "false",
        "RETENTION_DAYS": str(server.settings.retention_days),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield LiveServer(url, f"ws://127.0.0.1:{port}/graphql", None, None, server.settings)  # type: ignore[arg-type]
    finally:
        process.terminate()
        try:
            process.wait(30)  # a clean stop is part of what is tested
        finally:
            if process.poll() is None:
                process.kill()

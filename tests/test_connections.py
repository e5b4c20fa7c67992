"""Connection hygiene: a request's headers and body have deadlines (408, catalogued), and connections
per process are capped (503, catalogued, Retry-After)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from app.runtime.settings import Settings
from tests.conftest import LiveServer, Org, _free_port, start_server

CAP = 4


@pytest.fixture(scope="module")
def strict_server(server: LiveServer) -> Iterator[LiveServer]:
    settings = Settings(
        mongodb_uri=server.settings.mongodb_uri,
        mongodb_db=server.settings.mongodb_db,
        port=_free_port(),
        demo_data=False,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=server.settings.retention_days,  # the shared database's TTL index stays as it is
        http_header_timeout_seconds=0.5,
        http_body_timeout_seconds=0.5,
        max_connections=CAP,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings)
    try:
        yield live
    finally:
        stop()


async def exchange(server: LiveServer, data: bytes) -> tuple[int, dict, bytes]:
    """Send `data` and stop writing; what the server answers before it closes: status, headers, body."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)  # until the server closes the connection
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_half_sent_headers_are_cut_off(strict_server: LiveServer) -> None:
    status, headers, body = await exchange(strict_server, b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Partial")
    error = json.loads(body)["errors"][0]
    assert status == 408 and error["extensions"]["code"] == "INVALID_REQUEST"
    assert error["extensions"]["requestId"] == headers["x-request-id"]
    assert "headers" in error["message"]


async def test_a_half_sent_body_is_cut_off(strict_server: LiveServer, org: Org) -> None:
    request = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
        + f"X-API-KEY: {org.key}\r\n\r\n".encode()
        + b'{"query": "{'
    )
    status, _, body = await exchange(strict_server, request)
    assert status == 408 and "body" in json.loads(body)["errors"][0]["message"]


async def test_a_connection_past_the_cap_is_refused(strict_server: LiveServer) -> None:
    # WebSockets hold connections without a header or body deadline (their own init deadline is 10 s).
    sockets = [await connect(strict_server.ws_url, subprotocols=["graphql-transport-ws"]) for _ in range(CAP)]  # type: ignore[list-item]
    try:
        status, headers, body = await exchange(strict_server, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        error = json.loads(body)["errors"][0]
        assert status == 503 and headers["retry-after"] == "1"
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    finally:
        for ws in sockets:
            await ws.close()
    status, _, _ = await exchange(
        strict_server, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200

"""Subscriptions over plain HTTP: graphql-sse (distinct connections, through the npm `graphql-sse`
client) and Apollo's multipart subscriptions (read here with httpx), with the WebSocket path's
authentication, budgets, `after` resume, shared fan-out and catalogued errors."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from ulid import ULID

from app.runtime.settings import Settings
from tests.conftest import GraphQLClient, LiveServer, Org, _free_port, start_server
from tests.documents import SET_SERVICE_STATUS
from tests.helpers import log_error

SSE_CLIENT = Path(__file__).parent / "sse"
MULTIPART_ACCEPT = 'multipart/mixed;subscriptionSpec="1.0", application/json'
STATUS_SUB = "subscription { serviceStatusChanged { status services { name status description } } }"
RESUMABLE = (
    "subscription($o: ID!, $after: String) { errorLogged(orgId: $o, after: $after) { id message position } }"
)
TIMEOUT = 10


# --- Apollo's multipart subscriptions, read part by part -------------------------------------------


class MultipartReader:
    """The parts of a `multipart/mixed; boundary=graphql` response: heartbeats (`{}`) are skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.chunks = response.aiter_text()
        self.buffer = ""
        self.ended = False

    async def next_part(self) -> dict[str, Any] | None:
        """The next non-heartbeat JSON part; None when the stream ends (`--graphql--`)."""
        while True:
            if self.buffer.lstrip("\r\n").startswith("--"):  # the closing delimiter's tail
                self.ended = True
                return None
            head, sep, rest = self.buffer.partition("\r\n\r\n")
            if sep:
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                )
                body = rest.encode()
                if len(body) >= length:
                    part, self.buffer = body[:length].decode(), body[length:].decode()
                    self.buffer = self.buffer.removeprefix("\r\n--graphql")
                    value = json.loads(part)
                    if value:
                        return value  # type: ignore[no-any-return]
                    continue
            try:
                chunk = await asyncio.wait_for(anext(self.chunks), TIMEOUT)
            except StopAsyncIteration:
                self.ended = True
                return None
            if not self.buffer and chunk.startswith("--graphql"):
                chunk = chunk.removeprefix("--graphql")
            self.buffer += chunk


@asynccontextmanager
async def multipart(
    server: LiveServer, key: str, query: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[MultipartReader]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with client.stream(
            "POST",
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"X-API-KEY": key, "Accept": MULTIPART_ACCEPT},
        ) as response:
            yield MultipartReader(response)


async def test_multipart_status_then_a_change_with_budget_headers(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    async with multipart(server, admin_key, STATUS_SUB) as reader:
        response = reader.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/mixed;boundary=graphql")
        assert response.headers["x-ratelimit-resource"] == "read"  # one read unit, like a query
        first = await reader.next_part()
        assert first and first["payload"]["data"]["serviceStatusChanged"]["status"]
        description = f"multipart {ULID()}"
        await gql.data(
            SET_SERVICE_STATUS,
            {"service": "api", "status": "PARTIAL_OUTAGE", "description": description},
            key=admin_key,
        )
        try:
            while True:
                part = await reader.next_part()
                assert part is not None
                services = part["payload"]["data"]["serviceStatusChanged"]["services"]
                if any(s["description"] == description for s in services):
                    break
        finally:
            await gql.data(SET_SERVICE_STATUS, {"service": "api", "status": "OPERATIONAL"}, key=admin_key)


async def test_multipart_subscribers_share_one_execution_and_get_valid_json(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    async with (
        multipart(server, admin_key, STATUS_SUB) as one,
        multipart(server, admin_key, STATUS_SUB) as two,
    ):
        await one.next_part()
        await two.next_part()
        description = f"shared {ULID()}"
        await gql.data(
            SET_SERVICE_STATUS,
            {"service": "storage", "status": "UNDER_MAINTENANCE", "description": description},
            key=admin_key,
        )
        try:
            parts = []
            for reader in (one, two):
                while True:
                    part = await reader.next_part()
                    assert part is not None
                    if description in json.dumps(part):
                        parts.append(part)
                        break
            assert parts[0] == parts[1]  # the same shared data, spliced into each response
        finally:
            await gql.data(SET_SERVICE_STATUS, {"service": "storage", "status": "OPERATIONAL"}, key=admin_key)


async def test_multipart_resumes_after_a_position(server: LiveServer, gql: GraphQLClient, org: Org) -> None:
    first = await log_error(gql, org.id, org.key, message="before the gap")
    async with multipart(server, org.key, RESUMABLE, {"o": org.id}) as reader:
        # A live subscriber sees the next one...
        second = await log_error(gql, org.id, org.key, message="while connected")
        part = await reader.next_part()
        assert part and part["payload"]["data"]["errorLogged"]["id"] == second["id"]
    missed = await log_error(gql, org.id, org.key, message="while away")
    # ...and a reconnect with `after` replays what it missed, from the last position it saw.
    position = part["payload"]["data"]["errorLogged"]["position"]
    async with multipart(server, org.key, RESUMABLE, {"o": org.id, "after": position}) as reader:
        replayed = await reader.next_part()
        assert replayed and replayed["payload"]["data"]["errorLogged"]["id"] == missed["id"]
    assert first["id"] not in (second["id"], missed["id"])


async def test_multipart_refusals_are_catalogued(server: LiveServer, org: Org) -> None:
    async with multipart(server, org.key + "x", STATUS_SUB) as reader:
        assert reader.response.status_code == 401
        body = json.loads(await reader.response.aread())
        assert body["errors"][0]["extensions"]["code"] == "INVALID_API_KEY"
    async with multipart(server, org.key, RESUMABLE, {"o": "someone-else"}) as reader:
        part = await reader.next_part()
        assert part and part["payload"]["errors"][0]["extensions"]["code"] in ("NOT_FOUND", "FORBIDDEN")
        assert await reader.next_part() is None  # then the stream ends
    async with multipart(server, org.key, RESUMABLE, {"o": org.id, "after": "garbage"}) as reader:
        part = await reader.next_part()
        error = part["payload"]["errors"][0] if part else {}
        assert error["extensions"]["code"] == "INVALID_REQUEST" and error["extensions"]["details"]


async def test_http_streams_per_credential_are_capped(
    server: LiveServer, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.app.state.graphql_view, "max_http_streams_per_key", 2)
    async with multipart(server, org.key, STATUS_SUB) as one, multipart(server, org.key, STATUS_SUB) as two:
        assert (await one.next_part()) and (await two.next_part())
        async with multipart(server, org.key, STATUS_SUB) as third:
            assert third.response.status_code == 429
            body = json.loads(await third.response.aread())
            assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            assert third.response.headers["retry-after"] == "1"
    # Closed streams give their places back.
    async with multipart(server, org.key, STATUS_SUB) as again:
        assert again.response.status_code == 200 and await again.next_part()


async def test_shutdown_ends_http_streams_with_the_protocols_end(mongo_uri: str, org: Org) -> None:
    settings = Settings(
        mongodb_uri=mongo_uri,
        mongodb_db=f"test_{str(ULID()).lower()}",
        port=_free_port(),
        demo_data=False,
        status_probe_interval_seconds=60,
        feed_mode="poll",
        retention_days=24000,
        _env_file=None,  # type: ignore[call-arg]
    )
    live, stop = start_server(settings)
    key = live.call(lambda s: s.auth.create_key(org_id=None, admin=True, name="shutdown")).plaintext
    async with multipart(live, key, STATUS_SUB) as reader:
        assert await reader.next_part()
        stopping = asyncio.create_task(asyncio.to_thread(stop))
        assert await reader.next_part() is None and reader.ended
        await stopping


# --- graphql-sse, through its own client ---------------------------------------------------------


@asynccontextmanager
async def sse_client(
    server: LiveServer, key: str, query: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the graphql-sse client"
    assert (SSE_CLIENT / "node_modules" / "graphql-sse").is_dir(), "run `make test` (it installs the client)"
    args = [str(SSE_CLIENT / "subscribe.mjs"), f"{server.url}/graphql", key, query]
    if variables is not None:
        args.append(json.dumps(variables))
    process = await asyncio.create_subprocess_exec(node, *args, stdout=asyncio.subprocess.PIPE)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def sse_event(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    assert line, "the graphql-sse client ended without a message"
    return json.loads(line)  # type: ignore[no-any-return]


async def test_graphql_sse_client_receives_status_and_changes(
    server: LiveServer, gql: GraphQLClient, admin_key: str
) -> None:
    async with sse_client(server, admin_key, STATUS_SUB) as client:
        first = await sse_event(client)
        assert first["next"]["data"]["serviceStatusChanged"]["status"]
        description = f"sse {ULID()}"
        await gql.data(
            SET_SERVICE_STATUS,
            {"service": "authentication", "status": "DEGRADED_PERFORMANCE", "description": description},
            key=admin_key,
        )
        try:
            while description not in json.dumps(await sse_event(client)):
                pass
        finally:
            await gql.data(
                SET_SERVICE_STATUS, {"service": "authentication", "status": "OPERATIONAL"}, key=admin_key
            )


async def test_graphql_sse_client_feed_and_resume(server: LiveServer, gql: GraphQLClient, org: Org) -> None:
    anchor = await log_error(gql, org.id, org.key, message="anchor")
    missed = await log_error(gql, org.id, org.key, message="missed")
    async with sse_client(server, org.key, RESUMABLE, {"o": org.id, "after": anchor["position"]}) as client:
        replayed = await sse_event(client)
        assert replayed["next"]["data"]["errorLogged"]["id"] == missed["id"]
        live = await log_error(gql, org.id, org.key, message="live")
        assert (await sse_event(client))["next"]["data"]["errorLogged"]["id"] == live["id"]


async def test_graphql_sse_client_gets_catalogued_errors(server: LiveServer, org: Org) -> None:
    async with sse_client(server, org.key + "x", STATUS_SUB) as client:
        refused = await sse_event(client)
        assert refused["error"]["status"] == 401
        assert refused["error"]["body"]["errors"][0]["extensions"]["code"] == "INVALID_API_KEY"
    async with sse_client(server, org.key, RESUMABLE, {"o": org.id, "after": "garbage"}) as client:
        event = await sse_event(client)
        assert event["next"]["errors"][0]["extensions"]["code"] == "INVALID_REQUEST"
        assert await sse_event(client) == {"complete": True}

"""logError with and without ten alert rules firing (run by `make bench`): latency, throughput and server
CPU per request.

Ten FREQUENCY rules (more than 1 event within a minute, for the organization, no throttle) fire on about
every other event each, to a webhook receiver started here that answers after 50 ms. logError with fresh
idempotency keys is driven by wrk at 32 connections, first with no rules, then with the ten rules; the
deliveries made are counted. Logging must not wait on evaluation or delivery: they run in background tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.run import lua_script, run_wrk  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

LOG_ERROR = (
    'mutation($k: String) { logError(orgId: "bench", idempotencyKey: $k, '
    'error: {message: "bench", severity: HIGH}) { errorId } }'
)
CREATE_RULE = """mutation($i: AlertRuleInput!) { createAlertRule(orgId: "bench", input: $i) { id } }"""


class SlowReceiver:
    """A webhook receiver answering 200 after `delay` seconds, on its own thread and loop."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0
        self.port = _free_port()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = {}
        await reader.readline()
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        self.received += 1
        await asyncio.sleep(self.delay)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def _run(self) -> None:
        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        asyncio.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench" / "alerts_results.json"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    database = EmbeddedMongo(tmp / "bench.db")
    uri = database.start()
    with MongoClient(uri) as client:
        client["bench"]["organizations"].insert_one(
            {"_id": "bench", "name": "bench", "created_at": datetime.now(UTC)}
        )
    receiver = SlowReceiver(0.05)
    port = _free_port()
    env = servers.server_env(
        uri, "bench", port, ENVIRONMENT="production", FEED_MODE="poll", RETENTION_DAYS="0"
    )
    server = servers.start(env)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        servers.wait_ready(f"{base}/livez")
        key = servers.cli_json(env, "keys", "create", "--org", "bench")["apiKey"]
        script = lua_script(LOG_ERROR, key, "fresh")

        def measure(name: str) -> None:
            results = []
            for _ in range(args.rounds):
                before = cpu_seconds(server.pid)
                result = run_wrk(f"{base}/graphql", script, args.connections, args.seconds)
                result["cpu_ms"] = (cpu_seconds(server.pid) - before) * 1000 / max(result["requests"], 1)
                results.append(result)
            med = {k: round(statistics.median(r[k] for r in results), 3) for k in results[0]}
            rows.append({"workload": name, "connections": args.connections, **med})

        measure("logError, no alert rules")
        for i in range(args.rules):
            rule = {
                "name": f"rule {i}",
                "trigger": "FREQUENCY",
                "scope": "ORGANIZATION",
                "threshold": 1,
                "windowMinutes": 1,
                "url": f"http://127.0.0.1:{receiver.port}/hook",
            }
            response = httpx.post(
                f"{base}/graphql",
                json={"query": CREATE_RULE, "variables": {"i": rule}},
                headers={"X-API-KEY": key},
                timeout=30,
            )
            assert "errors" not in response.json(), response.text
        received_before = receiver.received
        measure(f"logError, {args.rules} rules firing")
        rows[-1]["webhooks_received"] = receiver.received - received_before
    finally:
        servers.stop(server)
        database.stop()
    servers.print_rows(rows)
    print(f"webhooks received while measuring with rules: {rows[-1].get('webhooks_received')}")
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

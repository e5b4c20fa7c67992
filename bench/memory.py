"""Memory under mixed load, run by hand or by `make bench`:

    .venv/bin/python bench/memory.py [--requests 100000] [--checkpoint 20000] [--concurrency 16]

Starts a server (`python -m app serve`, production settings) on an in-memory nx-27017 and sends a mix of
requests, most of them distinct documents as clients with many operation shapes send them (queries with
a numbered comment, fresh idempotency keys, pages, statistics, status, invalid and refused documents).
Reports the server's RSS after `checkpoint` requests and at the end; the target is the end within 10% of
the checkpoint (caches are bounded in entries and bytes, nothing grows with traffic).

The writes (fresh idempotency keys every time) go to a second organization, whose events the benchmark
deletes from the database every 2,000 requests: the embedded database scans the whole collection for
statistics and pages, so a collection that grows with the run slows it to 20 requests a second by 30,000
(the database process is the limit, not the server). The server's own memory is what is measured, and
it sees the same mix either way. Progress is printed every 10,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.subscriptions import rss_kib  # noqa: E402


def request(i: int, org: str) -> dict:
    kind = i % 8
    if kind == 0:
        return {
            "query": "mutation($k: String) { logError(orgId: $o, idempotencyKey: $k, "
            'error: {message: "m", severity: LOW}) { errorId } }'.replace("$o", f'"{org}-writes"'),
            "variables": {"k": f"k-{i}"},
        }
    if kind == 1:
        return {"query": f'# {i}\n{{ orgErrors(orgId: "{org}", first: 5) {{ nodes {{ id message }} }} }}'}
    if kind == 2:
        return {"query": "{ serviceStatus { status services { name status } } }"}
    if kind == 3:
        return {
            "query": f'{{ errorStats(orgId: "{org}", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") '
            "{ total } }"
        }
    if kind == 4:
        return {"query": f"{{ serviceStatus {{ status }} }} # {'x' * 2000} {i}"}  # distinct, 2 KB
    if kind == 5:
        return {"query": f"{{ nope{i} }}"}  # a validation error, a distinct document each time
    if kind == 6:
        return {"query": f'query Q{i % 500} {{ orgErrors(orgId: "{org}", first: 2) {{ totalCount }} }}'}
    return {"query": "{ " + " ".join("serviceStatus { status }" for _ in range(30)) + f" }} # {i}"}  # refused


def prune(uri: str) -> None:
    with MongoClient(uri) as mongo:
        mongo["memory"]["error_events"].delete_many({"org_id": "memory-writes"})


async def drive(
    url: str, uri: str, keys: tuple[str, str], org: str, start: int, count: int, concurrency: int, pid: int
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        queue = iter(range(start, start + count))
        outcomes: Counter[tuple[int, int, bool]] = Counter()
        began = time.monotonic()

        async def worker() -> None:
            for i in queue:
                response = await client.post(
                    "/graphql",
                    json=request(i, org),
                    headers={"X-API-KEY": keys[1] if i % 8 == 0 else keys[0]},
                )
                outcomes[(i % 8, response.status_code, "errors" in response.json())] += 1
                if (i + 1) % 2_000 == 0:
                    await asyncio.to_thread(prune, uri)
                if (i + 1) % 10_000 == 0:
                    rate = (i + 1 - start) / (time.monotonic() - began)
                    rss = rss_kib(pid) / 1024
                    print(f"{i + 1:,} requests, {rate:.0f}/s, RSS {rss:.1f} MiB", file=sys.stderr, flush=True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(f"(request kind, HTTP status, errors): count {dict(sorted(outcomes.items()))}", file=sys.stderr)


def table(result: dict) -> str:
    return "\n".join(
        [
            "| requests | RSS after the checkpoint | RSS at the end | growth |",
            "|---|---|---|---|",
            f"| {result['checkpoint']:,} then {result['requests']:,} | {result['rss_mib_at_checkpoint']} MiB "
            f"| {result['rss_mib_at_end']} MiB | {result['growth_percent']}% |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--checkpoint", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(table(run(args.requests, args.checkpoint, args.concurrency)))


def run(requests: int, checkpoint: int, concurrency: int) -> dict:
    database = EmbeddedMongo("memory")
    uri = database.start()
    port = _free_port()
    env = servers.server_env(
        uri, "memory", port, ENVIRONMENT="production", FEED_MODE="poll", RETENTION_DAYS="0"
    )
    server = servers.start(env)
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        servers.cli_json(env, "orgs", "create", "memory")
        servers.cli_json(env, "orgs", "create", "memory-writes")
        keys = (
            servers.cli_json(env, "keys", "create", "--org", "memory")["apiKey"],
            servers.cli_json(env, "keys", "create", "--org", "memory-writes")["apiKey"],
        )
        url = f"http://127.0.0.1:{port}"
        asyncio.run(drive(url, uri, keys, "memory", 0, checkpoint, concurrency, server.pid))
        at_checkpoint = rss_kib(server.pid)
        asyncio.run(
            drive(url, uri, keys, "memory", checkpoint, requests - checkpoint, concurrency, server.pid)
        )
        at_end = rss_kib(server.pid)
        return {
            "requests": requests,
            "rss_mib_at_checkpoint": round(at_checkpoint / 1024, 1),
            "checkpoint": checkpoint,
            "rss_mib_at_end": round(at_end / 1024, 1),
            "growth_percent": round((at_end - at_checkpoint) * 100 / at_checkpoint, 1),
        }
    finally:
        servers.stop(server)
        database.stop()


if __name__ == "__main__":
    main()

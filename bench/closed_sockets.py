"""Memory of closed WebSockets, run by hand:

    .venv/bin/python bench/closed_sockets.py [--sockets 2000] [--rounds 3] [--settle 3]

A server process (`python -m app serve`, production settings, one worker, on an in-memory nx-27017)
gets `rounds` rounds of `sockets` `serviceStatusChanged` subscribers (graphql-transport-ws, one admin
key), each round opened until every subscriber has its first status, then closed by the clients until
the server counts no open subscription. The server's RSS (VmRSS, /proc) is read before the first
round, with the sockets open and after they closed, each figure the median of five readings half a
second apart after `settle` seconds idle. Memory of closed sockets that is returned to the process is
reused by the next round: what matters is that RSS after a round's close does not keep growing from
round to round (retention), not that it falls back to the figure before the first round (the
allocator keeps freed arenas for reuse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.subscriptions import SUB, raise_open_file_limit, rss_kib  # noqa: E402

BATCH = 100


async def open_sockets(url: str, key: str, count: int) -> list:
    from websockets.asyncio.client import connect

    opened: list = []

    async def open_one() -> None:
        ws = await connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60)  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUB}}))
        assert json.loads(await ws.recv())["type"] == "next"  # the current status
        opened.append(ws)

    for start in range(0, count, BATCH):
        await asyncio.gather(*(open_one() for _ in range(start, min(start + BATCH, count))))
    return opened


async def open_subscriptions(http: httpx.AsyncClient) -> int:
    text = (await http.get("/metrics")).text
    return sum(
        int(float(n)) for n in re.findall(r"^error_tracker_active_subscriptions\{[^}]*\} (\S+)$", text, re.M)
    )


async def settled_rss(pid: int, settle: float) -> float:
    await asyncio.sleep(settle)
    readings = []
    for _ in range(5):
        readings.append(rss_kib(pid))
        await asyncio.sleep(0.5)
    return statistics.median(readings) / 1024


async def measure(port: int, pid: int, key: str, sockets: int, rounds: int, settle: float) -> dict:
    url = f"ws://127.0.0.1:{port}/graphql"
    result: dict = {"sockets": sockets, "rounds": []}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        # One socket first, so that everything a first subscriber loads (imports, plans) is in the baseline.
        for ws in await open_sockets(url, key, 1):
            await ws.close()
        result["before_mib"] = round(await settled_rss(pid, settle), 1)
        for _ in range(rounds):
            started = time.monotonic()
            opened = await open_sockets(url, key, sockets)
            open_s = time.monotonic() - started
            open_mib = await settled_rss(pid, settle)
            await asyncio.gather(*(ws.close() for ws in opened))
            del opened
            deadline = time.monotonic() + 60
            while await open_subscriptions(http) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            closed_mib = await settled_rss(pid, settle)
            result["rounds"].append(
                {
                    "open_s": round(open_s, 1),
                    "open_mib": round(open_mib, 1),
                    "closed_mib": round(closed_mib, 1),
                }
            )
            print(json.dumps(result["rounds"][-1]), flush=True)
    return result


def table(result: dict) -> str:
    lines = [
        f"| round | RSS with {result['sockets']:,} open, MiB | RSS after they closed, MiB | vs. before the first round |",
        "|---|---|---|---|",
        f"| before | | {result['before_mib']} | |",
    ]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"| {i} | {r['open_mib']} | {r['closed_mib']} | {r['closed_mib'] - result['before_mib']:+.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    args = parser.parse_args()
    raise_open_file_limit()
    database = EmbeddedMongo("memory")
    uri = database.start()
    port = _free_port()
    extra = dict(item.split("=", 1) for item in args.env)
    env = servers.server_env(uri, "closedsockets", port, ENVIRONMENT="production", FEED_MODE="poll", **extra)
    server = servers.start(env)
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        key = servers.cli_json(env, "keys", "create", "--admin")["apiKey"]
        result = asyncio.run(measure(port, server.pid, key, args.sockets, args.rounds, args.settle))
        print(table(result))
        print(json.dumps(result))
    finally:
        servers.stop(server)
        database.stop()


if __name__ == "__main__":
    main()

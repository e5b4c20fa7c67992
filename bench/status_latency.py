"""Delivery latency of a status change to subscribers on two server instances, run by hand.

    .venv/bin/python bench/status_latency.py [--subscribers 100] [--changes 10]

Starts a file-backed nx-27017 and two `python -m app serve` processes on it, opens half of the
serviceStatusChanged subscribers on each, changes a component's status through the first instance and
measures, per change, how long until every subscriber (on both instances) has received it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402

SUB = "subscription { serviceStatusChanged { services { name status } } }"
SET = 'mutation($s: ServiceState!) { setServiceStatus(service: "api", status: $s) { status } }'


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def subscriber(
    url: str, key: str, ready: asyncio.Event, inbox: asyncio.Queue, count: list[int]
) -> None:
    async with connect(url, subprotocols=["graphql-transport-ws"], max_queue=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUB}}))
        await ws.recv()  # the current status
        count[0] += 1
        if count[0] == count[1]:
            ready.set()
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "next":
                services = message["payload"]["data"]["serviceStatusChanged"]["services"]
                api = next(s["status"] for s in services if s["name"] == "api")
                inbox.put_nowait((time.perf_counter(), url, api))


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="status-latency-"))
    database = EmbeddedMongo(tmp / "db.sqlite")
    uri = database.start()
    ports = [_free_port(), _free_port()]
    env = servers.server_env(uri, "latency", 0)
    processes = [servers.start({**env, "PORT": str(p)}) for p in ports]
    try:
        for port in ports:
            servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        key = servers.cli_json(env, "keys", "create", "--admin")["apiKey"]
        rss_before = [rss_kib(p.pid) for p in processes]
        ready, inbox, count = asyncio.Event(), asyncio.Queue(), [0, args.subscribers]
        urls = [f"ws://127.0.0.1:{p}/graphql" for p in ports]
        tasks = [
            asyncio.create_task(subscriber(urls[i % 2], key, ready, inbox, count))
            for i in range(args.subscribers)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(1)  # let the servers settle before reading their memory
        rss_per_subscriber = [
            (rss_kib(p.pid) - before) / (args.subscribers / 2)
            for p, before in zip(processes, rss_before, strict=True)
        ]
        results = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as http:
            for change in range(args.changes):
                state = "DEGRADED_PERFORMANCE" if change % 2 == 0 else "OPERATIONAL"
                started = time.perf_counter()
                await http.post(
                    "/graphql", json={"query": SET, "variables": {"s": state}}, headers={"X-API-KEY": key}
                )
                arrivals = {urls[0]: [], urls[1]: []}
                while sum(len(v) for v in arrivals.values()) < args.subscribers:
                    at, url, api = await asyncio.wait_for(inbox.get(), 30)
                    if api == state:
                        arrivals[url].append(at - started)
                results.append(
                    {
                        "same_instance_ms": max(arrivals[urls[0]]) * 1000,
                        "other_instance_ms": max(arrivals[urls[1]]) * 1000,
                    }
                )
                await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
        same = sorted(r["same_instance_ms"] for r in results)
        other = sorted(r["other_instance_ms"] for r in results)
        return {
            "subscribers": args.subscribers,
            "changes": args.changes,
            "last_subscriber_same_instance_ms": {
                "median": round(statistics.median(same), 1),
                "max": round(same[-1], 1),
            },
            "rss_kib_per_idle_subscriber": [round(x, 1) for x in rss_per_subscriber],
            "last_subscriber_other_instance_ms": {
                "median": round(statistics.median(other), 1),
                "max": round(other[-1], 1),
            },
        }
    finally:
        servers.stop(*processes)
        database.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()

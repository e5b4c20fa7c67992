"""Subscriptions at scale, run by hand or by `make bench`:

    .venv/bin/python bench/subscriptions.py [--subscribers 1000 5000] [--changes 10] [--instances 1]
        [--transport ws|sse|multipart]

For each subscriber count it starts a fresh server (`python -m app serve`, one worker) on a file-backed
nx-27017, opens that many `serviceStatusChanged` subscribers from separate client processes, changes a
component's status through the HTTP API and measures, per change, the delay until the last subscriber
received it. It also reports the server's CPU time per delivered message (utime+stime from /proc) and
its RSS growth per idle subscriber. With `--instances 2` the subscribers are split over two server
processes on one database and the change is made through the first (the cross-instance path).

`--transport` picks how the subscribers connect: WebSocket (graphql-transport-ws, the default), graphql-sse
(distinct connections: one HTTP stream each) or Apollo's multipart subscriptions.

Clocks: clients stamp arrivals with CLOCK_MONOTONIC, which all processes of the machine share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

# A status-like payload: the roll-up and every component.
SUB = "subscription { serviceStatusChanged { status services { name status description updatedAt } timestamp } }"
SET = 'mutation($s: ServiceState!) { setServiceStatus(service: "api", status: $s) { status } }'
CONNECT_BATCH = 100  # connections opened concurrently per client process


def table(results: list[dict]) -> str:
    lines = [
        "| subscribers | last subscriber p50 ms | p99 ms | max ms | full GC runs | server CPU µs/message "
        "| RSS KiB/idle subscriber |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r["last_subscriber_ms"]
        lines.append(
            f"| {r['subscribers']:,} | {d['p50']} | {d['p99']} | {d['max']} | {r['full_gc_runs']} "
            f"| {r['server_cpu_us_per_message']} | {r['rss_kib_per_idle_subscriber']} |"
        )
    return "\n".join(lines)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the client process ---------------------------------------------------------------------------


ACCEPT = {"sse": "text/event-stream", "multipart": 'multipart/mixed;subscriptionSpec="1.0", application/json'}


def is_result_line(transport: str, line: str) -> bool:
    # SSE: one `event: next` line per result. Multipart: the part's JSON body on a line of its own
    # (heartbeat parts are `{}`).
    return line.startswith("event: next") if transport == "sse" else line.startswith('{"payload"')


async def http_client(transport: str, urls: list[str], key: str, count: int) -> None:
    """As `client`, with subscribers on HTTP streams (graphql-sse or multipart), one connection each."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    http = httpx.AsyncClient(timeout=None, limits=limits)
    arrivals: dict[int, int] = {}
    last_ns: dict[int, int] = {}
    opened: list = []
    headers = {"X-API-KEY": key, "Accept": ACCEPT[transport]}

    async def open_one(url: str) -> None:
        response = await http.send(
            http.build_request("POST", url, json={"query": SUB}, headers=headers), stream=True
        )
        assert response.status_code == 200, response.status_code
        lines = response.aiter_lines()
        async for line in lines:
            if is_result_line(transport, line):
                break  # the current status
        opened.append(lines)

    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, count))
        await asyncio.gather(*(open_one(urls[i % len(urls)]) for i in batch))

    async def listen(lines) -> None:
        seen = 0
        async for line in lines:
            if not is_result_line(transport, line):
                continue
            now = time.monotonic_ns()
            seen += 1
            arrivals[seen] = arrivals.get(seen, 0) + 1
            last_ns[seen] = max(last_ns.get(seen, 0), now)
            if arrivals[seen] == count:
                print(f"got {seen} {last_ns[seen]}", flush=True)

    listeners = [asyncio.create_task(listen(lines)) for lines in opened]
    print("ready", flush=True)
    await asyncio.gather(*listeners)


async def client(urls: list[str], key: str, count: int) -> None:
    """Opens `count` subscribers over `urls` (round robin), prints `ready`, then for every change
    `got <n> <ns>` once all of them received their n-th update (ns: the last arrival)."""
    from websockets.asyncio.client import connect

    arrivals: dict[int, int] = {}
    last_ns: dict[int, int] = {}
    opened: list = []

    async def open_one(url: str) -> None:
        ws = await connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60)  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUB}}))
        await ws.recv()  # the current status
        opened.append(ws)

    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, count))
        await asyncio.gather(*(open_one(urls[i % len(urls)]) for i in batch))

    async def listen(ws) -> None:
        seen = 0
        async for _message in ws:
            now = time.monotonic_ns()
            seen += 1
            arrivals[seen] = arrivals.get(seen, 0) + 1
            last_ns[seen] = max(last_ns.get(seen, 0), now)
            if arrivals[seen] == count:
                print(f"got {seen} {last_ns[seen]}", flush=True)

    listeners = [asyncio.create_task(listen(ws)) for ws in opened]
    print("ready", flush=True)
    await asyncio.gather(*listeners)


# --- the measuring process ------------------------------------------------------------------------


async def full_collections(port: int) -> int:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    match = re.search(r'^python_gc_collections_total\{generation="2"\} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else -1


async def measure(
    uri: str,
    subscribers: int,
    changes: int,
    instances: int,
    clients: int,
    profile: str | None = None,
    transport: str = "ws",
) -> dict:
    ports = [_free_port() for _ in range(instances)]
    # Polling feed: nx-27017 answers a change stream's getMore at once instead of awaiting data, so an
    # idle change stream keeps the server busy (about a tenth of its CPU here); MongoDB blocks instead.
    env = servers.server_env(
        uri,
        f"subs{subscribers}",
        0,
        FEED_MODE="poll",
        ENVIRONMENT="production",
        MAX_HTTP_SUBSCRIPTIONS_PER_KEY=str(subscribers),  # one admin key holds every HTTP stream
    )
    processes = [servers.start({**env, "PORT": str(p)}) for p in ports]
    client_procs: list[asyncio.subprocess.Process] = []
    try:
        for port in ports:
            servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        key = servers.cli_json(env, "keys", "create", "--admin")["apiKey"]
        scheme = "ws" if transport == "ws" else "http"
        urls = [f"{scheme}://127.0.0.1:{p}/graphql" for p in ports]
        await asyncio.sleep(1)
        rss_before = [rss_kib(p.pid) for p in processes]
        shares = [subscribers // clients + (1 if i < subscribers % clients else 0) for i in range(clients)]
        for share in shares:
            client_procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "client",
                    "--transport",
                    transport,
                    "--urls",
                    *urls,
                    "--key",
                    key,
                    "--count",
                    str(share),
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        for proc in client_procs:
            line = await asyncio.wait_for(proc.stdout.readline(), 300)  # type: ignore[union-attr]
            assert line.strip() == b"ready", line
        await asyncio.sleep(2)  # settled: no handshakes in flight while memory and CPU are read
        rss_per_subscriber = (
            sum(rss_kib(p.pid) - b for p, b in zip(processes, rss_before, strict=True)) / subscribers
        )
        spy = None
        if profile:  # py-spy (pip install py-spy) samples the first server while the changes are sent
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(processes[0].pid),
                "--output",
                f"{profile}-{subscribers}.txt",
                "--format",
                "raw",
                "--rate",
                "500",
            )
            await asyncio.sleep(1)
        gc_before = await full_collections(ports[0])
        cpu_before = sum(cpu_seconds(p.pid) for p in processes)
        delays_ms = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=60) as http:
            for change in range(1, changes + 1):
                state = "DEGRADED_PERFORMANCE" if change % 2 else "OPERATIONAL"
                started = time.monotonic_ns()
                response = await http.post(
                    "/graphql", json={"query": SET, "variables": {"s": state}}, headers={"X-API-KEY": key}
                )
                assert "errors" not in response.json(), response.text
                last = 0
                for proc in client_procs:
                    got, number, ns = (await asyncio.wait_for(proc.stdout.readline(), 60)).split()  # type: ignore[union-attr]
                    assert got == b"got" and int(number) == change, (got, number, change)
                    last = max(last, int(ns))
                delays_ms.append((last - started) / 1e6)
                await asyncio.sleep(0.3)
        cpu_used = sum(cpu_seconds(p.pid) for p in processes) - cpu_before
        if spy is not None:
            spy.send_signal(2)
            await spy.wait()
        gc_after = await full_collections(ports[0])
        ordered = sorted(delays_ms)
        return {
            "transport": transport,
            "subscribers": subscribers,
            "instances": instances,
            "changes": changes,
            "last_subscriber_ms": {
                "p50": round(statistics.median(ordered), 1),
                "p99": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 1),
                "max": round(ordered[-1], 1),
            },
            "delays_ms_in_order": [round(d) for d in delays_ms],
            # Python's full collections (generation 2) in the first server during the changes: each
            # walks every object of every open connection, the pause behind the slowest deliveries.
            "full_gc_runs": gc_after - gc_before,
            "server_cpu_us_per_message": round(cpu_used / (changes * subscribers) * 1e6, 1),
            "rss_kib_per_idle_subscriber": round(rss_per_subscriber, 1),
        }
    finally:
        for proc in client_procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        servers.stop(*processes)


async def run(
    counts: list[int],
    changes: int,
    instances: int,
    clients: int,
    profile: str | None = None,
    transport: str = "ws",
) -> list[dict]:
    raise_open_file_limit()  # inherited by the servers and the clients
    tmp = Path(tempfile.mkdtemp(prefix="bench-subscriptions-"))
    database = EmbeddedMongo(tmp / "db.sqlite")
    uri = database.start()
    try:
        results = []
        for count in counts:
            result = await measure(uri, count, changes, instances, clients, profile, transport)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
        return results
    finally:
        database.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("--transport", default="ws")
        parser.add_argument("--urls", nargs="+", required=True)
        parser.add_argument("--key", required=True)
        parser.add_argument("--count", type=int, required=True)
        args = parser.parse_args()
        if args.transport == "ws":
            asyncio.run(client(args.urls, args.key, args.count))
        else:
            asyncio.run(http_client(args.transport, args.urls, args.key, args.count))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--instances", type=int, default=1, choices=[1, 2])
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--profile", help="write py-spy's raw samples of the server to PROFILE-<n>.txt")
    parser.add_argument("--transport", choices=["ws", "sse", "multipart"], default="ws")
    args = parser.parse_args()
    results = asyncio.run(
        run(args.subscribers, args.changes, args.instances, args.clients, args.profile, args.transport)
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

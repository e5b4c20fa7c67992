"""A reconnect storm, run by hand or by `make bench`:

    .venv/bin/python bench/storm.py [--sockets 5000] [--seconds 5] [--clients 4] [--auth-cache 10]

Starts a server (`python -m app serve`, one worker, production settings) on a file-backed nx-27017 and
opens `sockets` `serviceStatusChanged` subscribers on ONE key, spread evenly over `seconds` (5,000 in
five seconds: what follows a deploy or a network blip), from `clients` separate processes. Halfway
through, an admin's `setServiceStatus` is sent. Reported: sockets that got their first status, those
refused (by close code), the delay from the storm's start to the last subscriber's first status, the
admin's answer and latency, and the server's CPU during the storm. `--auth-cache 0` removes the
credential cache (every connection verifies its key: the worst case for the database).

Clocks: every process stamps with CLOCK_MONOTONIC, which all processes of the machine share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402
from bench.subscriptions import raise_open_file_limit  # noqa: E402

SUB = "subscription { serviceStatusChanged { status } }"
SET = 'mutation { setServiceStatus(service: "api", status: OPERATIONAL) { status } }'


async def client(
    url: str, key: str, count: int, start_ns: int, spread: float, offset: int, every: int
) -> None:
    """Opens `count` subscribers, the i-th at start + (offset + i * every) * spread / total; prints one
    JSON line: first-status delays (s, from the storm's start) and refusals by close code."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    delays: list[float] = []
    refused: Counter[str] = Counter()
    opened: list = []
    total = count * every

    async def one(i: int) -> None:
        at = start_ns + int((offset + i * every) * spread / total * 1e9)
        await asyncio.sleep(max(0, (at - time.monotonic_ns()) / 1e9))
        try:
            ws = await connect(url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=120)  # type: ignore[list-item]
            opened.append(ws)
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            ack = json.loads(await ws.recv())
            if ack["type"] != "connection_ack":
                refused[ack["type"]] += 1
                return
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUB}}))
            first = json.loads(await ws.recv())
            if first["type"] == "next":
                delays.append((time.monotonic_ns() - start_ns) / 1e9)
            else:
                refused[first["type"]] += 1
        except ConnectionClosed as closed:
            refused[str(closed.rcvd.code if closed.rcvd else "closed")] += 1
        except Exception as exc:  # counted and reported, not raised
            refused[type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    print(json.dumps({"delays": delays, "refused": refused}), flush=True)
    await asyncio.sleep(3600)  # hold the sockets until the measuring process ends this one


async def storm(sockets: int, seconds: float, clients: int, auth_cache: float) -> dict:
    raise_open_file_limit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    database = EmbeddedMongo(tmp / "db.sqlite")
    uri = database.start()
    port = _free_port()
    env = servers.server_env(
        uri,
        "storm",
        port,
        ENVIRONMENT="production",
        FEED_MODE="poll",
        AUTH_CACHE_TTL_SECONDS=str(auth_cache),
        MAX_CONNECTIONS=str(sockets + 1000),
    )
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    print(f"server log: {log.name}", file=sys.stderr, flush=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        servers.cli_json(env, "orgs", "create", "storm")
        key = servers.cli_json(env, "keys", "create", "--org", "storm")["apiKey"]
        admin = servers.cli_json(env, "keys", "create", "--admin")["apiKey"]
        start_ns = time.monotonic_ns() + 3_000_000_000  # the clients' interpreters start meanwhile
        share = sockets // clients
        for c in range(clients):
            args = [str(share), str(start_ns), str(seconds), str(c), str(clients)]
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "client", f"ws://127.0.0.1:{port}/graphql", key, *args],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
        await asyncio.sleep(max(0, (start_ns - time.monotonic_ns()) / 1e9))
        cpu_before = cpu_seconds(server.pid)
        await asyncio.sleep(seconds / 2)
        async with httpx.AsyncClient(timeout=60) as http:
            sent = time.perf_counter()
            response = await http.post(
                f"http://127.0.0.1:{port}/graphql", json={"query": SET}, headers={"X-API-KEY": admin}
            )
            admin_ms = (time.perf_counter() - sent) * 1000
        lines = [await asyncio.to_thread(p.stdout.readline) for p in procs]  # type: ignore[union-attr]
        cpu = cpu_seconds(server.pid) - cpu_before
        reports = [json.loads(line) for line in lines]
        delays = [d for r in reports for d in r["delays"]]
        refused: Counter[str] = Counter()
        for r in reports:
            refused.update(r["refused"])
        answer = response.json()
        return {
            "sockets": share * clients,
            "seconds": seconds,
            "auth_cache_s": auth_cache,
            "first_status": len(delays),
            "refused": dict(refused),
            "last_first_status_s": round(max(delays), 2) if delays else None,
            "admin_status": response.status_code,
            "admin_ok": "errors" not in answer,
            "admin_ms": round(admin_ms, 1),
            "server_cpu_s": round(cpu, 2),
        }
    finally:
        for p in procs:
            p.kill()
        servers.stop(server)
        database.stop()


def table(rows: list[dict]) -> str:
    lines = [
        "| sockets in | auth cache | first status | refused | last first status | admin | server CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        refused = ", ".join(f"{k}: {v}" for k, v in r["refused"].items()) or "none"
        admin = f"{r['admin_status']} {'ok' if r['admin_ok'] else 'error'} in {r['admin_ms']:.0f} ms"
        lines.append(
            f"| {r['sockets']} in {r['seconds']:g} s | {r['auth_cache_s']:g} s | {r['first_status']} | {refused} "
            f"| {r['last_first_status_s']} s | {admin} | {r['server_cpu_s']} s |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        url, key, count, start_ns, spread, offset, every = sys.argv[2:9]
        asyncio.run(client(url, key, int(count), int(start_ns), float(spread), int(offset), int(every)))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--auth-cache", type=float, nargs="+", default=[10, 0])
    args = parser.parse_args()
    rows = [asyncio.run(storm(args.sockets, args.seconds, args.clients, cache)) for cache in args.auth_cache]
    print(table(rows))
    print(json.dumps(rows, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()

"""The benchmark: server CPU per request for each workload, as ratios to a fair peer and to the floor
measured in the same run, so results compare on a noisy machine. Run by hand: `make bench` (needs wrk).

It starts a file-backed nx-27017, seeds 10,000 events in the measured organization and 20,000 in another,
starts the server (`python -m app serve`, request logging, auth and rate limiting on as in production),
the fair peer (bench/peer_app.py: the same API written the way Strawberry's and PyMongo's documentation
lead to, plus a raw Starlette JSON route, the floor) and the old bare-Strawberry reference, drives each
workload with wrk from a separate process at a few concurrencies against the server and against the peer,
in interleaved rounds, and reads each process's and the database's CPU time (utime+stime from /proc)
before and after each run. Every row shows its CPU per request as a ratio to the peer's for the same
document and connections, and to the raw route's. `--only` picks workloads by name."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.events.fingerprint import fingerprint  # noqa: E402
from app.events.model import ErrorEventRecord, Severity  # noqa: E402
from app.events.store import _to_doc, new_event_id  # noqa: E402
from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import hostile, memory, servers, storm, subscriptions, targets  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

EVENT_FIELDS = "id orgId message severity timestamp receivedAt code source context fingerprint"
WORKLOADS = {
    "orgErrors(first: 20), all fields": (
        f'{{ orgErrors(orgId: "bench", first: 20) {{ nodes {{ {EVENT_FIELDS} }} pageInfo {{ endCursor }} }} }}',
        None,
    ),
    "orgErrors(first: 20) with a filter": (
        f'{{ orgErrors(orgId: "bench", first: 20, filter: {{minSeverity: HIGH, source: "svc-1"}}) '
        f"{{ nodes {{ {EVENT_FIELDS} }} }} }}",
        None,
    ),
    "errorEvent": ('{ errorEvent(orgId: "bench", id: "EVENT_ID") { ' + EVENT_FIELDS + " } }", None),
    "logError (fresh idempotency keys)": (
        'mutation($k: String) { logError(orgId: "bench", idempotencyKey: $k, '
        'error: {message: "bench", severity: LOW}) { errorId } }',
        "fresh",
    ),
    "logError (replayed idempotency key)": (
        'mutation { logError(orgId: "bench", idempotencyKey: "same", '
        'error: {message: "bench", severity: LOW}) { errorId replayed } }',
        None,
    ),
    "serviceStatus": ("{ serviceStatus { status services { name status updatedAt } } }", None),
}
REFERENCE = "{ items { id name severity count score active note } }"
RAW = "raw Starlette JSON route (the floor)"
PEER = "peer: "  # rows of the fair peer (bench/peer_app.py) carry this prefix


def lua_script(query: str, key: str | None, mode: str | None) -> str:
    body = json.dumps({"query": query})
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["X-API-KEY"] = "{key}"\n'
    if mode == "fresh":  # a new idempotency key per request
        return (
            # Seeded by the clock: LuaJIT's generator is not, and every run (round) would replay the
            # first one's keys. Rounds are seconds apart.
            f'wrk.method = "POST"\n{headers}counter = 0\nmath.randomseed(os.time())\n'
            "prefix = tostring(math.random(1, 1e9))\n"
            "request = function()\n  counter = counter + 1\n"
            # A long-bracket string: Lua applies no escapes inside, so the JSON stays intact.
            f'  local body = string.format([[{{"query": {json.dumps(query)}, "variables": '
            '{"k": "%s-%d"}}]], prefix, counter)\n'
            "  return wrk.format(nil, nil, nil, body)\nend\n"
        )
    return f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}'


def run_wrk(url: str, script: str, connections: int, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p: str) -> float:
        match = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def seed(uri: str) -> str:
    now = datetime.now(UTC)
    with MongoClient(uri) as client:
        db = client["bench"]
        db["organizations"].insert_many(
            [{"_id": o, "name": o, "created_at": now} for o in ("bench", "other")]
        )
        seq = 0
        for org, count in (("bench", 10_000), ("other", 20_000)):
            docs = []
            for i in range(count):
                seq += 1
                stamp = now - timedelta(seconds=i * 7)
                message, source = f"Request {i} failed on node {i % 13}", f"svc-{i % 5}"
                event = ErrorEventRecord(
                    id=new_event_id(stamp),
                    org_id=org,
                    message=message,
                    severity=list(Severity)[i % 4],
                    timestamp=stamp.replace(microsecond=stamp.microsecond // 1000 * 1000),
                    received_at=now,
                    code=None,
                    source=source,
                    context={"i": i, "node": i % 13},
                    fingerprint=fingerprint(message, None, source),
                    seq=seq,
                )
                docs.append(_to_doc(event, None, None))
            db["error_events"].insert_many(docs)
        db["counters"].insert_one({"_id": "error_events", "seq": seq})
        return db["error_events"].find_one({"org_id": "bench"})["event_id"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--only-workers", action="store_true", help="run only the 1 vs 2 workers comparison")
    parser.add_argument(
        "--only", nargs="+", default=[], help="run only workloads whose name contains one of these"
    )
    parser.add_argument(
        "--profile", help="py-spy (pip install py-spy): raw samples of the server to this file"
    )
    parser.add_argument(
        "--no-subscriptions",
        dest="subscriptions",
        action="store_false",
        help="skip the subscriptions at scale (bench/subscriptions.py: 1,000 and 5,000 subscribers)",
    )
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the memory run (bench/memory.py: RSS after 20,000 and 100,000 mixed requests)",
    )
    parser.add_argument(
        "--no-storm",
        dest="storm",
        action="store_false",
        help="skip the reconnect storm (bench/storm.py: 5,000 sockets on one key in 5 s, an admin meanwhile)",
    )
    parser.add_argument(
        "--no-hostile",
        dest="hostile",
        action="store_false",
        help="skip the hostile documents (bench/hostile.py: server CPU of each refused probe)",
    )
    parser.add_argument(
        "--no-workers-compare",
        dest="workers_compare",
        action="store_false",
        help="skip the 1 vs 2 workers throughput comparison",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    database = EmbeddedMongo(tmp / "bench.db")
    uri = database.start()
    event_id = seed(uri)
    port, ref_port, peer_port = _free_port(), _free_port(), _free_port()
    env = servers.server_env(
        uri,
        "bench",
        port,
        LOG_LEVEL="INFO",
        ENVIRONMENT="production",  # as operators run it: JSON request log lines, no CORS layer
        FEED_MODE="poll",
        # nx-27017 sweeps TTL indexes on every query (about 24 ms per query at 30,000 events, measured
        # here): without one, the database figures show the queries themselves. MongoDB sweeps every 60 s.
        RETENTION_DAYS="0",
    )
    server = servers.start(env)
    reference = servers.start(env, [sys.executable, str(ROOT / "bench" / "reference_app.py"), str(ref_port)])
    peer = servers.start(env, [sys.executable, str(ROOT / "bench" / "peer_app.py"), str(peer_port)])
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        servers.wait_ready(f"http://127.0.0.1:{ref_port}/")
        servers.wait_ready(f"http://127.0.0.1:{peer_port}/graphql")
        key = servers.cli_json(env, "keys", "create", "--org", "bench")["apiKey"]
        if args.only_workers:
            print(compare_workers(env, key, args)[0])
            return
        chosen = [
            (name, q.replace("EVENT_ID", event_id), mode)
            for name, (q, mode) in WORKLOADS.items()
            if not args.only or any(part in name for part in args.only)
        ]
        # (row name, workload, url, script, pid): the project and its peer answer the same document.
        plan = [
            (RAW, RAW, f"http://127.0.0.1:{peer_port}/raw", lua_script(REFERENCE, None, None), peer.pid),
            (
                "reference: bare Strawberry, 20 objects",
                "reference",
                f"http://127.0.0.1:{ref_port}/graphql",
                lua_script(REFERENCE, None, None),
                reference.pid,
            ),
        ]
        for name, query, mode in chosen:
            plan.append(
                (name, name, f"http://127.0.0.1:{port}/graphql", lua_script(query, key, mode), server.pid)
            )
            plan.append(
                (
                    f"{PEER}{name}",
                    name,
                    f"http://127.0.0.1:{peer_port}/graphql",
                    lua_script(query, None, mode),
                    peer.pid,
                )
            )
        spy = None
        if args.profile:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(server.pid), "--output", args.profile, "--format", "raw"]
            )
        runs: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):  # interleaved: every target once per round, medians over rounds
            for name, _workload, url, script, pid in plan:
                for connections in args.connections:
                    before, db_before = cpu_seconds(pid), cpu_seconds(database.process.pid)
                    result = run_wrk(url, script, connections, args.seconds)
                    result["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / max(result["requests"], 1)
                    result["db_cpu_ms"] = (
                        (cpu_seconds(database.process.pid) - db_before) * 1000 / max(result["requests"], 1)
                    )
                    runs.setdefault((name, connections), []).append(result)
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        medians = {
            key_: {k: statistics.median(r[k] for r in results) for k in results[0]}
            for key_, results in runs.items()
        }
        rows = []
        for (name, connections), med in medians.items():
            workload = name.removeprefix(PEER)
            peer_row = medians.get((f"{PEER}{workload}", connections))
            rows.append(
                {
                    "workload": name,
                    "connections": connections,
                    **{k: round(v, 3) for k, v in med.items()},
                    "cpu_vs_peer": round(med["cpu_ms"] / peer_row["cpu_ms"], 2) if peer_row else None,
                    "cpu_vs_raw": round(med["cpu_ms"] / medians[(RAW, connections)]["cpu_ms"], 2),
                }
            )
        results: dict = {"http": rows}
        print(
            "| workload | conns | req/s | p50 ms | p99 ms | server CPU ms/req | x peer | x raw route "
            "| DB CPU ms/req | non-2xx |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            vs_peer = f"{r['cpu_vs_peer']:.2f}" if r["cpu_vs_peer"] is not None else "-"
            print(
                f"| {r['workload']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['cpu_ms']:.2f} | {vs_peer} | {r['cpu_vs_raw']:.2f} | {r['db_cpu_ms']:.2f} | {r['errors']:.0f} |"
            )
        print()
        print("Targets (this run's figures):")
        print(targets.http_table(rows))
        if args.hostile:
            print()
            results["hostile"] = hostile.run(f"http://127.0.0.1:{port}", key, "bench", server.pid, 20)
            print(hostile.table(results["hostile"]))
        if args.workers_compare:
            print()
            table, results["workers"] = compare_workers(env, key, args)
            print(table)
    finally:
        servers.stop(server, reference, peer)
        database.stop()
    if args.subscriptions:
        results["subscriptions"] = asyncio.run(subscriptions.run([1000, 5000], 20, 1, 2))
        print()
        print(subscriptions.table(results["subscriptions"]))
        print()
        print(targets.subscriptions_table(results["subscriptions"]))
    if args.memory:
        results["memory"] = memory.run(100_000, 20_000, 16)
        print()
        print(memory.table(results["memory"]))
    if args.storm:
        results["storm"] = [asyncio.run(storm.storm(5000, 5, 4, cache)) for cache in (10, 0)]
        print()
        print(storm.table(results["storm"]))
    Path(args.out).write_text(json.dumps(results, indent=2))


def compare_workers(env: dict[str, str], key: str, args: argparse.Namespace) -> tuple[str, list[dict]]:
    """Throughput of one worker against two (`serve --workers 2`) on the same database, 32 connections.
    wrk and nx-27017 share the same 2 cores, so this shows the trend, not a ceiling."""
    lines = ["| workload | 1 worker req/s | 2 workers req/s |", "|---|---|---|"]
    rows: list[dict] = []
    port = _free_port()
    single = servers.start({**env, "PORT": str(port)})
    double_port = _free_port()
    double = servers.start({**env, "PORT": str(double_port), "WORKERS": "2"})
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        servers.wait_ready(f"http://127.0.0.1:{double_port}/livez")
        # One worker answering is not both: wrk opens its connections at once and keeps them, so a
        # worker still starting would get none. Give both time to listen.
        time.sleep(3)
        for name in (
            "orgErrors(first: 20), all fields",
            "logError (fresh idempotency keys)",
            "serviceStatus",
        ):
            query, mode = WORKLOADS[name]
            script = lua_script(query, key, mode)
            rps = [
                statistics.median(
                    run_wrk(f"http://127.0.0.1:{p}/graphql", script, 32, args.seconds)["rps"]
                    for _ in range(args.rounds)
                )
                for p in (port, double_port)
            ]
            lines.append(f"| {name} | {rps[0]:.0f} | {rps[1]:.0f} |")
            rows.append({"workload": name, "rps_1_worker": rps[0], "rps_2_workers": rps[1]})
    finally:
        servers.stop(single, double)
    return "\n".join(lines), rows


if __name__ == "__main__":
    main()

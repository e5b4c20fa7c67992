"""Soak test, run by hand (not in CI): mixed traffic for a few minutes through three failures, then
proof that every acknowledged logError is stored exactly once and every group's count is exact.

    .venv/bin/python bench/soak.py [--seconds 180] [--workers 16] [--outage-at 30] [--outage-for 20]
        [--kill-database-at 80] [--kill-server-at 120]

It starts a server process (`python -m app serve`) on the embedded default: a file-backed nx-27017 in
its DATA_DIR, started and supervised by the server, with the demo organization and key. Then, while
workers send logError (messages from 12 problems, so groups count many events), orgErrors and
serviceStatus:

1. a database outage: the embedded database is frozen (SIGSTOP) for `outage-for` seconds, then
   continued: calls time out meanwhile (MONGODB_TIMEOUT_MS=1000);
2. `kill -9` of the embedded database: the server must start it again by itself;
3. `kill -9` of the server: its embedded database must die with it, and the same command started again
   (what an operator's supervisor does) must come up without a hand (no stale pid file, no orphan).

After each, the time until a query is answered again is recorded. Clients behave as docs/operations.md
asks: a logError that fails (an error, a refused connection, a timeout) is retried with the same
idempotency key until it is acknowledged. At the end the database is read directly: every acknowledged
logError stored once under its id, nothing stored without acknowledgement, no event left uncounted
(the count repair runs at start-up and every COUNT_REPAIR_SECONDS), and each group's count equal to the
number of its events. It prints a JSON summary and exits 1 if any of that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import _free_port  # noqa: E402
from bench import servers  # noqa: E402

# Distinct messages, each a group that counts many events (digits are normalised away by the grouping).
PROBLEMS = [
    f"soak problem {a} {b}" for a in ("alpha", "beta", "gamma", "delta") for b in ("one", "two", "three")
]

LOG = """mutation($o: ID!, $k: String, $m: String!) {
  logError(orgId: $o, idempotencyKey: $k, error: {message: $m, severity: HIGH}) { errorId replayed } }"""
LIST = "query($o: ID!) { orgErrors(orgId: $o, first: 20) { totalCount nodes { id message } } }"
STATUS = "{ serviceStatus { status } }"


async def worker(
    client: httpx.AsyncClient,
    org: str,
    key: str,
    deadline: float,
    acked: dict[str, str],
    outcomes: Counter,
    wid: int,
) -> None:
    n = 0
    headers = {"X-API-KEY": key}
    while time.monotonic() < deadline:
        if random.random() < 0.5:
            n += 1
            idem = f"w{wid}-{n}"
            while time.monotonic() < deadline + 60:  # keep retrying a write past the end, as a client would
                try:
                    r = await client.post(
                        "/graphql",
                        headers=headers,
                        json={
                            "query": LOG,
                            "variables": {"o": org, "k": idem, "m": PROBLEMS[n % len(PROBLEMS)]},
                        },
                    )
                    body = r.json()
                except (httpx.HTTPError, ValueError) as exc:
                    outcomes[f"transport:{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.2)
                    continue
                if "errors" in body:
                    outcomes[f"logError:{body['errors'][0]['extensions']['code']}"] += 1
                    await asyncio.sleep(0.2)
                    continue
                outcomes[
                    "logError:OK" if not body["data"]["logError"]["replayed"] else "logError:REPLAYED"
                ] += 1
                acked[idem] = body["data"]["logError"]["errorId"]
                break
        else:
            query = LIST if random.random() < 0.7 else STATUS
            try:
                r = await client.post(
                    "/graphql", headers=headers, json={"query": query, "variables": {"o": org}}
                )
                code = r.json()["errors"][0]["extensions"]["code"] if "errors" in r.json() else "OK"
            except (httpx.HTTPError, ValueError) as exc:
                code = f"transport:{type(exc).__name__}"
            outcomes[f"read:{code}"] += 1


def database_pid(data_dir: Path) -> int:
    try:
        return int((data_dir / "nx-27017.pid").read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def database_uri(data_dir: Path) -> str:
    """The embedded database's address, from its command line (`-p PORT`)."""
    args = Path(f"/proc/{database_pid(data_dir)}/cmdline").read_bytes().split(b"\0")
    return f"mongodb://127.0.0.1:{int(args[args.index(b'-p') + 1])}"


async def answered_again(
    client: httpx.AsyncClient, key: str, org: str, since: float, limit: float = 120
) -> float | None:
    """Seconds from `since` until a query that reads the database is answered with data again (None:
    not within `limit`)."""
    body = {"query": LIST, "variables": {"o": org}}
    while time.monotonic() - since < limit:
        try:
            r = await client.post("/graphql", headers={"X-API-KEY": key}, json=body, timeout=2)
            if r.status_code == 200 and "errors" not in r.json():
                return round(time.monotonic() - since, 2)
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.1)
    return None


async def run(args: argparse.Namespace) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        LOG_LEVEL="WARNING",
        MONGODB_TIMEOUT_MS="1000",
        STATUS_PROBE_INTERVAL_SECONDS="1",
        RATE_LIMIT_READS=servers.UNLIMITED,
        RATE_LIMIT_WRITES=servers.UNLIMITED,
    )
    servers_started = [servers.start(env)]  # the supervisor's view: the same command each time
    events: dict[str, object] = {}
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        credentials = json.loads((data_dir / "demo-credentials.json").read_text())
        key, org = credentials["apiKey"], credentials.get("orgId", "demo")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            acked: dict[str, str] = {}
            outcomes: Counter = Counter()
            started = time.monotonic()
            deadline = started + args.seconds

            async def failures() -> None:
                await asyncio.sleep(args.outage_at)
                frozen = database_pid(data_dir)
                os.kill(frozen, signal.SIGSTOP)
                events["outage_at_s"] = round(time.monotonic() - started)
                await asyncio.sleep(args.outage_for)
                os.kill(frozen, signal.SIGCONT)
                events["outage_answered_again_after_s"] = await answered_again(
                    client, key, org, time.monotonic()
                )

                await asyncio.sleep(max(0.0, args.kill_database_at - (time.monotonic() - started)))
                killed = database_pid(data_dir)
                os.kill(killed, signal.SIGKILL)
                at = time.monotonic()
                events["database_killed_at_s"] = round(at - started)
                events["database_answered_again_after_s"] = await answered_again(client, key, org, at)
                restarted = database_pid(data_dir)
                events["database_restarted_by_server"] = restarted not in (0, killed) and alive(restarted)

                await asyncio.sleep(max(0.0, args.kill_server_at - (time.monotonic() - started)))
                server, database = servers_started[-1], database_pid(data_dir)
                server.send_signal(signal.SIGKILL)
                at = time.monotonic()
                events["server_killed_at_s"] = round(at - started)
                await asyncio.to_thread(server.wait, 10)
                gone = at + 10
                while alive(database) and time.monotonic() < gone:
                    await asyncio.sleep(0.05)
                events["database_died_with_server"] = not alive(database)
                servers_started.append(servers.start(env))  # the same command, no cleanup by hand
                events["server_answered_again_after_s"] = await answered_again(client, key, org, at)

            await asyncio.gather(
                failures(),
                *(worker(client, org, key, deadline, acked, outcomes, i) for i in range(args.workers)),
            )
        server = servers_started[-1]
        alive_at_end = server.poll() is None
        with MongoClient(database_uri(data_dir)) as mongo:
            db = mongo[env.get("MONGODB_DB", "error_tracker")]  # the setting's default
            settle = time.monotonic() + 90  # the count repair (every COUNT_REPAIR_SECONDS) finishes
            while db["error_events"].count_documents({"counting_ms": {"$exists": True}}) and (
                time.monotonic() < settle
            ):
                time.sleep(1)
            uncounted = db["error_events"].count_documents({"counting_ms": {"$exists": True}})
            docs = list(
                db["error_events"].find({"org_id": org}, {"event_id": 1, "idem_key": 1, "fingerprint": 1})
            )
            groups = {
                g["fingerprint"]: g.get("occurrences", 0) for g in db["error_groups"].find({"org_id": org})
            }
        soak_docs = [d for d in docs if d.get("idem_key") and "\x1f" in d["idem_key"]]
        stored_keys = Counter(d["idem_key"].split("\x1f", 1)[1] for d in soak_docs)
        stored_ids = {d["event_id"] for d in docs}
        missing = [k for k in acked if stored_keys.get(k, 0) == 0]
        duplicated = [k for k, n in stored_keys.items() if n > 1]
        wrong_id = [k for k, eid in acked.items() if eid not in stored_ids]
        per_group = Counter(d["fingerprint"] for d in docs)
        wrong_counts = {f: (groups.get(f, 0), n) for f, n in per_group.items() if groups.get(f, 0) != n}
        return {
            "seconds": args.seconds,
            "workers": args.workers,
            **events,
            "server_alive_at_end": alive_at_end,
            "acknowledged_log_errors": len(acked),
            "stored_events": len(docs),
            "acknowledged_but_missing": len(missing),
            "stored_more_than_once": len(duplicated),
            "acknowledged_id_not_stored": len(wrong_id),
            "stored_without_acknowledgement": len(set(stored_keys) - set(acked)),
            "events_left_uncounted": uncounted,
            "groups": len(per_group),
            "groups_with_wrong_count": len(wrong_counts),
            "wrong_counts (occurrences, events)": wrong_counts,
            "outcomes": dict(sorted(outcomes.items())),
        }
    finally:
        for process in servers_started:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--outage-at", type=float, default=30)
    parser.add_argument("--outage-for", type=float, default=20)
    parser.add_argument("--kill-database-at", type=float, default=80)
    parser.add_argument("--kill-server-at", type=float, default=120)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    ok = (
        result["server_alive_at_end"]
        and result.get("database_restarted_by_server")
        and result.get("database_died_with_server")
        and result.get("server_answered_again_after_s") is not None
        and not (
            result["acknowledged_but_missing"]
            or result["stored_more_than_once"]
            or result["acknowledged_id_not_stored"]
            or result["stored_without_acknowledgement"]
            or result["events_left_uncounted"]
            or result["groups_with_wrong_count"]
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

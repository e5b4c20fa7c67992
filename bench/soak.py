"""Soak test, run by hand (not in CI): mixed traffic for a few minutes with a database outage in the
middle, then proof that every acknowledged logError is stored exactly once.

    .venv/bin/python bench/soak.py [--seconds 180] [--workers 16] [--outage-at 60] [--outage-for 20]

It starts its own file-backed nx-27017 and a server process on loopback, drives them with httpx, stops
and restarts the database, and prints a JSON summary. Clients behave as docs/operations.md asks: a logError that
fails is retried with the same idempotency key until it is acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402

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
                        json={"query": LOG, "variables": {"o": org, "k": idem, "m": idem}},
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


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    database = EmbeddedMongo(tmp / "soak.db")
    uri = database.start()
    port = _free_port()
    env = servers.server_env(uri, "soak", port, MONGODB_TIMEOUT_MS="1000", STATUS_PROBE_INTERVAL_SECONDS="1")
    server = servers.start(env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            servers.wait_ready(f"http://127.0.0.1:{port}/livez")
            servers.cli_json(env, "orgs", "create", "soak")
            key = servers.cli_json(env, "keys", "create", "--org", "soak")["apiKey"]
            acked: dict[str, str] = {}
            outcomes: Counter = Counter()
            started = time.monotonic()
            deadline = started + args.seconds

            async def outage() -> None:
                await asyncio.sleep(args.outage_at)
                await asyncio.to_thread(database.stop)
                outcomes["outage:stopped_at_s"] = round(time.monotonic() - started)
                await asyncio.sleep(args.outage_for)
                await asyncio.to_thread(database.start)
                outcomes["outage:restarted_at_s"] = round(time.monotonic() - started)

            await asyncio.gather(
                outage(),
                *(worker(client, "soak", key, deadline, acked, outcomes, i) for i in range(args.workers)),
            )
            alive = server.poll() is None
        with MongoClient(uri) as mongo:
            docs = list(
                mongo["soak"]["error_events"].find({"org_id": "soak"}, {"event_id": 1, "idem_key": 1})
            )
        stored_keys = Counter(d["idem_key"].split("\x1f", 1)[1] for d in docs)
        stored_ids = {d["event_id"] for d in docs}
        missing = [k for k in acked if stored_keys.get(k, 0) == 0]
        duplicated = [k for k, n in stored_keys.items() if n > 1]
        wrong_id = [k for k, eid in acked.items() if eid not in stored_ids]
        return {
            "seconds": args.seconds,
            "workers": args.workers,
            "server_alive_at_end": alive,
            "acknowledged_log_errors": len(acked),
            "stored_events": len(docs),
            "acknowledged_but_missing": len(missing),
            "stored_more_than_once": len(duplicated),
            "acknowledged_id_not_stored": len(wrong_id),
            "stored_without_acknowledgement": len(set(stored_keys) - set(acked)),
            "outcomes": dict(sorted(outcomes.items())),
        }
    finally:
        servers.stop(server)
        database.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--outage-at", type=float, default=60)
    parser.add_argument("--outage-for", type=float, default=20)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))
    ok = result["server_alive_at_end"] and not (
        result["acknowledged_but_missing"]
        or result["stored_more_than_once"]
        or result["acknowledged_id_not_stored"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""SDK ingestion beside logError: server CPU per request and requests per second (run by `make bench`).

One envelope per request, holding one event of about 5 KB (an exception with 20 frames and context lines,
tags, 12 breadcrumbs, contexts), each with a fresh event id, sent by wrk at 32 concurrent connections;
logError with fresh idempotency keys in the same run. Server CPU is utime+stime from /proc per request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers, targets  # noqa: E402
from bench.run import lua_script, run_wrk  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

LOG_ERROR = (
    'mutation($k: String) { logError(orgId: "bench", idempotencyKey: $k, '
    'error: {message: "bench", severity: LOW}) { errorId } }'
)


def sample_event() -> dict:
    frames = [
        {
            "filename": f"shop/module_{i}.py",
            "module": f"shop.module_{i}",
            "function": f"handler_{i}",
            "lineno": 10 + i,
            "in_app": i > 4,
            "context_line": f"    result = handler_{i + 1}(request)",
            "pre_context": ["    check(request)"],
        }
        for i in range(20)
    ]
    return {
        "event_id": "EVENTID",
        "timestamp": datetime.now(UTC).timestamp(),
        "platform": "python",
        "level": "error",
        "environment": "production",
        "release": "shop@1.4.2",
        "server_name": "web-1",
        "tags": {"region": "eu-west", "tier": "gold", "feature": "checkout"},
        "exception": {
            "values": [
                {
                    "type": "KeyError",
                    "value": "'cart-1234'",
                    "module": "builtins",
                    "mechanism": {"type": "generic", "handled": True},
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "breadcrumbs": {
            "values": [
                {
                    "timestamp": 1.7e9 + i,
                    "category": "http",
                    "message": f"GET /api/items/{i} 200",
                    "level": "info",
                }
                for i in range(12)
            ]
        },
        "contexts": {"runtime": {"name": "CPython", "version": "3.11.7"}, "os": {"name": "Linux"}},
        "user": {"id": "u-42", "ip_address": "203.0.113.7"},
        "sdk": {"name": "sentry.python", "version": "2.40.0"},
    }


def envelope_script(public_key: str) -> tuple[str, int]:
    event = json.dumps(sample_event(), separators=(",", ":"))
    body = '{"event_id":"EVENTID","sent_at":"2026-01-01T00:00:00Z"}\n{"type":"event"}\n' + event + "\n"
    auth = f"Sentry sentry_version=7, sentry_key={public_key}, sentry_client=sentry.python/2.40.0"
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/x-sentry-envelope"\n'
        f'wrk.headers["X-Sentry-Auth"] = "{auth}"\n'
        # Seeded by the clock (LuaJIT's generator is not): each round sends event ids of its own, not
        # the first round's again (which would all be answered as resends).
        "counter = 0\nmath.randomseed(os.time())\nprefix = math.random(1, 2147483647)\n"
        f"template = [[{body}]]\n"
        "request = function()\n  counter = counter + 1\n"
        '  local id = string.format("%08x%024x", prefix, counter)\n'
        '  local body = template:gsub("EVENTID", id)\n'
        "  return wrk.format(nil, nil, nil, body)\nend\n"
    )
    return script, len(event)


def envelope_row(event_bytes: int) -> str:
    return f"SDK envelope, one {event_bytes / 1024:.1f} KB event"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "sdk_results.json"))
    parser.add_argument(
        "--profile", help="py-spy (pip install py-spy): raw samples of the server to this file"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sdk-"))
    database = EmbeddedMongo(tmp / "bench.db")
    uri = database.start()
    with MongoClient(uri) as client:
        client["bench"]["organizations"].insert_one(
            {"_id": "bench", "name": "bench", "created_at": datetime.now(UTC)}
        )
    port = _free_port()
    env = servers.server_env(
        uri,
        "bench",
        port,
        LOG_LEVEL="INFO",
        ENVIRONMENT="production",
        FEED_MODE="poll",
        RETENTION_DAYS="0",
        INGEST_RATE_LIMIT=servers.UNLIMITED,
    )
    server = servers.start(env)
    rows = []
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        key = servers.cli_json(env, "keys", "create", "--org", "bench")["apiKey"]
        project = servers.cli_json(env, "projects", "create", "--org", "bench", "--name", "bench")
        public_key = project["keys"][0]["publicKey"]
        ingest, event_bytes = envelope_script(public_key)
        plan = [
            (
                envelope_row(event_bytes),
                f"/api/{project['id']}/envelope/",
                ingest,
            ),
            ("logError (fresh idempotency keys)", "/graphql", lua_script(LOG_ERROR, key, "fresh")),
        ]
        spy = None
        if args.profile:
            py_spy = str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(server.pid), "--output", args.profile, "--format", "raw"]
            )
        runs: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for name, path, script in plan:
                before = cpu_seconds(server.pid)
                result = run_wrk(f"http://127.0.0.1:{port}{path}", script, args.connections, args.seconds)
                result["cpu_ms"] = (cpu_seconds(server.pid) - before) * 1000 / max(result["requests"], 1)
                runs.setdefault(name, []).append(result)
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        for name, results in runs.items():
            med = {k: round(statistics.median(r[k] for r in results), 3) for k in results[0]}
            rows.append({"workload": name, "connections": args.connections, **med})
    finally:
        servers.stop(server)
        database.stop()
    servers.print_rows(rows)
    print()
    print("Targets (this run's figures):")
    print(targets.sdk_table(rows))
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

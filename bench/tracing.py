"""What tracing costs, run by hand: `.venv/bin/python bench/tracing.py [--seconds 8] [--rounds 3]`.

Starts two servers on one file-backed nx-27017: tracing off (no OTEL_* variables, the default) and on
(`OTEL_TRACES_EXPORTER=console`, spans serialized and written to a discarded stdout: the SDK's full cost
without a collector). Drives `serviceStatus` (no database call) and `orgErrors(first: 20)` with wrk in
interleaved rounds and reports the servers' CPU time per request (utime+stime from /proc) and req/s,
medians over the rounds. `--baseline DIR` adds a third server run from another source tree (say `git archive
main | tar -x -C DIR`: the code before tracing existed) to compare `off` with. Off, nothing of OpenTelemetry is installed on the request path (no middleware,
no schema extension, no command listener; tests/test_tracing.py checks it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.run import lua_script, run_wrk  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

WORKLOADS = {
    "serviceStatus": "{ serviceStatus { status services { name status } } }",
    "orgErrors(first: 20)": '{ orgErrors(orgId: "bench", first: 20) { nodes { id message severity } } }',
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline", help="a source tree to run as a third server, tracing off")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    database = EmbeddedMongo(tmp / "db.sqlite")
    uri = database.start()
    processes = []
    try:
        modes: dict[str, dict[str, str]] = {
            "off": {},
            "on": {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "bench"},
        }
        if args.baseline:
            modes["baseline"] = {"PYTHONPATH": str(Path(args.baseline).resolve())}
        urls, pids = {}, {}
        for mode, extra in modes.items():
            port = _free_port()
            env = servers.server_env(uri, "bench", port, **extra)
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=env,
                cwd=args.baseline if mode == "baseline" else ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(process)
            servers.wait_ready(f"http://127.0.0.1:{port}/livez")
            urls[mode], pids[mode] = f"http://127.0.0.1:{port}/graphql", process.pid
        setup = servers.server_env(uri, "bench", 0)
        servers.cli_json(setup, "orgs", "create", "bench")
        key = servers.cli_json(setup, "keys", "create", "--admin")["apiKey"]
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for name, query in WORKLOADS.items():
                for mode in modes:
                    before = cpu_seconds(pids[mode])
                    result = run_wrk(urls[mode], lua_script(query, key, None), args.connections, args.seconds)
                    used = cpu_seconds(pids[mode]) - before
                    assert result["errors"] == 0, result
                    samples.setdefault((name, mode), []).append(
                        (used / result["requests"] * 1e6, result["rps"])
                    )
        report = []
        for (name, mode), values in samples.items():
            report.append(
                {
                    "workload": name,
                    "tracing": mode,
                    "server_cpu_us_per_request": round(statistics.median(v[0] for v in values)),
                    "rps": round(statistics.median(v[1] for v in values)),
                }
            )
        print(json.dumps(report, indent=2))
    finally:
        servers.stop(*processes)
        database.stop()


if __name__ == "__main__":
    main()

"""What the hand-run measurements share: starting server processes on a database and waiting for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
UNLIMITED = "1000000000"  # rate-limit budgets that a measurement never spends
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_env(uri: str, db: str, port: int, **settings: str) -> dict[str, str]:
    """Environment of a server process on `uri`: no demo data, quiet logs unless told otherwise."""
    return {
        **os.environ,
        "MONGODB_URI": uri,
        "MONGODB_DB": db,
        "PORT": str(port),
        "DEMO_DATA": "false",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_READS": UNLIMITED,
        "RATE_LIMIT_WRITES": UNLIMITED,
        **settings,
    }


def start(env: dict[str, str], args: list[str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args or [sys.executable, "-m", "app", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def cli_json(env: dict[str, str], *args: str) -> dict:
    """A management command's --json output (python -m app ... --json)."""
    out = subprocess.run(
        [sys.executable, "-m", "app", *args, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The markdown table of wrk runs (workload, connections, throughput, latency, server CPU)."""
    print("| workload | conns | req/s | p50 ms | p99 ms | server CPU ms/req | non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['cpu_ms']:.2f} | {r['errors']:.0f} |"
        )

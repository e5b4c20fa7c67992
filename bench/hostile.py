"""Hostile documents and bodies, run by hand or by `make bench`:

    .venv/bin/python bench/hostile.py [--repeats 20]

Each probe of docs/reliability.md is sent `repeats` times, one after another, to a server process
(`python -m app serve` on an in-memory nx-27017 with some events); the table shows the answer (status
and code) and the server's CPU per request (utime+stime from /proc). The target is a bounded answer in
well under 50 ms of CPU for each: refusals are decided before the expensive work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.storage.embedded import EmbeddedMongo, _free_port  # noqa: E402
from bench import servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402


def _chain(levels: int) -> str:
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels))
    return f"query Q {{ ...F0 }} {chain} fragment F{levels} on Query {{ serviceStatus {{ status }} }}"


def probes(org: str) -> dict[str, bytes]:
    def doc(query: str, variables: dict | None = None) -> bytes:
        return json.dumps({"query": query, "variables": variables or {}}).encode()

    trees = " ".join(
        f"i{i}: __schema {{ types {{ name fields {{ name type {{ name ofType {{ name }} }} }} }} }}"
        for i in range(52)
    )
    return {
        "fragment chain, 20 levels (872 bytes)": doc(_chain(20)),
        "fragment chain, 60 levels": doc(_chain(60)),
        "450 copies of one field": doc(
            "{ " + " ".join("serviceStatus { status }" for _ in range(450)) + " }"
        ),
        "52 aliased introspection trees": doc(f"{{ {trees} }}"),
        "document padded to 1 MB with a comment": doc(
            "{ serviceStatus { status } }\n#" + "x" * 990_000 + "\n"
        ),
        "first: 5,000 digits": doc(f'{{ orgErrors(orgId: "{org}", first: {"9" * 5000}) {{ totalCount }} }}'),
        "variables nested 1,000 deep": b'{"query": "{ serviceStatus { status } }", "variables": {"v": '
        + b'{"a": ' * 1000
        + b"1"
        + b"}" * 1000
        + b"}}",
        "body null": b"null",
        "invalid UTF-8": b'{"query": "\xff\xfe"}',
        "orgErrors from 1900": doc(
            "query($f: ErrorFilter) { orgErrors(orgId: $o, filter: $f) { totalCount } }".replace(
                "$o", f'"{org}"'
            ),
            {"f": {"from": "1900-01-01T00:00:00Z"}},
        ),
        "subscription over POST": doc("subscription { serviceStatusChanged { status } }"),
        "errorStats over 1,000 days (priced in read units)": doc(
            f'{{ errorStats(orgId: "{org}", from: "2024-01-01T00:00:00Z", to: "2026-09-27T00:00:00Z", '
            "interval: DAY) { total } }"
        ),
    }


def run(url: str, key: str, org: str, pid: int, repeats: int) -> list[dict]:
    rows = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, body in probes(org).items():
            headers = {"X-API-KEY": key, "Content-Type": "application/json"}
            # Each request a distinct document (a numbered comment first), as an attacker would send
            # them: no parse or validation cache helps.
            bodies = [body.replace(b'"query": "', b'"query": "#%d\\n' % i, 1) for i in range(repeats + 1)]
            client.post("/graphql", content=bodies[-1], headers=headers)  # warm the connection
            before = cpu_seconds(pid)
            for i in range(repeats):
                response = client.post("/graphql", content=bodies[i], headers=headers)
            cpu_ms = (cpu_seconds(pid) - before) * 1000 / repeats
            try:
                answer = response.json()
                code = (answer.get("errors") or [{}])[0].get("extensions", {}).get("code", "OK")
            except ValueError:
                code = "not JSON"
            rows.append(
                {
                    "probe": name,
                    "status": response.status_code,
                    "code": code,
                    "cpu_ms": round(cpu_ms, 2),
                    "read_units": response.headers.get("x-ratelimit-remaining"),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| probe | HTTP | code | server CPU ms/request |", "|---|---|---|---|"]
    lines += [f"| {r['probe']} | {r['status']} | {r['code']} | {r['cpu_ms']:.2f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    database = EmbeddedMongo("memory")
    uri = database.start()
    port = _free_port()
    env = servers.server_env(uri, "hostile", port, ENVIRONMENT="production", FEED_MODE="poll")
    server = servers.start(env)
    try:
        servers.wait_ready(f"http://127.0.0.1:{port}/livez")
        servers.cli_json(env, "orgs", "create", "hostile")
        key = servers.cli_json(env, "keys", "create", "--org", "hostile")["apiKey"]
        print(table(run(f"http://127.0.0.1:{port}", key, "hostile", server.pid, args.repeats)))
    finally:
        servers.stop(server)
        database.stop()


if __name__ == "__main__":
    main()

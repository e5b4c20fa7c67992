"""`python -m app serve --workers 2` on the embedded default: one database for both workers, demo data
made once, events reach subscribers whichever worker logged them, and everything stops together."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer, _free_port
from tests.test_subscriptions import RESUMABLE, receive, session, subscribe

LOG = (
    'mutation($m: String!) { logError(orgId: "demo", error: {message: $m, severity: LOW}) '
    "{ error { position } } }"
)


def start_workers(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """`python -m app serve --workers 2` on the embedded default, and the demo key it prints."""
    env = {**os.environ, "DATA_DIR": str(data_dir), "PORT": str(port), "LOG_LEVEL": "WARNING"}
    env.pop("MONGODB_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    banner = ""
    deadline = time.monotonic() + 60
    while "Demo credential" not in banner and time.monotonic() < deadline:
        banner += process.stdout.readline()  # type: ignore[union-attr]
    return process, re.search(r"Demo credential:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]


async def test_two_workers_share_one_embedded_database(tmp_path: Path) -> None:
    port = _free_port()
    process, key = await asyncio.to_thread(start_workers, tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for _ in range(100):
                try:
                    await http.get("/livez")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            listed = await http.post(
                "/graphql",
                headers={"X-API-KEY": key},
                json={"query": '{ orgErrors(orgId: "demo") { totalCount } }'},
            )
            assert listed.json()["data"]["orgErrors"]["totalCount"] == 5  # made once, not per worker
            anchor = (
                await http.post(
                    "/graphql", headers={"X-API-KEY": key}, json={"query": LOG, "variables": {"m": "anchor"}}
                )
            ).json()
            position = anchor["data"]["logError"]["error"]["position"]
            live = LiveServer(url, f"ws://127.0.0.1:{port}/graphql", None, None, None)  # type: ignore[arg-type]
            async with session(live, {"apiKey": key}) as ws:
                await subscribe(ws, "x", RESUMABLE, {"o": "demo", "after": position})
                sent = []
                for i in range(10):  # a new connection each: the kernel spreads them over the workers
                    async with httpx.AsyncClient(base_url=url, timeout=10) as one:
                        await one.post(
                            "/graphql",
                            headers={"X-API-KEY": key},
                            json={"query": LOG, "variables": {"m": f"m{i}"}},
                        )
                    sent.append(f"m{i}")
                got = [(await receive(ws))["payload"]["data"]["errorLogged"]["message"] for _ in sent]
                assert sorted(got) == sorted(sent)
        nx_pid = (
            int((tmp_path / "nx-27017.pid").read_text()) if (tmp_path / "nx-27017.pid").exists() else None
        )
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    if nx_pid is not None:  # the embedded database stopped with the server
        try:
            os.kill(nx_pid, 0)
            raise AssertionError("the embedded database outlived the server")
        except ProcessLookupError:
            pass

"""Crashes recover without a hand: `kill -9` of the server (its embedded database goes with it, and the
next start is not blocked by the pid file), and `kill -9` of the embedded database (the server starts
it again and answers again). Real `python -m app serve` processes on the embedded default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.storage.embedded import EmbeddedMongo, clear_stale_pid_file
from tests.conftest import _free_port

STATUS = "{ serviceStatus { status } }"


@contextmanager
def serve(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "STATUS_PROBE_INTERVAL_SECONDS": "60",
        }
    )
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(f"{url}/livez") == 200 or process.poll() is not None, 60)
        assert process.poll() is None, f"the server exited with {process.returncode}"
        yield process, url
    except BaseException:
        # What the server said, in the failure's report (pytest shows a failed test's output).
        print(f"--- the server's log ({log}), last 8,000 characters ---")
        print(log.read_text(errors="replace")[-8000:])
        raise
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def wait_until(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {condition!r}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def database_pid(data_dir: Path) -> int:
    """The pid nx-27017 wrote (0 while a restart has removed the old file and not written the new)."""
    try:
        return int((data_dir / "nx-27017.pid").read_text() or 0)
    except FileNotFoundError:
        return 0


def query(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/graphql", json={"query": STATUS}, headers={"X-API-KEY": key}, timeout=30)


def test_kill_9_of_the_server_then_a_restart_succeeds(tmp_path: Path) -> None:
    with serve(tmp_path) as (process, url):
        database = database_pid(tmp_path)
        assert alive(database)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        wait_until(lambda: not alive(database), 10)  # the embedded database died with its server
    with serve(tmp_path) as (_, url):
        key = json.loads((tmp_path / "demo-credentials.json").read_text())["apiKey"]
        response = query(url, key)
        assert response.status_code == 200 and response.json()["data"]["serviceStatus"]["status"]


def test_kill_9_of_the_embedded_database_then_it_recovers_by_itself(tmp_path: Path) -> None:
    with serve(tmp_path) as (_, url):
        key = json.loads((tmp_path / "demo-credentials.json").read_text())["apiKey"]
        events = '{ orgErrors(orgId: "demo") { totalCount } }'
        before = httpx.post(f"{url}/graphql", json={"query": events}, headers={"X-API-KEY": key}, timeout=30)
        assert before.json()["data"]["orgErrors"]["totalCount"] == 5
        first = database_pid(tmp_path)
        os.kill(first, signal.SIGKILL)
        # A new embedded database, started by the server (same data: the demo events are still there).
        wait_until(lambda: database_pid(tmp_path) != first and alive(database_pid(tmp_path)), 30)

        def answers() -> bool:
            try:  # while the database is away a request may also time out: not yet, not a failure
                response = httpx.post(
                    f"{url}/graphql", json={"query": events}, headers={"X-API-KEY": key}, timeout=10
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json()["data"]["orgErrors"]["totalCount"] == 5

        wait_until(answers, 60)  # the property is recovery without a hand, not its speed
        wait_until(lambda: _status(f"{url}/health") == 200, 30)


def test_a_stale_pid_file_never_blocks_a_start(tmp_path: Path) -> None:
    pid_file = tmp_path / "nx-27017.pid"
    pid_file.write_text("999999999")  # no such process
    clear_stale_pid_file(pid_file)
    assert not pid_file.exists()
    pid_file.write_text(str(os.getpid()))  # alive, but not nx-27017 (pid reuse after a reboot)
    clear_stale_pid_file(pid_file)
    assert not pid_file.exists()
    # An nx-27017 left behind by a crashed server of an older version (its parent gone, no parent-death
    # signal): a process that starts it in its own session and exits at once.
    code = (
        "import subprocess, sys; from app.storage.embedded import _executable, _free_port\n"
        "p = subprocess.Popen([*_executable(), '--db', 'memory', '--host', '127.0.0.1', '-p', "
        "str(_free_port()), '--pid-file', sys.argv[1], '--log-file', '/dev/null'], start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    )
    made = subprocess.run(
        [sys.executable, "-c", code, str(pid_file)], capture_output=True, text=True, check=True
    )
    orphan = int(made.stdout)
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() == str(orphan), 10)
    assert alive(orphan)
    database = EmbeddedMongo("memory", run_dir=tmp_path)
    try:
        database.start()  # stops the orphan, then starts
        assert database.running and not alive(orphan)
    finally:
        database.stop()
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)

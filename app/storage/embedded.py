"""The embedded development database: an nx-27017 (MongoDB wire protocol on SQLite) child process.

Used when MONGODB_URI is unset, and by the test suite with an in-memory database. Every instance gets
its own pid and log file: nx-27017's defaults are fixed paths in the temp folder and a second instance
refuses to start while they name a live process.

Crashes recover by themselves:
- The child dies with its server: it asks the kernel for SIGTERM when its parent dies
  (PR_SET_PDEATHSIG, Linux), even when the server is killed with SIGKILL. The signal follows the death of
  the *thread* that started the child, so `spawn` must run on a thread that lives as long as the server
  (the event loop's), never in a short-lived worker thread.
- A pid file left by a crash never blocks a start: a pid that is not alive, or is not nx-27017, is
  removed; an nx-27017 orphaned by a crashed server (its parent gone: re-parented to init) is stopped.
  Only a live nx-27017 whose server is alive (another server on the same DATA_DIR) refuses the start.
- `wait_exit` lets the server's supervisor notice the child died and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("app.storage.embedded")

_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _executable() -> list[str]:
    found = shutil.which("nx-27017", path=str(Path(sys.executable).parent)) or shutil.which("nx-27017")
    if not found:
        raise RuntimeError("nx-27017 is not installed: pip install nx-27017 (see pyproject.toml)")
    return [found]


def _die_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec: SIGTERM when the parent dies (kept across exec)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parent_of(pid: int) -> int | None:
    for line in _proc(pid, "status").splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def clear_stale_pid_file(pid_file: Path, timeout: float = 10.0) -> None:
    """Make way for a start: remove a pid file naming a dead or foreign process; stop an orphaned
    nx-27017; refuse (RuntimeError) when a live server still owns the database."""
    try:
        pid = int(pid_file.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid <= 0 or not _alive(pid) or "nx-27017" not in _proc(pid, "cmdline"):
        pid_file.unlink(missing_ok=True)
        return
    parent = _parent_of(pid)
    parent_is_server = parent not in (None, 0, 1) and "python" in _proc(parent, "cmdline")
    if parent_is_server and parent != os.getpid():
        raise RuntimeError(
            f"nx-27017 (pid {pid}) of another running server (pid {parent}) uses {pid_file.parent}: "
            "stop that server, or give this one another DATA_DIR"
        )
    log.warning("stopping nx-27017 (pid %s) left behind by a crashed server", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and "nx-27017" in _proc(pid, "cmdline") and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid) and "nx-27017" in _proc(pid, "cmdline"):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


class EmbeddedMongo:
    """Start with `start()` (blocking until the port accepts connections), stop with `stop()`; or
    `spawn()` then `wait_ready()` to keep the wait off the thread that owns the child."""

    def __init__(self, db_path: str | Path, *, run_dir: Path | None = None) -> None:
        self.db_path = str(db_path)
        self._run_dir = run_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _directory(self) -> Path:
        if self._run_dir is not None:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            return self._run_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nx-27017-")
        return Path(self._tmp.name)

    def spawn(self) -> None:
        """Start the child process (quick); call on a thread that lives as long as the server."""
        run_dir = self._directory()
        pid_file = run_dir / "nx-27017.pid"
        clear_stale_pid_file(pid_file)
        self.port = self.port or _free_port()  # a restart keeps its port, so clients reconnect
        command = [
            *_executable(),
            "--db",
            self.db_path,
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--pid-file",
            str(pid_file),
            # nx-27017 logs every command at INFO: keep that out of the way (and off the disk).
            "--log-file",
            os.devnull,
        ]
        parent = os.getpid()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal reaches the server, which stops it in order
            preexec_fn=lambda: _die_with_parent(parent),  # only prctl and getppid
        )

    def wait_ready(self, timeout: float = 30.0) -> str:
        process = self.process
        assert process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"nx-27017 exited at start-up with code {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                log.info("embedded database listening", extra={"port": self.port})
                return self.uri
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nx-27017 did not accept connections within {timeout:.0f}s")

    def start(self, timeout: float = 30.0) -> str:
        self.spawn()
        return self.wait_ready(timeout)

    async def wait_exit(self) -> int:
        """Wait (without holding an executor thread of the loop's pool) until the child exits, reaping
        it; its exit code."""
        process = self.process
        assert process is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def wait() -> None:
            code = process.wait()

            def finish() -> None:
                if not done.done():
                    done.set_result(code)

            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(finish)

        threading.Thread(target=wait, name="nx-27017-wait", daemon=True).start()
        return await done

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

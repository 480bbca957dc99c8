"""Real HTTP servers for tests: gateways and HTTP workers, in a thread or as a process.

``serving(...)`` runs a :class:`Gateway` or :class:`HttpWorker` on its own event loop in a
background thread of the test process (its instances are still real processes), so tests can
read its counters; ``gateway_process(...)`` starts ``daskless gateway`` as a program, the way a
user would, with its settings in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from daskless.worker_runtime import gateway, http_worker

SECRET = "test-secret-0123456789"


@contextmanager
def serving(server: gateway.Gateway | http_worker.HttpWorker) -> Iterator[str]:
    """Serve ``server`` on a free loopback port in a background thread; yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    starter = gateway.start if isinstance(server, gateway.Gateway) else http_worker.start
    runner: web.AppRunner
    runner, port = asyncio.run_coroutine_threadsafe(starter(server), loop).result(30)  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        if isinstance(server, http_worker.HttpWorker):
            server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Recorder:
    """A stand-in function URL that records each request and answers from a script.

    ``answers`` are the statuses of the first requests (then 202). Each request is put on
    ``requests`` as ``(body, headers)``, so a test blocks on the queue instead of polling.
    ``hold`` makes handlers wait until that many requests are in flight at once (or 5 s).
    """

    def __init__(self, answers: Sequence[int] = (), hold: int = 0) -> None:
        self.answers = list(answers)
        self.requests: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
        self.hold = hold
        self.in_flight = 0
        self.max_in_flight = 0
        self._crowd: asyncio.Condition | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/fn/invoke", self._invoke)
        return app

    async def _invoke(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.put((body, dict(request.headers)))
        status = self.answers.pop(0) if self.answers else 202
        if self.hold:
            await self._wait_for_crowd()
        return web.json_response({}, status=status)

    async def _wait_for_crowd(self) -> None:
        if self._crowd is None:
            self._crowd = asyncio.Condition()
        async with self._crowd:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._crowd.notify_all()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._crowd.wait_for(lambda: self.in_flight >= self.hold), 5
                )
            self.in_flight -= 1


@contextmanager
def serving_app(app: web.Application) -> Iterator[str]:
    """Serve a plain aiohttp app on a free loopback port in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def gateway_process(store_url: str, *args: str, secret: str = SECRET,
                    output: Path | None = None) -> Iterator[str]:
    """``daskless gateway --port 0 ...`` as a child process; yields its URL.

    Its standard output (where its instances' output passes through) goes to ``output``
    when given, else nowhere."""
    env = dict(os.environ, DASK_DASKLESS__AUTH__SECRET=secret, DASK_DASKLESS__STORE=store_url)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daskless.cli", "gateway", "--port", "0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    # Keep draining: instances' output passes through the gateway's standard output.
    def drain() -> None:
        assert proc.stdout is not None
        with open(output or os.devnull, "wb") as sink:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                sink.write(chunk)
                sink.flush()

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        if not line.startswith(gateway.GATEWAY_READY_LINE):
            raise RuntimeError(f"gateway did not start: {line!r}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(30)
        drainer.join(10)
        proc.stdout.close()

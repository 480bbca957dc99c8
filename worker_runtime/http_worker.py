"""An HTTP function worker: the container a FaaS platform (Knative, OpenFaaS, Cloud Run) runs.

It serves two routes on one aiohttp server:

- ``POST /invoke``: the body is one invocation (JSON,
  :class:`~daskless.worker_runtime.protocol.Invocation`) signed with the headers of
  :mod:`daskless.worker_runtime.auth`. In order, the worker answers 413 for a body larger than
  ``max_body_bytes`` (nothing is read past the limit), 401 for an unsigned, tampered, stale or
  replayed invocation, 400 for a malformed one, 429 when ``concurrency`` invocations already run
  here, and otherwise 202 at once, running the invocation on one of its ``concurrency`` threads.
  Nothing is executed before the signature has been verified. A request carrying
  ``X-Daskless-Wait: 1`` is answered 200 only once its invocation has finished: the local gateway
  uses this to know when an instance is free, the way a platform counts in-flight requests per
  container.
- ``GET /healthz``: liveness and load, as JSON.

Excess load is refused with 429 rather than queued: the platform in front (or the gateway) owns
queueing, and the ``http`` invoker retries 429 with back-off, so nothing is lost.

Invocations run with the same code as the warm process pool
(:func:`daskless.worker_runtime.worker.handle` with a
:class:`~daskless.worker_runtime.context.WorkerContext`); fan-out goes through an
:class:`~daskless.worker_runtime.invokers.http.HttpInvoker` to ``invoke_url`` (the gateway or
function URL; by default this worker itself), signed with the same secret, without waiting. The
invocation is JSON and any inline sub-DAG is dropped: this worker unpickles only sub-DAGs and data
read from its configured Redis. Replays are refused across instances through Redis (``SET NX``).

Started by the gateway, the worker reads its settings as one JSON line on standard input (never
command-line arguments: the store URL may hold a password, the secret must not show in process
listings), prints ``daskless-http-worker-ready <port>`` once it listens, and exits when its
standard input closes. ``daskless worker`` runs the same server in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from daskless.worker_runtime import auth, faults, hosting, task_slot
from daskless.worker_runtime.context import WorkerContext
from daskless.worker_runtime.errors import (
    ConfigurationError,
    InvocationError,
    RunGoneError,
    SignatureError,
)
from daskless.worker_runtime.invokers.http import HttpInvoker
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store import urls
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.worker import failure_event, handle

READY_LINE = "daskless-http-worker-ready"
WAIT_HEADER = "X-Daskless-Wait"
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class WorkerSettings:
    """How one HTTP worker runs; ``secret=None`` needs ``insecure=True``."""

    store: str
    secret: str | None = None
    insecure: bool = False
    max_age_s: float | None = None  # None: daskless.auth.max-age
    concurrency: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "127.0.0.1"
    port: int = 0
    invoke_url: str | None = None
    # dask/daskless settings for computes nested inside tasks
    settings: Mapping[str, object] = field(default_factory=dict)
    # a gateway instance: the inherited task slot where it writes the task it runs
    slot_fd: int | None = None

    def __repr__(self) -> str:  # the secret and the store password never appear in logs
        return f"WorkerSettings(host={self.host!r}, port={self.port})"

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerSettings:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"settings": dict(self.settings)})


class HttpWorker:
    """One worker instance: verification, admission and execution; see the module docstring."""

    def __init__(self, settings: WorkerSettings) -> None:
        secret = auth.require_secret(settings.secret, settings.insecure, "the HTTP worker")
        self.settings = settings
        self.store = RedisStore(settings.store)
        self.store.ping()
        self.verifier = (
            auth.Signer(secret, settings.max_age_s, auth.RedisSeenSignatures(self.store.client))
            if secret
            else None
        )
        self._outgoing = auth.Signer(secret, settings.max_age_s) if secret else None
        self._executor = ThreadPoolExecutor(settings.concurrency, "daskless-http")
        self._lock = threading.Lock()
        self.running = 0
        self.finished = 0
        self.gate = hosting.InvocationGate(freeze=hosting.tuning("freeze-worker-heap"))
        self.invoker: HttpInvoker | None = None
        self.context: WorkerContext | None = None

    def bind(self, url: str) -> None:
        """Create the fan-out invoker once the URL invocations go to is known."""
        self.invoker = HttpInvoker(
            self.settings.invoke_url or url, self._outgoing, wait=False,
            on_failure=self._report_undelivered,
        )
        self.context = WorkerContext(
            store=self.store,
            invoker=faults.wrap(self.invoker),
            # Recording warnings is process-wide; only safe with one invocation at a time.
            forward_warnings=self.settings.concurrency == 1,
            on_task=task_slot.writer(self.settings.slot_fd)
            if self.settings.slot_fd is not None else None,
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/invoke", self.invoke)
        app.router.add_get("/healthz", self.healthz)
        return app

    # -- routes ----------------------------------------------------------------------------
    async def invoke(self, request: web.Request) -> web.Response:
        read = await read_invocation(request, self.settings.max_body_bytes, self.verifier)
        if isinstance(read, web.Response):
            return read
        # The sub-DAG is always read from the store, never from the request.
        invocation = dataclasses.replace(read[1], inline_spec=None)
        if not self._admit():
            return refuse(429, f"{self.settings.concurrency} invocations already run here",
                           {"Retry-After": "1"})
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run, invocation)
        if request.headers.get(WAIT_HEADER) == "1":
            await done
            return web.json_response({"finished": True}, status=200)
        return web.json_response({"accepted": True}, status=202)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok",
            "worker": self.context.worker_id if self.context else None,
            "running": self.running,
            "finished": self.finished,
            "concurrency": self.settings.concurrency,
        })

    # -- work ------------------------------------------------------------------------------
    def _admit(self) -> bool:
        with self._lock:
            if self.running >= self.settings.concurrency:
                return False
            self.running += 1
            return True

    def _run(self, invocation: Invocation) -> None:
        assert self.context is not None, "bind() first"
        try:
            with self.gate.invocation():
                handle(invocation, self.context)
            faults.kill_point("after-end")
        finally:
            with self._lock:
                self.running -= 1
                self.finished += 1

    def _report_undelivered(self, invocation: Invocation, exc: InvocationError) -> None:
        """A fan-out that could not be delivered fails its run instead of stalling it."""
        worker = self.context.worker_id if self.context else "http-worker"
        with contextlib.suppress(RunGoneError):
            self.store.deliver(invocation.run_id, events=[failure_event(worker, invocation, exc)],
                               epoch=invocation.epoch)

    def close(self) -> None:
        if self.invoker is not None:
            self.invoker.close()
        self._executor.shutdown(wait=True)
        self.store.close()


def refuse(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An invocation turned away, with the reason as JSON (workers and the gateway alike)."""
    return web.json_response({"error": reason}, status=status, headers=headers)


async def read_invocation(
    request: web.Request, limit: int, verifier: auth.Signer | None
) -> tuple[bytes, Invocation] | web.Response:
    """The body and invocation a request carries, or the response that turns it away.

    Size first (413), then the signature (401), then the payload's shape (400), so that nothing
    is parsed before it is known to come from a holder of the secret.
    """
    too_large = f"invocation body larger than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        return refuse(413, too_large)
    try:
        body = await request.read()
        if verifier is not None:
            verifier.verify_headers(body, request.headers)
        return body, Invocation.from_bytes(body)
    except web.HTTPRequestEntityTooLarge:
        return refuse(413, too_large)
    except SignatureError as exc:
        return refuse(401, str(exc))
    except InvocationError as exc:
        return refuse(400, str(exc))


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str, int]:
    """Serve ``app``; returns the runner, the URL to reach it and the port actually bound."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1])
    reach = host if host not in ("", "0.0.0.0") else "127.0.0.1"
    return runner, f"http://{reach}:{bound}", bound


async def start(worker: HttpWorker) -> tuple[web.AppRunner, int]:
    """Listen on the configured address; the port actually bound is returned (for port 0)."""
    runner, url, port = await listen(worker.app(), worker.settings.host, worker.settings.port)
    worker.bind(url)
    return runner, port


async def _serve(settings: WorkerSettings, stop: asyncio.Event) -> None:
    hosting.configure_nested_computes(settings.store, settings.settings)
    worker = HttpWorker(settings)
    runner, port = await start(worker)
    print(f"{READY_LINE} {port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        worker.close()


def run(settings: WorkerSettings) -> None:
    """Serve until SIGINT or SIGTERM (``daskless worker``)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _serve(settings, stop)

    asyncio.run(main())


def store_url(given: str | None, what: str) -> str:
    """The Redis URL a serving program uses: ``--store``, else ``daskless.store``."""
    import dask.config

    url = given or str(dask.config.get("daskless.store"))
    if not urls.is_redis_url(url):
        raise ConfigurationError(
            f"{what} needs the Redis its clients use: give --store or set "
            f"DASK_DASKLESS__STORE to a URL starting with {urls.listed(urls.SCHEMES)} "
            f"(not {urls.masked(url)!r})"
        )
    return url


def command(store: str | None, host: str, port: int, concurrency: int,
            invoke_url: str | None, insecure: bool) -> int:
    """``daskless worker``: settings from the options and ``dask.config``; serve forever."""
    import dask.config

    settings = WorkerSettings(
        store=store_url(store, "daskless worker"),
        secret=auth.take_secret(),
        insecure=insecure or bool(dask.config.get("daskless.auth.insecure")),
        max_age_s=float(dask.config.get("daskless.auth.max-age")),
        concurrency=concurrency, host=host, port=port, invoke_url=invoke_url,
    )
    run(settings)
    return 0


def main() -> None:
    """A gateway instance: settings on standard input; exits when standard input closes."""
    hosting.die_with_parent()
    hosting.line_buffered_output()
    settings = WorkerSettings.from_json(sys.stdin.readline())
    hosting.follow_parent()
    try:
        run(settings)
    except Exception as exc:  # the gateway shows this text as the reason the start failed
        print(f"daskless-http-worker-failed {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

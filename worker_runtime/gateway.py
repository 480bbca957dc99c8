"""A local FaaS gateway: start, reuse and retire HTTP worker instances on demand.

``daskless gateway --port P --max-instances N [--idle-timeout S] [--queue-limit Q]`` accepts the
same ``POST /invoke`` requests as a function URL and behaves like a platform's front door, so the
HTTP path runs on one machine exactly as on Knative or Cloud Run:

- **Admission.** A body over ``max_body_bytes`` gets 413, a bad signature 401, a malformed
  invocation 400, all before anything is queued or run. An accepted invocation is answered 202
  at once and waits in the gateway for an instance. When every slot of the running, starting
  and still startable instances is spoken for and ``queue_limit`` invocations already wait,
  the answer is 429: the ``http`` invoker retries with back-off,
  so nothing is lost (``queue_limit`` unset means an unbounded queue).
- **Instances.** Each instance is a real process, ``python -m daskless.worker_runtime.http_worker``
  on a free loopback port, configured through its standard input (store URL, secret, fan-out URL =
  this gateway). A free instance is reused (*warm start*). If none is free and fewer than
  ``max_instances`` exist or are starting, one more is started (*cold start*) while the
  invocation waits for whichever instance frees up first: a start is not tied to the
  invocation that caused it, so a burst does not pay a cold start when a warm instance is
  about to finish. An instance runs ``instance_concurrency`` invocations at a time; the
  gateway forwards each with ``X-Daskless-Wait: 1`` so the request ends when the invocation
  does, which is how it knows the instance is free again. An instance idle for ``idle_timeout_s``
  is retired (a timer per instance, no polling).
- **Sizes.** An invocation may ask for a worker size (``Invocation.memory_mb``, set when the
  planner sized the run's sub-DAGs). Instances are started at a size and serve only
  invocations of that size; each is put under its size's CPU share (``cpu_limits``: a cgroup
  per instance, 1,769 MB being one vCPU) once it has started, so a plan's effect shows on one
  machine (start-up runs at full speed, as a Lambda function's init does). Invocations that
  ask for none share the gateway's default instances. When ``max_instances`` are running and
  there is no instance of the wanted size at all, an idle one of another size is retired to
  make room.
- **Lost instances.** When an instance dies mid-invocation (the forwarded request breaks, or its
  output pipe closes), the gateway writes a ``lost`` event naming the instance's worker id to the
  run's event stream (the client raises :class:`WorkerLostError` if that worker had started
  part of the run) and retries the invocation on a fresh instance up to ``retries`` times
  (fan-in is idempotent, so a re-run is safe; it is what rescues an instance that died before
  it could report its start).
- **Signatures.** The gateway holds the same secret as clients and workers: it verifies each
  invocation at the door (401 for a bad one, remembered in memory against replays) and signs
  again for the instance, which verifies once more against Redis; a retry is thus signed afresh.

Everything runs on one asyncio loop; ``GET /healthz`` reports instances and counters as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from daskless.worker_runtime import auth
from daskless.worker_runtime.context import worker_id_for
from daskless.worker_runtime.cpu_limits import CpuLimiter, cpu_limiter, own_name
from daskless.worker_runtime.errors import InvocationError, RunGoneError
from daskless.worker_runtime.events import WorkerLost
from daskless.worker_runtime.http_worker import (
    READY_LINE,
    WAIT_HEADER,
    WorkerSettings,
    listen,
    read_invocation,
    refuse,
    store_url,
)
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.task_slot import TaskSlot
from daskless.worker_runtime.worker import failure_event

GATEWAY_READY_LINE = "daskless-gateway-ready"
INSTANCE_START_TIMEOUT_S = 60.0
LOST_GRACE_S = 5.0


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway runs; see the module docstring for each knob."""

    store: str
    secret: str | None = None
    insecure: bool = False
    max_age_s: float | None = None  # None: daskless.auth.max-age
    host: str = "127.0.0.1"
    port: int = 0
    max_instances: int = 4
    idle_timeout_s: float = 60.0
    queue_limit: int | None = None
    instance_concurrency: int = 1
    retries: int = 1
    max_body_bytes: int = 64 * 1024
    settings: Mapping[str, object] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret or the store password
        return f"GatewaySettings(port={self.port}, max_instances={self.max_instances})"


@dataclass(eq=False)
class Instance:
    """One worker process and what the gateway knows about it."""

    proc: asyncio.subprocess.Process
    port: int
    slot: TaskSlot
    memory_mb: int = 0
    """Its size (0: the default, unlimited)."""
    busy: int = 0
    served: int = 0
    alive: bool = True
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def worker_id(self) -> str:
        return worker_id_for(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/invoke"


class InstanceLost(Exception):
    """The instance died while it ran an invocation."""


class Gateway:
    """Admission, instance pool and forwarding; see the module docstring."""

    def __init__(self, settings: GatewaySettings) -> None:
        secret = auth.require_secret(settings.secret, settings.insecure, "the gateway")
        self.settings = settings
        self._signer = auth.Signer(secret, settings.max_age_s) if secret else None
        self.store = RedisStore(settings.store)
        self.store.ping()
        self.url = ""
        self.instances: list[Instance] = []
        self.counters = {"cold_starts": 0, "warm_starts": 0, "lost": 0, "retired": 0,
                         "rejected": 0, "accepted": 0, "forwarded": 0, "evicted": 0}
        self._starting: Counter[int] = Counter()  # by size
        self._waiting = 0
        self._waiters: Counter[int] = Counter()  # by size
        self._limiter: CpuLimiter | None = None
        self._start_error: InvocationError | None = None
        self._changed: asyncio.Condition | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/invoke", self.invoke)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    # -- routes ----------------------------------------------------------------------------
    async def invoke(self, request: web.Request) -> web.Response:
        read = await read_invocation(request, self.settings.max_body_bytes, self._signer)
        if isinstance(read, web.Response):
            return read
        body, invocation = read
        if self._full():
            self.counters["rejected"] += 1
            return refuse(429, "all instances are busy and the queue is full",
                           {"Retry-After": "1"})
        self.counters["accepted"] += 1
        self._waiting += 1  # counted now, so a burst of requests sees the queue fill up
        self._background(self._run(body, invocation))
        return web.json_response({"accepted": True}, status=202)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok",
            "instances": [{"pid": i.proc.pid, "port": i.port, "busy": i.busy,
                           "memory_mb": i.memory_mb} for i in self.instances],
            "cpu_limits": self._limiter.kind if self._limiter is not None else "unused",
            "queued": self._waiting,
            **self.counters,
        })

    # -- scheduling ------------------------------------------------------------------------
    def _full(self) -> bool:
        """Every slot (free, starting or startable) is spoken for and the queue is full."""
        limit = self.settings.queue_limit
        if limit is None:
            return False
        per_instance = self.settings.instance_concurrency
        free = sum(per_instance - i.busy for i in self.instances if i.alive)
        startable = self.settings.max_instances - len(self.instances)
        return self._waiting >= limit + free + startable * per_instance

    def _free_instance(self, size: int) -> Instance | None:
        for instance in self.instances:
            if (instance.alive and instance.memory_mb == size
                    and instance.busy < self.settings.instance_concurrency):
                return instance
        return None

    def _evict_idle(self, size: int) -> bool:
        """Retire an idle instance of another size to make room; whether there was one."""
        for instance in self.instances:
            if instance.alive and instance.busy == 0 and instance.memory_mb != size:
                self.counters["evicted"] += 1
                if instance.idle_timer is not None:
                    instance.idle_timer.cancel()
                self._drop(instance)
                return True
        return False

    async def _run(self, body: bytes, invocation: Invocation) -> None:
        queued = True
        attempts = self.settings.retries + 1
        try:
            for attempt in range(1, attempts + 1):
                instance = await self._acquire(queued, invocation.memory_mb)
                queued = False
                try:
                    await self._forward(instance, body)
                    return
                except InstanceLost as exc:
                    # The run hears of each death (and recovers the work); nothing more to say.
                    await self._lost(instance, invocation, str(exc), attempt < attempts)
                finally:
                    await self._release(instance)
        except InvocationError as exc:  # no instance could be started, refused, or gave up
            await asyncio.to_thread(self._fail_run, invocation, exc)
        finally:
            if queued:
                self._waiting -= 1

    async def _acquire(self, queued: bool, size: int) -> Instance:
        """The first free instance of ``size``; starts one more if waiters outnumber starts."""
        assert self._changed is not None
        async with self._changed:
            self._waiters[size] += 1
            try:
                while True:
                    instance = self._free_instance(size)
                    if instance is not None:
                        self._take(instance, queued)
                        return instance
                    if self._starting[size] < self._waiters[size] and self._room_for(size):
                        self._starting[size] += 1
                        self._background(self._start_into_pool(size))
                    await self._changed.wait()
                    error = self._start_error
                    starting = sum(self._starting.values())
                    if error is not None and not self.instances and not starting:
                        raise error
            finally:
                self._waiters[size] -= 1

    def _room_for(self, size: int) -> bool:
        """Whether one more instance of ``size`` may start: below ``max_instances``, or by
        retiring an idle one of another size, but only for a size that has none at all (one
        that has some waits for them, rather than trade warm instances for cold starts)."""
        total = len(self.instances) + sum(self._starting.values())
        if total < self.settings.max_instances:
            return True
        has_own = self._starting[size] or any(i.memory_mb == size for i in self.instances)
        return not has_own and self._evict_idle(size)

    async def _start_into_pool(self, size: int) -> None:
        assert self._changed is not None
        try:
            instance = await self._start_instance(size)
        except InvocationError as exc:
            async with self._changed:
                self._starting[size] -= 1
                self._start_error = exc
                self._changed.notify_all()
            return
        async with self._changed:
            self._starting[size] -= 1
            self._start_error = None
            self.instances.append(instance)
            self.counters["cold_starts"] += 1
            self._arm_idle_timer(instance)
            self._changed.notify_all()

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, instance: Instance, queued: bool) -> None:
        if instance.served:
            self.counters["warm_starts"] += 1
        instance.served += 1
        instance.busy += 1
        if queued:
            self._waiting -= 1
        if instance.idle_timer is not None:
            instance.idle_timer.cancel()
            instance.idle_timer = None

    async def _release(self, instance: Instance) -> None:
        instance.busy -= 1
        self._arm_idle_timer(instance)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def _arm_idle_timer(self, instance: Instance) -> None:
        if instance.alive and instance.busy == 0:
            loop = asyncio.get_running_loop()
            instance.idle_timer = loop.call_later(
                self.settings.idle_timeout_s, self._retire, instance
            )

    def _retire(self, instance: Instance) -> None:
        if instance.busy or not instance.alive:
            return
        self.counters["retired"] += 1
        self._drop(instance)

    def _drop(self, instance: Instance, stop: bool = True) -> None:
        instance.alive = False
        if instance in self.instances:
            self.instances.remove(instance)
        if stop and instance.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                instance.proc.terminate()

    # -- instances -------------------------------------------------------------------------
    async def _forward(self, instance: Instance, body: bytes) -> None:
        assert self._session is not None
        headers = {"Content-Type": "application/json", WAIT_HEADER: "1"}
        if self._signer is not None:
            headers.update(self._signer.sign_headers(body))
        self.counters["forwarded"] += 1
        try:
            async with self._session.post(instance.url, data=body, headers=headers) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, OSError) as exc:
            raise InstanceLost(f"{type(exc).__name__}: {exc}") from exc
        if resp.status >= 300:
            # The instance refused it (it re-verifies): nothing ran, and a retry would be
            # refused alike. The run must hear of it, or it would wait for this invocation.
            raise InvocationError(f"instance {instance.worker_id} refused the invocation: "
                                  f"HTTP {resp.status} {text[:300]}")

    async def _lost(self, instance: Instance, invocation: Invocation, reason: str,
                    retried: bool) -> str:
        """Tell the run its worker died (``retried``: the invocation runs again); the reason."""
        self.counters["lost"] += 1
        # Not terminated at once: signalling polls the process, which would reap a process
        # that just died before asyncio's watcher sees its exit code.
        self._drop(instance, stop=False)
        try:
            code = await asyncio.wait_for(asyncio.shield(instance.proc.wait()), LOST_GRACE_S)
        except asyncio.TimeoutError:  # the connection broke but the process lives on: stop it
            await _stop(instance.proc)
            code = await instance.proc.wait()
        why = f"worker instance {instance.proc.pid} exited with code {code} ({reason})"
        event = WorkerLost(instance.worker_id, why, invocation.partition, retried, invocation.id,
                           invocation.epoch, instance.slot.task())
        with contextlib.suppress(RunGoneError):
            await asyncio.to_thread(self.store.deliver, invocation.run_id, events=[event],
                                    epoch=invocation.epoch)
        return why

    def _fail_run(self, invocation: Invocation, exc: InvocationError) -> None:
        event = failure_event("gateway", invocation, exc)
        with contextlib.suppress(RunGoneError):
            self.store.deliver(invocation.run_id, events=[event], epoch=invocation.epoch)

    async def _start_instance(self, size: int) -> Instance:
        slot = TaskSlot()  # where the instance writes the task it runs (see ``task_slot``)
        config = WorkerSettings(
            store=self.settings.store, secret=self.settings.secret,
            insecure=self.settings.insecure, max_age_s=self.settings.max_age_s,
            concurrency=self.settings.instance_concurrency,
            max_body_bytes=self.settings.max_body_bytes, invoke_url=self.url,
            settings=self.settings.settings, slot_fd=slot.fd,
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daskless.worker_runtime.http_worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
                pass_fds=(slot.fd,),
            )
        finally:
            slot.started()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(config.to_json().encode() + b"\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), INSTANCE_START_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            line = b""
        except asyncio.CancelledError:  # the gateway is closing
            await _stop(proc)
            raise
        text = line.decode(errors="replace").strip()
        if not text.startswith(READY_LINE):
            await _stop(proc)
            slot.close()
            raise InvocationError(f"a worker instance failed to start: {text or 'no output'}")
        if size:
            # Capped once started: as Lambda runs a function's init at full speed, a small
            # size slows the work, not the interpreter's start-up.
            self._limit(proc.pid, size)
        instance = Instance(proc, int(text.split()[-1]), slot, size)
        self._background(self._watch(instance))
        return instance

    def _limit(self, pid: int, size: int) -> None:
        """Put a new instance under its size's CPU share (the groups are made on first use)."""
        if self._limiter is None:
            self._limiter = cpu_limiter(own_name("daskless-gateway"))
        try:
            self._limiter.limit(pid, size)
        except OSError as exc:  # the hierarchy went away or refused: run it unlimited
            print(f"daskless gateway: could not limit instance {pid} to {size} MB: {exc}",
                  file=sys.stderr, flush=True)

    async def _watch(self, instance: Instance) -> None:
        """Pass the instance's output on; its end means the process has exited."""
        stream = instance.proc.stdout
        assert stream is not None
        async for line in stream:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        await instance.proc.wait()
        if self._limiter is not None:
            self._limiter.release(instance.proc.pid)
        if instance.alive:  # died while idle: forget it, the next invocation starts another
            self._drop(instance)

    # -- lifecycle -------------------------------------------------------------------------
    async def _open(self, _: web.Application) -> None:
        self._changed = asyncio.Condition()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def _close(self, _: web.Application) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for instance in list(self.instances):
            self._drop(instance)
            await instance.proc.wait()
        if self._session is not None:
            await self._session.close()
        if self._limiter is not None:
            self._limiter.close()
        self.store.close()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def start(gateway: Gateway) -> tuple[web.AppRunner, int]:
    """Listen; returns the runner and the port actually bound."""
    runner, gateway.url, port = await listen(
        gateway.app(), gateway.settings.host, gateway.settings.port)
    return runner, port


def run(settings: GatewaySettings) -> None:
    """Serve until SIGINT or SIGTERM (``daskless gateway``); prints the URL once listening."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        gateway = Gateway(settings)
        runner, _ = await start(gateway)
        print(f"{GATEWAY_READY_LINE} {gateway.url}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def command(store: str | None, host: str, port: int, max_instances: int,
            idle_timeout_s: float, queue_limit: int | None, insecure: bool) -> int:
    """``daskless gateway``: settings from the options and ``dask.config``; serve forever."""
    import dask.config

    run(GatewaySettings(
        store=store_url(store, "daskless gateway"),
        secret=auth.take_secret(),
        insecure=insecure or bool(dask.config.get("daskless.auth.insecure")),
        max_age_s=float(dask.config.get("daskless.auth.max-age")),
        host=host, port=port, max_instances=max_instances, idle_timeout_s=idle_timeout_s,
        queue_limit=queue_limit,
    ))
    return 0

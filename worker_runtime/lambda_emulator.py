"""A local emulator of the AWS Lambda Invoke API, for tests and for trying ``lambda://`` offline.

``python -m daskless.worker_runtime.lambda_emulator --function daskless --env DASKLESS_STORE=redis://...``
serves ``POST /2015-03-31/functions/{name}/invocations`` on a real aiohttp server, so the real
boto3 client (``endpoint_url=...``) talks to it exactly as it talks to AWS. What it models:

- **Instances are real processes** (``python -m daskless.worker_runtime.lambda_emulator
  --instance``), each running the function's handler on one invocation at a time, like a Lambda
  execution environment. An idle instance is reused (a warm start); a new one is started only when
  every instance is busy (a cold start). Instances speak to the emulator over a private pipe, one
  JSON line per invocation each way; what a task prints goes to standard error.
- **Invocation types.** ``Event`` answers 202 at once and runs in the background;
  ``RequestResponse`` (the default) answers 200 with the handler's result, or with
  ``X-Amz-Function-Error: Unhandled`` and the AWS error body; ``DryRun`` answers 204.
- **Concurrency.** At most ``max_concurrency`` invocations of a function run at once. One more
  is refused with 429 and the ``TooManyRequestsException`` error shape (header
  ``x-amzn-ErrorType``, body ``{"Type", "message", "Reason"}``), which is how throttling is
  tested; with ``queue_limit`` that many ``Event`` invocations wait for a free instance first,
  as AWS queues asynchronous invocations.
- **Failures.** An instance that exits mid-invocation fails it with ``Runtime.ExitError`` and is
  discarded; one that runs past ``timeout_s`` is killed. A failed ``Event`` invocation is not
  retried (as with ``MaximumRetryAttempts: 0``); when the function has an on-failure
  destination, the emulator invokes that function with the same record AWS sends
  (``requestContext``, ``requestPayload``, ``responseContext``, ``responsePayload``).
- **Sizes.** A function has a memory size; with ``cpu_limits`` its instances get that size's
  CPU share (``worker_runtime.cpu_limits``: 1,769 MB is one vCPU, as on Lambda), so functions
  of several sizes (``daskless.lambda.functions``) run at their sizes' speeds on one machine.
  ``--memory NAME=MB`` sets a function's size on the command line.
- Unknown functions get 404 ``ResourceNotFoundException``, bodies that are not JSON 400
  ``InvalidRequestContentException``, oversized event payloads 413.

:class:`EmulatorThread` runs an emulator on a background thread of the calling process (tests
use it); instances get dummy AWS credentials and the emulator's own URL as the Lambda endpoint,
so functions that invoke functions reach the emulator too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from daskless.worker_runtime.cpu_limits import CpuLimiter, NoLimits, cpu_limiter, own_name

DEFAULT_HANDLER = "daskless.worker_runtime.lambda_handler.handler"
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
MAX_EVENT_BYTES = 256 * 1024
MAX_SYNC_BYTES = 6 * 1024 * 1024


@dataclass
class FunctionConfig:
    """One emulated function."""

    name: str
    handler: str = DEFAULT_HANDLER
    environment: dict[str, str] = field(default_factory=dict)
    max_concurrency: int = 10
    memory_mb: int = 1024
    timeout_s: float = 900.0
    # Event invocations that may wait for a free instance (AWS queues them); 0: refuse with
    # 429 as soon as max_concurrency invocations run, which is how throttling is tested.
    queue_limit: int = 0
    # The function an Event invocation's failure record is sent to ("self": this one).
    on_failure: str | None = "self"


@dataclass
class FunctionStats:
    """What happened to a function's invocations (tests and the command line read these)."""

    invocations: int = 0
    completed: int = 0  # invocations that ended, whatever their outcome
    cold_starts: int = 0
    throttled: int = 0
    failed: int = 0
    crashed: int = 0
    largest_payload: int = 0
    last_payload: int = 0


def _error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = {"Type": "User", "message": message, **extra}
    return web.json_response(body, status=status, headers={"x-amzn-ErrorType": code})


# -- one execution environment ----------------------------------------------------------------


class Instance:
    """A worker process that runs the handler for one invocation at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.alive = True

    @classmethod
    async def start(cls, config: FunctionConfig, env: Mapping[str, str],
                    limiter: CpuLimiter) -> Instance:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daskless.worker_runtime.lambda_emulator", "--instance",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=dict(env),
            limit=2 * MAX_SYNC_BYTES,
        )
        limiter.limit(proc.pid, config.memory_mb)
        assert proc.stdin is not None
        settings = {"handler": config.handler, "function": config.name,
                    "memory": config.memory_mb, "timeout": config.timeout_s}
        proc.stdin.write(json.dumps(settings).encode() + b"\n")
        return cls(proc)

    async def run(self, request_id: str, payload: bytes, timeout_s: float) -> tuple[bool, Any]:
        """``(True, result)`` or ``(False, AWS error body)``; a dead instance stays dead."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"id": request_id, "payload": payload.decode("utf-8")}
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except asyncio.TimeoutError:
            await self.kill()
            return False, {"errorType": "Sandbox.Timedout",
                           "errorMessage": f"{_stamp(request_id)} Task timed out after "
                                           f"{timeout_s:.2f} seconds"}
        except (ConnectionError, BrokenPipeError):
            line = b""
        if not line:
            self.alive = False
            code = await self.proc.wait()
            return False, {"errorType": "Runtime.ExitError",
                           "errorMessage": f"{_stamp(request_id)} Error: Runtime exited with "
                                           f"error: exit status {code}"}
        reply = json.loads(line)
        return bool(reply["ok"]), reply["result"] if reply["ok"] else reply["error"]

    async def kill(self) -> None:
        self.alive = False
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        self.alive = False
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the instance's loop ends with its standard input
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            await self.kill()


def _stamp(request_id: str) -> str:
    return f"RequestId: {request_id}"


# -- a function: its instances and its concurrency --------------------------------------------


class Function:
    """An emulated function: warm instances, in-flight invocations and their limit."""

    def __init__(self, config: FunctionConfig, env: Mapping[str, str],
                 limiter: CpuLimiter) -> None:
        self.config = config
        self.stats = FunctionStats()
        self._env = env
        self._limiter = limiter
        self._idle: list[Instance] = []
        self._all: set[Instance] = set()
        self._in_flight = 0
        self._queued = 0
        self._freed = asyncio.Condition()

    def reserve(self) -> bool:
        """Take one slot of the function's concurrency if one is free."""
        if self._in_flight >= self.config.max_concurrency:
            return False
        self._in_flight += 1
        return True

    def enqueue(self) -> bool:
        """Queue an Event invocation that found no free slot, or count a throttle."""
        if self._queued >= self.config.queue_limit:
            self.stats.throttled += 1
            return False
        self._queued += 1
        return True

    async def dequeue(self) -> None:
        """Wait for a slot for a queued invocation, and take it."""
        try:
            await self.reserve_when_free()
        finally:
            self._queued -= 1

    async def reserve_when_free(self) -> None:
        """Take a slot, waiting for one (the platform's own deliveries queue instead of failing)."""
        async with self._freed:
            await self._freed.wait_for(
                lambda: self._in_flight < self.config.max_concurrency
            )
            self._in_flight += 1

    async def call(self, request_id: str, payload: bytes) -> tuple[bool, Any]:
        """Run one reserved invocation on a warm instance, or a new one."""
        self.stats.invocations += 1
        self.stats.largest_payload = max(self.stats.largest_payload, len(payload))
        self.stats.last_payload = len(payload)
        try:
            instance = self._idle.pop() if self._idle else await self._start_instance()
            ok, body = await instance.run(request_id, payload, self.config.timeout_s)
            if instance.alive:
                self._idle.append(instance)
            else:
                self._all.discard(instance)
                self._limiter.release(instance.proc.pid)
                self.stats.crashed += 1
        finally:
            self._in_flight -= 1
            self.stats.completed += 1
            async with self._freed:
                self._freed.notify_all()
        if not ok:
            self.stats.failed += 1
        return ok, body

    async def _start_instance(self) -> Instance:
        self.stats.cold_starts += 1
        instance = await Instance.start(self.config, self._env, self._limiter)
        self._all.add(instance)
        return instance

    async def close(self) -> None:
        await asyncio.gather(*(i.stop() for i in list(self._all)))
        self._all.clear()
        self._idle.clear()


# -- the HTTP API ------------------------------------------------------------------------------


class LambdaEmulator:
    """The Invoke API over a set of emulated functions; see the module docstring."""

    def __init__(self, functions: list[FunctionConfig], cpu_limits: bool = False) -> None:
        self.configs = {f.name: f for f in functions}
        self.limiter: CpuLimiter = (cpu_limiter(own_name("daskless-lambda-emulator"))
                                    if cpu_limits else NoLimits())
        self.functions: dict[str, Function] = {}
        self.url = ""
        self._background: set[asyncio.Task[None]] = set()
        self.app = web.Application(client_max_size=MAX_SYNC_BYTES + 1024)
        self.app.router.add_post(INVOKE_PATH, self._invoke)
        self.app.on_cleanup.append(self._close)

    def start_functions(self, url: str) -> None:
        """Bind the functions to the emulator's URL (their fan-outs come back here)."""
        self.url = url
        for name, config in self.configs.items():
            self.functions[name] = Function(config, self._environment(config), self.limiter)

    def _environment(self, config: FunctionConfig) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.setdefault("AWS_REGION", "us-east-1")
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        env.setdefault("AWS_ACCESS_KEY_ID", "emulator")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "emulator")
        env["AWS_LAMBDA_FUNCTION_NAME"] = config.name
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(config.memory_mb)
        env["DASK_DASKLESS__LAMBDA__ENDPOINT_URL"] = self.url
        env.update(config.environment)
        return env

    def _function(self, name: str) -> Function | None:
        # A name, ``name:qualifier`` or a full ARN all name the same function here.
        name = name.split(":function:")[-1].split(":")[0]
        return self.functions.get(name)

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        fn = self._function(request.match_info["name"])
        if fn is None:
            return _error(404, "ResourceNotFoundException",
                          f"Function not found: {request.match_info['name']}")
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = await request.read() or b"{}"
        try:
            json.loads(payload)
        except ValueError:
            return _error(400, "InvalidRequestContentException",
                          "Could not parse request body into json")
        if kind == "DryRun":
            return web.Response(status=204)
        if kind == "Event" and len(payload) > MAX_EVENT_BYTES:
            return _error(413, "RequestEntityTooLargeException",
                          f"Request must be smaller than {MAX_EVENT_BYTES} bytes for the "
                          "InvokeAsync operation")
        if kind not in ("Event", "RequestResponse"):
            return _error(400, "InvalidParameterValueException",
                          f"Unsupported invocation type {kind}")
        request_id = str(uuid.uuid4())
        headers = {"x-amzn-RequestId": request_id}
        reserved = fn.reserve()
        if kind == "Event" and (reserved or fn.enqueue()):
            self._spawn(self._run_event(fn, request_id, payload, reserved))
            return web.Response(status=202, headers=headers)
        if not reserved:
            if kind != "Event":
                fn.stats.throttled += 1
            return _error(429, "TooManyRequestsException", "Rate Exceeded.",
                          Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
        ok, body = await fn.call(request_id, payload)
        headers["X-Amz-Executed-Version"] = "$LATEST"
        if not ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return web.json_response(body, headers=headers)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)  # keep a reference until it ends
        task.add_done_callback(self._background.discard)

    async def _run_event(self, fn: Function, request_id: str, payload: bytes,
                         reserved: bool) -> None:
        try:
            if not reserved:
                await fn.dequeue()
            await self._run_event_to_end(fn, request_id, payload)
        except Exception:  # nobody waits for an Event invocation: report it here
            traceback.print_exc()

    async def _run_event_to_end(self, fn: Function, request_id: str, payload: bytes) -> None:
        ok, body = await fn.call(request_id, payload)
        target = fn.config.on_failure
        if ok or target is None:
            return
        destination = self._function(fn.config.name if target == "self" else target)
        if destination is None:
            return
        record = failure_record(fn.config.name, request_id, payload, body)
        await destination.reserve_when_free()
        await destination.call(str(uuid.uuid4()), json.dumps(record).encode())

    async def _close(self, _: web.Application) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(f.close() for f in self.functions.values()))
        self.limiter.close()


def failure_record(function: str, request_id: str, payload: bytes, error: Any) -> dict[str, Any]:
    """The record an on-failure destination receives for a failed asynchronous invocation."""
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{function}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": json.loads(payload),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": error,
    }


# -- running it --------------------------------------------------------------------------------


class EmulatorThread:
    """An emulator serving on a loopback port from a background thread of this process."""

    def __init__(self, functions: list[FunctionConfig], host: str = "127.0.0.1",
                 cpu_limits: bool = False) -> None:
        self.emulator = LambdaEmulator(functions, cpu_limits)
        self._host = host
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="lambda-emulator", daemon=True)

    @property
    def url(self) -> str:
        return self.emulator.url

    def stats(self, function: str) -> FunctionStats:
        return self.emulator.functions[function].stats

    def start(self) -> EmulatorThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self.emulator.app, handle_signals=False)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.emulator.start_functions(f"http://{self._host}:{port}")
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        await self._stopped.wait()
        await runner.cleanup()


def _instance_main() -> None:
    """The loop of one instance: read an invocation, run the handler, write its outcome."""
    from daskless.worker_runtime.hosting import die_with_parent

    die_with_parent()
    settings = json.loads(sys.stdin.readline())
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what tasks print must not mix with the replies
    module, _, name = str(settings["handler"]).rpartition(".")
    function = getattr(importlib.import_module(module), name)
    for line in sys.stdin:
        request = json.loads(line)
        context = _Context(request["id"], settings)
        try:
            reply = {"ok": True, "result": function(json.loads(request["payload"]), context)}
        except Exception as exc:
            reply = {"ok": False, "error": {
                "errorType": type(exc).__name__, "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }}
        replies.write(json.dumps(reply, default=repr) + "\n")
        replies.flush()


class _Context:
    """The handler's ``context`` argument, with the attributes the Lambda runtime provides."""

    def __init__(self, request_id: str, settings: Mapping[str, Any]) -> None:
        self.aws_request_id = request_id
        self.function_name = str(settings["function"])
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(settings["memory"])
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"
        )
        self._deadline = time.monotonic() + float(settings["timeout"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _parse_env(items: list[str]) -> Iterator[tuple[str, str]]:
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env expects KEY=VALUE, not {item!r}")
        yield key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m daskless.worker_runtime.lambda_emulator",
        description="Serve the AWS Lambda Invoke API locally, running handlers in processes.",
    )
    parser.add_argument("--instance", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--function", action="append", default=[],
                        help="function name (repeatable; default: daskless)")
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the functions (repeatable)")
    parser.add_argument("--max-concurrency", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--memory", action="append", default=[], metavar="NAME=MB",
                        help="a function's memory size (repeatable; default 1024)")
    parser.add_argument("--cpu-limits", action="store_true",
                        help="give each instance its function's CPU share (cgroups; 1769 MB "
                             "is one vCPU)")
    parser.add_argument("--queue-limit", type=int, default=0,
                        help="Event invocations that may wait for a free instance, as in AWS "
                             "(default 0: answer 429 at --max-concurrency)")
    args = parser.parse_args(argv)
    if args.instance:
        _instance_main()
        return
    env = dict(_parse_env(args.env))
    memory = {name: int(mb) for name, mb in _parse_env(args.memory)}
    emulator = LambdaEmulator([
        FunctionConfig(name, args.handler, env, args.max_concurrency,
                       memory_mb=memory.get(name, 1024), timeout_s=args.timeout,
                       queue_limit=args.queue_limit)
        for name in args.function or ["daskless"]
    ], cpu_limits=args.cpu_limits)
    emulator.start_functions(f"http://{args.host}:{args.port}")
    print(f"Lambda emulator on http://{args.host}:{args.port} "
          f"(functions: {', '.join(emulator.configs)})", flush=True)
    web.run_app(emulator.app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()

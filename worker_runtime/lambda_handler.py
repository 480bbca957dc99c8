"""The AWS Lambda entry point: ``daskless.worker_runtime.lambda_handler.handler``.

A Lambda instance is a warm worker like a process of the local pool, and runs invocations with
the same code (:func:`daskless.worker_runtime.worker.handle`); only its surroundings differ:

- **Cold and warm starts.** The first event an instance sees reads its settings from the
  environment, connects to Redis and builds the Lambda client it fans out with; all of that
  lives in module globals (:data:`_warm`) and serves every later event of the instance, as do
  the sub-DAG cache and the originals of shipped outputs. The boto3 client is made at the
  first fan-out, so instances that never fan out never import boto3. The result of an
  invocation says which kind of start it was.
- **Settings** come from the function's environment: the store from ``DASKLESS_STORE`` or
  ``DASK_DASKLESS__STORE`` (a ``redis://``/``rediss://`` URL), the secret from
  ``DASK_DASKLESS__AUTH__SECRET`` (read once and removed from the environment, so tasks cannot
  find it), the ``daskless.lambda`` settings from ``DASK_DASKLESS__LAMBDA__...`` variables. The
  function invokes itself for fan-out (``AWS_LAMBDA_FUNCTION_NAME``, set by the platform).
- **Only signed events run.** An event is the signed envelope of
  :mod:`daskless.worker_runtime.auth`; an unsigned, tampered, stale or replayed one raises
  :class:`~daskless.worker_runtime.errors.SignatureError` before anything is read or run. Replays
  are refused across all instances through Redis.
- **A worker id per invocation** (``<function>:<request id>``). The platform knows an
  invocation by its request id, so when an instance dies mid-invocation (a task calls
  ``os._exit``, runs out of memory, segfaults), the platform's on-failure record names the same
  id. The function is its own on-failure destination (see ``deploy/aws/template.yaml``): given
  such a record it checks the original envelope's signature and appends a ``WorkerLost`` event
  for that worker and partition to the run, which the client turns into
  :class:`~daskless.worker_runtime.errors.WorkerLostError` instead of waiting forever, also for
  invocations that failed before their worker could announce itself (refused as stale after a
  long wait in the platform's queue, or dead during a cold start). A record's envelope has been
  used once already and may be older than the replay window, so for records only the signature
  itself is checked. A record of a copy refused as a replay is no lost worker: Lambda delivered
  the event twice, and the first copy runs; such records are ignored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dask.config

from daskless.worker_runtime import faults, hosting
from daskless.worker_runtime.auth import RedisSeenSignatures, Signer, take_secret
from daskless.worker_runtime.context import SpecCache, WorkerContext
from daskless.worker_runtime.errors import ConfigurationError, InvocationError, RunGoneError
from daskless.worker_runtime.events import WorkerLost
from daskless.worker_runtime.invokers.aws_lambda import SCHEME, LambdaInvoker, LambdaSettings
from daskless.worker_runtime.protocol import Invocation
from daskless.worker_runtime.store import urls
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.worker import handle

STORE_ENVS = ("DASKLESS_STORE", "DASK_DASKLESS__STORE")
FUNCTION_ENV = "AWS_LAMBDA_FUNCTION_NAME"


class _EveryUseIsFirst:
    """Replay memory for on-failure records, whose envelope was accepted once already."""

    def first_use(self, signature: str, ttl_s: float) -> bool:
        return True


@dataclass
class WarmState:
    """What an instance keeps between invocations."""

    function: str
    store: RedisStore
    signer: Signer
    record_signer: Signer
    invoker: LambdaInvoker
    specs: SpecCache
    invocations: int = 0
    gate: hosting.InvocationGate = field(
        default_factory=lambda: hosting.InvocationGate(hosting.tuning("freeze-worker-heap")))


_warm: WarmState | None = None


def store_url(environ: Mapping[str, str]) -> str:
    """The Redis URL the function's environment names (else ``daskless.store``).

    Only a URL another machine can reach will do: the function runs elsewhere.
    """
    url = next((environ[name] for name in STORE_ENVS if environ.get(name)), None)
    if url is None:
        url = str(dask.config.get("daskless.store"))
    if not urls.is_redis_url(url, urls.REMOTE_SCHEMES):
        raise ConfigurationError(
            f"a Lambda worker needs a Redis it can reach: set {STORE_ENVS[0]} (or "
            f"{STORE_ENVS[1]}) to a URL starting with {urls.listed(urls.REMOTE_SCHEMES)}, "
            f"not {urls.masked(url)!r}"
        )
    return url


def cold_start(environ: Mapping[str, str] = os.environ) -> WarmState:
    """Read the settings, connect to the store and make the fan-out client."""
    secret = take_secret()
    if not secret:
        raise ConfigurationError(
            "a Lambda worker needs the invocation secret: set DASK_DASKLESS__AUTH__SECRET"
        )
    function = environ.get(FUNCTION_ENV)
    if not function:
        raise ConfigurationError(f"{FUNCTION_ENV} is not set: is this running in Lambda?")
    url = store_url(environ)
    store = RedisStore(url)
    store.ping()
    settings = LambdaSettings.from_config(SCHEME + function, dask.config.get("daskless.lambda"))
    signer = Signer(secret, seen=RedisSeenSignatures(store.client))  # daskless.auth.max-age
    # Computes nested in a task run on threads of this instance, against the same store.
    hosting.configure_nested_computes(url, {})
    return WarmState(
        function=function,
        store=store,
        signer=signer,
        record_signer=Signer(secret, math.inf, seen=_EveryUseIsFirst()),
        invoker=LambdaInvoker(settings, signer, lazy=True),
        specs=SpecCache(),
    )


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Run one signed invocation (or record a lost one); see the module docstring."""
    global _warm
    cold = _warm is None
    if _warm is None:
        _warm = cold_start()
    warm = _warm
    warm.invocations += 1
    if is_failure_record(event):
        return report_lost(warm, event)
    invocation = Invocation.from_bytes(warm.signer.verify_envelope(event))
    worker_id = f"{warm.function}:{_request_id(context)}"
    worker = WorkerContext(
        store=warm.store,
        invoker=faults.wrap(warm.invoker),
        worker_id=worker_id,
        specs=warm.specs,
        forward_warnings=True,
    )
    with warm.gate.invocation():
        handle(invocation, worker)
    return {"run": invocation.run_id, "partition": invocation.partition,
            "worker": worker_id, "cold": cold, "pid": os.getpid()}


def is_failure_record(event: Any) -> bool:
    """Whether ``event`` is the platform's record of an asynchronous invocation that failed."""
    return (
        isinstance(event, Mapping)
        and isinstance(event.get("requestContext"), Mapping)
        and "requestPayload" in event
    )


def report_lost(warm: WarmState, record: Mapping[str, Any]) -> dict[str, Any]:
    """Tell the failed invocation's run that its worker is gone."""
    body = warm.record_signer.verify_envelope(record.get("requestPayload"))
    invocation = Invocation.from_bytes(body)
    request = record["requestContext"]
    worker_id = f"{warm.function}:{request.get('requestId', '')}"
    if _refused_as_replay(record):
        # A second delivery of an event (Lambda delivers at least once): the first one was
        # accepted and runs or ran; this copy did nothing, and no worker was lost.
        return {"run": invocation.run_id, "duplicate": worker_id}
    reason = _failure_reason(record)
    # Whether or not the invocation had started (it may have been refused as stale after
    # waiting in the platform's queue, or died while starting), the platform will not run it
    # again: the client hears of it either way.
    now = time.time()
    event = WorkerLost(worker_id, reason, invocation.partition, False, invocation.id,
                       invocation.epoch, -1)
    # A run that already ended, or moved on to a newer epoch, has nobody waiting for it.
    with contextlib.suppress(RunGoneError):
        warm.store.deliver(invocation.run_id, events=[event], epoch=invocation.epoch)
    return {"run": invocation.run_id, "lost": worker_id, "reason": reason, "t": now}


def _refused_as_replay(record: Mapping[str, Any]) -> bool:
    response = record.get("responsePayload")
    return (isinstance(response, Mapping) and response.get("errorType") == "SignatureError"
            and "replayed" in str(response.get("errorMessage", "")))


def _failure_reason(record: Mapping[str, Any]) -> str:
    response = record.get("responsePayload")
    if isinstance(response, Mapping):
        text = str(response.get("errorMessage") or response.get("errorType") or "")
    else:
        text = json.dumps(response)[:500] if response is not None else ""
    condition = record["requestContext"].get("condition", "failed")
    return f"Lambda invocation failed ({condition}): {text or 'no error message'}"


def _request_id(context: Any) -> str:
    request_id = getattr(context, "aws_request_id", None)
    if not request_id:
        raise InvocationError("the platform gave no request id for this invocation")
    return str(request_id)

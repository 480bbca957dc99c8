"""AWS Lambda invocations: ``lambda://function-name`` runs every sub-DAG in one Lambda function.

The client invokes the entry workers and every worker invokes its fan-outs the same way: an
asynchronous ``Invoke`` (``InvocationType="Event"``) of the same function, whose payload is the
signed JSON envelope of :mod:`daskless.worker_runtime.auth` around a small
:class:`~daskless.worker_runtime.protocol.Invocation`. Nothing waits for the function to run; the
run's event stream tells the client what happened.

Delivery is the only thing this module guarantees, and it does so with bounded effort:

- Several invocations go out concurrently, at most ``max_concurrency`` at a time, so a wide
  fan-out costs about one round trip instead of one per branch.
- A throttled request (``TooManyRequestsException``, HTTP 429), a server error (5xx) or a lost
  connection is retried with exponential back-off and jitter, at most ``max_attempts`` times in
  all; every attempt is signed afresh, so a retry is never refused as a replay. botocore's own
  retries are switched off so that this policy is the whole story.
- Anything else (an unknown function, a refused request), or the last failed attempt, raises
  :class:`~daskless.worker_runtime.errors.InvocationError` naming the function, the run and the
  reason.

Payloads stay small: an inline sub-DAG whose envelope would exceed ``max_payload_bytes`` (the
asynchronous invocation limit) is dropped from the payload, and the worker reads it from the
store, where the client stored every sub-DAG once.

boto3 is an optional dependency (the ``aws`` extra); it is imported when the first invoker is
made, and its absence is a :class:`~daskless.worker_runtime.errors.ConfigurationError` that says how
to install it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from daskless.worker_runtime.errors import ConfigurationError, InvocationError
from daskless.worker_runtime.protocol import Invocation

SCHEME = "lambda://"
RETRYABLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException",
                             "ServiceException", "EC2ThrottledException"})


class EnvelopeSigner(Protocol):
    """What the invoker needs from :class:`daskless.worker_runtime.auth.Signer`."""

    def sign_envelope(self, body: bytes) -> dict[str, str]:
        ...


def function_name(url: str) -> str:
    """The function a ``lambda://name`` setting names (a name, an ARN or ``name:alias``)."""
    if not url.startswith(SCHEME) or not url[len(SCHEME):].strip("/"):
        raise ConfigurationError(
            f"a Lambda invoker is named lambda://<function-name>, not {url!r}"
        )
    return url[len(SCHEME):].strip("/")


@dataclass(frozen=True)
class LambdaSettings:
    """How to reach one Lambda function: the ``daskless.lambda`` settings plus its name.

    Every field but ``function`` is one ``daskless.lambda`` key (``endpoint_url`` is
    ``endpoint-url``); their defaults are in ``daskless.yaml``, and ``region`` and
    ``endpoint_url`` are ``None`` there (boto3's own choice).
    """

    function: str
    region: str | None
    endpoint_url: str | None
    max_concurrency: int
    max_attempts: int
    backoff: float
    max_backoff: float
    max_payload_bytes: int
    connect_timeout: float
    read_timeout: float
    functions: Mapping[int, str] = field(default_factory=dict)
    """Worker size (MB) -> the function configured with that memory (``functions``)."""

    def function_for(self, memory_mb: int) -> str:
        """The function an invocation of ``memory_mb`` goes to (the URL's one by default)."""
        return self.functions.get(memory_mb, self.function) if memory_mb else self.function

    @classmethod
    def from_config(cls, url: str, config: Mapping[str, Any]) -> LambdaSettings:
        """Settings for ``lambda://name`` from the ``daskless.lambda`` mapping (dashes or not)."""
        function = function_name(url)
        values = {str(k).replace("-", "_"): v for k, v in config.items()}
        unknown = set(values) - set(_CONVERTERS)
        if unknown:
            raise ConfigurationError(f"unknown daskless.lambda settings: {sorted(unknown)}")
        missing = set(_CONVERTERS) - set(values) - {"functions"}  # functions: optional
        if missing:
            raise ConfigurationError(
                f"daskless.lambda has no {', '.join(sorted(missing))}: set its keys one by one "
                f"(daskless.lambda.region, ...) rather than replacing the whole section"
            )
        try:
            # Values from environment variables or YAML may arrive as text.
            converted: dict[str, Any] = {
                k: None if v is None else _CONVERTERS[k](v) for k, v in values.items()
            }
            if converted.get("functions") is None:
                converted.pop("functions", None)
            settings = cls(function=function, **converted)
            _check_positive(settings)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad daskless.lambda settings: {exc}") from exc
        return settings


def _functions(value: Any) -> dict[int, str]:
    """``{size: function name}``, sizes positive whole MB (YAML and environment variables
    may give the sizes as text)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"functions is a mapping of sizes (MB) to function names, not {value!r}")
    functions = {int(size): str(name) for size, name in value.items()}
    if any(size <= 0 for size in functions) or not all(functions.values()):
        raise ValueError(f"functions maps positive sizes (MB) to function names: {value!r}")
    return functions


_CONVERTERS: dict[str, Any] = {
    "region": str, "endpoint_url": str, "max_concurrency": int, "max_attempts": int,
    "backoff": float, "max_backoff": float, "max_payload_bytes": int,
    "connect_timeout": float, "read_timeout": float, "functions": _functions,
}


def _check_positive(settings: LambdaSettings) -> None:
    for name in ("max_concurrency", "max_attempts", "max_payload_bytes"):
        if int(getattr(settings, name)) < 1:
            raise ValueError(f"{name} must be at least 1")


def make_client(settings: LambdaSettings) -> Any:
    """A boto3 Lambda client for ``settings``, without botocore's own retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigurationError(
            "the lambda:// invoker needs boto3: install daskless with the 'aws' extra "
            "(pip install 'daskless[aws]')"
        ) from exc
    config = Config(
        retries={"total_max_attempts": 1},
        max_pool_connections=max(10, settings.max_concurrency),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    return boto3.session.Session().client(
        "lambda", region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )


class LambdaInvoker:
    """Asynchronous invocations of one Lambda function; see the module docstring."""

    def __init__(self, settings: LambdaSettings, signer: EnvelopeSigner,
                 client: Any | None = None, lazy: bool = False) -> None:
        """``lazy``: make the boto3 client at the first invocation (a Lambda instance that never
        fans out then never pays for importing boto3); otherwise now, so that a missing boto3
        or a bad region fails when the engine starts."""
        self.settings = settings
        self._signer = signer
        self._lock = threading.Lock()
        self._client = client if client is not None or lazy else make_client(settings)
        self._pool: ThreadPoolExecutor | None = None
        self.attempts = 0  # requests sent, retries included (read by tests and reports)

    def invoke(self, invocations: Sequence[Invocation]) -> None:
        """Deliver every invocation or raise :class:`InvocationError` naming the first failure."""
        if len(invocations) == 1:
            self._deliver(invocations[0])
            return
        results = list(self._executor().map(self._attempt_delivery, invocations))
        failures = [exc for exc in results if exc is not None]
        if failures:
            raise InvocationError(
                f"{len(failures)} of {len(invocations)} invocations of Lambda function "
                f"{self.settings.function!r} failed; first: {failures[0]}"
            ) from failures[0]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- one invocation --------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.settings.max_concurrency, thread_name_prefix="daskless-lambda"
                )
            return self._pool

    def _attempt_delivery(self, invocation: Invocation) -> InvocationError | None:
        try:
            self._deliver(invocation)
        except InvocationError as exc:
            return exc
        return None

    def _deliver(self, invocation: Invocation) -> None:
        body = self._small_body(invocation)
        function = self.settings.function_for(invocation.memory_mb)
        last = "no attempt was made"
        for attempt in range(self.settings.max_attempts):
            if attempt:
                time.sleep(self._backoff(attempt))
            payload = json.dumps(self._signer.sign_envelope(body)).encode()
            retry, last = self._send(function, payload)
            if not retry and not last:
                return
            if not retry:
                break
        raise InvocationError(
            f"invocation of Lambda function {function!r} for run "
            f"{invocation.run_id} (partition {invocation.partition}) failed after "
            f"{min(attempt + 1, self.settings.max_attempts)} attempt(s): {last}"
        )

    def _send(self, function: str, payload: bytes) -> tuple[bool, str]:
        """One request: ``(retry?, reason)``; an empty reason means it was accepted."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            self.attempts += 1
            if self._client is None:
                self._client = make_client(self.settings)
            client = self._client
        try:
            response = client.invoke(
                FunctionName=function, InvocationType="Event", Payload=payload
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = str(error.get("Code", ""))
            reason = f"{code or 'HTTP ' + str(status)}: {error.get('Message', '')}".strip()
            return (code in RETRYABLE_CODES or status == 429 or status >= 500), reason
        except BotoCoreError as exc:  # connection refused, reset or timed out
            return True, f"{type(exc).__name__}: {exc}"
        status = int(response.get("StatusCode", 0))
        if status != 202:
            return False, f"unexpected status {status} for an asynchronous invocation"
        return False, ""

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.max_backoff, self.settings.backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads a throttled fan-out

    def _small_body(self, invocation: Invocation) -> bytes:
        body = invocation.to_bytes()
        # Signature, timestamp and JSON escaping add well under 1 KiB to the body.
        too_big = len(body) + 1024 > self.settings.max_payload_bytes
        if invocation.inline_spec is not None and too_big:
            body = replace(invocation, inline_spec=None).to_bytes()
        return body

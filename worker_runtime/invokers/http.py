"""HTTP invocations: POST each invocation to ``<url>/invoke``, signed.

``daskless.invoker = "http://host:port[/prefix]"`` addresses a local gateway
(:mod:`daskless.worker_runtime.gateway`), a single HTTP worker
(:mod:`daskless.worker_runtime.http_worker`) or a platform's function URL alike: they all accept
``POST /invoke`` with the invocation JSON as body and the signature headers of
:mod:`daskless.worker_runtime.auth`, and answer 202 once they have taken the invocation over.

Delivery is done by an aiohttp client on one background event loop per invoker (its own thread),
so a batch of fan-out invocations is sent concurrently over kept-alive connections, at most
``concurrency`` requests at a time. Connection errors, 429 (the target is at its limit) and 5xx
answers are retried with exponential back-off, each attempt signed afresh (a retry is never
mistaken for a replay); any other answer, or running out of attempts, is an
:class:`InvocationError` naming the URL (401 is a :class:`SignatureError`).

Two modes:

- ``wait=True`` (the client): :meth:`HttpInvoker.invoke` returns once every invocation has been
  accepted and raises if one could not be delivered, so a compute against a closed port fails
  quickly with a named error.
- ``wait=False`` (workers fanning out): :meth:`invoke` returns at once and failures go to
  ``on_failure``. A worker never blocks its own instance retrying, which matters when the
  gateway's only free slot is the one this worker is about to release.

Inline sub-DAGs are never sent: an HTTP worker unpickles only what comes from its configured
Redis, so invocations stay a few hundred bytes (run id, partition, entries) and the signature.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import dask.config

from daskless.worker_runtime.auth import Signer
from daskless.worker_runtime.errors import InvocationError, SignatureError
from daskless.worker_runtime.protocol import Invocation

FailureCallback = Callable[[Invocation, InvocationError], None]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 1.0


def _setting(name: str, given: float | None) -> float:
    """``given``, or the ``daskless.http.<name>`` setting."""
    return given if given is not None else float(dask.config.get(f"daskless.http.{name}"))


def invoke_endpoint(url: str) -> str:
    """``<url>/invoke``: a gateway, a worker and a function URL are addressed alike."""
    return url.rstrip("/") + "/invoke"


class HttpInvoker:
    """Sends invocations to ``<url>/invoke``; see the module docstring."""

    def __init__(
        self,
        url: str,
        signer: Signer | None,
        *,
        concurrency: int | None = None,
        attempts: int | None = None,
        backoff_s: float = 0.02,
        timeout_s: float | None = None,
        wait: bool = True,
        on_failure: FailureCallback | None = None,
    ) -> None:
        """``concurrency``, ``attempts`` and ``timeout_s`` left out are the ``daskless.http``
        settings, so a worker's fan-out follows them as the client's invocations do."""
        if not url.startswith(("http://", "https://")):
            raise InvocationError(f"an HTTP invoker needs an http:// or https:// URL, not {url!r}")
        self.url = url
        self.endpoint = invoke_endpoint(url)
        self._signer = signer
        self._concurrency = max(1, int(_setting("concurrency", concurrency)))
        self._attempts = max(1, int(_setting("attempts", attempts)))
        self._backoff_s = backoff_s
        self._timeout = aiohttp.ClientTimeout(total=float(_setting("timeout", timeout_s)))
        self._wait = wait
        self._on_failure = on_failure
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="daskless-http-invoker", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._limit: asyncio.Semaphore | None = None
        self._closed = False

    # -- Invoker ---------------------------------------------------------------------------
    def invoke(self, invocations: Sequence[Invocation]) -> None:
        if not invocations or self._closed:
            return
        bare = [dataclasses.replace(i, inline_spec=None) for i in invocations]
        future = asyncio.run_coroutine_threadsafe(self._send_all(bare), self._loop)
        if self._wait:
            future.result()

    def close(self) -> None:
        """Finish what is being sent, then stop the loop and its thread."""
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self._close_session(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- on the loop -----------------------------------------------------------------------
    async def _send_all(self, invocations: list[Invocation]) -> None:
        results = await asyncio.gather(
            *(self._send_one(i) for i in invocations), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and self._wait:
            raise failures[0]

    async def _send_one(self, invocation: Invocation) -> None:
        try:
            await self._deliver(invocation.to_bytes(), invocation)
        except InvocationError as exc:
            if self._on_failure is not None:
                self._on_failure(invocation, exc)
            raise

    async def _deliver(self, body: bytes, invocation: Invocation) -> None:
        session, limit = self._connection()
        reason: object = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(min(MAX_BACKOFF_S, self._backoff_s * 2 ** (attempt - 1)))
            headers = {"Content-Type": "application/json"}
            if self._signer is not None:
                headers.update(self._signer.sign_headers(body))
            try:
                async with limit, session.post(self.endpoint, data=body, headers=headers) as resp:
                    status, text = resp.status, await resp.text()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                return
            reason = f"HTTP {status} {text[:200]}"
            if status == 401:
                raise SignatureError(f"{self.endpoint} refused the invocation: {text[:200]}")
            if status not in RETRY_STATUSES:
                raise InvocationError(f"{self.endpoint} refused an invocation: {reason}")
        raise InvocationError(
            f"could not deliver invocation of run {invocation.run_id} partition "
            f"{invocation.partition} to {self.endpoint} after {self._attempts} attempts: {reason}"
        )

    def _connection(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._limit is None:
            connector = aiohttp.TCPConnector(limit=self._concurrency)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._limit = asyncio.Semaphore(self._concurrency)
        return self._session, self._limit

    async def _close_session(self) -> None:
        # Let sends already scheduled on the loop finish first.
        pending: list[Any] = [
            t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()
        ]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


"""Signed invocations: who may make a worker run something.

A worker that listens on a network port (an HTTP function, the gateway, a Lambda function) must
not run whatever reaches it. Every invocation sent to one is therefore signed with a secret shared
by the client and its workers (setting ``daskless.auth.secret``, environment variable
``DASK_DASKLESS__AUTH__SECRET``) and checked before anything else happens, unless both sides were
explicitly told to run insecure (``daskless.auth.insecure``, ``--insecure``):

- The signature is ``hex(HMAC-SHA256(secret, timestamp + "." + body))`` where ``body`` is the
  exact invocation bytes (JSON, see :class:`daskless.worker_runtime.protocol.Invocation`) and
  ``timestamp`` is the signer's clock in seconds (text, six decimals). The payload never contains
  the secret, so a task cannot learn it from its invocation.
- Two carriers hold the same three values:

  * HTTP headers (:meth:`Signer.sign_headers` / :meth:`Signer.verify_headers`):
    ``X-Daskless-Timestamp`` and ``X-Daskless-Signature``, the body being the request body;
  * a JSON envelope for transports without headers, such as Lambda events
    (:meth:`Signer.sign_envelope` / :meth:`Signer.verify_envelope`):
    ``{"invocation": "<body as text>", "timestamp": "<ts>", "signature": "<hex>"}``.

- Verification raises :class:`daskless.worker_runtime.errors.SignatureError` for an invocation that
  is unsigned, tampered with (signature mismatch), stale (timestamp further than ``max_age_s``,
  by default ``daskless.auth.max-age``, from the verifier's clock, either way) or replayed (its
  signature was accepted before).
- Replays are caught by remembering accepted signatures until they could no longer pass the age
  check (``2 * max_age_s``). :class:`MemorySeenSignatures` does so within one process;
  :class:`RedisSeenSignatures` does so across every instance sharing a Redis with one
  ``SET key 1 NX EX ttl`` (key names from :mod:`daskless.worker_runtime.keys`). Each retry of a
  delivery is signed afresh, so a legitimate retry never looks like a replay.

Where the secret comes from: :func:`take_secret` reads ``daskless.auth.secret`` (which dask fills
from the environment variable) and removes it from ``os.environ`` and from ``dask.config``, so
tasks started later in that process find it in neither. The gateway hands it to the instances
it starts on their standard input, never on a command line. A network-facing worker with no
secret refuses to start unless told to run insecure (see :func:`require_secret`). The local
process pool does not sign at all: its queue lives in the engine's own Redis, and whoever can
push there can also write the sub-DAGs its workers load. :func:`generate_secret` makes a secret
for a deployment to share.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import dask.config

from daskless.worker_runtime import keys
from daskless.worker_runtime.errors import ConfigurationError, SignatureError

TIMESTAMP_HEADER = "X-Daskless-Timestamp"
SIGNATURE_HEADER = "X-Daskless-Signature"
SECRET_ENV = "DASK_DASKLESS__AUTH__SECRET"


class SeenSignatures(Protocol):
    """Remembers accepted signatures for a while, to refuse a second use."""

    def first_use(self, signature: str, ttl_s: float) -> bool:
        """Record ``signature`` for ``ttl_s`` seconds; False if it was already recorded."""
        ...


class MemorySeenSignatures:
    """Accepted signatures of this process, each forgotten once it has expired."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, signature: str, ttl_s: float) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._expiry) > 1024:
                # Amortized pruning keeps the map as small as the traffic of one ttl window.
                self._expiry = {s: t for s, t in self._expiry.items() if t > now}
            expiry = self._expiry.get(signature)
            if expiry is not None and expiry > now:
                return False
            self._expiry[signature] = now + ttl_s
            return True


class RedisSeenSignatures:
    """Accepted signatures shared by every instance that uses one Redis.

    ``client`` is a ``redis.Redis`` (typed loosely so this module does not need redis to
    import); ``SET NX`` makes the check-and-record atomic across instances.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def first_use(self, signature: str, ttl_s: float) -> bool:
        key = keys.seen_signature(signature)
        return bool(self._client.set(key, b"1", nx=True, ex=max(1, math.ceil(ttl_s))))


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


class Signer:
    """Signs invocations and verifies them; see the module docstring for the format."""

    def __init__(
        self,
        secret: str | bytes,
        max_age_s: float | None = None,
        seen: SeenSignatures | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_age_s``: how old a signature may be when verified; by default the
        ``daskless.auth.max-age`` setting. ``seen``: the replay memory (by default this
        process's own)."""
        if not secret:
            raise ConfigurationError("an invocation secret must not be empty")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        if max_age_s is None:
            max_age_s = float(dask.config.get("daskless.auth.max-age"))
        self.max_age_s = float(max_age_s)
        self._seen: SeenSignatures = seen if seen is not None else MemorySeenSignatures()
        self._clock = clock

    def __repr__(self) -> str:  # never show the secret
        return f"Signer(max_age_s={self.max_age_s})"

    # -- signing ---------------------------------------------------------------------------
    def sign(self, body: bytes) -> tuple[str, str]:
        """``(timestamp, signature)`` for ``body``, stamped now."""
        timestamp = f"{self._clock():.6f}"
        return timestamp, _mac(self._secret, timestamp, body)

    def sign_headers(self, body: bytes) -> dict[str, str]:
        """The headers that carry the signature of an HTTP request whose body is ``body``."""
        timestamp, signature = self.sign(body)
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}

    def sign_envelope(self, body: bytes) -> dict[str, str]:
        """A JSON-ready envelope holding ``body`` (UTF-8 JSON text) and its signature."""
        timestamp, signature = self.sign(body)
        return {"invocation": body.decode("utf-8"), "timestamp": timestamp, "signature": signature}

    # -- verifying -------------------------------------------------------------------------
    def verify(self, body: bytes, timestamp: object, signature: object) -> None:
        """Accept ``body`` once, or raise :class:`SignatureError` saying why not."""
        if not isinstance(timestamp, str) or not isinstance(signature, str):
            raise SignatureError("invocation is not signed")
        if not timestamp or not signature:
            raise SignatureError("invocation is not signed")
        try:
            stamped = float(timestamp)
            timestamp.encode("ascii")
        except (ValueError, UnicodeEncodeError):
            shown = timestamp[:40]
            raise SignatureError(f"invocation timestamp {shown!r} is not a number") from None
        if not math.isfinite(stamped):
            raise SignatureError("invocation timestamp is not a finite number")
        expected = _mac(self._secret, timestamp, body)
        if not hmac.compare_digest(expected, signature):
            raise SignatureError("invocation signature does not match (tampered or wrong secret)")
        age = self._clock() - stamped
        if abs(age) > self.max_age_s:
            raise SignatureError(
                f"invocation is stale: signed {age:.0f} s away from now "
                f"(daskless.auth.max-age is {self.max_age_s:g} s)"
            )
        if not self._seen.first_use(signature, 2 * self.max_age_s):
            raise SignatureError("invocation was replayed: this signature was already used")

    def verify_headers(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Check an HTTP request (``headers`` may be any case-insensitive mapping)."""
        self.verify(body, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER))

    def verify_envelope(self, envelope: object) -> bytes:
        """Check an envelope (a mapping, or its JSON text/bytes); return the invocation bytes."""
        if isinstance(envelope, (bytes, str)):
            try:
                envelope = json.loads(envelope)
            except ValueError as exc:
                raise SignatureError(f"invocation envelope is not JSON: {exc}") from None
        if not isinstance(envelope, Mapping) or not isinstance(envelope.get("invocation"), str):
            raise SignatureError("invocation is not signed (no signed envelope)")
        body = str(envelope["invocation"]).encode("utf-8")
        self.verify(body, envelope.get("timestamp"), envelope.get("signature"))
        return body


def generate_secret() -> str:
    """A fresh random secret (256 bits, hex) for a client and its workers to share."""
    return secrets.token_hex(32)


def secret_from_environment(environ: dict[str, str] | None = None) -> str | None:
    """Read the secret from ``DASK_DASKLESS__AUTH__SECRET`` and remove it from the process.

    The variable is deleted from ``environ`` (default ``os.environ``) and
    ``daskless.auth.secret`` from ``dask.config`` (which dask filled from the variable), so tasks
    run later in this process find it in neither place.
    """
    env = os.environ if environ is None else environ
    secret = env.pop(SECRET_ENV, None)
    _forget_in_dask_config()
    return secret or None


def take_secret() -> str | None:
    """The configured secret (``daskless.auth.secret`` or its environment variable), removed
    from both places once read; None if there is none."""
    configured = dask.config.get("daskless.auth.secret")
    from_env = secret_from_environment()
    return str(configured) if configured else from_env


def _forget_in_dask_config() -> None:
    # Back to the shipped null rather than removed: readers take the key as always there.
    auth = dask.config.config.get("daskless", {}).get("auth")
    if isinstance(auth, dict) and "secret" in auth:
        auth["secret"] = None


def require_secret(secret: str | None, insecure: bool, what: str) -> str | None:
    """The secret a network-facing ``what`` uses, or a clear refusal to start without one."""
    if secret:
        return secret
    if insecure:
        return None
    raise ConfigurationError(
        f"{what} has no invocation secret: set daskless.auth.secret (environment variable "
        f"{SECRET_ENV}) on the client and the workers, or start it with --insecure to accept "
        f"unsigned invocations (only on a trusted network)"
    )

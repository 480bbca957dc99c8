"""Start the store and invoker an engine uses, and stop them again.

Settings name them (``embedded``/``memory``/a Redis URL, ``processes``/``threads``); objects that
implement the protocols may be passed instead and are then used as they are and never closed.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import dask.config

from daskless import config
from daskless.config import Backend
from daskless.worker_runtime.auth import Signer
from daskless.worker_runtime.context import Invoker
from daskless.worker_runtime.errors import ConfigurationError
from daskless.worker_runtime.invokers.aws_lambda import SCHEME as LAMBDA_SCHEME
from daskless.worker_runtime.invokers.aws_lambda import LambdaInvoker, LambdaSettings
from daskless.worker_runtime.invokers.http import HttpInvoker
from daskless.worker_runtime.invokers.processes import Notify, ProcessPool
from daskless.worker_runtime.invokers.threads import ThreadInvoker
from daskless.worker_runtime.protocol import TierChoice
from daskless.worker_runtime.redis_server import RedisServer
from daskless.worker_runtime.store.base import Store
from daskless.worker_runtime.store.memory import MemoryStore
from daskless.worker_runtime.store.redis_store import RedisStore
from daskless.worker_runtime.values.files import shared_memory_dir

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
HTTP_SCHEMES = ("http://", "https://")
# Invokers whose workers run on this machine and can share its blob tier.
LOCAL_INVOKERS = ("threads", "processes")


@dataclass
class Resources:
    """A started store and invoker, and how to stop what was started for them."""

    store: Store
    invoker: Invoker
    workers: int
    closers: list[Callable[[], None]] = field(default_factory=list)
    blob_dir: str | None = None
    server: RedisServer | None = None

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def tier(self, threshold: int) -> TierChoice:
        """The value tier for a run on these resources (see ``worker_runtime.values``)."""
        if isinstance(self.store, MemoryStore):
            return TierChoice("reference")
        if self.blob_dir is None:
            return TierChoice("pickle")
        probed = getattr(self.invoker, "peer_reads", None)
        peer = config.get("tuning.peer-reads") and callable(probed) and probed()
        return TierChoice("peer" if peer else "files", self.blob_dir, threshold)


def open_store(
    name: str, resources_closers: list[Callable[[], None]]
) -> tuple[Store, RedisServer | None]:
    """The store a setting names (and the server started for it); closers are registered."""
    if name == "memory":
        return MemoryStore(), None
    server = None
    if name == "embedded":
        server = RedisServer()
        server.start()
        resources_closers.append(server.stop)
        name = server.url
    if not name.startswith(REDIS_SCHEMES):
        raise ConfigurationError(
            f"daskless.store must be 'embedded', 'memory' or a redis://, rediss:// or unix:// "
            f"URL, not {name!r}"
        )
    store = RedisStore(name)
    resources_closers.append(store.close)
    store.ping()
    return store, server


def open_invoker(
    name: str, store: Store, workers: int, notify: Notify
) -> tuple[Invoker, Callable[[], None]]:
    """The invoker a setting names, and how to stop it."""
    if name == "threads":
        threads = ThreadInvoker(store, workers)
        return threads, threads.close
    if name == "processes":
        if isinstance(store, MemoryStore):
            raise ConfigurationError(
                "daskless.invoker='processes' needs a store that processes share: use "
                "daskless.store='embedded' or a Redis URL, or daskless.invoker='threads'"
            )
        tuning = {f"daskless.tuning.{k}": v for k, v in config.get("tuning").items()}
        pool = ProcessPool(store, workers, notify, settings=tuning,
                           warm_malloc=bool(config.get("tuning.warm-malloc")))
        return pool, pool.close
    if name.startswith(HTTP_SCHEMES):
        http = _http_invoker(name, store)
        return http, http.close
    if name.startswith(LAMBDA_SCHEME):
        invoker = _lambda_invoker(name, store)
        return invoker, invoker.close
    raise ConfigurationError(f"daskless.invoker must be 'processes' or 'threads', not {name!r}")


def _lambda_invoker(name: str, store: Store) -> LambdaInvoker:
    """``lambda://function``: the function must reach the store and share the secret."""
    url = getattr(store, "url", "")
    if not url.startswith(("redis://", "rediss://")):
        raise ConfigurationError(
            f"daskless.invoker={name!r} needs a Redis the Lambda function can reach: set "
            f"daskless.store to a redis:// or rediss:// URL (not {url or 'memory'!r})"
        )
    secret = dask.config.get("daskless.auth.secret", None)
    if not secret:
        raise ConfigurationError(
            f"daskless.invoker={name!r} needs daskless.auth.secret (environment variable "
            f"DASK_DASKLESS__AUTH__SECRET), the same secret the function has"
        )
    settings = LambdaSettings.from_config(name, dask.config.get("daskless.lambda", None))
    return LambdaInvoker(settings, Signer(str(secret)))


def _http_invoker(name: str, store: Store) -> HttpInvoker:
    """``http://host:port[/prefix]``: a gateway or function URL whose workers use this Redis."""
    if isinstance(store, MemoryStore):
        raise ConfigurationError(
            f"daskless.invoker={name!r} needs a Redis the HTTP workers also use: set "
            f"daskless.store to a redis://, rediss:// or unix:// URL, not 'memory'"
        )
    secret = dask.config.get("daskless.auth.secret", None)
    if not secret and not dask.config.get("daskless.auth.insecure", False):
        raise ConfigurationError(
            f"daskless.invoker={name!r} needs daskless.auth.secret (environment variable "
            f"DASK_DASKLESS__AUTH__SECRET), the secret its workers have; or set "
            f"daskless.auth.insecure=True for workers started with --insecure"
        )
    max_age = float(dask.config.get("daskless.auth.max-age", 300))
    return HttpInvoker(
        name,
        Signer(str(secret), max_age) if secret else None,
        concurrency=int(dask.config.get("daskless.http.concurrency", 16)),
        attempts=int(dask.config.get("daskless.http.attempts", 20)),
        timeout_s=float(dask.config.get("daskless.http.timeout", 30)),
    )


def start(backend: Backend, notify: Notify) -> Resources:
    """Start the store, then the invoker, of a backend."""
    closers: list[Callable[[], None]] = []
    if backend.store == "embedded" and backend.invoker.startswith(HTTP_SCHEMES):
        raise ConfigurationError(
            f"daskless.invoker={backend.invoker!r} needs a Redis its workers are configured "
            f"with: set daskless.store to that redis://, rediss:// or unix:// URL (the "
            f"'embedded' store is private to this process)"
        )
    try:
        store, server = open_store(backend.store, closers)
        invoker, close_invoker = open_invoker(
            backend.invoker, store, backend.workers, notify
        )
    except BaseException:
        while closers:
            closers.pop()()
        raise
    closers.append(close_invoker)
    blob_dir = None
    if not isinstance(store, MemoryStore) and backend.invoker in LOCAL_INVOKERS:
        # Thread and process workers share this machine: large outputs skip Redis.
        blob_dir = shared_memory_dir()
        closers.insert(0, functools.partial(shutil.rmtree, blob_dir, ignore_errors=True))
    return Resources(store, invoker, backend.workers, closers, blob_dir, server)

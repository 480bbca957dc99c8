"""Backends by name: which store and invoker a setting names, and how to start and stop them.

``daskless.store`` and ``daskless.invoker`` (or the ``Engine`` arguments) are text: a name such
as ``embedded`` or ``threads``, or a URL whose scheme picks the backend (``redis://...``,
``http://...``). :data:`STORES` and :data:`INVOKERS` map every name and scheme to its
constructor, once; finding a backend, checking that a store and an invoker go together, and the
error that lists every valid choice all come from these two tables. Redis URL schemes come from
:mod:`daskless.worker_runtime.store.urls`, which the worker entry points use as well.

Constructors import what they need when they are called, so importing this module loads
neither the Redis client nor aiohttp nor boto3: a threads-only engine never pays for them.

:func:`start` checks the pair before anything starts (``processes`` needs a store that
processes share, ``http://`` a Redis its workers are configured with, ``lambda://`` one the
function can reach), then opens the store, then the invoker. Everything it started is released
by :meth:`Resources.close`, in reverse order, or at once if a later step fails.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from daskless import config
from daskless.config import Backend
from daskless.worker_runtime import faults
from daskless.worker_runtime.context import Invoker
from daskless.worker_runtime.errors import ConfigurationError
from daskless.worker_runtime.invokers.aws_lambda import SCHEME as LAMBDA_SCHEME
from daskless.worker_runtime.protocol import TierChoice
from daskless.worker_runtime.store import urls

if TYPE_CHECKING:
    from daskless.worker_runtime.events import Event
    from daskless.worker_runtime.redis_server import RedisServer
    from daskless.worker_runtime.store.base import Store

Closer = Callable[[], None]
Notify = Callable[[str, "Event"], None]
"""``notify(run_id, event)``: a local platform tells a run's client what it saw."""
HTTP_SCHEMES = ("http://", "https://")


class StartedInvoker(Invoker, Protocol):
    """An invoker that a backend started, and so stops again."""

    def close(self) -> None:
        """Finish or drop what is under way and release threads, processes, connections."""
        ...


class StoreConstructor(Protocol):
    """Opens the store ``setting`` names, and the server it runs on if it started one.

    Each thing it starts is registered in ``closers`` as soon as it has started, so that a
    failure later on (a server that does not answer) releases it too.
    """

    def __call__(self, setting: str, closers: list[Closer]) -> tuple[Store, RedisServer | None]:
        ...


class InvokerConstructor(Protocol):
    """Starts the invoker ``setting`` names, for workers that use ``store``."""

    def __call__(self, setting: str, store: Store, workers: int,
                 notify: Notify) -> StartedInvoker:
        ...


F = TypeVar("F")


@dataclass(frozen=True)
class Choice(Generic[F]):
    """One valid value of a setting: a name, or a URL scheme (ending in ``://``)."""

    name: str
    construct: F

    @property
    def is_scheme(self) -> bool:
        return self.name.endswith("://")

    def matches(self, setting: str) -> bool:
        return setting.startswith(self.name) if self.is_scheme else setting == self.name

    def shown(self, setting: str) -> str:
        """The setting as an error message may show it: a URL may hold a password."""
        return repr(urls.masked(setting) if self.is_scheme else setting)


@dataclass(frozen=True)
class InvokerChoice(Choice[InvokerConstructor]):
    """An invoker, with what it needs of the store its workers use."""

    local: bool = False
    """Its workers run on this machine, so large outputs can skip Redis (the blob tier)."""
    sized: bool = False
    """Its platform starts workers at the size an invocation asks for (a planner's sizes mean
    something); otherwise every worker has ``daskless.worker-memory``."""
    stores: tuple[str, ...] | None = None
    """The store choices its workers can use; ``None``: any."""
    needs: str = ""
    """What it needs of the store, in words, for the error that refuses another one."""

    def check_store(self, setting: str, store: Choice[Any], invoker: str) -> None:
        """Refuse a store this invoker's workers cannot use, before anything starts."""
        if self.stores is None or store.name in self.stores:
            return
        private = " (the 'embedded' store is private to this process)" \
            if store.name == "embedded" else ""
        raise ConfigurationError(
            f"daskless.invoker={urls.masked(invoker)!r} needs {self.needs}: set daskless.store to "
            f"{STORES.describe(self.stores)}, not {store.shown(setting)}{private}"
        )


C = TypeVar("C", bound=Choice[Any])


class Registry(Generic[C]):
    """The valid values of one setting, in the order errors list them."""

    def __init__(self, setting: str, choices: Iterable[C]) -> None:
        self.setting = setting
        self.choices = tuple(choices)

    def lookup(self, value: str) -> C:
        """The choice ``value`` names, or a :class:`ConfigurationError` listing them all."""
        for choice in self.choices:
            if choice.matches(value):
                return choice
        raise ConfigurationError(
            f"{self.setting} must be {self.describe()}, not {urls.masked(value)!r}"
        )

    def describe(self, names: Iterable[str] | None = None) -> str:
        """``'a', 'b' or a URL starting with x:// or y://``: the choices, or those ``names``."""
        wanted = set(self.names() if names is None else names)
        chosen = [c for c in self.choices if c.name in wanted]
        words = [repr(c.name) for c in chosen if not c.is_scheme]
        schemes = [c.name for c in chosen if c.is_scheme]
        if schemes:
            words.append(f"a URL starting with {urls.listed(schemes)}")
        return urls.listed(words)

    def names(self) -> list[str]:
        return [c.name for c in self.choices]


# -- stores ------------------------------------------------------------------------------------

def _memory_store(setting: str, closers: list[Closer]) -> tuple[Store, RedisServer | None]:
    from daskless.worker_runtime.store.memory import MemoryStore

    return MemoryStore(), None


def _redis_store(setting: str, closers: list[Closer]) -> tuple[Store, RedisServer | None]:
    from daskless.worker_runtime.store.redis_store import RedisStore

    store = RedisStore(setting)
    closers.append(store.close)
    store.ping()
    return store, None


def _embedded_store(setting: str, closers: list[Closer]) -> tuple[Store, RedisServer | None]:
    """A private redis-server on a unix socket, for this engine only."""
    from daskless.worker_runtime.redis_server import RedisServer

    server = RedisServer()
    server.start()
    closers.append(server.stop)
    store, _ = _redis_store(server.url, closers)
    return store, server


STORES: Registry[Choice[StoreConstructor]] = Registry("daskless.store", [
    Choice[StoreConstructor]("embedded", _embedded_store),
    Choice[StoreConstructor]("memory", _memory_store),
    *(Choice[StoreConstructor](scheme, _redis_store) for scheme in urls.SCHEMES),
])


# -- invokers ----------------------------------------------------------------------------------

def _threads(setting: str, store: Store, workers: int, notify: Notify) -> StartedInvoker:
    from daskless.worker_runtime.invokers.threads import ThreadInvoker

    return ThreadInvoker(store, workers)


def _processes(setting: str, store: Store, workers: int,
               notify: Notify) -> StartedInvoker:
    from daskless.worker_runtime.invokers.processes import ProcessPool

    tuning = {f"daskless.tuning.{k}": v for k, v in config.section("tuning").items()}
    return ProcessPool(store, workers, notify, settings=tuning,
                       warm_malloc=bool(config.get("tuning.warm-malloc")))


def _http(setting: str, store: Store, workers: int, notify: Notify) -> StartedInvoker:
    """``http://host:port[/prefix]``: a gateway or function URL whose workers use this Redis."""
    from daskless.worker_runtime.auth import Signer
    from daskless.worker_runtime.invokers.http import HttpInvoker

    secret = config.get("auth.secret")
    if not secret and not config.get("auth.insecure"):
        raise ConfigurationError(
            f"daskless.invoker={urls.masked(setting)!r} needs daskless.auth.secret (environment "
            f"variable DASK_DASKLESS__AUTH__SECRET), the secret its workers have; or set "
            f"daskless.auth.insecure=True for workers started with --insecure"
        )
    return HttpInvoker(setting, Signer(str(secret)) if secret else None)


def _lambda(setting: str, store: Store, workers: int, notify: Notify) -> StartedInvoker:
    """``lambda://function``: the function shares the secret; boto3 is imported here."""
    from daskless.worker_runtime.auth import Signer
    from daskless.worker_runtime.invokers.aws_lambda import LambdaInvoker, LambdaSettings

    secret = config.get("auth.secret")
    if not secret:
        raise ConfigurationError(
            f"daskless.invoker={urls.masked(setting)!r} needs daskless.auth.secret (environment "
            f"variable DASK_DASKLESS__AUTH__SECRET), the same secret the function has"
        )
    settings = LambdaSettings.from_config(setting, config.section("lambda"))
    return LambdaInvoker(settings, Signer(str(secret)))


INVOKERS: Registry[InvokerChoice] = Registry("daskless.invoker", [
    InvokerChoice("processes", _processes, local=True, stores=("embedded", *urls.SCHEMES),
                  needs="a store that worker processes share"),
    InvokerChoice("threads", _threads, local=True),
    *(InvokerChoice(scheme, _http, stores=urls.SCHEMES, sized=True,
                    needs="a Redis its workers are configured with")
      for scheme in HTTP_SCHEMES),
    InvokerChoice(LAMBDA_SCHEME, _lambda, stores=urls.REMOTE_SCHEMES, sized=True,
                  needs="a Redis the Lambda function can reach"),
])


# -- starting and stopping ---------------------------------------------------------------------

@dataclass
class Resources:
    """A started store and invoker, and how to stop what was started for them."""

    store: Store
    invoker: Invoker
    workers: int
    closers: list[Closer] = field(default_factory=list)
    blob_dir: str | None = None
    server: RedisServer | None = None
    kind: str = "processes"
    """The invoker's choice (``processes``, ``threads``, ``http://``, ...): runs on different
    kinds learn separate histories."""
    sized: bool = False
    """See ``InvokerChoice.sized``."""
    sizes: tuple[int, ...] | None = None
    """The sizes its platform can start (``None``: any, as a gateway can)."""

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def tier(self, threshold: int) -> TierChoice:
        """The value tier for a run on these resources (see ``worker_runtime.values``)."""
        from daskless.worker_runtime.store.memory import MemoryStore

        if isinstance(self.store, MemoryStore):  # one process: values pass by reference
            return TierChoice("reference")
        if self.blob_dir is None:
            return TierChoice("pickle")
        probed = getattr(self.invoker, "peer_reads", None)
        peer = config.get("tuning.peer-reads") and callable(probed) and probed()
        return TierChoice("peer" if peer else "files", self.blob_dir, threshold)


def start(backend: Backend, notify: Notify) -> Resources:
    """Check the pair, then start the store, then the invoker, of a backend."""
    store_choice = STORES.lookup(backend.store)
    invoker_choice = INVOKERS.lookup(backend.invoker)
    invoker_choice.check_store(backend.store, store_choice, backend.invoker)
    closers: list[Closer] = []
    try:
        store, server = store_choice.construct(backend.store, closers)
        # Tests arm invocation faults (duplicates, delays, drops) here; otherwise unchanged.
        invoker = faults.wrap(
            invoker_choice.construct(backend.invoker, store, backend.workers, notify))
    except BaseException:
        while closers:
            closers.pop()()
        raise
    closers.append(invoker.close)
    blob_dir = None
    if invoker_choice.local and store_choice.name != "memory":
        # Thread and process workers share this machine: large outputs skip Redis. (The memory
        # store's runs pass values by reference and have nothing to write.)
        from daskless.worker_runtime.values.files import shared_memory_dir

        blob_dir = shared_memory_dir()
        closers.insert(0, functools.partial(shutil.rmtree, blob_dir, ignore_errors=True))
    sizes = None
    sized = invoker_choice.sized
    if invoker_choice.name == LAMBDA_SCHEME:
        # Lambda starts workers of several sizes only through a function per size.
        sizes = tuple(sorted(int(m) for m in (config.get("lambda.functions") or {})))
        sized = bool(sizes)
    return Resources(store, invoker, backend.workers, closers, blob_dir, server,
                     invoker_choice.name, sized, sizes)

"""Every error daskless raises; all derive from :class:`DasklessError`.

A task's own exception is not wrapped: it reaches the caller as its original type, with the
remote traceback in its message.
"""

from daskless.scheduler.errors import CycleError, DasklessError, GraphError, MissingDependencyError
from daskless.worker_runtime.errors import (
    ConfigurationError,
    InvocationError,
    KilledWorker,
    PeerReadError,
    RunGoneError,
    RunStalledError,
    SerializationError,
    SignatureError,
    StoreError,
    StoreUnavailableError,
    WorkerLostError,
)
from daskless.worker_runtime.redis_server import RedisServerNotFound

__all__ = [
    "ConfigurationError",
    "CycleError",
    "DasklessError",
    "GraphError",
    "InvocationError",
    "KilledWorker",
    "MissingDependencyError",
    "PeerReadError",
    "RedisServerNotFound",
    "RunGoneError",
    "RunStalledError",
    "SerializationError",
    "SignatureError",
    "StoreError",
    "StoreUnavailableError",
    "WorkerLostError",
]

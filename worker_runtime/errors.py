"""Errors raised by the runtime: store, workers, invocations and serialization.

They all derive from :class:`daskless.scheduler.errors.DasklessError`; ``daskless.exceptions``
re-exports them, which is where users import them from.
"""

from __future__ import annotations

from daskless.scheduler.errors import DasklessError


class StoreError(DasklessError):
    """The store failed or refused an operation."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store cannot be reached; the message names its URL."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"store at {url} is unreachable: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, object]]:
        return (type(self), (self.url, str(self.reason)))


class RunGoneError(StoreError):
    """The run's keys are gone (finished, cancelled or expired); workers stop quietly."""


class StaleAttemptError(RunGoneError):
    """The run recovered in a newer epoch without this attempt: it writes nothing and stops."""


class DuplicateInvocationError(RunGoneError):
    """Another worker already took this invocation over (a platform delivered it twice)."""


class WorkerLostError(DasklessError):
    """A worker died while it ran part of this run."""


class KilledWorker(WorkerLostError):
    """Every worker that ran a task died running it, ``allowed_failures + 1`` times in all.

    As in distributed: a task that brings down its worker each time (it exits, segfaults,
    runs out of memory) is given up on rather than retried forever; ``task`` is its key and
    ``last_worker`` the worker that died last and ``cause`` what its platform said of it.
    """

    def __init__(self, task: object, last_worker: str, allowed_failures: int,
                 cause: str = "") -> None:
        super().__init__(
            f"Attempted to run task {task!r} on {allowed_failures + 1} different workers, but "
            f"all those workers died while running it. The last worker was {last_worker}"
            + (f" ({cause})." if cause else ".")
        )
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures
        self.cause = cause

    def __reduce__(self) -> tuple[type, tuple[object, str, int, str]]:
        return (type(self), (self.task, self.last_worker, self.allowed_failures, self.cause))


class PeerReadError(DasklessError):
    """The platform refused to let one worker process read an output out of another's memory."""


class RunStalledError(DasklessError):
    """A run can no longer make progress: every invocation ended, requested tasks never ran."""


class InvocationError(DasklessError):
    """An invocation could not be delivered or was malformed."""


class SignatureError(InvocationError):
    """An invocation was refused: unsigned, tampered with, stale or replayed."""


class SerializationError(DasklessError):
    """A task, input or result could not be serialized; the message names the key."""

    def __init__(self, key: object, reason: str, what: str = "result of task") -> None:
        verb = "stored" if what.startswith("result") else "sent to workers"
        super().__init__(f"{what} {key!r} cannot be {verb}: {reason}")
        self.key = key
        self.reason = reason
        self.what = what

    def __reduce__(self) -> tuple[type, tuple[object, str, str]]:
        return (type(self), (self.key, self.reason, self.what))


class ConfigurationError(DasklessError, ValueError):
    """An engine setting names something that does not exist or cannot work together."""

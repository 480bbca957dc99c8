"""Every key name the project writes to the store is made here, and nowhere else.

A run owns seven keys, all prefixed ``dl:run:<run_id>:`` and created with a TTL by the client
when the run is submitted, so nothing outlives a crashed client for longer than the TTL:

- ``meta``   hash; its existence means "the run is alive", its ``epoch`` field which attempt of
  the run may write. Every worker write is gated on both inside a Lua script, so deleting it
  cancels the run atomically, and bumping the epoch fences every attempt of the old one.
- ``spec``   hash ``<epoch>:<partition>`` -> serialized sub-DAG, stored once per epoch.
- ``out``    hash task id -> serialized output, for outputs that cross workers or that the
  client asked for; committed once (``HSETNX``).
- ``fanin``  hash of idempotent fan-in marks: field ``<task>:<upstream>`` per delivered edge and
  field ``<task>`` counting them (per epoch).
- ``events`` stream of event batches that the client reads with blocking XREAD.
- ``claims`` hash invocation id -> the worker that took it over (per epoch): a duplicate
  delivery of an invocation finds it claimed and runs nothing.
- ``leases`` hash invocation id -> ``<until ms>:<current task>``, renewed while it runs, so that
  the client learns of a worker that vanished (per epoch).

Persisted data lives apart under ``dl:data:<name>`` with its own TTL; worker pools own a
``dl:pool:<pool_id>:queue`` list of pending invocations and, per worker, a
``dl:pool:<pool_id>:held:<n>`` list holding the invocation it runs (empty lists vanish).
Signatures of accepted invocations are remembered under ``dl:auth:seen:<signature>`` until they
expire, to refuse replays. Metrics live under ``dl:metrics:`` (a stream per run and an index of
runs) with their own retention: they outlive the run on purpose.
"""

from __future__ import annotations

from collections.abc import Hashable

PREFIX = "dl"
RUN_KEY_KINDS = ("meta", "spec", "out", "fanin", "events", "claims", "leases")


def run_key(run_id: str, kind: str) -> str:
    """The name of one of a run's keys (see the module docstring for the kinds)."""
    return f"{PREFIX}:run:{run_id}:{kind}"


def spec_field(epoch: int, partition: int) -> str:
    """The field of the ``spec`` hash holding one partition's sub-DAG in one epoch."""
    return f"{epoch}:{partition}"


def run_keys(run_id: str) -> list[str]:
    """All keys of a run, ``meta`` first so that deleting in this order cancels before cleaning."""
    return [run_key(run_id, kind) for kind in RUN_KEY_KINDS]


def data_key(name: str) -> str:
    """The key of one persisted value."""
    return f"{PREFIX}:data:{name}"


def pool_queue(pool_id: str) -> str:
    """The list a warm worker pool takes its invocations from."""
    return f"{PREFIX}:pool:{pool_id}:queue"


def pool_held(pool_id: str, worker: int) -> str:
    """The list holding the invocation one worker of a pool is running (at most one)."""
    return f"{PREFIX}:pool:{pool_id}:held:{worker}"


METRICS_PREFIX = f"{PREFIX}:metrics"


def metrics_stream(run_id: str) -> str:
    """The stream of one run's metric records (kept after the run's own keys are gone)."""
    return f"{METRICS_PREFIX}:run:{run_id}"


def history(name: str) -> str:
    """What the planner learnt about one graph structure (or ``averages``), as JSON."""
    return f"{METRICS_PREFIX}:history:{name}"


def history_runs(name: str) -> str:
    """The list of runs of one structure whose metrics the planner has not folded in yet."""
    return f"{METRICS_PREFIX}:history:{name}:runs"


def metrics_index() -> str:
    """The sorted set of runs that have metrics, scored by creation time."""
    return f"{METRICS_PREFIX}:runs"


def key_name(key: Hashable) -> str:
    """A stable text name for a Dask key (str or tuple), used for persisted data."""
    return f"s:{key}" if isinstance(key, str) else f"r:{key!r}"


def seen_signature(signature: str) -> str:
    """Marks an invocation signature as used (set with NX and a TTL, see ``auth``)."""
    return f"{PREFIX}:auth:seen:{signature}"

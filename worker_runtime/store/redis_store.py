"""``RedisStore``: the store on a real Redis server, shared by client and worker processes.

Key names come from :mod:`daskless.worker_runtime.keys`; the atomic multi-step updates are the Lua
scripts of :mod:`daskless.worker_runtime.store.lua`. Connection problems surface as
:class:`StoreUnavailableError` naming the URL (with the password masked), after the client
library's own bounded retries, so a dead server fails a compute quickly instead of hanging it.
"""

from __future__ import annotations

import functools
import json
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from daskless.worker_runtime import keys
from daskless.worker_runtime.errors import (
    DuplicateInvocationError,
    RunGoneError,
    StaleAttemptError,
    StoreUnavailableError,
)
from daskless.worker_runtime.events import Event, RunCreated, decode, encode, encode_all
from daskless.worker_runtime.store import lua
from daskless.worker_runtime.store.base import HISTORY_NOTES, Claim, Lease, Mark
from daskless.worker_runtime.store.urls import masked

F = TypeVar("F", bound=Callable[..., Any])
_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def _translating(method: F) -> F:
    """Turn connection failures into ``StoreUnavailableError`` naming the store."""

    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _CONNECTION_ERRORS as exc:
            raise StoreUnavailableError(masked(self.url), exc) from exc

    return cast(F, wrapper)


class RedisStore:
    """Store on Redis; see the module docstring."""

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self._url = url
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=60.0,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._deliver = self._client.register_script(lua.DELIVER)
        self._push = self._client.register_script(lua.PUSH_INVOCATIONS)
        self._renew = self._client.register_script(lua.RENEW)
        self._leases = self._client.register_script(lua.LEASES)
        self._recover = self._client.register_script(lua.RECOVER)

    @property
    def url(self) -> str:
        return self._url

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for tools that inspect the store."""
        return self._client

    @_translating
    def ping(self) -> None:
        """Check that the server answers."""
        self._client.ping()

    @_translating
    def create_run(self, run_id: str, specs: Mapping[int, bytes], ttl_s: float) -> None:
        meta, spec, out, fanin, events, claims, leases = keys.run_keys(run_id)
        ttl_ms = int(ttl_s * 1000)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(meta, mapping={"created": time.time(), "epoch": 1})
        if specs:
            pipe.hset(spec, mapping={keys.spec_field(1, p): s for p, s in specs.items()})
        # Placeholders let the hashes carry their TTL before any worker writes to them.
        for key in (out, fanin, claims, leases):
            pipe.hset(key, "_", b"")
        pipe.xadd(events, {"e": pickle.dumps([encode(RunCreated(time.time()))])})
        for key in (meta, spec, out, fanin, events, claims, leases):
            pipe.pexpire(key, ttl_ms)
        pipe.execute()

    @_translating
    def load_spec(self, run_id: str, partition: int, epoch: int = 1) -> bytes:
        data = self._client.hget(keys.run_key(run_id, "spec"), keys.spec_field(epoch, partition))
        if data is None:
            raise RunGoneError(f"run {run_id} (epoch {epoch}) is gone")
        return cast(bytes, data)

    @_translating
    def deliver(
        self,
        run_id: str,
        outputs: Mapping[int, bytes] = {},
        marks: Sequence[Mark] = (),
        events: Sequence[Event] = (),
        persisted: Mapping[str, bytes] = {},
        persist_ttl_ms: int = 0,
        epoch: int = 1,
        claim: Claim | None = None,
    ) -> list[int]:
        names = [keys.data_key(n) for n in persisted]
        args: list[Any] = [
            epoch,
            *(claim if claim is not None else ("", "", 0)),
            pickle.dumps(encode_all(events)) if events else b"",
            len(outputs),
            len(persisted),
            max(persist_ttl_ms, 1),
            len(marks),
        ]
        for task, value in outputs.items():
            args += (task, value)
        args.extend(persisted.values())
        for mark in marks:
            args += mark
        meta, _spec, out, fanin, events_key, claims, leases = keys.run_keys(run_id)
        result = self._deliver(keys=[meta, out, fanin, events_key, claims, leases, *names],
                               args=args)
        return [int(t) for t in _refusal(result, run_id, epoch)]

    @_translating
    def renew_leases(self, run_id: str, epoch: int, lease_ms: int,
                     running: Mapping[str, int]) -> None:
        if not running:
            return
        args: list[Any] = [epoch, lease_ms]
        for inv, task in running.items():
            args += (inv, task)
        keys_ = [keys.run_key(run_id, "meta"), keys.run_key(run_id, "leases")]
        _refusal(self._renew(keys=keys_, args=args), run_id, epoch)

    @_translating
    def leases(self, run_id: str, invocations: Sequence[str]) -> dict[str, Lease]:
        if not invocations:
            return {}
        flat = self._leases(keys=[keys.run_key(run_id, "leases")], args=list(invocations))
        return {_text(flat[i]): Lease(int(flat[i + 1]), bool(int(flat[i + 2])))
                for i in range(0, len(flat), 3)}

    @_translating
    def recover(self, run_id: str, epoch: int, new_epoch: int, specs: Mapping[int, bytes],
                lost: Sequence[int], event: Event) -> None:
        args: list[Any] = [epoch, new_epoch, pickle.dumps([encode(event)]), len(specs)]
        for partition, spec in specs.items():
            args += (keys.spec_field(new_epoch, partition), spec)
        args.extend(lost)
        _refusal(self._recover(keys=keys.run_keys(run_id), args=args), run_id, epoch)

    @_translating
    def instance(self) -> str:
        return str(self._client.info("server")["run_id"])

    @_translating
    def committed(self, run_id: str) -> list[int]:
        fields = self._client.hkeys(keys.run_key(run_id, "out"))
        return [int(f) for f in fields if f != b"_"]

    @_translating
    def fetch(self, run_id: str, task_ids: Sequence[int]) -> list[bytes | None]:
        if not task_ids:
            return []
        return cast(
            "list[bytes | None]", self._client.hmget(keys.run_key(run_id, "out"), task_ids)
        )

    @_translating
    def read_events(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Event]]:
        stream = keys.run_key(run_id, "events")
        reply: Any = self._client.xread({stream: cursor}, block=max(1, int(timeout_s * 1000)))
        events: list[Event] = []
        for _name, entries in reply or ():
            for entry_id, fields in entries:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                events.extend(decode(wire) for wire in pickle.loads(fields[b"e"]))
        return cursor, events

    @_translating
    def run_alive(self, run_id: str) -> bool:
        return bool(self._client.exists(keys.run_key(run_id, "meta")))

    @_translating
    def delete_run(self, run_id: str) -> None:
        self._client.unlink(*keys.run_keys(run_id))

    @_translating
    def fetch_persisted(self, names: Sequence[str]) -> list[bytes | None]:
        if not names:
            return []
        return cast("list[bytes | None]", self._client.mget([keys.data_key(n) for n in names]))

    @_translating
    def missing_persisted(self, names: Sequence[str]) -> set[str]:
        if not names:
            return set()
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.exists(keys.data_key(name))
        return {n for n, found in zip(names, pipe.execute()) if not found}

    @_translating
    def delete_persisted(self, names: Sequence[str]) -> None:
        if names:
            self._client.unlink(*(keys.data_key(n) for n in names))

    @_translating
    def push_invocations(self, run_id: str, queue: str, payloads: Sequence[bytes],
                         epoch: int = 1) -> None:
        if payloads:
            reply = self._push(keys=[keys.run_key(run_id, "meta"), queue], args=[epoch, *payloads])
            _refusal(reply, run_id, epoch)

    @_translating
    def pop_invocation(self, queue: str, timeout_s: float, hold: str | None = None
                       ) -> bytes | None:
        if hold is None:
            reply = self._client.blpop([queue], timeout=timeout_s)
            return None if reply is None else cast(bytes, reply[1])
        # One round trip: forget what was held, then block until the next one is moved in.
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(hold)
        # Redis takes fractions of seconds here; the client's annotation says int.
        pipe.blmove(queue, hold, timeout_s, "LEFT", "RIGHT")  # type: ignore[arg-type]
        return cast("bytes | None", pipe.execute()[1])

    @_translating
    def take_held(self, hold: str) -> list[bytes]:
        pipe = self._client.pipeline(transaction=True)
        pipe.lrange(hold, 0, -1)
        pipe.delete(hold)
        return cast("list[bytes]", pipe.execute()[0])

    @_translating
    def add_metrics(self, run_id: str, records: Sequence[Any], retention_s: float) -> None:
        stream, now = keys.metrics_stream(run_id), time.time()
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(stream, {"m": json.dumps(list(records), separators=(",", ":"))})
        pipe.pexpire(stream, max(1, int(retention_s * 1000)))
        pipe.zadd(keys.metrics_index(), {run_id: now}, nx=True)
        pipe.execute()

    @_translating
    def read_metrics(
        self, run_id: str, cursor: str, timeout_s: float
    ) -> tuple[str, list[Any]]:
        stream = keys.metrics_stream(run_id)
        block = int(timeout_s * 1000) if timeout_s > 0 else None
        reply: Any = self._client.xread({stream: cursor}, block=block)
        records: list[Any] = []
        for _name, entries in reply or ():
            for entry_id, fields in entries:
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                records.extend(json.loads(fields[b"m"]))
        return cursor, records

    @_translating
    def metric_runs(self) -> list[tuple[str, float]]:
        index = keys.metrics_index()
        reply: Any = self._client.zrevrange(index, 0, -1, withscores=True)
        runs = [(r.decode(), float(t)) for r, t in reply]
        pipe = self._client.pipeline(transaction=False)
        for run_id, _ in runs:
            pipe.exists(keys.metrics_stream(run_id))
        alive = pipe.execute() if runs else []
        expired = [r for (r, _), found in zip(runs, alive) if not found]
        if expired:
            # Streams expire on their own; the index forgets them the next time it is read.
            self._client.zrem(index, *expired)
        return [run for run, found in zip(runs, alive) if found]

    @_translating
    def note_history_run(self, name: str, run_id: str, retention_s: float) -> None:
        listed = keys.history_runs(name)
        pipe = self._client.pipeline(transaction=False)
        pipe.rpush(listed, run_id)
        pipe.ltrim(listed, -HISTORY_NOTES, -1)
        pipe.pexpire(listed, max(1, int(retention_s * 1000)))
        pipe.execute()

    @_translating
    def history(self, name: str) -> tuple[bytes | None, list[str]]:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.history(name))
        pipe.lrange(keys.history_runs(name), 0, -1)
        blob, runs = pipe.execute()
        return blob, [r.decode() for r in runs]

    @_translating
    def save_history(self, name: str, blob: bytes, folded: Sequence[str],
                     retention_s: float) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.set(keys.history(name), blob, px=max(1, int(retention_s * 1000)))
        for run_id in folded:
            pipe.lrem(keys.history_runs(name), 0, run_id)
        pipe.execute()

    def close(self) -> None:
        self._client.close()


def _refusal(reply: Any, run_id: str, epoch: int) -> Any:
    """A script's reply, or the refusal it stands for as an exception (see ``store.base``)."""
    if reply == -1:
        raise RunGoneError(f"run {run_id} is gone")
    if reply == -2:
        raise StaleAttemptError(f"run {run_id} moved on from epoch {epoch}")
    if reply == -3:
        raise DuplicateInvocationError(f"an invocation of run {run_id} was taken over already")
    return reply


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

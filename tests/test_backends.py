"""Backends by name: the registry of stores and invokers, its errors, and what each pair starts.

Every test goes through a real ``Engine`` (or the registry it uses): a refused pair must fail
before anything starts, and an accepted one must start the real store and workers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import dask
import pytest

import daskless
from daskless import backends
from daskless.exceptions import ConfigurationError
from daskless.worker_runtime import http_worker, lambda_handler
from daskless.worker_runtime.redis_server import RedisServer
from daskless.worker_runtime.store import urls
from daskless.worker_runtime.store.redis_store import RedisStore

STORE_CHOICES = ["'embedded'", "'memory'", "redis://", "rediss://", "unix://"]
INVOKER_CHOICES = ["'processes'", "'threads'", "http://", "https://", "lambda://"]


def _compute(engine: daskless.Engine) -> object:
    with engine:
        return engine.get({"x": 1, "y": (abs, "x")}, "y")


def test_an_unknown_store_lists_every_store() -> None:
    with pytest.raises(ConfigurationError) as info:
        _compute(daskless.Engine(store="postgres://db", invoker="threads"))
    message = str(info.value)
    assert message.startswith("daskless.store must be ")
    assert message.endswith(", not 'postgres://db'")
    assert [c for c in STORE_CHOICES if c not in message] == []


def test_an_unknown_invoker_lists_every_invoker() -> None:
    with pytest.raises(ConfigurationError) as info:
        _compute(daskless.Engine(store="memory", invoker="knative"))
    message = str(info.value)
    assert message.startswith("daskless.invoker must be ")
    assert [c for c in INVOKER_CHOICES if c not in message] == []


def test_errors_list_exactly_the_registered_choices() -> None:
    for registry in (backends.STORES, backends.INVOKERS):
        with pytest.raises(ConfigurationError) as info:
            registry.lookup("nope")
        described = str(info.value)
        for choice in registry.choices:
            assert choice.name in described, (registry.setting, choice.name)
    assert backends.STORES.names() == ["embedded", "memory", *urls.SCHEMES]


def test_an_unknown_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        backends.STORES.lookup("redis+sentinel://:hunter2@host:26379/0")
    assert "hunter2" not in str(info.value) and ":***@" in str(info.value)


def test_a_registry_finds_names_exactly_and_schemes_as_prefixes() -> None:
    assert backends.STORES.lookup("memory").name == "memory"
    assert backends.STORES.lookup("rediss://:pw@host:6380/0").name == "rediss://"
    assert backends.INVOKERS.lookup("https://fn.example/run").name == "https://"
    with pytest.raises(ConfigurationError):
        backends.STORES.lookup("memory2")  # a name is not a prefix


@pytest.mark.parametrize(
    ("store", "invoker", "needs"),
    [
        ("memory", "processes", "a store that worker processes share"),
        ("memory", "http://127.0.0.1:9", "a Redis its workers are configured with"),
        ("embedded", "http://127.0.0.1:9", "'embedded' store is private"),
        ("unix:///nowhere/redis.sock", "lambda://fn", "a Redis the Lambda function can reach"),
        ("embedded", "lambda://fn", "a Redis the Lambda function can reach"),
    ],
)
def test_a_pair_that_cannot_work_is_refused_before_anything_starts(
    store: str, invoker: str, needs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Redis was started or opened for a pair that cannot work")

    monkeypatch.setattr(RedisServer, "start", never)
    monkeypatch.setattr(RedisStore, "__init__", never)
    with dask.config.set({"daskless.auth.secret": "s"}), pytest.raises(
        ConfigurationError, match=needs
    ) as info:
        _compute(daskless.Engine(store=store, invoker=invoker))
    assert "set daskless.store to " in str(info.value)


def test_lambda_accepts_exactly_the_remote_redis_schemes() -> None:
    lambda_choice = backends.INVOKERS.lookup("lambda://fn")
    assert lambda_choice.stores == urls.REMOTE_SCHEMES
    with pytest.raises(ConfigurationError) as info:
        lambda_choice.check_store("memory", backends.STORES.lookup("memory"), "lambda://fn")
    assert "a URL starting with redis:// or rediss://, not 'memory'" in str(info.value)


def test_a_password_in_a_refused_store_url_is_masked() -> None:
    with pytest.raises(ConfigurationError) as info:
        backends.INVOKERS.lookup("lambda://fn").check_store(
            "unix://:hunter2@localhost/redis.sock", backends.STORES.lookup("unix://"), "lambda://f"
        )
    assert "hunter2" not in str(info.value) and ":***@" in str(info.value)


def test_every_entry_point_accepts_the_same_redis_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASKLESS_STORE", raising=False)
    for scheme in urls.SCHEMES:
        url = f"{scheme}example:6379/0"
        assert backends.STORES.lookup(url).construct.__name__ == "_redis_store"
        assert http_worker.store_url(url, "a worker") == url
        if scheme in urls.REMOTE_SCHEMES:
            assert lambda_handler.store_url({"DASKLESS_STORE": url}) == url
        else:
            with pytest.raises(ConfigurationError, match="redis:// or rediss://"):
                lambda_handler.store_url({"DASKLESS_STORE": url})
    with pytest.raises(ConfigurationError, match="redis://, rediss:// or unix://") as info:
        http_worker.store_url("redis+sentinel://:hunter2@host/0", "a worker")
    assert "hunter2" not in str(info.value)


def test_the_blob_tier_is_only_for_local_invokers_over_redis(redis_url: str) -> None:
    with daskless.Engine(store=redis_url, invoker="threads", workers=1) as engine:
        assert engine.get({"x": 2}, "x") == 2
        (over_redis,) = engine._resources.values()
        assert over_redis.blob_dir is not None
    with daskless.Engine(store="memory", invoker="threads", workers=1) as engine:
        assert engine.get({"x": 2}, "x") == 2
        (in_memory,) = engine._resources.values()
        assert in_memory.blob_dir is None and in_memory.server is None


def test_lambda_without_a_secret_is_refused(redis_url: str) -> None:
    with dask.config.set({"daskless.auth.secret": None}), \
            pytest.raises(ConfigurationError, match=r"needs daskless\.auth\.secret"):
        _compute(daskless.Engine(store=redis_url, invoker="lambda://fn"))


def test_importing_the_backends_loads_no_backend_library() -> None:
    code = (
        "import json, sys, daskless.backends\n"
        "print(json.dumps([m for m in ('redis', 'aiohttp', 'boto3', 'botocore') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == []

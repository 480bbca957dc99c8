"""dask's own ``GetFunctionTestMixin``, the contract every foreign ``get`` must meet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dask.utils_test import GetFunctionTestMixin

import daskless


class TestMemoryThreads(GetFunctionTestMixin):
    @pytest.fixture(autouse=True)
    def _engine(self, memory_engine: daskless.Engine) -> None:
        self.get: Callable[..., Any] = memory_engine.get


class TestRedisProcesses(GetFunctionTestMixin):
    @pytest.fixture(autouse=True)
    def _engine(self, redis_engine: daskless.Engine, redis_url: str) -> None:
        self.get: Callable[..., Any] = redis_engine.get


class TestRedisHttp(GetFunctionTestMixin):
    @pytest.fixture(autouse=True)
    def _engine(self, http_engine: daskless.Engine, redis_url: str) -> None:
        self.get: Callable[..., Any] = http_engine.get

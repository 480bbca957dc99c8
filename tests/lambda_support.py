"""Shared pieces of the Lambda tests: a real emulator, a real boto3 client, a real Redis.

The emulator (:mod:`daskless.worker_runtime.lambda_emulator`) serves the Invoke API on a loopback
port and runs the daskless handler in real worker processes; the engine's ``lambda://`` invoker
reaches it through boto3 with ``endpoint_url`` and dummy credentials.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import dask
import pytest

import daskless
from daskless.worker_runtime.invokers.aws_lambda import LambdaSettings
from daskless.worker_runtime.lambda_emulator import EmulatorThread, FunctionConfig

SECRET = "lambda-test-secret-0123456789abcdef"
FUNCTION = "daskless"
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def dummy_aws_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in DUMMY_AWS.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            patch.delenv(name, raising=False)
        yield


@contextlib.contextmanager
def emulator(store_url: str, name: str = FUNCTION, **options: Any) -> Iterator[EmulatorThread]:
    """An emulator serving one daskless function that uses ``store_url``."""
    environment = {"DASKLESS_STORE": store_url, "DASK_DASKLESS__AUTH__SECRET": SECRET}
    config = FunctionConfig(name, environment=environment, **options)
    with dummy_aws_credentials(), EmulatorThread([config]) as running:
        yield running


def settings_for(function: str, **changes: Any) -> LambdaSettings:
    """``lambda://function``'s settings: the configured ``daskless.lambda`` with ``changes``."""
    section = {**dask.config.get("daskless.lambda"), **changes}
    return LambdaSettings.from_config(f"lambda://{function}", section)


def lambda_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "daskless.auth.secret": SECRET,
        "daskless.lambda.endpoint-url": url,
        "daskless.lambda.region": "us-east-1",
        **{f"daskless.lambda.{k}": v for k, v in extra.items()},
    }


@contextlib.contextmanager
def lambda_engine(store_url: str, emulator_url: str, function: str = FUNCTION,
                  **extra: Any) -> Iterator[daskless.Engine]:
    """An engine invoking ``function`` on the emulator, its backend started under the config."""
    with daskless.Engine(store=store_url, invoker=f"lambda://{function}", workers=2) as engine:
        with dask.config.set(lambda_config(emulator_url, **extra)):
            assert engine.get({"x": 1}, "x") == 1  # starts the backend with these settings
        yield engine


def invoke_sync(client: Any, payload: Any, function: str = FUNCTION) -> tuple[str | None, Any]:
    """A RequestResponse invocation: ``(function error or None, decoded payload)``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = client.invoke(FunctionName=function, InvocationType="RequestResponse",
                             Payload=body)
    return response.get("FunctionError"), json.loads(response["Payload"].read())

"""Signing and verifying invocations: both carriers, every refusal, replay guards on real Redis."""

from __future__ import annotations

import json

import pytest
import redis

from daskless.exceptions import DasklessError, InvocationError, SignatureError
from daskless.worker_runtime import auth, keys
from daskless.worker_runtime.errors import ConfigurationError
from daskless.worker_runtime.protocol import Invocation

INVOCATION = Invocation("run1", 2, (5, 6))
BODY = INVOCATION.to_bytes()


class Clock:
    """A settable clock, so staleness is tested without waiting."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_signature_error_is_a_named_daskless_error() -> None:
    assert issubclass(SignatureError, InvocationError)
    assert issubclass(SignatureError, DasklessError)


def test_headers_round_trip_and_format() -> None:
    clock = Clock()
    signer = auth.Signer("s3cret", clock=clock)
    headers = signer.sign_headers(BODY)
    assert headers[auth.TIMESTAMP_HEADER] == "1800000000.000000"
    assert len(headers[auth.SIGNATURE_HEADER]) == 64
    auth.Signer("s3cret", clock=clock).verify_headers(BODY, headers)


def test_envelope_round_trip_returns_the_invocation() -> None:
    signer = auth.Signer(b"s3cret")
    envelope = json.loads(json.dumps(signer.sign_envelope(BODY)))
    assert set(envelope) == {"invocation", "timestamp", "signature"}
    assert "s3cret" not in json.dumps(envelope)
    body = auth.Signer("s3cret").verify_envelope(envelope)
    assert Invocation.from_bytes(body) == INVOCATION
    # The JSON text form is accepted too (a Lambda event may arrive as a string).
    again = auth.Signer("s3cret").verify_envelope(json.dumps(signer.sign_envelope(BODY)))
    assert again == BODY


@pytest.mark.parametrize(
    "headers",
    [{}, {auth.TIMESTAMP_HEADER: "1"}, {auth.SIGNATURE_HEADER: "ab"}],
    ids=["none", "no-signature", "no-timestamp"],
)
def test_unsigned_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError, match="not signed"):
        auth.Signer("k").verify_headers(BODY, headers)


def test_unsigned_envelope_is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed"):
        auth.Signer("k").verify_envelope({"run": "x", "part": 0, "entries": []})
    with pytest.raises(SignatureError, match="not JSON"):
        auth.Signer("k").verify_envelope(b"{nope")


def test_tampered_body_timestamp_or_secret_is_refused() -> None:
    clock = Clock()
    headers = auth.Signer("k", clock=clock).sign_headers(BODY)
    tampered = BODY.replace(b'"part":2', b'"part":3')
    with pytest.raises(SignatureError, match="does not match"):
        auth.Signer("k", clock=clock).verify_headers(tampered, headers)
    moved = {**headers, auth.TIMESTAMP_HEADER: f"{clock.now + 1:.6f}"}
    with pytest.raises(SignatureError, match="does not match"):
        auth.Signer("k", clock=clock).verify_headers(BODY, moved)
    with pytest.raises(SignatureError, match="does not match"):
        auth.Signer("other", clock=clock).verify_headers(BODY, headers)
    envelope = auth.Signer("k", clock=clock).sign_envelope(BODY)
    envelope["invocation"] = tampered.decode()
    with pytest.raises(SignatureError, match="does not match"):
        auth.Signer("k", clock=clock).verify_envelope(envelope)


def test_garbage_timestamp_is_refused() -> None:
    with pytest.raises(SignatureError, match="not a number"):
        auth.Signer("k").verify(BODY, "yesterday", "00")
    with pytest.raises(SignatureError, match="finite"):
        auth.Signer("k").verify(BODY, "nan", "00")


@pytest.mark.parametrize("offset", [-301.0, 301.0], ids=["old", "future"])
def test_stale_is_refused(offset: float) -> None:
    clock = Clock()
    headers = auth.Signer("k", clock=clock).sign_headers(BODY)
    clock.now += offset
    with pytest.raises(SignatureError, match="stale"):
        auth.Signer("k", clock=clock).verify_headers(BODY, headers)


def test_max_age_is_configurable() -> None:
    clock = Clock()
    headers = auth.Signer("k", clock=clock).sign_headers(BODY)
    clock.now += 30
    auth.Signer("k", max_age_s=60, clock=clock).verify_headers(BODY, headers)
    with pytest.raises(SignatureError, match="stale"):
        auth.Signer("k", max_age_s=10, clock=clock).verify_headers(BODY, headers)


def test_replay_is_refused_in_one_process() -> None:
    signer = auth.Signer("k")
    headers = signer.sign_headers(BODY)
    signer.verify_headers(BODY, headers)
    with pytest.raises(SignatureError, match="replayed"):
        signer.verify_headers(BODY, headers)
    # A fresh signature of the same body (a retry) is accepted.
    signer.verify_headers(BODY, signer.sign_headers(BODY))


def test_memory_guard_forgets_expired_signatures() -> None:
    clock = Clock(0.0)
    seen = auth.MemorySeenSignatures(clock=clock)
    assert seen.first_use("a", 10)
    assert not seen.first_use("a", 10)
    clock.now = 11.0
    assert seen.first_use("a", 10)


def test_replay_is_refused_across_instances_through_redis(redis_client: redis.Redis) -> None:
    signer = auth.Signer("k", max_age_s=60)
    headers = signer.sign_headers(BODY)
    first = auth.Signer("k", max_age_s=60, seen=auth.RedisSeenSignatures(redis_client))
    second = auth.Signer("k", max_age_s=60, seen=auth.RedisSeenSignatures(redis_client))
    first.verify_headers(BODY, headers)
    with pytest.raises(SignatureError, match="replayed"):
        second.verify_headers(BODY, headers)
    key = keys.seen_signature(headers[auth.SIGNATURE_HEADER])
    assert 0 < redis_client.ttl(key) <= 120


def test_secret_from_environment_removes_it() -> None:
    env = {auth.SECRET_ENV: "abc", "OTHER": "1"}
    assert auth.secret_from_environment(env) == "abc"
    assert env == {"OTHER": "1"}
    assert auth.secret_from_environment(env) is None


def test_secret_is_removed_from_dask_config() -> None:
    import dask.config

    with dask.config.set({"daskless.auth.secret": "abc"}):
        auth.secret_from_environment({})
        assert dask.config.get("daskless.auth.secret", None) is None


def test_generated_secrets_are_random_and_long() -> None:
    first, second = auth.generate_secret(), auth.generate_secret()
    assert first != second and len(first) == 64


def test_network_worker_without_secret_refuses_unless_insecure() -> None:
    with pytest.raises(ConfigurationError, match="--insecure"):
        auth.require_secret(None, insecure=False, what="the HTTP worker")
    assert auth.require_secret(None, insecure=True, what="x") is None
    assert auth.require_secret("k", insecure=False, what="x") == "k"
    with pytest.raises(ConfigurationError):
        auth.Signer("")


def test_repr_hides_the_secret() -> None:
    assert "topsecret" not in repr(auth.Signer("topsecret"))

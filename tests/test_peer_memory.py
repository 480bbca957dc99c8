"""Large outputs read out of the producing worker process's memory (``peer_memory``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import dask.array as da
import numpy as np
import pytest

import daskless
from daskless.worker_runtime import peer_memory
from daskless.worker_runtime.blobs import LocalBlobs
from daskless.worker_runtime.errors import WorkerLostError

PRODUCER = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    from daskless.worker_runtime import peer_memory
    value = {"a": np.arange(100_000, dtype=np.float64), "b": np.ones((30, 20))[:, ::2], "n": 7}
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    print(peer_memory.share("run", 1, value, stream, buffers).hex(), flush=True)
    sys.stdin.read()  # keep the value alive until told to stop
""")


@pytest.fixture
def producer() -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_value_is_read_from_another_process(producer: subprocess.Popen[str]) -> None:
    assert peer_memory.available()
    reference = bytes.fromhex(producer.stdout.readline())  # type: ignore[union-attr]
    assert peer_memory.is_reference(reference)
    assert len(reference) < 10_000  # the 800 kB array stays behind: only its address travels
    value = peer_memory.load(reference, "x")
    np.testing.assert_array_equal(value["a"], np.arange(100_000, dtype=np.float64))
    np.testing.assert_array_equal(value["b"], np.ones((30, 10)))
    assert value["n"] == 7
    value["a"][0] = -1  # the copy is private and writable
    assert peer_memory.load(reference, "x")["a"][0] == 0


def test_a_gone_producer_is_a_named_error(producer: subprocess.Popen[str]) -> None:
    reference = bytes.fromhex(producer.stdout.readline())  # type: ignore[union-attr]
    producer.kill()
    producer.wait()
    with pytest.raises(WorkerLostError, match=f"process {producer.pid}.*'the input'"):
        peer_memory.load(reference, "the input")


def test_values_are_kept_per_run_until_released(tmp_path: object) -> None:
    blobs = LocalBlobs(str(tmp_path), threshold=1024, peer_reads=True)
    big, small = np.arange(10_000.0), np.arange(3.0)
    ref = blobs.dumps("r1", 1, "big", big)
    assert peer_memory.is_reference(ref)
    assert not peer_memory.is_reference(blobs.dumps("r1", 2, "small", small))
    assert "r1" in peer_memory.kept_runs()
    np.testing.assert_array_equal(blobs.loads(ref), big)
    peer_memory.release("r1")
    assert "r1" not in peer_memory.kept_runs()


def test_a_reader_in_the_producing_process_gets_the_kept_object(tmp_path: object) -> None:
    blobs = LocalBlobs(str(tmp_path), threshold=1024, peer_reads=True)
    block = np.arange(10_000.0)
    block_ref = blobs.dumps("r2", 1, "a", block)
    assert blobs.loads(block_ref) is block  # a later invocation on this worker: no copy
    again = np.arange(10_000.0)
    again_ref = blobs.dumps("r2", 1, "a", again)  # the task ran again: its new output counts
    assert blobs.loads(again_ref) is again
    peer_memory.release("r2")
    np.testing.assert_array_equal(blobs.loads(again_ref), again)  # still alive here: a copy
    assert blobs.loads(again_ref) is not again


def test_large_outputs_cross_worker_processes_correctly(redis_url: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((1200, 1200)), rng.random((1200, 1200))
    x = da.from_array(a, chunks=400) @ da.from_array(b, chunks=400)
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        for _ in range(2):  # the second run starts after the first released its outputs
            got = dask.compute(x, scheduler=engine.get)[0]
            np.testing.assert_allclose(got, a @ b)
        assert engine.last_run is not None and engine.last_run.cross_edges > 0

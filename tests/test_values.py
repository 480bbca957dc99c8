"""The value tiers: one conformance suite over every tier, and what each tier adds.

Every tier must give back what was dumped (in this process and, for tiers whose values may cross
processes, in another process), name the key of a value it cannot store, keep the originals of
small values it shipped as copies, and let go of everything a run kept when the run is released.
Peer reads are exercised against real sibling processes, including a read the kernel refuses.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import partd
import pytest

import daskless
from daskless.exceptions import PeerReadError, SerializationError, WorkerLostError
from daskless.worker_runtime.protocol import TierChoice
from daskless.worker_runtime.values import TIERS, ValueTier, peer, registry, tier_for
from daskless.worker_runtime.values.files import MARKER as FILE_MARKER
from daskless.worker_runtime.values.registry import KeptOriginals

THRESHOLD = 4096
CROSS_PROCESS = ("pickle", "files", "peer")  # the reference tier lives in one process


@pytest.fixture(params=TIERS)
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> ValueTier:
    return tier_for(TierChoice(request.param, str(tmp_path), THRESHOLD))


def kind_of(tier: ValueTier) -> str:
    return {"PickleTier": "pickle", "ReferenceTier": "reference", "SharedFileTier": "files",
            "PeerTier": "peer"}[type(tier).__name__]


VALUES = {
    "int": 7,
    "dict": {"a": [1, 2, 3], "b": ("x", None)},
    "small array": np.arange(10.0),
    "large array": np.arange(100_000, dtype=np.float64),
    "strided array": np.ones((300, 200))[:, ::2],
    "frame": pd.DataFrame({"k": list("abcab") * 500, "v": np.arange(2500.0)}),
}


def assert_same(got: object, expected: object) -> None:
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)  # type: ignore[arg-type]
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)  # type: ignore[arg-type]
    else:
        assert got == expected


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_dumped_value_loads_back(tier: ValueTier, name: str) -> None:
    value = VALUES[name]
    data = tier.dump("run-a", 1, name, value)
    assert_same(tier.load(data, name), value)
    tier.release_run("run-a")


def test_values_cross_to_another_process(tier: ValueTier, tmp_path: Path) -> None:
    if kind_of(tier) not in CROSS_PROCESS:
        assert tier.load(tier.dump("run-b", 1, "x", VALUES["dict"]), "x") is VALUES["dict"]
        return
    stored = {name: tier.dump("run-b", i, name, v) for i, (name, v) in enumerate(VALUES.items())}
    (tmp_path / "stored.pickle").write_bytes(pickle.dumps(stored))
    reader = textwrap.dedent(f"""
        import pickle, sys
        from daskless.worker_runtime.protocol import TierChoice
        from daskless.worker_runtime.values import tier_for
        tier = tier_for(TierChoice({kind_of(tier)!r}, {str(tmp_path)!r}, {THRESHOLD}))
        stored = pickle.loads(open({str(tmp_path / 'stored.pickle')!r}, "rb").read())
        loaded = {{name: tier.load(data, name) for name, data in stored.items()}}
        sys.stdout.buffer.write(pickle.dumps(loaded))
    """)
    out = subprocess.run([sys.executable, "-c", reader], capture_output=True, check=True)
    for name, value in pickle.loads(out.stdout).items():
        assert_same(value, VALUES[name])
    tier.release_run("run-b")


def test_a_result_that_cannot_be_stored_names_its_key(tier: ValueTier) -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(SerializationError, match="'the-key'"):
        tier.dump("run-c", 1, "the-key", gen(), result=True)
    tier.release_run("run-c")


def test_releasing_a_run_lets_go_of_what_readers_could_read(tier: ValueTier,
                                                           tmp_path: Path) -> None:
    small_object = {"partd-like": [1, 2, 3]}
    for i, value in enumerate([small_object, VALUES["large array"], VALUES["frame"]]):
        tier.dump("run-d", i, f"k{i}", value)
    if kind_of(tier) != "reference":  # copies left: the small original is kept
        assert "run-d" in registry.ORIGINALS.runs()
    tier.dump("run-other", 0, "k", small_object)
    tier.release_run("run-d")
    assert "run-d" not in registry.readable_runs()
    assert "run-other" in registry.readable_runs() or kind_of(tier) != "reference"
    deadline = time.monotonic() + 10  # files go in the background
    while (tmp_path / "run-d").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "run-d").exists()
    tier.release_run("run-other")
    assert "run-other" not in registry.readable_runs()


def test_large_values_leave_the_store_on_one_machine(tmp_path: Path) -> None:
    big = VALUES["large array"]
    files = tier_for(TierChoice("files", str(tmp_path), THRESHOLD))
    assert files.dump("run-e", 1, "big", big).startswith(FILE_MARKER)
    assert len(files.dump("run-e", 2, "small", VALUES["small array"])) < THRESHOLD
    peers = tier_for(TierChoice("peer", str(tmp_path), THRESHOLD))
    reference = peers.dump("run-e", 3, "big", big)
    assert peer.is_reference(reference) and len(reference) < 1000  # only the address travels
    assert peers.load(reference, "big") is big  # the producing process gets the object itself
    files.release_run("run-e")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_going_on_keeps_its_partd_folder_until_it_ends() -> None:
    kept = KeptOriginals(runs=1, min_age_s=3600)
    original = partd.File()
    path = original.path
    kept.keep("a", original, 100)
    del original
    for run in ("b", "c", "d"):  # more runs than the count: "a" may still be going on
        kept.keep(run, object(), 100)
    gc.collect()
    assert os.path.isdir(path) and kept.runs() == ["a", "b", "c", "d"]
    kept.end("a")  # ended, and more runs than the count are kept: it goes
    gc.collect()
    assert not os.path.exists(path) and kept.runs() == ["b", "c", "d"]


def test_ended_runs_stay_among_the_most_recent() -> None:
    kept = KeptOriginals(runs=2, min_age_s=3600)
    kept.keep("a", object(), 10)
    kept.end("a")
    assert kept.runs() == ["a"]  # as a process pool keeps objects a while after a compute
    kept.keep("b", object(), 10)
    kept.end("b")
    kept.keep("c", object(), 10)
    assert kept.runs() == ["b", "c"]


def test_runs_nobody_ends_go_once_past_the_age_and_the_count() -> None:
    clock = Clock()
    kept = KeptOriginals(runs=2, min_age_s=300, clock=clock)
    for run in ("a", "b", "c"):
        kept.keep(run, object(), 10)
    assert kept.runs() == ["a", "b", "c"]  # all recent: any may still be going on
    clock.now = 301
    kept.keep("c", object(), 10)  # the most recently kept run is the newest
    kept.keep("d", object(), 10)
    assert kept.runs() == ["c", "d"]


def test_kept_originals_are_bounded_in_bytes() -> None:
    kept = KeptOriginals(runs=100, max_bytes=1000, largest=400)
    kept.keep("old", object(), 300)
    kept.keep("old", object(), 300)
    kept.end("old")
    kept.keep("new", object(), 300)
    kept.keep("new", object(), 399)
    kept.keep("new", object(), 400)  # too large to be worth keeping: array blocks
    assert kept.runs() == ["new"] and kept.nbytes == 699  # the ended run made room
    kept.keep("new", object(), 399)
    assert kept.runs() == ["new"] and kept.nbytes == 1098  # what a live run needs stays
    kept.end("new")
    kept.keep("next", object(), 10)
    assert kept.runs() == ["next"] and kept.nbytes == 10


def test_an_unknown_tier_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="pickle, reference, files, peer"):
        tier_for(TierChoice("carrier-pigeon"))


# -- peer reads between real processes ---------------------------------------------------------

PRODUCER = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    from daskless.worker_runtime.values import peer
    value = {"a": np.arange(100_000, dtype=np.float64), "b": np.ones((30, 20))[:, ::2], "n": 7}
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    print(peer.share("run", 1, value, stream, buffers).hex(), peer.probe_buffer(), flush=True)
    sys.stdin.read()  # keep the value alive until told to stop
""")


@pytest.fixture
def producer() -> Iterator[tuple[subprocess.Popen[str], bytes, int]]:
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    reference, probe = proc.stdout.readline().split()
    yield proc, bytes.fromhex(reference), int(probe)
    proc.kill()
    proc.wait()


def test_a_value_is_read_from_another_process(
        producer: tuple[subprocess.Popen[str], bytes, int]) -> None:
    _, reference, _ = producer
    value = peer.load(reference, "x")
    np.testing.assert_array_equal(value["a"], np.arange(100_000, dtype=np.float64))  # type: ignore[index]
    np.testing.assert_array_equal(value["b"], np.ones((30, 10)))  # type: ignore[index]
    value["a"][0] = -1  # type: ignore[index]  # the copy is private and writable
    assert peer.load(reference, "x")["a"][0] == 0  # type: ignore[index]


def test_a_gone_producer_is_a_lost_worker(
        producer: tuple[subprocess.Popen[str], bytes, int]) -> None:
    proc, reference, _ = producer
    proc.kill()
    proc.wait()
    with pytest.raises(WorkerLostError, match=f"process {proc.pid}.*'the input'.*gone"):
        peer.load(reference, "the input")


REFUSED_READER = textwrap.dedent("""
    import sys
    from daskless.exceptions import PeerReadError
    from daskless.worker_runtime.values import peer
    reference = bytes.fromhex(sys.argv[1])
    try:
        peer.load(reference, "the input")
    except PeerReadError as exc:
        print("refused:", exc)
    print("probe:", peer.probe(int(sys.argv[2]), int(sys.argv[3])))
""")


def test_a_refused_read_says_so_and_the_probe_sees_it(
        producer: tuple[subprocess.Popen[str], bytes, int]) -> None:
    """A reader the kernel does not let in: another user (as root, the reader drops to
    ``nobody``; as any other user, the producer's memory is read by ``nobody``'s rules alike)."""
    proc, reference, probe = producer
    command = [sys.executable, "-c", REFUSED_READER, reference.hex(), str(proc.pid), str(probe)]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    else:
        command[-2] = "1"  # pid 1 belongs to root: a user's process may not read it
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, "HOME": "/tmp"}).stdout
    assert "refused:" in out and "was refused" in out and "peer-reads" in out, out
    assert "probe: None" not in out, out
    assert PeerReadError.__mro__[1].__name__ == "DasklessError"


def test_the_probe_between_two_siblings_succeeds_here(
        producer: tuple[subprocess.Popen[str], bytes, int]) -> None:
    proc, _, probe = producer
    sibling = subprocess.run(
        [sys.executable, "-c", "import sys; from daskless.worker_runtime.values import peer; "
         "print(peer.probe(int(sys.argv[1]), int(sys.argv[2])))", str(proc.pid), str(probe)],
        capture_output=True, text=True, check=True)
    assert sibling.stdout.strip() == "None"


def test_the_process_pool_uses_peer_reads_only_once_probed(redis_url: str) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((1200, 1200)), rng.random((1200, 1200))
    x = da.from_array(a, chunks=400) @ da.from_array(b, chunks=400)
    with daskless.Engine(store=redis_url, invoker="processes", workers=2) as engine:
        for _ in range(2):  # the second run starts after the first released its outputs
            got = dask.compute(x, scheduler=engine.get)[0]
            np.testing.assert_allclose(got, a @ b)
        (resources,) = engine._resources.values()
        pool = resources.invoker
        assert pool.peer_reads(), pool.peer_reads_reason()  # type: ignore[attr-defined]
        assert resources.tier(THRESHOLD).kind == "peer"
        with dask.config.set({"daskless.tuning.peer-reads": False}):
            assert resources.tier(THRESHOLD).kind == "files"
            np.testing.assert_allclose(dask.compute(x, scheduler=engine.get)[0], a @ b)

"""Packed numeric columns survive the JSON round trip exactly."""

from __future__ import annotations

import json
import time
from array import array

from daskless.worker_runtime.columns import FLOAT, INT, pack, unpack


def test_integers_and_times_come_back_exactly() -> None:
    ids = [0, 1, 2**40, -5, 8190]
    now = time.time()
    times = array(FLOAT, [now, now + 1e-6, now + 0.123456789, 0.0])
    record = json.loads(json.dumps([pack(ids, INT), pack(times, FLOAT)]))
    assert unpack(record[0], INT) == ids
    assert unpack(record[1], FLOAT) == times.tolist()


def test_an_empty_column() -> None:
    assert pack([], INT) == ""
    assert unpack("", FLOAT) == []

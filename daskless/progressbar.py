"""A tqdm progress bar for long computes: ``with daskless.progress(): x.compute()``.

It is an ordinary dask ``Callback``: daskless drives dask callbacks from the events workers
push, so the bar advances as tasks finish on remote workers, exactly like dask's own
``ProgressBar``. Setting ``daskless.progress: true`` shows it for every compute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import Any

from dask.callbacks import Callback

from daskless import config


class progress(Callback):  # lower case: it reads like a function, ``with daskless.progress():``
    """Show a tqdm bar of finished tasks for the computes inside the block."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._tqdm_kwargs = {"unit": "task", "desc": "daskless", **tqdm_kwargs}
        self.bar: Any = None

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=len(state["dependencies"]), **self._tqdm_kwargs)

    def _posttask(self, key: Hashable, result: Any, dsk: Any, state: dict[str, Any],
                  worker_id: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def configured_progress() -> contextlib.AbstractContextManager[Any]:
    """A progress bar around a compute when ``daskless.progress`` is on."""
    if config.get("progress") and not any(isinstance(c, progress) for c in Callback.active):
        return progress()
    return contextlib.nullcontext()

"""Start child processes from a thread that lives as long as this process.

Children of daskless (the embedded redis-server, the pool's worker processes) ask Linux for a
signal when their parent dies (``PR_SET_PDEATHSIG``), so that a client killed with ``SIGKILL``
leaves no orphan behind. That signal fires when the *thread* that forked the child ends, not the
process: a pool first used from a short-lived thread (a web request handler, a notebook's
background thread, one of several threads computing at once) would see every worker it started
killed with ``SIGTERM`` as soon as that thread returned. :func:`spawn` therefore forks from the
main thread, or else from one long-lived launcher thread.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_LINUX = sys.platform.startswith("linux")


class _Launcher:
    """A daemon thread that runs the calls that fork children."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="daskless-launcher",
                                        daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()  # False in a forked child: threads do not survive fork

    def run(self, start: Callable[[], T]) -> T:
        done: Future[T] = Future()
        self._jobs.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._jobs.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # handed to the waiting caller, who re-raises it
                done.set_exception(exc)


_launcher: _Launcher | None = None
_lock = threading.Lock()


def spawn(start: Callable[[], T]) -> T:
    """Call ``start`` (which forks a child) from a thread that lives as long as the process."""
    global _launcher
    if not _LINUX or threading.current_thread() is threading.main_thread():
        return start()
    with _lock:
        if _launcher is None or not _launcher.alive():
            _launcher = _Launcher()
        launcher = _launcher
    return launcher.run(start)

"""Fewer full garbage collections while an import holds 100,000 rows' worth of objects.

A full (oldest-generation) collection walks every object of the process while holding the interpreter's lock,
so whichever thread triggers it, the event loop cannot run meanwhile: over an import's rows, cells, plans and
statements that is several hundred milliseconds at a time, again and again. While an import runs, full
collections are put off (the young generations are still collected, which takes a moment each); the import's
objects are freed by reference counting when it ends (`drain`: in small steps, on a worker thread), and the
usual thresholds come back.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FULL_COLLECTION_THRESHOLD = 1_000_000
"""Collections of the middle generation before a full one, while an import runs (the default is 10)."""

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the interpreter lock while another waits for it, while an import runs (the default
is 0.005). The loop's statements give the lock up around every SQLite call and must win it back from the import's
busy worker threads each time: at 5 ms a turn, a check-in's few calls waited 100 ms and more."""


class _Quiet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[int, int, int] | None = None
        self._saved_switch = 0.005

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = gc.get_threshold()
                gc.set_threshold(self._saved[0], self._saved[1], FULL_COLLECTION_THRESHOLD)
                self._saved_switch = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL)
            self._depth += 1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                gc.set_threshold(*self._saved)
                sys.setswitchinterval(self._saved_switch)
                self._saved = None


_QUIET = _Quiet()


@contextmanager
def few_full_collections() -> Iterator[None]:
    """Put full collections off until the outermost of these (in any thread) ends."""
    _QUIET.enter()
    try:
        yield
    finally:
        _QUIET.leave()


DRAIN_CHUNK = 2000


def drain(*collections: list[Any] | dict[Any, Any]) -> None:
    """Empty lists and dicts a slice at a time, so the objects they held are freed in small steps: freeing
    100,000 rows in one go holds the interpreter's lock (and so the loop) for tens of milliseconds. Call it on
    a worker thread, as the last holder of the rows."""
    for items in collections:
        if isinstance(items, dict):
            while items:
                for _ in range(min(DRAIN_CHUNK, len(items))):
                    items.popitem()
        else:
            while items:
                del items[-DRAIN_CHUNK:]

"""The garbage collector of a server process, tuned once the application is loaded (conference.asgi).

CPython's full (generation 2) collection walks every tracked object the process holds.  A daphne process with a
large room holds hundreds of thousands (Django, the loaded modules, every connection's protocol, consumer and
tasks); in benchmarks.large_room (1,000 clients) the full collections came at warm-up and when the clients left,
each stopping the event loop for 90-370 ms (busy machine).  Here the objects of the loaded application
are frozen (``gc.freeze``: never walked again, they live as long as the process anyway).  The thresholds stay
CPython's: a generation 0 of 10,000 instead of 700 made each young collection 3-10 ms and each generation 1
collection 60-80 ms in a 1,000-client room (measured with benchmarks.large_room), where the defaults' stayed
under 20 ms.  Collections slower than GC_SLOW_MS are logged with their duration and generation.
"""

from __future__ import annotations

import atexit
import gc
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

_started: list[float] = []
_slow_ms: list[float] = [float("inf")]
"""GC_SLOW_MS, read once by :func:`tune` (the callback imports nothing: it also runs at interpreter exit)."""


def _watch(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started:
        took = (time.perf_counter() - _started.pop()) * 1000
        if 0 < _slow_ms[0] <= took:
            try:
                logger.warning("gc: generation %s collection took %.1f ms (%d objects collected)",
                               info.get("generation"), took, info.get("collected", 0))
            except Exception:  # at interpreter exit logging may be gone: nothing to report to
                pass


def _unwatch() -> None:
    if _watch in gc.callbacks:  # the collections of the interpreter's exit are nobody's pause
        gc.callbacks.remove(_watch)


def tune() -> None:
    """Freeze what is loaded now (GC_FREEZE); watch collections."""
    from django.conf import settings

    _slow_ms[0] = settings.GC_SLOW_MS
    if _watch not in gc.callbacks:
        gc.callbacks.append(_watch)
        atexit.register(_unwatch)
    if not settings.GC_FREEZE:
        return
    gc.collect()
    gc.freeze()

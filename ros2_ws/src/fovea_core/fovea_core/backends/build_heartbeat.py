"""A throttled "still building" log line for long blocking calls (TensorRT engine builds take minutes).

Without it a node that builds its engine at start looks hung; with a line per build step it floods the
log. One line at start, one every ``interval_s`` while the call blocks, one at the end.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

LOG = logging.getLogger("fovea.backends")


class BuildHeartbeat:
    """Context manager: logs ``message`` at entry, then every ``interval_s`` seconds until exit."""

    def __init__(
        self,
        message: str,
        interval_s: float = 30.0,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.message = message
        self.interval_s = interval_s
        self._log = log or LOG.info
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self.elapsed_s = 0.0

    def _beat(self) -> None:
        # Event.wait returns True as soon as the build finishes, so the thread never outlives it by
        # more than the time to notice the event.
        while not self._stop.wait(self.interval_s):
            self._log(f"{self.message} — still building, {self._clock() - self._start:.0f} s so far")

    def __enter__(self) -> "BuildHeartbeat":
        self._start = self._clock()
        self._log(self.message)
        self._thread = threading.Thread(target=self._beat, name="fovea-build-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.elapsed_s = self._clock() - self._start
        outcome = "failed" if exc_type is not None else "finished"
        self._log(f"{self.message} — {outcome} after {self.elapsed_s:.1f} s")

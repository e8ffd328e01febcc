"""Slow work off the executor thread, with a bounded latest-wins queue.

A perception node must never block its executor (subscriptions, timers, services keep running) and must
never build an unbounded backlog when inference is slower than the sensor: when the queue is full the
*oldest* pending input is discarded (the newest data is the most useful one) and the discard is reported
through ``on_drop`` so the node counts it in its diagnostics.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class LatestWinsWorker:
    """One background thread running ``process(item)`` for submitted items, newest first to survive."""

    def __init__(self, process: Callable[[Any], None], *, maxsize: int = 1, name: str = "fovea-worker",
                 on_drop: Callable[[Any], None] | None = None,
                 on_error: Callable[[Any, BaseException], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._process = process
        self._on_drop = on_drop or (lambda item: None)
        self._on_error = on_error or (lambda item, exc: None)
        self._queue: deque[Any] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; returns False when an older pending item had to be discarded for it."""
        dropped = None
        with self._cond:
            if self._stopped:
                raise RuntimeError("worker is stopped")
            if len(self._queue) >= self._maxsize:
                dropped = self._queue.popleft()
            self._queue.append(item)
            self._cond.notify()
        if dropped is not None:
            self._on_drop(dropped)
        return dropped is None

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def stop(self, timeout: float = 5.0) -> int:
        """Stop after the item in progress (if any); returns how many queued items were discarded."""
        with self._cond:
            self._stopped = True
            pending = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(timeout)
        return pending

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopped)
                if self._stopped:
                    return
                item = self._queue.popleft()
                self._busy = True
            try:
                self._process(item)
            except Exception as exc:  # a bad input must not kill the worker thread
                self._on_error(item, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

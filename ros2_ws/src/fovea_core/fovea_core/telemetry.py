"""Running statistics a node reports on /diagnostics: processing time percentiles, input rates, drops.

Kept free of ROS so the numbers are unit-tested and the same code serves benchmarks. Time is passed in
(monotonic seconds), never read here, so tests are deterministic.
"""
from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np


class LatencyWindow:
    """The last ``size`` durations (seconds); percentiles over that window."""

    def __init__(self, size: int = 500) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(float(seconds))
            self.total += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) of the window, or None before the first sample."""
        with self._lock:
            if not self._samples:
                return None
            return float(np.percentile(np.fromiter(self._samples, float), q))


class RateMeter:
    """Messages per second over a sliding time window."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now_s: float) -> None:
        with self._lock:
            self._times.append(now_s)
            self.count += 1
            self._trim(now_s)

    def rate(self, now_s: float) -> float:
        with self._lock:
            self._trim(now_s)
            if len(self._times) < 2:
                return 0.0
            span = now_s - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now_s: float) -> None:
        while self._times and now_s - self._times[0] > self.window_s:
            self._times.popleft()


class DropCounter:
    """Counts dropped inputs by reason (thread-safe); a node never drops anything without counting it."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[reason] += n

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_reason(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

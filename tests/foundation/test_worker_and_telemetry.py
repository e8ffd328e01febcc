import threading

import numpy as np
import pytest

from fovea_core.telemetry import DropCounter, LatencyWindow, RateMeter
from fovea_ros.worker import LatestWinsWorker


def test_latest_wins_keeps_the_newest_and_reports_what_it_discarded():
    gate = threading.Event()
    processed, dropped = [], []

    def process(item):
        gate.wait(5)
        processed.append(item)

    worker = LatestWinsWorker(process, maxsize=2, on_drop=dropped.append)
    try:
        worker.submit(0)                      # taken by the thread, blocks on the gate
        assert worker.wait_idle(0.05) is False
        for i in range(1, 6):
            worker.submit(i)
        assert worker.backlog == 3            # one running + two queued: bounded
        gate.set()
        assert worker.wait_idle(5)
    finally:
        worker.stop()
    assert processed == [0, 4, 5]
    assert dropped == [1, 2, 3]


def test_an_error_in_processing_is_reported_and_the_worker_continues():
    errors, processed = [], []

    def process(item):
        if item == "bad":
            raise ValueError("boom")
        processed.append(item)

    worker = LatestWinsWorker(process, maxsize=10, on_error=lambda item, exc: errors.append((item, str(exc))))
    try:
        for item in ("a", "bad", "b"):
            worker.submit(item)
        assert worker.wait_idle(5)
    finally:
        worker.stop()
    assert processed == ["a", "b"] and errors == [("bad", "boom")]


def test_latency_window_percentiles_match_numpy_over_the_last_samples():
    window = LatencyWindow(size=100)
    assert window.percentile(50) is None
    samples = np.random.default_rng(0).exponential(size=250)
    for s in samples:
        window.add(s)
    assert window.percentile(99) == pytest.approx(np.percentile(samples[-100:], 99))
    assert window.total == 250


def test_rate_meter_measures_over_its_window():
    meter = RateMeter(window_s=2.0)
    for i in range(50):
        meter.tick(i * 0.1)                   # 10 Hz for 5 s
    assert meter.rate(4.9) == pytest.approx(10.0, rel=0.05)
    assert meter.rate(100.0) == 0.0           # nothing recent
    assert meter.count == 50


def test_drop_counter_by_reason():
    drops = DropCounter()
    drops.add("empty cloud")
    drops.add("non-finite points removed", 7)
    assert drops.total == 8 and drops.by_reason() == {"empty cloud": 1, "non-finite points removed": 7}

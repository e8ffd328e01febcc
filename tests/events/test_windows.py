"""Windowing of a live stream: completeness, ROS-time mapping, gaps and burst caps."""
import numpy as np

from fovea_core.events.arrays import make_events
from fovea_core.events.windows import EventWindower

MS = 1_000_000


def ev(times_ms):
    t = np.asarray(times_ms, dtype=np.float64) * MS
    return make_events(np.zeros(len(t)), np.zeros(len(t)), t.astype(np.int64), np.ones(len(t)))


def test_windows_complete_only_when_time_has_passed_and_keep_every_event():
    w = EventWindower(5 * MS)
    assert w.push(ev([1, 2, 4.9]), header_stamp_ns=1_000 * MS + 1 * MS) == []
    out = w.push(ev([5, 7, 12]), header_stamp_ns=1_000 * MS + 5 * MS)
    assert [o.end_ns for o in out] == [5 * MS, 10 * MS]
    assert [len(o.events) for o in out] == [3, 2]
    assert [o.stamp_ns for o in out] == [1_005 * MS, 1_010 * MS]  # ROS time = sensor + (stamp - first event)
    assert [o.index for o in out] == [0, 1]
    out = w.push(ev([15.5]), header_stamp_ns=1_015_500_000)
    assert [len(o.events) for o in out] == [1] and out[0].events["t"][0] == 12 * MS


def test_long_silence_is_skipped_and_bursts_are_capped():
    w = EventWindower(5 * MS, max_gap_windows=10, max_events_per_window=4)
    w.push(ev([0.5]), 0)
    out = w.push(ev([1000]), 0)  # one second of silence = 199 empty windows
    assert len(out) <= 12 and w.skipped_gap_windows > 180
    assert out[-1].index - out[0].index + 1 - len(out) == w.skipped_gap_windows
    out = w.push(ev(np.linspace(1000.1, 1004.9, 10)), 0)
    out = w.push(ev([1006]), 0)
    assert len(out[0].events) == 4 and w.events_over_cap == 7  # 11 events in window [1000, 1005), 4 kept
    assert out[0].events["t"][-1] == int(1004.9 * MS)


def test_skipped_since_counts_windows_lost_downstream_but_not_silences():
    w = EventWindower(5 * MS, max_gap_windows=3)
    out = w.push(ev([1, 6, 7, 11, 16, 200, 201]), 0)
    # windows: [0,5) 1 ev, [5,10) 2, [10,15) 1, [15,20) 1, [20,25) empty, then a jump over the silence, ...
    first, last = out[0], out[-1]
    assert first.skipped_since(None) == (0, 0)
    assert out[3].skipped_since(first) == (2, 3)  # windows 1 and 2 (3 events) never consumed
    windows, events = last.skipped_since(out[3])
    assert events == 0 and windows == len(out) - 5 and w.skipped_gap_windows > 0

"""Vectorised representations against slow per-event references."""
import numpy as np

from fovea_core.events.arrays import make_events
from fovea_core.events.representations import event_histogram, latest_timestamps, time_surface, voxel_grid

W, H, T0, T1 = 9, 7, 1_000, 51_000


def _events(seed=0, n=400):
    rng = np.random.default_rng(seed)
    # a few events outside the window / sensor to check they are ignored
    return make_events(rng.integers(0, W + 2, n), rng.integers(0, H + 1, n), np.sort(rng.integers(0, 56_000, n)),
                       rng.integers(0, 2, n))


def _inside(e):
    return T0 <= e["t"] < T1 and e["x"] < W and e["y"] < H


def test_histogram_matches_reference():
    ev, bins = _events(), 5
    ref = np.zeros((bins, 2, H, W))
    for e in ev:
        if _inside(e):
            k = int((int(e["t"]) - T0) * bins // (T1 - T0))
            ref[k, int(e["p"] > 0), e["y"], e["x"]] += 1
    got = event_histogram(ev, W, H, bins, T0, T1)
    assert got.shape == (bins, 2, H, W) and np.array_equal(got, ref) and ref.sum() > 100


def test_voxel_grid_matches_reference():
    ev, bins = _events(1), 4
    ref = np.zeros((bins, H, W))
    for e in ev:
        if not _inside(e):
            continue
        pos = min(max((int(e["t"]) - T0) / (T1 - T0) * bins - 0.5, 0.0), bins - 1.0)
        sign = 1.0 if e["p"] > 0 else -1.0
        for k in range(bins):
            ref[k, e["y"], e["x"]] += sign * max(0.0, 1.0 - abs(pos - k))
    got = voxel_grid(ev, W, H, bins, T0, T1)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(ref).sum() > 50


def test_latest_timestamps_streamed_equals_reference():
    ev = _events(2)
    ref = np.full((2, H, W), -1, np.int64)
    for e in ev:
        if e["x"] < W and e["y"] < H:
            ref[int(e["p"] > 0), e["y"], e["x"]] = max(ref[int(e["p"] > 0), e["y"], e["x"]], int(e["t"]))
    state = None
    for chunk in np.array_split(ev, 3):
        state = latest_timestamps(chunk, W, H, state)
    assert np.array_equal(state, ref)
    ts = time_surface(state, now=60_000, decay_ns=10_000.0)
    assert ts[ref < 0].max(initial=0) == 0 and np.allclose(ts[ref >= 0], np.exp(-(60_000 - ref[ref >= 0]) / 1e4))

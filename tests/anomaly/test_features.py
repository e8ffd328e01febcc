"""Sync features: shifted-window counts against a per-event reference, injected offsets recovered within one
bin, undefined correlation -> uniform, events-only activity; the simulator's frame camera."""

import numpy as np
import pytest
from anomaly_helpers import MS, toy_streams

from fovea_core.events.anomaly import faults as F
from fovea_core.events.anomaly.features import (FeatureConfig, activity_distribution, classical_distribution,
                                                expected_offset_ms, shifted_counts, step_inputs)
from fovea_core.events.simulator.frames import FrameCameraConfig, simulate_event_frames

CFG = FeatureConfig()


def test_shifted_counts_match_a_per_event_reference(sim_streams):
    cfg = FeatureConfig(grid=(4, 3), max_offset_bins=3)
    ev, t0, t1 = sim_streams.events, 500 * MS, 540 * MS
    counts = shifted_counts(ev, t0, t1, 64, 48, cfg)
    assert counts.shape == (7, 2, 12)
    for o, delta in enumerate(cfg.offsets_ns()):
        ref = np.zeros((2, 12))
        for e in ev[(ev["t"] >= t0 + delta) & (ev["t"] < t1 + delta)]:  # slow and obvious
            ref[int(e["p"] > 0), (e["y"] * 3 // 48) * 4 + e["x"] * 4 // 64] += 1
        assert np.array_equal(counts[o], ref)


@pytest.mark.parametrize("offset_ms", [-30, 0, 10, 20, 50])
def test_classical_features_recover_an_injected_offset_within_one_bin(sim_streams, offset_ms):
    shifted, _ = F.offset(sim_streams, 0, 10**12, offset_ms)  # the whole frame stream delayed
    st, im = shifted.frames.stamps, shifted.frames.images
    estimates = np.array([expected_offset_ms(classical_distribution(step_inputs(
        shifted.events, st[k - 1], st[k], im[k - 1], im[k], 64, 48, CFG), CFG), CFG) for k in range(1, len(st))])
    bin_ms = CFG.offset_step_ns / MS
    assert abs(np.median(estimates) - offset_ms) <= bin_ms
    assert np.mean(np.abs(estimates - offset_ms) <= bin_ms) >= 0.9


def test_frozen_frames_and_missing_events_give_a_uniform_distribution(sim_streams):
    im, st = sim_streams.frames.images, sim_streams.frames.stamps
    frozen = classical_distribution(step_inputs(sim_streams.events, st[3], st[4], im[3], im[3], 64, 48, CFG), CFG)
    no_events = classical_distribution(step_inputs(sim_streams.events[:0], st[3], st[4], im[3], im[4], 64, 48, CFG),
                                       CFG)
    for dist in (frozen, no_events):
        assert np.allclose(dist, 1.0 / CFG.num_offsets)
    normal = classical_distribution(step_inputs(sim_streams.events, st[3], st[4], im[3], im[4], 64, 48, CFG), CFG)
    assert normal.max() > 3.0 / CFG.num_offsets


def test_activity_distribution_shares_and_floor():
    s = toy_streams(width=32, height=24)
    cfg = FeatureConfig(grid=(2, 1))
    # the toy stream's events walk x = t mod 32: 16 ms in each half of the sensor per 32 ms
    dist = activity_distribution(s.events, 0, 32 * MS, 32, 24, cfg, floor=0.0)
    assert np.allclose(dist, [0.5, 0.5])
    empty = activity_distribution(s.events, 10**12, 10**12 + MS, 32, 24, cfg)
    assert np.allclose(empty, [0.5, 0.5])


def test_frame_camera_rate_exposure_stamps_and_motion_blur():
    cam = FrameCameraConfig(rate_hz=50.0, exposure_fraction=0.8, read_noise=0.0, jitter_ns=0)
    seq = simulate_event_frames(5, 0.5, 48, 36, camera=cam)
    assert np.allclose(np.diff(seq.frame_stamps), 20 * MS)
    assert seq.frame_stamps[0] == cam.exposure_ns // 2 + cam.period_ns // 2  # the middle of the exposure
    assert seq.frames.dtype == np.uint8 and seq.frames.shape[1:] == (36, 48)
    assert seq.events["t"].min() >= 0 and np.all(np.diff(seq.events["t"]) >= 0)
    sharp = simulate_event_frames(5, 0.5, 48, 36, camera=FrameCameraConfig(rate_hz=50.0, exposure_fraction=0.01,
                                                                           read_noise=0.0, jitter_ns=0))
    # a long exposure averages motion: less high-frequency content than a near-instant one
    grad = lambda f: np.abs(np.diff(f.astype(np.float32), axis=1)).mean()  # noqa: E731
    assert grad(seq.frames[5]) < grad(sharp.frames[5])


def test_random_setups_vary_rate_and_exposure():
    rates = {round(simulate_event_frames(seed, 0.2, 32, 24).camera.rate_hz) for seed in range(4)}
    assert len(rates) >= 3 and all(20 <= r <= 60 for r in rates)

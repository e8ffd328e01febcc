"""Sync features: the fast extractor (prefix sums over time, one gather per step, vectorised NCC, per-frame log
intensity) against slow per-event / per-pixel / per-offset references on random streams; injected offsets
recovered within one bin; undefined correlation -> uniform; events-only activity; the simulator's frame
camera."""

import numpy as np
import pytest
from anomaly_helpers import MS, toy_streams

from fovea_core.events.anomaly import faults as F
from fovea_core.events.anomaly.data import sequence_inputs
from fovea_core.events.anomaly.features import (EventCounts, FeatureConfig, FramePatches, StepExtractor, StepInputs,
                                                activity_distribution, classical_distribution, expected_offset_ms,
                                                ncc_per_offset)
from fovea_core.events.arrays import make_events
from fovea_core.events.simulator.frames import FrameCameraConfig, simulate_event_frames

CFG = FeatureConfig()


def random_events(rng, n, width, height, t0, t1):
    t = np.sort(rng.integers(t0, t1, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def reference_counts(ev, t_start, t_end, width, height, cfg):
    """Slow and obvious: every event tested against every shifted window."""
    gx, gy = cfg.grid
    out = np.zeros((cfg.num_offsets, 2, gx * gy))
    for o, delta in enumerate(cfg.offsets_ns()):
        for e in ev[(ev["t"] >= t_start + delta) & (ev["t"] < t_end + delta)]:
            patch = min(int(e["y"]) * gy // height, gy - 1) * gx + min(int(e["x"]) * gx // width, gx - 1)
            out[o, int(e["p"] > 0), patch] += 1
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shifted_counts_equal_a_per_event_reference_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(20, 90)), int(rng.integers(15, 70))
    cfg = FeatureConfig(grid=(int(rng.integers(2, 7)), int(rng.integers(2, 5))), max_offset_bins=4,
                        offset_step_ns=int(rng.integers(1, 8)) * MS + int(rng.integers(0, MS)))
    ev = random_events(rng, 4000, width, height, 0, 400 * MS)
    extractor = StepExtractor(width, height, cfg)
    cuts = np.sort(rng.choice(len(ev), 25, replace=False))  # packets of random sizes
    for part in np.split(ev, cuts):
        extractor.push_events(part)
    # steps anywhere, edges at arbitrary ns, including windows beyond both ends of the stream
    for _ in range(6):
        t_start = int(rng.integers(-30 * MS, 380 * MS))
        t_end = t_start + int(rng.integers(1, 60 * MS))
        got = extractor.shifted_counts(t_start, t_end)
        assert got.dtype == np.float32 and got.shape == (cfg.num_offsets, 2, cfg.num_patches)
        assert np.array_equal(got, reference_counts(ev, t_start, t_end, width, height, cfg))


def test_counts_streamed_with_trimming_equal_the_whole_stream_pushed_at_once():
    rng = np.random.default_rng(5)
    ev = random_events(rng, 20000, 64, 48, 0, 2_000 * MS)
    whole, streamed = EventCounts(64, 48, (8, 6)), EventCounts(64, 48, (8, 6))
    whole.push(ev)
    for a in range(0, len(ev), 700):
        streamed.push(ev[a:a + 700])
        t = int(ev["t"][min(a + 699, len(ev) - 1)])
        streamed.trim(t - 200 * MS)  # as the detector does: only the recent past is read
        edges = t - rng.integers(0, 150 * MS, 2)
        assert np.array_equal(streamed.window(edges.min(), edges.max()), whole.window(edges.min(), edges.max()))


def test_late_events_count_at_the_newest_time_and_a_long_silence_starts_over():
    counts = EventCounts(10, 10, (1, 1), max_span_ns=100 * MS)
    counts.push(make_events([1, 1], [1, 1], [10 * MS, 20 * MS], [1, 1]))
    counts.push(make_events([1], [1], [5 * MS], [1]))  # older than one already pushed
    assert counts.total(0, 20 * MS) == 1 and counts.total(20 * MS, 21 * MS) == 2
    counts.push(make_events([1], [1], [500 * MS], [0]))  # 480 ms later: beyond the 100 ms kept
    assert counts.total(0, 600 * MS) == 1 and counts.window(0, 600 * MS).tolist() == [1, 0]
    assert counts.total(0, 10 * MS) == 0


def test_frame_change_equals_a_per_pixel_reference():
    rng = np.random.default_rng(3)
    for width, height, grid in [(346, 260, (32, 24)), (17, 9, (4, 3)), (5, 4, (8, 6))]:  # last: empty patches
        cfg = FeatureConfig(grid=grid)
        a, b = rng.integers(0, 256, (2, height, width)).astype(np.uint8)
        patches = FramePatches(width, height, cfg)
        got = patches.change(patches.log_intensity(a), patches.log_intensity(b))
        d = np.log(b.astype(np.float64) / 255 + cfg.log_eps) - np.log(a.astype(np.float64) / 255 + cfg.log_eps)
        ref = np.zeros((2, grid[0] * grid[1]))
        n = np.zeros(grid[0] * grid[1])
        for y in range(height):
            for x in range(width):
                p = min(y * grid[1] // height, grid[1] - 1) * grid[0] + min(x * grid[0] // width, grid[0] - 1)
                ref[0, p] += max(d[y, x], 0)
                ref[1, p] += max(-d[y, x], 0)
                n[p] += 1
        assert np.allclose(got, ref / np.maximum(n, 1), atol=1e-5)


def test_vectorised_ncc_equals_a_per_offset_correlation():
    rng = np.random.default_rng(4)
    inputs = StepInputs(rng.poisson(3.0, (31, 2, 48)).astype(np.float32), rng.random((2, 48)).astype(np.float32),
                        0, 0, 0)
    inputs.counts[7] = 5.0  # constant counts: no defined correlation -> 0
    f = np.concatenate([inputs.change[0], inputs.change[1]])
    ref = [0.0 if o == 7 else np.corrcoef(np.concatenate([inputs.counts[o, 1], inputs.counts[o, 0]]), f)[0, 1]
           for o in range(31)]
    assert np.allclose(ncc_per_offset(inputs), ref, atol=1e-5)


def test_sequence_inputs_equal_steps_taken_one_by_one(sim_streams):
    """The offline path (training, evaluation) pushes events as far as each step needs: the same numbers as
    an extractor that holds the whole stream."""
    seq = sequence_inputs(sim_streams, CFG)
    extractor = StepExtractor(sim_streams.width, sim_streams.height, CFG)
    extractor.push_events(sim_streams.events)
    st, im = sim_streams.frames.stamps, sim_streams.frames.images
    for k in (1, 7, len(st) - 1):
        step = extractor.step(st[k - 1], extractor.frame(im[k - 1]), st[k], extractor.frame(im[k]))
        assert np.array_equal(seq.counts[k - 1], step.counts) and np.array_equal(seq.change[k - 1], step.change)
        assert seq.events_in_step[k - 1] == step.events_in_step == int(step.counts[CFG.max_offset_bins].sum())


@pytest.mark.parametrize("offset_ms", [-30, 0, 10, 20, 50])
def test_classical_features_recover_an_injected_offset_within_one_bin(sim_streams, offset_ms):
    shifted, _ = F.offset(sim_streams, 0, 10**12, offset_ms)  # the whole frame stream delayed
    seq = sequence_inputs(shifted, CFG)
    estimates = np.array([expected_offset_ms(classical_distribution(StepInputs(c, ch, 0, 0, 0), CFG), CFG)
                          for c, ch in zip(seq.counts, seq.change)])
    bin_ms = CFG.offset_step_ns / MS
    assert abs(np.median(estimates) - offset_ms) <= bin_ms
    assert np.mean(np.abs(estimates - offset_ms) <= bin_ms) >= 0.9


def test_frozen_frames_and_missing_events_give_a_uniform_distribution(sim_streams):
    im, st = sim_streams.frames.images, sim_streams.frames.stamps
    extractor = StepExtractor(64, 48, CFG)
    extractor.push_events(sim_streams.events)
    empty = StepExtractor(64, 48, CFG)
    f3, f4 = extractor.frame(im[3]), extractor.frame(im[4])
    frozen = classical_distribution(extractor.step(st[3], f3, st[4], f3), CFG)
    no_events = classical_distribution(empty.step(st[3], f3, st[4], f4), CFG)
    for dist in (frozen, no_events):
        assert np.allclose(dist, 1.0 / CFG.num_offsets)
    normal = classical_distribution(extractor.step(st[3], f3, st[4], f4), CFG)
    assert normal.max() > 3.0 / CFG.num_offsets


def test_activity_distribution_shares_and_floor():
    s = toy_streams(width=32, height=24)
    counts = EventCounts(32, 24, (2, 1))
    counts.push(s.events)
    # the toy stream's events walk x = t mod 32: 16 ms in each half of the sensor per 32 ms
    assert np.allclose(activity_distribution(counts, 0, 32 * MS, floor=0.0), [0.5, 0.5])
    assert np.allclose(activity_distribution(counts, 10**12, 10**12 + MS), [0.5, 0.5])


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


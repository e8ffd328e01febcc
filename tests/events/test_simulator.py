"""Simulator: events exactly where log intensity crosses thresholds (synthetic ramp), refractory, noise, scenes."""
import numpy as np

from fovea_core.events.bagio import read_events
from fovea_core.events.simulator import EsimConfig, EventSimulator, MovingScene, SceneConfig, simulate_sequence
from fovea_core.events.simulator.sequences import write_sequence_bag

QUIET = dict(noise_rate_hz=0.0, hot_pixel_fraction=0.0, refractory_ns=0)


def _ramp_frames(rate_per_s, width=4, height=3, steps=50, dt_ns=1_000_000, l0=np.log(0.1)):
    """Log intensity rising linearly at ``rate_per_s`` in columns 0-1, falling in 2, constant in 3."""
    for i in range(steps + 1):
        t = i * dt_ns
        log = np.full((height, width), l0)
        log[:, :2] += rate_per_s * t * 1e-9
        log[:, 2] -= rate_per_s * t * 1e-9
        yield np.exp(log), t


def test_ramp_events_at_exact_crossings():
    cfg = EsimConfig(contrast_on=0.2, contrast_off=0.25, contrast_spread=0.0, log_eps=0.0, **QUIET)
    sim = EventSimulator(4, 3, cfg)
    ev = np.concatenate([sim.step(f, t) for f, t in _ramp_frames(rate_per_s=30.0)])
    total_change = 30.0 * 0.05  # 1.5 over 50 ms
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert set(on["x"].tolist()) == {0, 1} and set(off["x"].tolist()) == {2}
    assert 3 not in ev["x"]  # constant pixels never fire
    n_on = int(np.floor(total_change / 0.2 + 1e-9))
    n_off = int(np.floor(total_change / 0.25 + 1e-9))
    assert len(on) == 6 * n_on and len(off) == 3 * n_off
    # k-th ON crossing at k * C / rate seconds
    px = on[(on["x"] == 0) & (on["y"] == 1)]
    expected = np.array([k * 0.2 / 30.0 * 1e9 for k in range(1, n_on + 1)])
    np.testing.assert_allclose(px["t"], expected, atol=2)
    assert np.all(np.diff(ev["t"]) >= 0)


def test_per_pixel_thresholds_change_counts():
    cfg = EsimConfig(contrast_on=0.2, contrast_spread=0.04, log_eps=0.0, **QUIET)
    sim = EventSimulator(4, 3, cfg, seed=3)
    ev = np.concatenate([sim.step(f, t) for f, t in _ramp_frames(rate_per_s=30.0)])
    for y in range(3):
        for x in range(2):
            c = sim.c_on[y * 4 + x]
            assert np.count_nonzero((ev["x"] == x) & (ev["y"] == y)) == int(np.floor(1.5 / c + 1e-9))


def test_refractory_period_suppresses_close_events():
    cfg = EsimConfig(contrast_on=0.2, contrast_spread=0.0, log_eps=0.0, noise_rate_hz=0, hot_pixel_fraction=0,
                     refractory_ns=15_000_000)
    sim = EventSimulator(4, 3, cfg)
    ev = np.concatenate([sim.step(f, t) for f, t in _ramp_frames(rate_per_s=30.0)])
    px = ev[(ev["x"] == 0) & (ev["y"] == 0)]
    assert len(px) >= 2 and np.all(np.diff(px["t"]) >= 15_000_000)
    assert len(px) < 7  # without refractory there are 7 crossings


def test_noise_and_hot_pixels():
    cfg = EsimConfig(noise_rate_hz=5.0, hot_pixel_fraction=0.01, hot_pixel_rate_hz=500.0)
    sim = EventSimulator(20, 10, cfg, seed=1)
    frame = np.full((10, 20), 0.5)
    ev = np.concatenate([sim.step(frame, i * 10_000_000) for i in range(101)])  # 1 s of a static scene
    hot = sim.hot_pixels[0]
    hot_count = np.count_nonzero(ev["y"].astype(int) * 20 + ev["x"] == hot)
    assert 400 < hot_count < 600
    assert 600 < len(ev) - 2 * hot_count < 1600  # ~1000 background events + the other hot pixel


def test_scene_and_sequence_are_consistent(tmp_path):
    cfg = SceneConfig(width=32, height=24, object_size=(4, 6))
    seq = simulate_sequence(seed=5, num_windows=6, scene=cfg)
    assert seq.labels.shape == (6, 24, 32) and seq.depth.shape == (6, 24, 32)
    assert len(seq.events) > 100 and np.all(np.diff(seq.events["t"]) >= 0)
    assert seq.events["t"].max() <= seq.window_end_ns[-1]
    img, lab, dep = MovingScene(cfg, 5).render(seq.window_end_ns[2] * 1e-9)
    assert np.array_equal(lab, seq.labels[2]) and np.allclose(dep, seq.depth[2])
    assert dep[lab > 0].max() < dep[lab == 0].min()  # objects are nearer than the background
    n = write_sequence_bag(seq, tmp_path / "bag", encoding="evt3")
    back, _, stats = read_events(tmp_path / "bag")
    assert stats.packets == n and not stats.rejected
    assert np.array_equal(back["x"], seq.events["x"]) and np.array_equal(back["t"], seq.events["t"] // 1000 * 1000)

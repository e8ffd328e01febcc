"""A frame camera beside the event camera: the same moving scene seen through an exposure, for long normal
event + frame sequences (training and calibration of the stream anomaly detector).

The scene is rendered at ``render_hz`` (500 Hz by default; the event simulator interpolates between renders); the event simulator sees every render, and frame k
is the mean of the renders inside its exposure [t_k - e/2, t_k + e/2) (motion blur), plus read noise,
quantised to 8 bits. Frame k is stamped at the middle of its exposure, as libcaer stamps DAVIS APS frames, and
frames come at ``rate_hz`` with a small timing jitter. :func:`random_setup` draws the variety: frame rate
20-60 Hz, exposure 20-90 % of the frame period, number / size / speed of objects, background pan, brightness.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fovea_core.events.arrays import concat_events
from fovea_core.events.simulator.esim import EsimConfig, EventSimulator
from fovea_core.events.simulator.scene import MovingScene, SceneConfig, _bounce


class BoxedMovingScene(MovingScene):
    """The same scene, each object's texture evaluated only inside its bounding box (several times faster at
    larger sizes; the HMNet data keeps using :class:`MovingScene` unchanged). Intensity only."""

    def render_intensity(self, t: float) -> np.ndarray:
        cfg = self.cfg
        if not hasattr(self, "_wave_phase"):  # a panned plane wave is the fixed wave with a phase moving in t
            self._wave_phase = [(k * (np.cos(d) * self._xx + np.sin(d) * self._yy) + phase,
                                 k * (np.cos(d) * self.bg_velocity[0] + np.sin(d) * self.bg_velocity[1]), amp)
                                for k, d, phase, amp in self.bg_waves]
        img = np.full(self._xx.shape, self.bg_level)
        for base, omega, amp in self._wave_phase:
            img += amp * np.sin(base - omega * t)
        margin = 4.0
        for o in self.objects:
            cx = _bounce(o.x0, o.vx, t, -margin, cfg.width + margin)
            cy = _bounce(o.y0, o.vy, t, -margin, cfg.height + margin)
            reach = 1.5 * o.size + 1.0  # covers the disc, the box (0.8 size) and the bar (1.4 size)
            x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, cfg.width)
            y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, cfg.height)
            if x1 <= x0 or y1 <= y0:
                continue
            u, v = self._xx[y0:y1, x0:x1] - cx, self._yy[y0:y1, x0:x1] - cy
            inside = self._mask(o, u, v)
            img[y0:y1, x0:x1] = np.where(inside, self._texture(o, u, v), img[y0:y1, x0:x1])
        return np.clip(img, 0.02, 1.0)


@dataclass(frozen=True)
class FrameCameraConfig:
    rate_hz: float = 25.0
    exposure_fraction: float = 0.5  # of the frame period
    read_noise: float = 1.5 / 255  # std dev, in units of full scale
    gain: float = 1.0  # scene radiance -> pixel value
    jitter_ns: int = 100_000  # std dev of the frame timing

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.rate_hz))

    @property
    def exposure_ns(self) -> int:
        return int(self.exposure_fraction * self.period_ns)


@dataclass
class EventFrameSequence:
    events: np.ndarray  # EVENT_DTYPE, t in ns from 0
    frame_stamps: np.ndarray  # (N,) int64, middle of the exposure
    frames: np.ndarray  # (N, H, W) uint8
    width: int
    height: int
    camera: FrameCameraConfig


def random_setup(rng: np.random.Generator, width: int, height: int) -> tuple[SceneConfig, FrameCameraConfig]:
    """A random scene and frame camera (the variety the detector must accept as normal)."""
    scale = width / 64.0
    scene = SceneConfig(width=width, height=height, num_objects=(1, 6),
                        object_speed=(10.0 * scale, 90.0 * scale), background_speed=(0.0, 40.0 * scale),
                        object_size=(5.0 * scale, 16.0 * scale))
    camera = FrameCameraConfig(rate_hz=float(rng.uniform(20.0, 60.0)), exposure_fraction=float(rng.uniform(0.2, 0.9)),
                               gain=float(rng.uniform(0.7, 1.2)))
    return scene, camera


# DAVIS-like activity: about 5-15 events per pixel and second in these scenes (the real DAVIS346 clip: 7)
DEFAULT_ESIM = EsimConfig(contrast_on=0.3, contrast_off=0.3, contrast_spread=0.04)


def simulate_event_frames(seed: int, duration_s: float, width: int = 96, height: int = 72,
                          scene: SceneConfig | None = None, camera: FrameCameraConfig | None = None,
                          esim: EsimConfig | None = None, render_hz: float = 500.0) -> EventFrameSequence:
    rng = np.random.default_rng(seed)
    drawn_scene, drawn_camera = random_setup(rng, width, height)
    scene = scene or drawn_scene
    camera = camera or drawn_camera
    scene = replace(scene, width=width, height=height)
    world = BoxedMovingScene(scene, seed)
    sim = EventSimulator(width, height, esim or DEFAULT_ESIM, seed=seed + 7_000_001)
    render_ns = int(round(1e9 / render_hz))
    n_renders = int(duration_s * render_hz) + 1
    period, exposure = camera.period_ns, camera.exposure_ns
    n_frames = int((duration_s * 1e9 - exposure) // period)
    stamps = (exposure // 2 + period // 2 + np.arange(n_frames) * period
              + np.clip(rng.normal(0, camera.jitter_ns, n_frames), -3 * camera.jitter_ns, 3 * camera.jitter_ns)
              ).astype(np.int64)
    sums = np.zeros((n_frames, height, width), np.float64)
    hits = np.zeros(n_frames, np.int64)
    chunks = []
    for i in range(n_renders):
        t = i * render_ns
        radiance = np.clip(world.render_intensity(t * 1e-9) * camera.gain, 0.02, 1.0)
        chunks.append(sim.step(radiance, t))
        # frames whose exposure [stamp - e/2, stamp + e/2) holds this render
        lo = np.searchsorted(stamps, t - exposure // 2, side="right")
        hi = np.searchsorted(stamps, t + exposure // 2, side="right")
        sums[lo:hi] += radiance
        hits[lo:hi] += 1
    frames = sums / np.maximum(hits, 1)[:, None, None]
    frames = frames + rng.normal(0.0, camera.read_noise, frames.shape)
    frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return EventFrameSequence(concat_events(chunks), stamps, frames, width, height, camera)

"""ESIM-style event generation from a sequence of rendered intensity frames.

Each pixel keeps a reference log intensity. Between two frames the log intensity is taken as linear in time;
every time it crosses reference + C_on (or reference - C_off) an ON (OFF) event is emitted at the interpolated
crossing time and the reference moves by that threshold. Thresholds differ per pixel (normal spread around the
nominal value, fixed for the sensor's life). A pixel that fired is blind for ``refractory_ns``: crossings in
that time still move the reference but emit nothing. Background-activity noise (Poisson, random polarity) and
hot pixels (high-rate Poisson) are added on top and do not touch the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fovea_core.events.arrays import EVENT_DTYPE, empty_events


@dataclass
class EsimConfig:
    contrast_on: float = 0.2
    contrast_off: float = 0.2
    contrast_spread: float = 0.03  # std dev of the per-pixel threshold
    min_contrast: float = 0.05
    refractory_ns: int = 100_000
    noise_rate_hz: float = 0.2  # background activity per pixel
    hot_pixel_fraction: float = 0.0005
    hot_pixel_rate_hz: float = 200.0
    log_eps: float = 1e-3


class EventSimulator:
    """Feed frames in time order with :meth:`step`; each call returns the events since the previous frame."""

    def __init__(self, width: int, height: int, config: EsimConfig, seed: int = 0) -> None:
        self.w, self.h, self.cfg = width, height, config
        self.rng = np.random.default_rng(seed)
        n = width * height
        self.c_on = np.maximum(self.rng.normal(config.contrast_on, config.contrast_spread, n), config.min_contrast)
        self.c_off = np.maximum(self.rng.normal(config.contrast_off, config.contrast_spread, n), config.min_contrast)
        n_hot = int(round(config.hot_pixel_fraction * n))
        self.hot_pixels = self.rng.choice(n, size=n_hot, replace=False) if n_hot else np.empty(0, np.int64)
        self.ref: np.ndarray | None = None
        self.last_log: np.ndarray | None = None
        self.last_t: int | None = None
        self.last_fire = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def log_intensity(self, frame: np.ndarray) -> np.ndarray:
        return np.log(frame.astype(np.float64).reshape(-1) + self.cfg.log_eps)

    def step(self, frame: np.ndarray, t_ns: int) -> np.ndarray:
        log_now = self.log_intensity(frame)
        if self.ref is None:
            self.ref, self.last_log, self.last_t = log_now.copy(), log_now, t_ns
            return empty_events()
        t0, dt = self.last_t, t_ns - self.last_t
        signal = self._crossings(self.last_log, log_now, t0, dt)
        noise = self._noise(t0, t_ns)
        self.last_log, self.last_t = log_now, t_ns
        events = np.concatenate([signal, noise])
        return events[np.argsort(events["t"], kind="stable")]

    def _crossings(self, log0: np.ndarray, log1: np.ndarray, t0: int, dt: int) -> np.ndarray:
        up = log1 > self.ref
        threshold = np.where(up, self.c_on, self.c_off)
        count = np.floor(np.abs(log1 - self.ref) / threshold).astype(np.int64)
        pix = np.flatnonzero(count)
        if len(pix) == 0:
            return empty_events()
        n = count[pix]
        sign = np.where(up[pix], 1.0, -1.0)
        # k-th crossing (k = 1..n) of pixel i sits at ref + sign * k * threshold
        rep = np.repeat(np.arange(len(pix)), n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1
        p = pix[rep]
        level = self.ref[p] + sign[rep] * k * threshold[p]
        slope = log1[p] - log0[p]
        frac = np.where(np.abs(slope) > 1e-12, (level - log0[p]) / np.where(slope == 0, 1, slope), 1.0)
        t = t0 + np.rint(np.clip(frac, 0.0, 1.0) * dt).astype(np.int64)
        self.ref[pix] += sign * n * threshold[pix]
        # refractory period, applied crossing by crossing in order (k is the rank within a pixel)
        keep = np.zeros(len(p), dtype=bool)
        for rank in range(1, int(n.max()) + 1):
            sel = np.flatnonzero(k == rank)
            ok = t[sel] - self.last_fire[p[sel]] >= self.cfg.refractory_ns
            keep[sel[ok]] = True
            self.last_fire[p[sel[ok]]] = t[sel[ok]]
        p, t, s = p[keep], t[keep], sign[rep][keep]
        out = np.empty(len(p), dtype=EVENT_DTYPE)
        out["x"], out["y"], out["t"], out["p"] = p % self.w, p // self.w, t, (s > 0)
        return out

    def _noise(self, t0: int, t1: int) -> np.ndarray:
        span_s = (t1 - t0) * 1e-9
        n_bg = self.rng.poisson(self.cfg.noise_rate_hz * span_s * self.w * self.h)
        pix = self.rng.integers(0, self.w * self.h, n_bg)
        if len(self.hot_pixels):
            n_hot = self.rng.poisson(self.cfg.hot_pixel_rate_hz * span_s, len(self.hot_pixels))
            pix = np.concatenate([pix, np.repeat(self.hot_pixels, n_hot)])
        out = np.empty(len(pix), dtype=EVENT_DTYPE)
        out["x"], out["y"] = pix % self.w, pix // self.w
        out["t"] = self.rng.integers(t0, max(t1, t0 + 1), len(pix))
        out["p"] = self.rng.integers(0, 2, len(pix))
        return out

"""Dense tensors built from event arrays (vectorised; the tests hold slow per-event references).

All functions take a window [t_start, t_end) in ns; events outside it or outside width x height are ignored.
"""
from __future__ import annotations

import numpy as np


def _in_window(events: np.ndarray, width: int, height: int, t_start: int, t_end: int) -> np.ndarray:
    t = events["t"]
    return events[(t >= t_start) & (t < t_end) & (events["x"] < width) & (events["y"] < height)]


def _time_bin(t: np.ndarray, t_start: int, t_end: int, num_bins: int) -> np.ndarray:
    # integer arithmetic so bin edges are exact: bin k holds [t_start + k*span/num_bins, ...)
    return ((t.astype(np.int64) - t_start) * num_bins // max(t_end - t_start, 1)).astype(np.int64)


def event_histogram(events: np.ndarray, width: int, height: int, num_bins: int, t_start: int,
                    t_end: int) -> np.ndarray:
    """Event counts, shape (num_bins, 2, height, width); channel 0 = OFF, 1 = ON."""
    ev = _in_window(events, width, height, t_start, t_end)
    flat = ((_time_bin(ev["t"], t_start, t_end, num_bins) * 2 + (ev["p"] > 0)) * height + ev["y"]) * width + ev["x"]
    counts = np.bincount(flat, minlength=num_bins * 2 * height * width)
    return counts.reshape(num_bins, 2, height, width).astype(np.float32)


def voxel_grid(events: np.ndarray, width: int, height: int, num_bins: int, t_start: int, t_end: int) -> np.ndarray:
    """Signed voxel grid (num_bins, height, width): each event adds +1 (ON) / -1 (OFF), split linearly between
    the two nearest bin centres in time (bin centres at t_start + (k + 0.5) * span / num_bins)."""
    ev = _in_window(events, width, height, t_start, t_end)
    grid = np.zeros(num_bins * height * width, dtype=np.float64)
    if len(ev):
        pos = (ev["t"].astype(np.float64) - t_start) / max(t_end - t_start, 1) * num_bins - 0.5
        pos = np.clip(pos, 0.0, num_bins - 1.0)
        lower = np.floor(pos).astype(np.int64)
        frac = pos - lower
        upper = np.minimum(lower + 1, num_bins - 1)
        sign = np.where(ev["p"] > 0, 1.0, -1.0)
        pixel = ev["y"].astype(np.int64) * width + ev["x"]
        np.add.at(grid, lower * height * width + pixel, sign * (1.0 - frac))
        np.add.at(grid, upper * height * width + pixel, sign * frac)
    return grid.reshape(num_bins, height, width).astype(np.float32)


def latest_timestamps(events: np.ndarray, width: int, height: int, previous: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel, per-polarity time of the latest event, shape (2, height, width), int64 ns; -1 where none yet.

    ``previous`` (same shape) is updated so a stream can be folded in packet by packet.
    """
    out = np.full((2, height, width), -1, dtype=np.int64) if previous is None else previous.copy()
    ev = events[(events["x"] < width) & (events["y"] < height)]
    flat = ((ev["p"] > 0).astype(np.int64) * height + ev["y"]) * width + ev["x"]
    np.maximum.at(out.reshape(-1), flat, ev["t"].astype(np.int64))
    return out


def time_surface(latest: np.ndarray, now: int, decay_ns: float) -> np.ndarray:
    """exp(-(now - latest) / decay) per pixel and polarity; 0 where a pixel has no event yet."""
    age = (now - latest).astype(np.float64)
    return np.where(latest >= 0, np.exp(-np.maximum(age, 0.0) / decay_ns), 0.0).astype(np.float32)

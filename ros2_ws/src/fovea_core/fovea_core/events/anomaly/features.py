"""Sync features: per frame step k, how well the event activity around [t_{k-1} + delta, t_k + delta) matches
the frame change between frames k-1 and k, for delta in {-D, ..., +D} x ``offset_step_ns``.

Both extractors start from the same per-step inputs (:class:`StepInputs`, built by :func:`step_inputs`):

* per patch of a ``grid`` over the sensor, ON and OFF event counts in the step window shifted by each offset
  (one bincount over 1 ms sub-bins and a cumulative sum, so every shift costs a subtraction);
* per patch, the mean positive and negative change of log intensity between the two frames.

The classical extractor (:func:`classical_distribution`) is AVAD's idea with a hand-made similarity:
normalised cross-correlation across patches between event counts and the log-intensity change at each offset,
turned into a distribution with a softmax of temperature ``temperature``. Polarity is kept apart (ON counts
against the brightening, OFF counts against the darkening, one vector of 2P): on the real DAVIS346 clip that
brought the spread of the argmax offset from 13 ms (unsigned counts against |delta log I|) to 4 ms, at 32 x 24
patches (8 x 6 patches: 18 ms), because static texture produces activity at every offset and only the sign
and place of the change pin the time down. Without a defined correlation (no events,
a frozen or uniform frame) every offset scores 0: the distribution is uniform, which is itself a signal.
The learned extractor lives in :mod:`fovea_core.events.anomaly.sync_net`.

Events-only streams (no frames, e.g. the libcaer bag) have no offsets to compare; their per-step observation is
the distribution of event activity over the patches (:func:`activity_distribution`), on a fixed step clock.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUB_BIN_NS = 1_000_000  # time resolution of the shifted windows


@dataclass(frozen=True)
class FeatureConfig:
    grid: tuple[int, int] = (32, 24)  # patches across x, y
    max_offset_bins: int = 15  # D: offsets -D..D, 2D + 1 = 31 as in AVAD
    offset_step_ns: int = 5_000_000
    temperature: float = 0.1  # classical softmax temperature (NCC units)
    log_eps: float = 0.02  # intensity floor (of 1.0) before the log

    @property
    def num_offsets(self) -> int:
        return 2 * self.max_offset_bins + 1

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def horizon_ns(self) -> int:
        """How far beyond a frame stamp events are needed before that step can be scored."""
        return self.max_offset_bins * self.offset_step_ns + SUB_BIN_NS

    def offsets_ns(self) -> np.ndarray:
        return np.arange(-self.max_offset_bins, self.max_offset_bins + 1, dtype=np.int64) * self.offset_step_ns


@dataclass
class StepInputs:
    counts: np.ndarray  # (num_offsets, 2, P) float32: OFF, ON events per patch in each shifted window
    change: np.ndarray  # (2, P) float32: mean positive / negative delta log intensity per patch
    stamp_ns: int  # frame k's stamp (the step is scored at this time)
    interval_ns: int  # t_k - t_{k-1}
    events_in_step: int  # unshifted window


def patch_index(x: np.ndarray, y: np.ndarray, width: int, height: int, grid: tuple[int, int]) -> np.ndarray:
    gx, gy = grid
    px = np.minimum(x.astype(np.int64) * gx // max(width, 1), gx - 1)
    py = np.minimum(y.astype(np.int64) * gy // max(height, 1), gy - 1)
    return py * gx + px


def frame_change(previous: np.ndarray, current: np.ndarray, width: int, height: int, cfg: FeatureConfig) -> np.ndarray:
    """(2, P): per patch, mean of max(d, 0) and of max(-d, 0) for d = log I_k - log I_{k-1}."""
    d = (np.log(current.astype(np.float32) / 255.0 + cfg.log_eps)
         - np.log(previous.astype(np.float32) / 255.0 + cfg.log_eps))
    h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    # images and events may differ in resolution: patches are fractions of each one's own size
    patch = patch_index(xx.ravel(), yy.ravel(), w, h, cfg.grid)
    n = np.bincount(patch, minlength=cfg.num_patches).astype(np.float32)
    pos = np.bincount(patch, np.maximum(d, 0).ravel(), cfg.num_patches) / np.maximum(n, 1)
    neg = np.bincount(patch, np.maximum(-d, 0).ravel(), cfg.num_patches) / np.maximum(n, 1)
    return np.stack([pos, neg]).astype(np.float32)


def shifted_counts(events: np.ndarray, t_start: int, t_end: int, width: int, height: int,
                   cfg: FeatureConfig, times: np.ndarray | None = None) -> np.ndarray:
    """(num_offsets, 2, P) event counts per polarity and patch in [t_start + delta, t_end + delta).

    ``times``: ``events["t"]`` as a contiguous array, for callers that score many steps of one long stream
    (searching the strided field of a structured array copies it on every call)."""
    lo = t_start - cfg.max_offset_bins * cfg.offset_step_ns
    hi = t_end + cfg.max_offset_bins * cfg.offset_step_ns
    a, b = np.searchsorted(events["t"] if times is None else times, [lo, hi])
    ev = events[a:b]
    n_sub = (hi - lo) // SUB_BIN_NS + 1
    sub = (ev["t"] - lo) // SUB_BIN_NS
    cell = ((ev["p"] > 0).astype(np.int64) * cfg.num_patches
            + patch_index(ev["x"], ev["y"], width, height, cfg.grid)) * n_sub + sub
    hist = np.bincount(cell, minlength=2 * cfg.num_patches * n_sub).reshape(2, cfg.num_patches, n_sub)
    cum = np.concatenate([np.zeros((2, cfg.num_patches, 1), np.int64), np.cumsum(hist, axis=2)], axis=2)
    offsets = cfg.offsets_ns()
    start_idx = np.clip((t_start + offsets - lo + SUB_BIN_NS // 2) // SUB_BIN_NS, 0, n_sub)
    end_idx = np.clip((t_end + offsets - lo + SUB_BIN_NS // 2) // SUB_BIN_NS, 0, n_sub)
    counts = cum[:, :, end_idx] - cum[:, :, start_idx]  # (2, P, O)
    return np.transpose(counts, (2, 0, 1)).astype(np.float32)


def step_inputs(events: np.ndarray, t_prev: int, t_now: int, image_prev: np.ndarray, image_now: np.ndarray,
                width: int, height: int, cfg: FeatureConfig, times: np.ndarray | None = None) -> StepInputs:
    counts = shifted_counts(events, t_prev, t_now, width, height, cfg, times)
    return StepInputs(counts, frame_change(image_prev, image_now, width, height, cfg), int(t_now),
                      int(t_now - t_prev), int(counts[cfg.max_offset_bins].sum()))


def ncc_per_offset(inputs: StepInputs) -> np.ndarray:
    """(num_offsets,) normalised cross-correlation across patches of (ON, OFF) counts and (brightening,
    darkening)."""
    c = np.concatenate([inputs.counts[:, 1], inputs.counts[:, 0]], axis=1)  # (O, 2P)
    f = np.concatenate([inputs.change[0], inputs.change[1]])  # (2P,)
    c = c - c.mean(axis=1, keepdims=True)
    f = f - f.mean()
    denom = np.linalg.norm(c, axis=1) * np.linalg.norm(f)
    return np.where(denom > 1e-9, (c @ f) / np.maximum(denom, 1e-12), 0.0).astype(np.float32)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def classical_distribution(inputs: StepInputs, cfg: FeatureConfig) -> np.ndarray:
    return softmax(ncc_per_offset(inputs), cfg.temperature)


def argmax_lag_bins(inputs: StepInputs, cfg: FeatureConfig) -> int:
    """The rule baseline's measurement: the offset (in bins) of the highest cross-correlation."""
    return int(np.argmax(ncc_per_offset(inputs))) - cfg.max_offset_bins


def activity_distribution(events: np.ndarray, t_start: int, t_end: int, width: int, height: int,
                          cfg: FeatureConfig, floor: float = 0.5, times: np.ndarray | None = None) -> np.ndarray:
    """(P,) share of the window's events per patch, with ``floor`` pseudo-events per patch (an empty window
    is uniform). ``times`` as in :func:`shifted_counts`."""
    a, b = np.searchsorted(events["t"] if times is None else times, [t_start, t_end])
    ev = events[a:b]
    counts = np.bincount(patch_index(ev["x"], ev["y"], width, height, cfg.grid), minlength=cfg.num_patches)
    counts = counts.astype(np.float64) + floor
    return (counts / counts.sum()).astype(np.float32)


def expected_offset_ms(distribution: np.ndarray, cfg: FeatureConfig) -> float:
    """The frame-stream lag the distribution points at (its argmax), in ms: frames stamped ``L`` late match the
    events ``L`` earlier, i.e. an offset of -L; positive = frames late against events."""
    return float(-(int(np.argmax(distribution)) - cfg.max_offset_bins) * cfg.offset_step_ns / 1e6)

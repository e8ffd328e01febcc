"""The node's sweep history: the last ``cfg.sweeps`` lidar sweeps, each kept in its own base_link with its
pose in a fixed frame, handed to the encoder motion-compensated into the latest sweep's base_link.

A slot is filled by the sweep whose age is (within ``max_gap`` seconds) k sweep periods, k = 0 .. N-1;
slots without one (start-up, a dropped or late sweep) stay None, which the encoder input masks. Points are
cropped on arrival to what can still land in the grid after the ego moves for N-1 periods (``reach``
metres of margin, the height range +- 0.5 m) and kept as float32: a 100k-point AV2 sweep shrinks to about
half, and moving five of them into the latest frame is a few milliseconds instead of tens.
"""
from __future__ import annotations

import collections

import numpy as np

from .config import OccFlowConfig


class SweepHistory:
    def __init__(self, cfg: OccFlowConfig, max_gap: float, reach: float = 15.0) -> None:
        self.cfg, self.max_gap = cfg, float(max_gap)
        self._sweeps: collections.deque = collections.deque(maxlen=cfg.sweeps)   # (stamp ns, points, T_world_base)
        self._lo = np.array([cfg.x_range[0] - reach, cfg.y_range[0] - reach, cfg.z_range[0] - 0.5])
        self._hi = np.array([cfg.x_range[1] + reach, cfg.y_range[1] + reach, cfg.z_range[1] + 0.5])

    def add(self, stamp_ns: int, points_base: np.ndarray, T_world_base: np.ndarray) -> list[np.ndarray | None]:
        """Add a sweep ((M, 3) points in its base_link, its 4x4 pose in the fixed frame); returns the slots,
        oldest first, each the points of that sweep in this sweep's base_link, or None."""
        pts = np.asarray(points_base, np.float32).reshape(-1, 3)
        pts = pts[((pts >= self._lo) & (pts <= self._hi)).all(1)]
        self._sweeps.append((int(stamp_ns), pts, np.asarray(T_world_base, np.float64)))
        return self.slots()

    def slots(self) -> list[np.ndarray | None]:
        cfg = self.cfg
        if not self._sweeps:
            return [None] * cfg.sweeps
        stamp, _, T_world_latest = self._sweeps[-1]
        T_latest_world = np.linalg.inv(T_world_latest)
        slots: list[np.ndarray | None] = [None] * cfg.sweeps
        for s_stamp, pts, T_world_s in self._sweeps:
            age = (stamp - s_stamp) / (cfg.sweep_period * 1e9)
            k = int(round(age))
            if 0 <= k < cfg.sweeps and abs(age - k) * cfg.sweep_period <= self.max_gap:
                slots[cfg.sweeps - 1 - k] = move_points(pts, T_latest_world @ T_world_s)
        return slots

    def clear(self) -> None:
        self._sweeps.clear()


def move_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(M, 3) points through the 4x4 rigid transform ``T``, in the points' own float type. Three column
    updates instead of a (M, 3) @ (3, 3) product: that goes to a multi-threaded BLAS whose threads fight
    over a loaded machine's cores (70 ms per 100k points measured here, against ~2 ms)."""
    T = np.asarray(T, points.dtype)
    return points[:, :1] * T[:3, 0] + points[:, 1:2] * T[:3, 1] + points[:, 2:3] * T[:3, 2] + T[:3, 3]

"""The BEV grid of one sample and the lidar voxelisation with a masked sweep history.

Cell (row j, column i) covers x in [x_min + i*res, x_min + (i+1)*res), y likewise with j; rasters are
(C, ny, nx). ``normalise`` maps metric (x, y) to grid_sample's [-1, 1] (align_corners=False), so a
query at a cell centre samples exactly that cell.

Lidar input per sweep s (0 = oldest, N-1 = latest): ``height_bins`` planes of log(1 + returns) per
voxel, then one validity plane (1 when the sweep exists). A missing sweep (start-up, a dropped message)
has all-zero planes *and* a zero validity plane, so the network can tell "no sweep" from "empty space".
Sweeps are expected already motion-compensated into the latest sweep's base_link.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import OccFlowConfig


@dataclass(frozen=True)
class BevGrid:
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    resolution: float

    @classmethod
    def of(cls, cfg: OccFlowConfig) -> "BevGrid":
        return cls(tuple(cfg.x_range), tuple(cfg.y_range), float(cfg.resolution))

    @property
    def nx(self) -> int:
        return int(round((self.x_range[1] - self.x_range[0]) / self.resolution))

    @property
    def ny(self) -> int:
        return int(round((self.y_range[1] - self.y_range[0]) / self.resolution))

    @property
    def shape(self) -> tuple[int, int]:
        return self.ny, self.nx

    def cell_centres(self) -> np.ndarray:
        """(ny, nx, 2) metric x, y of every cell centre."""
        xs = self.x_range[0] + (np.arange(self.nx) + 0.5) * self.resolution
        ys = self.y_range[0] + (np.arange(self.ny) + 0.5) * self.resolution
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx, gy], -1)

    def cell_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, inside) of metric points (..., 2)."""
        col = np.floor((xy[..., 0] - self.x_range[0]) / self.resolution).astype(np.int64)
        row = np.floor((xy[..., 1] - self.y_range[0]) / self.resolution).astype(np.int64)
        inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        return row, col, inside

    def contains(self, xy: np.ndarray) -> np.ndarray:
        return ((xy[..., 0] >= self.x_range[0]) & (xy[..., 0] < self.x_range[1])
                & (xy[..., 1] >= self.y_range[0]) & (xy[..., 1] < self.y_range[1]))

    def normalise(self, xy: np.ndarray) -> np.ndarray:
        lo = np.array([self.x_range[0], self.y_range[0]])
        span = np.array([self.x_range[1] - self.x_range[0], self.y_range[1] - self.y_range[0]])
        return ((xy - lo) / span * 2.0 - 1.0).astype(np.float32)


def voxelise_sweep(points_xyz: np.ndarray, grid: BevGrid, z_range: tuple[float, float], height_bins: int) -> np.ndarray:
    """(height_bins, ny, nx) uint8 count of returns per voxel (saturating at 255); NaN/inf points ignored."""
    pts = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(1)]
    row, col, inside = grid.cell_index(pts[:, :2])
    zb = np.floor((pts[:, 2] - z_range[0]) / (z_range[1] - z_range[0]) * height_bins).astype(np.int64)
    keep = inside & (zb >= 0) & (zb < height_bins)
    ny, nx = grid.shape
    # bincount over flat voxel indices: np.add.at did the same ~20x slower (50 ms per 100k-point sweep)
    flat = (zb[keep] * ny + row[keep]) * nx + col[keep]
    counts = np.bincount(flat, minlength=height_bins * ny * nx).reshape(height_bins, ny, nx)
    return np.minimum(counts, 255).astype(np.uint8)


def sweep_history(sweeps: list[np.ndarray | None], grid: BevGrid, cfg: OccFlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """Counts (N, height_bins, ny, nx) uint8 and validity (N,) bool of the last N = ``cfg.sweeps`` sweeps,
    oldest first. ``sweeps`` is oldest-first, latest last; None entries (a dropped sweep) and a short list
    (start-up: the oldest are missing) are masked, never filled."""
    sweeps = list(sweeps)[-cfg.sweeps:]
    sweeps = [None] * (cfg.sweeps - len(sweeps)) + sweeps
    counts = np.zeros((cfg.sweeps, cfg.height_bins, *grid.shape), np.uint8)
    valid = np.zeros(cfg.sweeps, bool)
    for s, pts in enumerate(sweeps):
        if pts is not None:
            counts[s] = voxelise_sweep(pts, grid, cfg.z_range, cfg.height_bins)
            valid[s] = True
    return counts, valid


def lidar_planes(counts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The network's lidar input: per sweep log(1 + count) per height bin, then its validity plane;
    (N * (height_bins + 1), ny, nx) float32. Invalid sweeps are all zero, validity plane included."""
    n, h, ny, nx = counts.shape
    out = np.zeros((n, h + 1, ny, nx), np.float32)
    out[:, :h] = np.log1p(counts.astype(np.float32)) * valid[:, None, None, None]
    out[:, h] = valid[:, None, None].astype(np.float32)
    return out.reshape(n * (h + 1), ny, nx)

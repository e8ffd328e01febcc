"""One training / evaluation sample, the same for simulated and real data, and the network inputs made
from it.

A sample is taken at the latest sweep (t = 0) and lives in that sweep's base_link. It holds the lidar
history (counts per voxel, ``N`` sweeps oldest first, validity per sweep), an optional tracked-object
history (footprints of the tracked agents at the same ``N`` frames, validity per frame: all False when
there is no tracker), the map raster (validity plane zero without a map), and the agents' tracks from
``flow_dt`` before t = 0 to the horizon (the ground truth). Stored as compressed ``.npz`` of plain
arrays (loaded with ``allow_pickle=False``).

Which agents count (``Sample.seen``): the ones the sensor saw, as in Waymo's "observed" occupancy and as
in the real AV2 annotations (99 % of the log's vehicles inside the grid have lidar points in their box).
In the simulator 39 % of the agents present at t = 0 inside the grid have no return at all (occluded by
buildings, parked cars and each other; measured on the held-out scenes): kept as targets, they teach a
model to spread occupancy along every lane where an unseen car could be. A sample with lidar keeps the
agents with at least ``MIN_RETURNS`` returns above the road inside their box (grown by one cell) in any
sweep of its history; the tracked-object history is redrawn from those agents (a tracker follows what it
sees). A sample without lidar (the AV2 annotation frames, the forecasting scenario) keeps its annotations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .agents import AgentTracks, box_cells, footprint_history
from .config import OccFlowConfig
from .grid import BevGrid, lidar_planes, sweep_history
from .vector_map import VectorMap, rasterise_map

MIN_RETURNS = 3   # lidar returns above the road in an agent's box for it to count as seen


@dataclass
class Sample:
    lidar_counts: np.ndarray       # (N, H, ny, nx) uint8
    sweep_valid: np.ndarray        # (N,) bool
    track_footprints: np.ndarray   # (N, ny, nx) uint8 in {0, 1}
    track_valid: np.ndarray        # (N,) bool
    map_raster: np.ndarray         # (M, ny, nx) float32; last plane = validity
    tracks: AgentTracks
    source: str = ""
    stamp_ns: int = 0

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, lidar_counts=self.lidar_counts, sweep_valid=self.sweep_valid,
                            track_footprints=self.track_footprints, track_valid=self.track_valid,
                            map_raster=self.map_raster.astype(np.float16), source=np.str_(self.source),
                            stamp_ns=np.int64(self.stamp_ns), **self.tracks.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "Sample":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["lidar_counts"], z["sweep_valid"], z["track_footprints"], z["track_valid"],
                       z["map_raster"].astype(np.float32), AgentTracks.from_arrays(z), str(z["source"]),
                       int(z["stamp_ns"]))

    def seen(self, cfg: OccFlowConfig, min_returns: int = MIN_RETURNS) -> "Sample":
        """Only the agents the lidar saw (module docstring); unchanged without lidar."""
        if not self.sweep_valid.any():
            return self
        tracks = self.tracks.select(lidar_returns_per_agent(self, cfg) >= min_returns)
        frames = [tracks.current - (cfg.sweeps - 1) + i for i in range(cfg.sweeps)]
        fp = footprint_history(tracks, BevGrid.of(cfg), [max(f, 0) for f in frames]).astype(np.uint8)
        return Sample(self.lidar_counts, self.sweep_valid, fp * self.track_valid[:, None, None].astype(np.uint8),
                      self.track_valid, self.map_raster, tracks, self.source, self.stamp_ns)

    def with_inputs(self, sweeps: bool | np.ndarray = True, tracker: bool = True, use_map: bool = True) -> "Sample":
        """A copy with inputs masked: ``sweeps`` False (or a per-sweep keep mask), no tracker, no map."""
        keep = np.broadcast_to(np.asarray(sweeps, bool), self.sweep_valid.shape)
        return Sample(self.lidar_counts, self.sweep_valid & keep, self.track_footprints,
                      self.track_valid & bool(tracker), self.map_raster if use_map else np.zeros_like(self.map_raster),
                      self.tracks, self.source, self.stamp_ns)


def above_road_bins(cfg: OccFlowConfig) -> slice:
    """Height bins whose lower edge is at or above base_link z = 0 (~0.4 m above the road)."""
    step = (cfg.z_range[1] - cfg.z_range[0]) / cfg.height_bins
    return slice(int(np.ceil(-cfg.z_range[0] / step - 1e-9)), cfg.height_bins)


def lidar_returns_per_agent(sample: Sample, cfg: OccFlowConfig) -> np.ndarray:
    """(A,) the most returns above the road any valid sweep put inside each agent's box (grown by one cell)."""
    grid, tracks = BevGrid.of(cfg), sample.tracks
    above = sample.lidar_counts[:, above_road_bins(cfg)].sum(1, dtype=np.int64)   # (N, ny, nx)
    best = np.zeros(tracks.num_agents, np.int64)
    for s_idx in np.nonzero(sample.sweep_valid)[0]:
        frame = tracks.current - (cfg.sweeps - 1 - s_idx)
        if frame < 0:
            continue
        for a in np.nonzero(tracks.valid[frame])[0]:
            box = box_cells(grid, tracks.xy[frame, a], tracks.yaw[frame, a], tracks.size[a], margin=grid.resolution)
            if box is not None:
                rows, cols, inside = box[:3]
                best[a] = max(best[a], int(above[s_idx, rows, cols][inside].sum()))
    return best


def build_sample(cfg: OccFlowConfig, sweeps: list[np.ndarray | None], tracks: AgentTracks,
                 vmap: VectorMap | None, tracker_frames: int | None = None, source: str = "",
                 stamp_ns: int = 0) -> Sample:
    """From sweeps (oldest first, already in the current base_link), tracks (current frame = t = 0, in
    base_link) and a map in base_link. ``tracker_frames``: how many of the last frames the tracked-object
    history covers (None: all N when the tracks have them)."""
    grid = BevGrid.of(cfg)
    counts, valid = sweep_history(sweeps, grid, cfg)
    frames = [tracks.current - (cfg.sweeps - 1) + i for i in range(cfg.sweeps)]
    have = np.array([f >= 0 for f in frames])
    if tracker_frames is not None:
        have &= np.arange(cfg.sweeps) >= cfg.sweeps - tracker_frames
    fp = footprint_history(tracks, grid, [max(f, 0) for f in frames]).astype(np.uint8) * have[:, None, None]
    return Sample(counts, valid, fp.astype(np.uint8), have, rasterise_map(vmap, grid), tracks, source, stamp_ns)


def model_inputs(sample: Sample, cfg: OccFlowConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(lidar stream input (1, lidar_channels, ny, nx), map raster (1, M, ny, nx)) float32 tensors."""
    planes = [lidar_planes(sample.lidar_counts, sample.sweep_valid)]
    if cfg.track_history:
        tv = sample.track_valid.astype(np.float32)
        planes.append(sample.track_footprints.astype(np.float32) * tv[:, None, None])
        planes.append(np.broadcast_to(tv[:, None, None], sample.track_footprints.shape).astype(np.float32))
    lidar = torch.from_numpy(np.concatenate(planes))[None]
    return lidar, torch.from_numpy(np.ascontiguousarray(sample.map_raster))[None]

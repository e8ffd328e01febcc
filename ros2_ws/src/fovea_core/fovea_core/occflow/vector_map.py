"""A lane-graph map (the AV2 vector-map contents) and its raster on the BEV grid.

Raster channels (``MAP_CHANNELS``): drivable area, lane centrelines, centreline direction (cos, sin of the
lane's heading, 0 off centrelines), lane boundaries, pedestrian crossings, and a validity plane (1 when a
map is given). Map-less operation: all planes zero, validity zero.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.path import Path as PolygonPath

MAP_CHANNELS = ("drivable", "centreline", "direction_cos", "direction_sin", "boundary", "crossing", "valid")


@dataclass
class Lane:
    id: int
    centreline: np.ndarray          # (P, 2)
    left: np.ndarray                # (P, 2)
    right: np.ndarray               # (P, 2)
    successors: list[int] = field(default_factory=list)
    left_neighbour: int | None = None
    right_neighbour: int | None = None
    kind: str = "VEHICLE"           # AV2 lane_type: VEHICLE | BIKE | BUS
    is_intersection: bool = False


@dataclass
class VectorMap:
    lanes: dict[int, Lane]
    drivable: list[np.ndarray]      # polygons (P, 2)
    crossings: list[np.ndarray]     # polygons (P, 2)

    def transformed(self, T: np.ndarray) -> "VectorMap":
        """The map in another frame: ``T`` is a 3x3 or 4x4 transform (new <- old) applied to x, y."""
        R, t = T[:2, :2], T[:2, -1]

        def tf(p):
            return p @ R.T + t
        lanes = {k: Lane(l.id, tf(l.centreline), tf(l.left), tf(l.right), l.successors, l.left_neighbour,
                         l.right_neighbour, l.kind, l.is_intersection) for k, l in self.lanes.items()}
        return VectorMap(lanes, [tf(p) for p in self.drivable], [tf(p) for p in self.crossings])


def _xy(points) -> np.ndarray:
    return np.array([[p["x"], p["y"]] for p in points], dtype=np.float64)


def resample(polyline: np.ndarray, count: int) -> np.ndarray:
    """``count`` points evenly spaced along a polyline (by arc length)."""
    seg = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return np.repeat(polyline[:1], count, 0)
    target = np.linspace(0, s[-1], count)
    return np.stack([np.interp(target, s, polyline[:, 0]), np.interp(target, s, polyline[:, 1])], 1)


def read_av2_map(path: str | Path) -> VectorMap:
    """An AV2 ``log_map_archive_*.json`` (sensor or forecasting dataset). Where a lane has no stored
    centreline (the sensor logs' maps) it is the mean of its two boundaries resampled to the same number
    of points (as av2-api does)."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    lanes = {}
    for entry in raw["lane_segments"].values():
        left, right = _xy(entry["left_lane_boundary"]), _xy(entry["right_lane_boundary"])
        if entry.get("centerline"):
            centre = _xy(entry["centerline"])
        else:
            n = max(len(left), len(right), 10)
            centre = (resample(left, n) + resample(right, n)) / 2
        lanes[int(entry["id"])] = Lane(int(entry["id"]), centre, left, right, [int(s) for s in entry["successors"]],
                                       entry.get("left_neighbor_id"), entry.get("right_neighbor_id"),
                                       entry.get("lane_type", "VEHICLE"), bool(entry.get("is_intersection")))
    drivable = [_xy(a["area_boundary"]) for a in raw["drivable_areas"].values()]
    crossings = [np.concatenate([_xy(c["edge1"]), _xy(c["edge2"])[::-1]]) for c in raw["pedestrian_crossings"].values()]
    return VectorMap(lanes, drivable, crossings)


def _fill_polygon(plane: np.ndarray, polygon: np.ndarray, grid) -> None:
    lo, hi = polygon.min(0), polygon.max(0)
    r0, c0, _ = grid.cell_index(lo[None])
    r1, c1, _ = grid.cell_index(hi[None])
    r0, r1 = max(int(r0[0]), 0), min(int(r1[0]), grid.ny - 1)
    c0, c1 = max(int(c0[0]), 0), min(int(c1[0]), grid.nx - 1)
    if r0 > r1 or c0 > c1:
        return
    centres = grid.cell_centres()[r0:r1 + 1, c0:c1 + 1]
    inside = PolygonPath(polygon).contains_points(centres.reshape(-1, 2)).reshape(centres.shape[:2])
    plane[r0:r1 + 1, c0:c1 + 1] = np.maximum(plane[r0:r1 + 1, c0:c1 + 1], inside)


def _polyline_samples(polyline: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``spacing`` metres along a polyline and the unit tangent at each."""
    pts, dirs = [], []
    for a, b in zip(polyline[:-1], polyline[1:]):
        d = b - a
        length = float(np.hypot(*d))
        if length < 1e-9:
            continue
        n = max(int(np.ceil(length / spacing)), 1)
        s = np.arange(n + 1)[:, None] / n
        pts.append(a + s * d)
        dirs.append(np.repeat((d / length)[None], n + 1, 0))
    if not pts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(pts), np.concatenate(dirs)


def rasterise_map(vmap: VectorMap | None, grid) -> np.ndarray:
    """(len(MAP_CHANNELS), ny, nx) float32 raster; all zero (validity included) without a map."""
    out = np.zeros((len(MAP_CHANNELS), *grid.shape), np.float32)
    if vmap is None:
        return out
    for poly in vmap.drivable:
        _fill_polygon(out[0], poly, grid)
    for poly in vmap.crossings:
        _fill_polygon(out[5], poly, grid)
    spacing = grid.resolution / 2
    for lane in vmap.lanes.values():
        pts, dirs = _polyline_samples(lane.centreline, spacing)
        row, col, inside = grid.cell_index(pts)
        out[1, row[inside], col[inside]] = 1.0
        out[2, row[inside], col[inside]] = dirs[inside, 0]
        out[3, row[inside], col[inside]] = dirs[inside, 1]
        for boundary in (lane.left, lane.right):
            pts, _ = _polyline_samples(boundary, spacing)
            row, col, inside = grid.cell_index(pts)
            out[4, row[inside], col[inside]] = 1.0
    out[6] = 1.0
    return out


class MapRasteriser:
    """A map rasterised once in its own frame, resampled around the ego per sweep (what the node does:
    rasterising the lane graph from scratch takes ~0.3 s per sweep, the lookup a few milliseconds).
    Nearest-cell lookup keeps the channels' values; the direction channels are rotated into the ego's
    frame. Cells beyond the map's extent (plus ``margin``) are empty, the validity plane stays 1."""

    def __init__(self, vmap: VectorMap, resolution: float, margin: float = 60.0) -> None:
        from .grid import BevGrid

        pts = np.concatenate([l.centreline for l in vmap.lanes.values()] + list(vmap.drivable) or [np.zeros((1, 2))])
        lo, hi = pts.min(0) - margin, pts.max(0) + margin
        n = np.ceil((hi - lo) / resolution).astype(int)
        self.grid = BevGrid((float(lo[0]), float(lo[0] + n[0] * resolution)),
                            (float(lo[1]), float(lo[1] + n[1] * resolution)), resolution)
        self.raster = rasterise_map(vmap, self.grid)

    def around(self, T_map_base: np.ndarray, grid) -> np.ndarray:
        """The raster on ``grid`` (a BevGrid in base_link) for the ego pose ``T_map_base`` (3x3 or 4x4)."""
        R, t = T_map_base[:2, :2], T_map_base[:2, -1]
        rows, cols, inside = self.grid.cell_index(grid.cell_centres() @ R.T + t)
        out = self.raster[:, np.clip(rows, 0, self.grid.ny - 1), np.clip(cols, 0, self.grid.nx - 1)] * inside
        c, s = out[2].copy(), out[3].copy()            # map-frame heading -> base_link heading: rotate by R^T
        out[2], out[3] = R[0, 0] * c + R[1, 0] * s, R[0, 1] * c + R[1, 1] * s
        out[-1] = 1.0
        return out.astype(np.float32)

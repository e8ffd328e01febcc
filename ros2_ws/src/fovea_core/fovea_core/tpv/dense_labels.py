"""Dense semantic voxel labels from accumulated labelled lidar sweeps (the way SurroundOcc / Occ3D build theirs).

For a target frame, the labelled sweeps of the frames of its split are merged in world coordinates:

* static points (everything outside the cuboids of moving objects) are taken where they were measured;
* points inside a moving object's cuboid (``stationary`` false) travel with that track: box-local coordinates
  in the source frame, placed at the same track's box in the target frame (dropped when the track is not
  annotated there);

then moved into the target's base_link and voted per voxel (majority class; a voxel whose majority is a class
with no counterpart is ``IGNORE``). A voxel with no point is empty: like SurroundOcc, no visibility mask, so
voxels nobody observed count as empty. Only the Pandar64 boxes (sensor 0, or single boxes) are used, since the
sweeps hold only Pandar64 returns.
"""
from __future__ import annotations

import numpy as np

from fovea_core.geometry.transforms import invert_rigid, transform_points

from .frame import IGNORE
from .pandaset import PandaSetSequence

MERGE_CELL = 0.1  # metres: static returns of all sweeps are merged per cell of this size (voxels are >= 0.4 m)


def world_boxes(seq: PandaSetSequence, frame: int, moving_only: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uuid -> (T_world_box (4, 4), half extents along the box's x (width), y (length), z)."""
    out = {}
    for c in seq.cuboids(frame):
        if (moving_only and c["stationary"]) or int(c["cuboids.sensor_id"]) == 1:
            continue
        yaw = c["yaw"]
        T = np.eye(4)
        T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = [c["position.x"], c["position.y"], c["position.z"]]
        out[c["uuid"]] = (T, np.array([c["dimensions.x"], c["dimensions.y"], c["dimensions.z"]]) / 2)
    return out


def _inside(local: np.ndarray, half: np.ndarray) -> np.ndarray:
    return np.all(np.abs(local) <= half, axis=1)


class SplitAccumulator:
    """The labelled sweeps of ``frames`` merged once: static points in world coordinates, moving objects'
    points in their track's box coordinates. ``points_in(target)`` places both in a target frame."""

    def __init__(self, seq: PandaSetSequence, frames):
        from scipy.spatial import cKDTree

        self.seq = seq
        static_pts, static_lab = [], []
        self.tracks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for f in frames:
            sweep = seq.sweep(f)
            labels = seq.label_lut[sweep.source_labels]
            pts = sweep.points_world
            tree = cKDTree(pts[:, :2])
            moving = np.zeros(len(pts), dtype=bool)
            for uuid, (T_src, half) in world_boxes(seq, f).items():
                near = np.asarray(tree.query_ball_point(T_src[:2, 3], float(np.hypot(half[0], half[1])) + 0.01),
                                  dtype=np.int64)
                near = near[~moving[near]]
                local = transform_points(invert_rigid(T_src), pts[near])
                inside = _inside(local, half)
                moving[near[inside]] = True
                self.tracks.setdefault(uuid, []).append((local[inside], labels[near[inside]]))
            static_pts.append(pts[~moving])
            static_lab.append(labels[~moving])
        self.static_points, self.static_labels, self.static_counts = _merge_cells(
            np.concatenate(static_pts), np.concatenate(static_lab))

    def points_in(self, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points (P, 3) in the target frame's base_link, their Fovea labels and vote weights."""
        to_target = invert_rigid(self.seq.ego2world(target))
        pts = [transform_points(to_target, self.static_points)]
        lab, weight = [self.static_labels], [self.static_counts]
        for uuid, (T_box, _) in world_boxes(self.seq, target).items():
            for local, labels in self.tracks.get(uuid, []):
                pts.append(transform_points(to_target @ T_box, local))
                lab.append(labels)
                weight.append(np.ones(len(labels)))
        return np.concatenate(pts), np.concatenate(lab), np.concatenate(weight)


def _merge_cells(points: np.ndarray, labels: np.ndarray, cell: float = MERGE_CELL):
    """Static points of many sweeps merged per (fine cell, label): the cells' mean points and point counts.
    Millions of points become a few hundred thousand votes, which every target frame then transforms."""
    keys = np.floor(points / cell).astype(np.int64)
    keys -= keys.min(0)
    span = keys.max(0) + 1
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    flat = flat * (labels.max() + 2) + (labels + 1)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inverse, points)
    merged_labels = np.zeros(len(counts), np.int64)
    merged_labels[inverse] = labels
    return sums / counts[:, None], merged_labels, counts.astype(np.float64)


def voxelize_labels(points: np.ndarray, labels: np.ndarray, x_range, y_range, z_range, shape,
                    num_classes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(X, Y, Z) int64 majority label per voxel (0 = no point; IGNORE where ignored points are the majority)."""
    lo = np.array([x_range[0], y_range[0], z_range[0]])
    size = (np.array([x_range[1], y_range[1], z_range[1]]) - lo) / np.array(shape)
    idx = np.floor((points - lo) / size).astype(np.int64)
    keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    idx, lab = idx[keep], labels[keep]
    flat = np.ravel_multi_index(idx.T, shape)
    votes_class = np.where(lab == IGNORE, num_classes, lab)  # the ignored points vote for an extra column
    votes = np.bincount(flat * (num_classes + 1) + votes_class, weights=None if weights is None else weights[keep],
                        minlength=int(np.prod(shape)) * (num_classes + 1)).reshape(-1, num_classes + 1)
    best = votes.argmax(1)
    out = np.where(votes.sum(1) > 0, best, 0)
    out[out == num_classes] = IGNORE
    return out.reshape(shape).astype(np.int64)


def dense_labels(accumulator: SplitAccumulator, target: int, grid, num_classes: int) -> np.ndarray:
    """Dense labels of ``target`` on ``grid`` = (x_range, y_range, z_range, voxel_shape)."""
    pts, lab, weight = accumulator.points_in(target)
    x_range, y_range, z_range, shape = grid
    return voxelize_labels(pts, lab, x_range, y_range, z_range, shape, num_classes, weight)

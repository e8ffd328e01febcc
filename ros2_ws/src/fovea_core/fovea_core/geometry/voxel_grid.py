"""Voxel-grid downsampling of point arrays: one point per occupied voxel, at the voxel's centroid."""
from __future__ import annotations

import numpy as np


def voxel_downsample(points: np.ndarray, voxel_size: float, *, min_range: float = 0.0,
                     max_range: float = np.inf) -> np.ndarray:
    """Average the points of each occupied ``voxel_size`` cube (metres) into one point.

    ``points`` is a structured array with float fields ``x``, ``y``, ``z`` and any other numeric fields
    (intensity, time, ...), which are averaged the same way. Points whose distance from the origin lies
    outside [min_range, max_range] are removed first (a lidar's own body and far noise). The output has the
    input's dtype; voxels come out in lexicographic order of their integer grid index.
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    names = points.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise ValueError(f"points need x, y, z fields, got {list(names)}")
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=-1).astype(np.float64).reshape(-1, 3)
    flat = points.reshape(-1)
    distance = np.linalg.norm(xyz, axis=1)
    keep = (distance >= min_range) & (distance <= max_range)
    xyz, flat = xyz[keep], flat[keep]
    out = np.zeros(0, dtype=points.dtype)
    if len(flat) == 0:
        return out
    keys = np.floor(xyz / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    # one int64 per voxel (row-major over the occupied box): a 1-D unique is far faster than unique(axis=0)
    # and keeps the same lexicographic order
    extent = keys.max(axis=0) + 1
    if np.prod(extent.astype(np.float64)) >= 2.0 ** 62:
        raise ValueError(f"voxel_size {voxel_size} is too small for a cloud this large ({extent} voxels)")
    linear = (keys[:, 0] * extent[1] + keys[:, 1]) * extent[2] + keys[:, 2]
    _, inverse, counts = np.unique(linear, return_inverse=True, return_counts=True)
    out = np.zeros(len(counts), dtype=points.dtype)
    for name in names:
        column = flat[name]
        if column.ndim != 1 or not np.issubdtype(column.dtype, np.number):
            out[name] = flat[name][np.unique(inverse, return_index=True)[1]]  # first value per voxel
            continue
        sums = np.bincount(inverse, weights=column.astype(np.float64), minlength=len(counts))
        out[name] = (sums / counts).astype(column.dtype)
    return out

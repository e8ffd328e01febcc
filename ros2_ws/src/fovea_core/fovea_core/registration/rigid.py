"""Rigid-transform helpers specific to registration (errors, Kabsch, random motions); generic point mapping
comes from fovea_core.geometry.transforms.

Transforms are 4x4 homogeneous matrices mapping source coordinates into the target frame: y = R x + t.
"""
from __future__ import annotations

import numpy as np

from fovea_core.geometry.transforms import transform_points


# Mapping points through a transform is the project's geometry helper; re-exported under the name the
# registration modules use.
apply_transform = transform_points


def rotation_error_deg(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Geodesic angle between the two rotations, degrees (the 3DMatch / KITTI RE)."""
    relative = estimate[:3, :3].T @ truth[:3, :3]
    cosine = np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)))


def translation_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Euclidean distance between the translations, metres (the 3DMatch / KITTI TE)."""
    return float(np.linalg.norm(estimate[:3, 3] - truth[:3, 3]))


def random_rotation(rng: np.random.Generator, max_angle_rad: float, axis: np.ndarray | None = None) -> np.ndarray:
    """Rotation of a uniformly drawn angle in [0, max_angle] about a random (or the given) axis."""
    if axis is None:
        axis = rng.normal(size=3)
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    angle = rng.uniform(0.0, max_angle_rad)
    return axis_angle_to_matrix(axis * angle)


def axis_angle_to_matrix(rotation_vector: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: 3-vector (axis * angle) to a 3x3 rotation matrix."""
    angle = float(np.linalg.norm(rotation_vector))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(rotation_vector, dtype=np.float64) / angle
    skew = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * skew @ skew


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = translation
    return transform


def weighted_kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares rigid transform with per-point weights, batched.

    source, target: (..., N, 3); weights: (..., N) non-negative. Returns (..., 4, 4). The determinant fix keeps
    the result a proper rotation (no reflection) even for near-planar point sets.
    """
    weights = weights / np.clip(weights.sum(axis=-1, keepdims=True), 1e-12, None)
    source_centroid = np.einsum("...n,...nc->...c", weights, source)
    target_centroid = np.einsum("...n,...nc->...c", weights, target)
    source_centered = source - source_centroid[..., None, :]
    target_centered = target - target_centroid[..., None, :]
    covariance = np.einsum("...n,...na,...nb->...ab", weights, source_centered, target_centered)
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    sign = np.where(sign == 0, 1.0, sign)
    correction = np.broadcast_to(np.eye(3), covariance.shape).copy()
    correction[..., 2, 2] = sign
    rotation = np.swapaxes(vt, -1, -2) @ correction @ np.swapaxes(u, -1, -2)
    translation = target_centroid - np.einsum("...ab,...b->...a", rotation, source_centroid)
    transform = np.broadcast_to(np.eye(4), covariance.shape[:-2] + (4, 4)).copy()
    transform[..., :3, :3] = rotation
    transform[..., :3, 3] = translation
    return transform

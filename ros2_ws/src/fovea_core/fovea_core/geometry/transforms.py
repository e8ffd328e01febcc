"""Rigid-transform math shared by the TF buffer and the method cores.

Conventions (the ROS ones, so values move between messages and cores unchanged):

* Quaternions are ``(x, y, z, w)`` arrays, unit length, Hamilton product, active rotation:
  ``quaternion_to_matrix(q) @ v`` rotates the vector ``v``.
* A rigid transform is a 4x4 homogeneous matrix ``T = [[R, t], [0, 0, 0, 1]]`` (float64). ``T_a_b`` maps
  coordinates of a point expressed in frame ``b`` into frame ``a``: ``p_a = T_a_b @ p_b``. Composition
  chains the frame names: ``T_a_c = T_a_b @ T_b_c``.
* Interpolation between two poses is linear in translation and spherical-linear (slerp, shortest arc) in
  rotation, the same rule tf2 applies between two stamped samples.

Functions accept a single quaternion/vector; none of them loops over points in Python.
"""
from __future__ import annotations

import numpy as np

# Below this angle between two quaternions slerp's sin() denominator loses precision; a normalised
# linear blend is then accurate to well under 1e-12 rad.
_SLERP_LINEAR_THRESHOLD = 1e-6


def normalize_quaternion(q_xyzw) -> np.ndarray:
    """Return ``q`` scaled to unit length; a zero or non-finite quaternion raises ``ValueError``."""
    q = np.asarray(q_xyzw, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion {q.tolist()} cannot be normalised (norm {norm})")
    return q / norm


def quaternion_to_matrix(q_xyzw) -> np.ndarray:
    """3x3 rotation matrix of a quaternion ``(x, y, z, w)`` (normalised first)."""
    x, y, z, w = normalize_quaternion(q_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rotation) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` of a 3x3 rotation matrix, with ``w >= 0``.

    Uses the branch on the largest diagonal term (Shepperd's method) so that the result stays accurate
    for rotations near 180 degrees, where ``w`` is close to zero.
    """
    R = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    diagonal = (R[0, 0], R[1, 1], R[2, 2])
    if trace >= max(diagonal):
        s = 2.0 * np.sqrt(max(1.0 + trace, 0.0))
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4])
    elif R[0, 0] >= R[1, 1] and R[0, 0] >= R[2, 2]:
        s = 2.0 * np.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        q = np.array([s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s])
    elif R[1, 1] >= R[2, 2]:
        s = 2.0 * np.sqrt(max(1.0 - R[0, 0] + R[1, 1] - R[2, 2], 0.0))
        q = np.array([(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s])
    else:
        s = 2.0 * np.sqrt(max(1.0 - R[0, 0] - R[1, 1] + R[2, 2], 0.0))
        q = np.array([(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s])
    q = normalize_quaternion(q)
    return -q if q[3] < 0 else q


def slerp(q0_xyzw, q1_xyzw, fraction: float) -> np.ndarray:
    """Spherical linear interpolation from ``q0`` (fraction 0) to ``q1`` (fraction 1) along the shorter arc.

    ``q`` and ``-q`` are the same rotation, so ``q1`` is flipped when the two point into opposite
    hemispheres; otherwise the blend would take the long way round (more than 180 degrees).
    """
    q0 = normalize_quaternion(q0_xyzw)
    q1 = normalize_quaternion(q1_xyzw)
    cos_half_angle = float(np.dot(q0, q1))
    if cos_half_angle < 0.0:
        q1, cos_half_angle = -q1, -cos_half_angle
    half_angle = np.arccos(min(cos_half_angle, 1.0))
    if half_angle < _SLERP_LINEAR_THRESHOLD:
        return normalize_quaternion((1.0 - fraction) * q0 + fraction * q1)
    sin_half_angle = np.sin(half_angle)
    w0 = np.sin((1.0 - fraction) * half_angle) / sin_half_angle
    w1 = np.sin(fraction * half_angle) / sin_half_angle
    return normalize_quaternion(w0 * q0 + w1 * q1)


def rigid_transform(translation, q_xyzw) -> np.ndarray:
    """4x4 transform from a translation ``(x, y, z)`` and a rotation quaternion ``(x, y, z, w)``."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(q_xyzw)
    T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def translation_quaternion(transform) -> tuple[np.ndarray, np.ndarray]:
    """Split a 4x4 rigid transform into ``(translation (3,), quaternion (x, y, z, w))``."""
    T = np.asarray(transform, dtype=np.float64).reshape(4, 4)
    return T[:3, 3].copy(), matrix_to_quaternion(T[:3, :3])


def invert_rigid(transform) -> np.ndarray:
    """Inverse of a rigid transform, using ``R^T`` instead of a general matrix inverse (exact and cheap)."""
    T = np.asarray(transform, dtype=np.float64).reshape(4, 4)
    inverse = np.eye(4)
    rotation_t = T[:3, :3].T
    inverse[:3, :3] = rotation_t
    inverse[:3, 3] = -rotation_t @ T[:3, 3]
    return inverse


def compose(*transforms) -> np.ndarray:
    """Product ``T1 @ T2 @ ... @ Tn`` of 4x4 transforms; the identity when called with none."""
    result = np.eye(4)
    for T in transforms:
        result = result @ np.asarray(T, dtype=np.float64).reshape(4, 4)
    return result


def interpolate_rigid(translation0, q0_xyzw, translation1, q1_xyzw, fraction: float) -> np.ndarray:
    """4x4 pose a ``fraction`` of the way from pose 0 to pose 1 (lerp translation, slerp rotation)."""
    t0 = np.asarray(translation0, dtype=np.float64).reshape(3)
    t1 = np.asarray(translation1, dtype=np.float64).reshape(3)
    return rigid_transform((1.0 - fraction) * t0 + fraction * t1, slerp(q0_xyzw, q1_xyzw, fraction))


def transform_points(transform, points) -> np.ndarray:
    """Apply a 4x4 rigid transform to an ``(N, 3)`` array of points (returns a new float64 array)."""
    T = np.asarray(transform, dtype=np.float64).reshape(4, 4)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return pts @ T[:3, :3].T + T[:3, 3]

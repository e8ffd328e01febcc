"""Reference points along TPV pillars and their projection into every camera of the rig.

Pixel convention: OpenCV (integer coordinates are pixel centres). ``grid_sample`` with
``align_corners=False`` puts -1 at the left edge of pixel 0, so a pixel coordinate u maps to
``(u + 0.5) / W * 2 - 1``. A point is visible in a camera when it lies in front of it (depth > ``min_depth``)
and its pixel falls inside the image; only those cameras contribute to a query in cross-attention.
"""
from __future__ import annotations

import numpy as np
import torch

from fovea_core.geometry.transforms import invert_rigid

MIN_DEPTH = 1e-2  # metres; points closer than this to a camera plane are treated as behind it


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics after resizing an image by (sx, sy), keeping pixel centres consistent."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def ego_to_image(intrinsics: np.ndarray, cam2ego: np.ndarray) -> np.ndarray:
    """(N, 4, 4) matrices taking homogeneous base_link points to (u*d, v*d, d, 1) per camera."""
    intrinsics = np.asarray(intrinsics, dtype=np.float64).reshape(-1, 3, 3)
    cam2ego = np.asarray(cam2ego, dtype=np.float64).reshape(-1, 4, 4)
    out = np.zeros((len(cam2ego), 4, 4))
    for i, (K, T) in enumerate(zip(intrinsics, cam2ego)):
        out[i, :3, :] = K @ invert_rigid(T)[:3, :]
        out[i, 3, 3] = 1.0
    return out


def project_points(points: torch.Tensor, ego2img: torch.Tensor, image_size: tuple[int, int],
                   min_depth: float = MIN_DEPTH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project base_link points into each camera.

    points: (..., 3); ego2img: (N, 4, 4); image_size: (width, height).
    Returns pixels (N, ..., 2) in OpenCV pixel units, depth (N, ...) and visible (N, ...) bool.
    Pixels of points behind a camera are meaningless (kept finite by clamping the depth) and masked out.
    """
    lead = points.shape[:-1]
    flat = points.reshape(-1, 3)
    homo = torch.cat([flat, torch.ones_like(flat[:, :1])], dim=1)            # (P, 4)
    cam = torch.einsum("nij,pj->npi", ego2img[:, :3, :], homo)               # (N, P, 3)
    depth = cam[..., 2]
    safe_depth = torch.clamp(depth, min=min_depth)
    pixels = cam[..., :2] / safe_depth.unsqueeze(-1)
    width, height = image_size
    u, v = pixels[..., 0], pixels[..., 1]
    visible = (depth > min_depth) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    n = ego2img.shape[0]
    return pixels.reshape(n, *lead, 2), depth.reshape(n, *lead), visible.reshape(n, *lead)


def pixels_to_grid(pixels: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """OpenCV pixel coordinates -> grid_sample coordinates (align_corners=False)."""
    width, height = image_size
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=pixels.dtype)
    return (pixels + 0.5) * scale - 1.0


def pillar_reference_points(axis_ranges, plane_axes: tuple[int, int], plane_shape: tuple[int, int],
                            num_points: int) -> torch.Tensor:
    """3D reference points of every query cell of a plane, spread uniformly along its pillar.

    axis_ranges: ((x0, x1), (y0, y1), (z0, z1)); plane_axes: the two axes the plane spans (e.g. (0, 1) for the
    top plane); plane_shape: its cell counts. The pillar runs along the remaining axis, sampled at
    ``num_points`` evenly spaced depths (cell-centred). Returns (A*B, num_points, 3) in metres.
    """
    a_axis, b_axis = plane_axes
    pillar_axis = 3 - a_axis - b_axis
    (a0, a1), (b0, b1), (p0, p1) = axis_ranges[a_axis], axis_ranges[b_axis], axis_ranges[pillar_axis]
    A, B = plane_shape
    a = a0 + (torch.arange(A, dtype=torch.float32) + 0.5) * (a1 - a0) / A
    b = b0 + (torch.arange(B, dtype=torch.float32) + 0.5) * (b1 - b0) / B
    p = p0 + (torch.arange(num_points, dtype=torch.float32) + 0.5) * (p1 - p0) / num_points
    ga, gb, gp = torch.meshgrid(a, b, p, indexing="ij")
    pts = torch.zeros(A, B, num_points, 3)
    pts[..., a_axis], pts[..., b_axis], pts[..., pillar_axis] = ga, gb, gp
    return pts.reshape(A * B, num_points, 3)


def metric_to_unit(points: torch.Tensor, axis_ranges) -> torch.Tensor:
    """Metric coordinates -> [-1, 1] per axis over the volume (grid_sample convention, align_corners=False)."""
    lo = torch.tensor([r[0] for r in axis_ranges], dtype=points.dtype)
    hi = torch.tensor([r[1] for r in axis_ranges], dtype=points.dtype)
    return (points - lo) / (hi - lo) * 2.0 - 1.0

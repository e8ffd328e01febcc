"""Training augmentation that takes position memory away from the model, so it has to look at the images.

One real drive is one street: a model fed base_link positions learns where the road and the parked cars were
in frames 00-43 and is right on frames 46-55 only as long as the car has not moved on. ``grid_symmetry``
moves the whole labelled scene by a symmetry of the voxel grid (a rotation by a multiple of 90 degrees about z,
an optional left-right mirror and a shift by whole cells) and the cameras with it: the images stay as they
are (mirrored when the scene is), the rig they are given moves. Labels are transformed exactly (the grid maps
onto itself; cells shifted in from outside are IGNORE). ``drop_cameras`` removes some cameras (the model must
not depend on one rig), ``photometric`` jitters each camera's brightness, contrast and colour balance.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import TPVConfig
from .frame import IGNORE, Frame


def grid_is_symmetric(cfg: TPVConfig) -> bool:
    sx, sy, _ = cfg.voxel_size
    return (cfg.voxel_shape[0] == cfg.voxel_shape[1] and np.isclose(sx, sy)
            and np.isclose(cfg.x_range[0], -cfg.x_range[1]) and np.isclose(cfg.y_range[0], -cfg.y_range[1]))


def symmetry_transform(quarter_turns: int, mirror: bool, shift_cells: tuple[int, int], cell: float) -> np.ndarray:
    """4x4 base_link transform: mirror y (optional), then rotate by ``quarter_turns`` x 90 degrees, then shift."""
    c, s = np.round(np.cos(quarter_turns * np.pi / 2)), np.round(np.sin(quarter_turns * np.pi / 2))
    A = np.eye(4)
    A[:2, :2] = [[c, -s], [s, c]]
    if mirror:
        A[:3, :3] = A[:3, :3] @ np.diag([1.0, -1.0, 1.0])
    A[:2, 3] = np.asarray(shift_cells, np.float64) * cell
    return A


def transform_voxels(labels: np.ndarray, A: np.ndarray, cfg: TPVConfig) -> np.ndarray:
    """Voxel labels of the transformed scene: each new cell takes the label of the old cell it came from."""
    X, Y, Z = labels.shape
    sx, sy, _ = cfg.voxel_size
    i, j = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    centres = np.stack([cfg.x_range[0] + (i + 0.5) * sx, cfg.y_range[0] + (j + 0.5) * sy], -1)
    inv_R, t = A[:2, :2].T, A[:2, 3]
    old = (centres - t) @ inv_R.T
    oi = np.floor((old[..., 0] - cfg.x_range[0]) / sx).astype(np.int64)
    oj = np.floor((old[..., 1] - cfg.y_range[0]) / sy).astype(np.int64)
    inside = (oi >= 0) & (oi < X) & (oj >= 0) & (oj < Y)
    out = np.full_like(labels, IGNORE)
    out[inside] = labels[oi[inside], oj[inside]]
    return out


def mirror_image_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of a horizontally flipped image (pixel centres at integers: u -> width - 1 - u)."""
    K = K.copy()
    K[0, 2] = width - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    return K


def grid_symmetry(frame: Frame, cfg: TPVConfig, rng: np.random.Generator, max_shift_cells=(5, 5),
                  rotate: bool = True) -> Frame:
    """``rotate`` False keeps the driving direction (mirror and shifts only): the street stays a street along x,
    only where things are along it changes, as it does when the car drives on."""
    if not grid_is_symmetric(cfg):
        raise ValueError("grid_symmetry needs a square grid centred on base_link")
    turns, mirror = (int(rng.integers(4)) if rotate else 0), bool(rng.random() < 0.5)
    sx, sy = (max_shift_cells, max_shift_cells) if np.isscalar(max_shift_cells) else max_shift_cells
    shift = (int(rng.integers(-sx, sx + 1)), int(rng.integers(-sy, sy + 1)))
    A = symmetry_transform(turns, mirror, shift, cfg.voxel_size[0])
    points = (frame.points.astype(np.float64) @ A[:3, :3].T + A[:3, 3]).astype(np.float32)
    cam2ego = A @ frame.cam2ego
    images, K = frame.images, frame.intrinsics
    if mirror:  # a mirrored world is seen by mirrored cameras: flip each image and its camera x axis
        cam2ego = cam2ego @ np.diag([-1.0, 1.0, 1.0, 1.0])
        images = np.ascontiguousarray(images[:, :, ::-1])
        K = np.stack([mirror_image_intrinsics(k, frame.image_size[0]) for k in K])
    voxels = None if frame.voxel_labels is None else transform_voxels(frame.voxel_labels, A, cfg)
    return replace(frame, images=images, intrinsics=K, cam2ego=cam2ego, points=points, voxel_labels=voxels,
                   boxes=[], ego2world=None if frame.ego2world is None else frame.ego2world @ np.linalg.inv(A))


def drop_cameras(frame: Frame, rng: np.random.Generator, min_cameras: int = 4, probability: float = 0.3) -> Frame:
    n = len(frame.camera_names)
    if n <= min_cameras or rng.random() >= probability:
        return frame
    keep = np.sort(rng.choice(n, size=int(rng.integers(min_cameras, n)), replace=False))
    return replace(frame, camera_names=[frame.camera_names[i] for i in keep], images=frame.images[keep],
                   intrinsics=frame.intrinsics[keep], cam2ego=frame.cam2ego[keep])


def photometric(frame: Frame, rng: np.random.Generator, strength: float = 0.2) -> Frame:
    n = len(frame.images)
    gain = rng.uniform(1 - strength, 1 + strength, (n, 1, 1, 1)) * rng.uniform(1 - strength / 3, 1 + strength / 3, (n, 1, 1, 3))
    contrast = rng.uniform(1 - strength, 1 + strength, (n, 1, 1, 1))
    img = frame.images.astype(np.float32)
    mean = img.mean(axis=(1, 2, 3), keepdims=True)
    img = (img - mean) * contrast + mean * gain
    return replace(frame, images=np.clip(img, 0, 255).astype(np.uint8))

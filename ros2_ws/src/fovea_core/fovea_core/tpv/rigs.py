"""Camera rigs: the real nuScenes and PandaSet rigs and random ones, so a model never learns one rig.

A rig is what the model is given about each camera: intrinsics for the image size it sees and the
camera-optical -> base_link transform. ``random_rig`` draws 4-8 cameras spread around the roof (yaw evenly
spaced with jitter, the first one facing forward), 1.4-2.3 m above the road, pitched and rolled a little,
with horizontal fields of view of 45-120 degrees and native sensors of different sizes and aspect ratios
(4:3 to 2:1) whose intrinsics are scaled to the model's input size the way a node resizes a real image.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .projection import scale_intrinsics

NATIVE_WIDTHS = (640, 1024, 1280, 1600, 1920)
ASPECTS = (4 / 3, 16 / 10, 16 / 9, 2.0)


@dataclass
class Rig:
    names: list[str]
    intrinsics: np.ndarray  # (N, 3, 3) for the image size the rig was made for
    cam2ego: np.ndarray     # (N, 4, 4)
    kind: str = "random"

    def __len__(self) -> int:
        return len(self.names)


def optical_rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation (3x3) of a camera optical frame (z forward, x right, y down) in base_link for a camera looking
    along ``yaw`` (about z, 0 = +x), tilted down by ``pitch`` and rolled by ``roll`` about its viewing axis."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.array([cy * cp, sy * cp, -sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    R = np.stack([right, down, forward], axis=1)
    cr, sr = np.cos(roll), np.sin(roll)
    return R @ np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])


def random_rig(rng: np.random.Generator, image_size: tuple[int, int]) -> Rig:
    n = int(rng.integers(4, 9))
    width, height = image_size
    base_height = rng.uniform(1.4, 2.2)
    yaw0 = rng.normal(0.0, np.deg2rad(3.0))
    Ks, Ts = [], []
    for i in range(n):
        yaw = yaw0 + 2 * np.pi * i / n + (rng.normal(0.0, np.deg2rad(8.0)) if i else 0.0)
        hfov = np.deg2rad(rng.uniform(45.0, 70.0) if i == 0 else rng.uniform(60.0, 120.0))
        native_w = int(rng.choice(NATIVE_WIDTHS))
        native_h = int(round(native_w / rng.choice(ASPECTS)))
        f = native_w / 2 / np.tan(hfov / 2)
        K = np.array([[f, 0.0, native_w / 2 + rng.normal(0, 0.02 * native_w)],
                      [0.0, f * rng.uniform(0.98, 1.02), native_h / 2 + rng.normal(0, 0.03 * native_h)],
                      [0.0, 0.0, 1.0]])
        Ks.append(scale_intrinsics(K, width / native_w, height / native_h))
        T = np.eye(4)
        T[:3, :3] = optical_rotation(yaw, rng.normal(np.deg2rad(2.0), np.deg2rad(3.0)), rng.normal(0.0, np.deg2rad(1.0)))
        # on a roof rectangle about 1.5 m ahead of the rear axle, facing out
        T[:3, 3] = [1.5 + 1.2 * np.cos(yaw), 0.8 * np.sin(yaw), np.clip(base_height + rng.normal(0, 0.08), 1.3, 2.3)]
        Ts.append(T)
    return Rig([f"cam{i}" for i in range(n)], np.stack(Ks), np.stack(Ts), "random")


def nuscenes_rig(image_size: tuple[int, int]) -> Rig:
    from . import nuscenes_sample

    names, K, T = nuscenes_sample.load_rig(image_size=image_size)
    return Rig(list(names), K, T, "nuscenes")


@lru_cache(maxsize=4)
def _pandaset_sequence(root):
    from .pandaset import PandaSetSequence
    return PandaSetSequence(root)


def pandaset_rig(image_size: tuple[int, int], root=None) -> Rig:
    names, K, T = _pandaset_sequence(root).rig(tuple(image_size))
    return Rig(names, K, T, "pandaset")


def training_rig(seed: int, image_size: tuple[int, int]) -> Rig:
    """The rig generated scene ``seed`` is rendered with: the nuScenes rig (1 in 5), PandaSet's (1 in 5) or
    a random one, decided by the seed alone (the same scene always gets the same rig)."""
    rng = np.random.default_rng([seed, 7])
    pick = rng.random()
    if pick < 0.2:
        return nuscenes_rig(image_size)
    if pick < 0.4:
        return pandaset_rig(image_size)
    return random_rig(rng, image_size)


def describe_rig(names, intrinsics, cam2ego, sizes) -> str:
    """One line per rig: each camera's horizontal field of view, position in base_link and viewing direction."""
    parts = []
    for name, K, T, (width, _) in zip(names, intrinsics, cam2ego, sizes):
        hfov = np.degrees(2 * np.arctan2(width / 2, K[0, 0]))
        yaw = np.degrees(np.arctan2(T[1, 2], T[0, 2]))
        x, y, z = T[:3, 3]
        parts.append(f"{name} {hfov:.0f} deg HFOV at ({x:.2f}, {y:.2f}, {z:.2f}) m facing {yaw:.0f} deg")
    return f"{len(parts)} cameras: " + "; ".join(parts)

"""One multi-camera frame as every TPV component sees it, real (nuScenes / PandaSet readers) or generated.

All geometry is in base_link (REP-103: x forward, y left, z up, origin on the ground under the vehicle; each
reader says where exactly). Images are uint8 RGB (N, H, W, 3); intrinsics follow the OpenCV convention (pixel
centres at integer coordinates); ``cam2ego`` maps points from each camera's optical frame (z forward, x right,
y down) to base_link. Labels are class ids of ``scenes.CLASS_NAMES``; ``IGNORE`` (-1) marks a point or voxel
whose source class has no counterpart (it counts in no metric and no loss).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IGNORE = -1
_IGNORE_STORED = 255  # labels are stored as uint8


def _store_labels(labels: np.ndarray) -> np.ndarray:
    return np.where(labels < 0, _IGNORE_STORED, labels).astype(np.uint8)


def _load_labels(stored: np.ndarray) -> np.ndarray:
    labels = stored.astype(np.int64)
    labels[stored == _IGNORE_STORED] = IGNORE
    return labels


@dataclass
class Frame:
    camera_names: list[str]
    images: np.ndarray            # (N, H, W, 3) uint8
    intrinsics: np.ndarray        # (N, 3, 3) float64, for the stored image size
    cam2ego: np.ndarray           # (N, 4, 4) float64
    points: np.ndarray            # (P, 3) float32 lidar points in base_link
    point_labels: np.ndarray | None = None   # (P,) int64 class ids (IGNORE = no counterpart), when known
    voxel_labels: np.ndarray | None = None   # (X, Y, Z) int64 dense ground truth (IGNORE allowed), when known
    boxes: list[dict] = field(default_factory=list)  # base_link boxes: center, size, yaw, category
    stamp_ns: int = 0
    ego2world: np.ndarray | None = None      # (4, 4) base_link -> world pose, when the source has one

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the stored images."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def save(self, path: str | Path) -> None:
        extra = {}
        if self.point_labels is not None:
            extra["point_labels"] = _store_labels(self.point_labels)
        if self.voxel_labels is not None:
            extra["voxel_labels"] = _store_labels(self.voxel_labels)
        if self.ego2world is not None:
            extra["ego2world"] = self.ego2world
        # Written beside the target and renamed into place: two training processes filling the same cache
        # (one run each, started together) must never read each other's half-written file.
        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as f:
            np.savez_compressed(f, camera_names=np.array(self.camera_names), images=self.images,
                                intrinsics=self.intrinsics, cam2ego=self.cam2ego,
                                points=self.points.astype(np.float32), stamp_ns=np.int64(self.stamp_ns), **extra)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path) -> "Frame":
        with np.load(path) as data:
            return cls(camera_names=[str(n) for n in data["camera_names"]], images=data["images"],
                       intrinsics=data["intrinsics"], cam2ego=data["cam2ego"], points=data["points"],
                       point_labels=_load_labels(data["point_labels"]) if "point_labels" in data else None,
                       voxel_labels=_load_labels(data["voxel_labels"]) if "voxel_labels" in data else None,
                       stamp_ns=int(data["stamp_ns"]),
                       ego2world=data["ego2world"] if "ego2world" in data else None)

"""Image-blind baselines a camera model has to beat, fitted on the same training frames' lidar labels.

* ``HeightPrior``: the majority class of the training points in each 0.2 m height band (a point's z alone).
* ``VoxelLookup``: the majority class of the training points in each voxel of the model's grid, in base_link
  (falls back to the height prior where no training point fell). On one drive down one street this is a map of
  the street as seen from the training positions: it is excellent right after them and fades as the car drives
  on, which is what a model that memorises instead of seeing does too.

The learned image-blind baseline is the TPV network itself with the images taken away
(``TPVConfig.use_images = False``), trained by ``train.py`` on the same labels.
"""
from __future__ import annotations

import numpy as np

from .config import TPVConfig
from .frame import Frame
from .data import points_in_volume


def _labelled_points(frames: list[Frame], cfg: TPVConfig) -> tuple[np.ndarray, np.ndarray]:
    pts, lab = [], []
    for f in frames:
        keep = points_in_volume(f.points, cfg) & (f.point_labels > 0)
        pts.append(f.points[keep])
        lab.append(f.point_labels[keep])
    return np.concatenate(pts), np.concatenate(lab)


def _majority(keys: np.ndarray, labels: np.ndarray, num_keys: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    votes = np.bincount(keys * num_classes + labels, minlength=num_keys * num_classes).reshape(num_keys, num_classes)
    return votes.argmax(1), votes.sum(1) > 0


class HeightPrior:
    def __init__(self, cfg: TPVConfig, band: float = 0.2):
        self.cfg, self.band = cfg, band
        self.bands = int(np.ceil((cfg.z_range[1] - cfg.z_range[0]) / band))

    def _keys(self, points: np.ndarray) -> np.ndarray:
        return np.clip(((points[:, 2] - self.cfg.z_range[0]) / self.band).astype(np.int64), 0, self.bands - 1)

    def fit(self, frames: list[Frame]) -> "HeightPrior":
        pts, lab = _labelled_points(frames, self.cfg)
        self.table, seen = _majority(self._keys(pts), lab, self.bands, self.cfg.num_classes)
        # a band without training points takes the nearest band that has some
        idx = np.nonzero(seen)[0]
        self.table = self.table[idx[np.abs(np.arange(self.bands)[:, None] - idx[None]).argmin(1)]]
        return self

    def predict(self, frame: Frame, points: np.ndarray) -> np.ndarray:
        return self.table[self._keys(points)]


class VoxelLookup:
    def __init__(self, cfg: TPVConfig):
        self.cfg = cfg
        self.height = HeightPrior(cfg)

    def _keys(self, points: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        lo = np.array([cfg.x_range[0], cfg.y_range[0], cfg.z_range[0]])
        idx = np.floor((points[:, :3] - lo) / np.array(cfg.voxel_size)).astype(np.int64)
        idx = np.clip(idx, 0, np.array(cfg.voxel_shape) - 1)
        return np.ravel_multi_index(idx.T, cfg.voxel_shape)

    def fit(self, frames: list[Frame]) -> "VoxelLookup":
        self.height.fit(frames)
        pts, lab = _labelled_points(frames, self.cfg)
        self.table, self.seen = _majority(self._keys(pts), lab, int(np.prod(self.cfg.voxel_shape)),
                                          self.cfg.num_classes)
        return self

    def predict(self, frame: Frame, points: np.ndarray) -> np.ndarray:
        keys = self._keys(points)
        return np.where(self.seen[keys], self.table[keys], self.height.predict(frame, points))

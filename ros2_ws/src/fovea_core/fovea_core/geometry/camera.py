"""Pinhole camera calibration as the methods use it (the numbers a sensor_msgs/CameraInfo carries)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CameraCalibration:
    """Intrinsics of one camera.

    ``K`` is the 3x3 intrinsic matrix, ``D`` the distortion coefficients of ``distortion_model``,
    ``P`` the 3x4 projection matrix of the rectified image, ``width``/``height`` in pixels and
    ``frame_id`` the optical frame (z forward, x right, y down; REP-103 ``_optical`` convention).
    """

    K: np.ndarray
    width: int
    height: int
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    P: np.ndarray | None = None
    distortion_model: str = ""
    frame_id: str = ""

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", np.asarray(self.D, dtype=np.float64).ravel())
        P = np.hstack([K, np.zeros((3, 1))]) if self.P is None else np.asarray(self.P, np.float64).reshape(3, 4)
        object.__setattr__(self, "P", P)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"camera intrinsics K are not a valid pinhole matrix: {K.tolist()}")

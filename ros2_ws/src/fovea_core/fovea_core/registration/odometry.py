"""Scan-to-keyframe odometry bookkeeping, and pose error against ground truth.

The registration itself happens elsewhere (``Registration.register_prepared``); this keeps the poses:
``pose`` is odom ← base of the latest scan, ``keyframe_pose`` odom ← base of the scan the next one is
registered to. A new keyframe starts once the motion since the current one exceeds a distance or an
angle, so drift accumulates per keyframe rather than per scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fovea_core.geometry.transforms import invert_rigid
from fovea_core.registration.rigid import rotation_error_deg, translation_error


@dataclass
class KeyframeOdometry:
    keyframe_distance: float          # metres
    keyframe_angle_deg: float         # degrees
    keyframe: Any = None              # the prepared scan of the current keyframe (None before the first scan)
    keyframe_pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    keyframes: int = 0

    def start(self, scan: Any) -> np.ndarray:
        """The first scan defines the odom frame: its pose is the identity."""
        self.keyframe, self.keyframe_pose, self.pose, self.keyframes = scan, np.eye(4), np.eye(4), 1
        return self.pose

    def update(self, scan: Any, keyframe_from_scan: np.ndarray) -> np.ndarray:
        """Advance with a successful registration (keyframe ← scan); returns the scan's odom pose."""
        self.pose = self.keyframe_pose @ keyframe_from_scan
        moved = float(np.linalg.norm(keyframe_from_scan[:3, 3]))
        turned = rotation_error_deg(keyframe_from_scan, np.eye(4))
        if moved > self.keyframe_distance or turned > self.keyframe_angle_deg:
            self.keyframe, self.keyframe_pose = scan, self.pose
            self.keyframes += 1
        return self.pose


@dataclass
class PoseErrorTracker:
    """Error of estimated poses against ground truth poses, both given in their own fixed frames.

    With ``relative_to_first`` (odometry, which starts at the identity) the truth is re-expressed relative to
    the first ground-truth pose seen, so the two trajectories share their origin.
    """

    relative_to_first: bool
    first_truth: np.ndarray | None = None
    last: tuple[float, float] = (0.0, 0.0)
    max_translation_m: float = 0.0
    max_rotation_deg: float = 0.0

    def add(self, estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
        """(translation error m, rotation error deg) of this pose; maxima are kept."""
        if self.first_truth is None:
            self.first_truth = truth
        if self.relative_to_first:
            truth = invert_rigid(self.first_truth) @ truth
        self.last = (translation_error(estimate, truth), rotation_error_deg(estimate, truth))
        self.max_translation_m = max(self.max_translation_m, self.last[0])
        self.max_rotation_deg = max(self.max_rotation_deg, self.last[1])
        return self.last

import numpy as np
import pytest

from fovea_core.registration.odometry import PoseErrorTracker
from fovea_core.registration.rigid import axis_angle_to_matrix, make_transform


def step(yaw_deg, forward_m):
    return make_transform(axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(yaw_deg)])),
                          np.array([forward_m, 0.0, 0.0]))


def test_pose_errors_relative_to_the_first_truth():
    tracker = PoseErrorTracker(relative_to_first=True)
    origin = step(30, 5.0)
    assert tracker.add(np.eye(4), origin) == pytest.approx((0.0, 0.0), abs=1e-9)
    te, re = tracker.add(step(2, 1.1), origin @ step(0, 1.0))
    assert te == pytest.approx(0.1, abs=1e-9) and re == pytest.approx(2.0, abs=1e-6)
    tracker.add(step(0, 1.0), origin @ step(0, 1.0))
    assert tracker.max_translation_m == pytest.approx(0.1) and tracker.last[0] == pytest.approx(0.0, abs=1e-9)

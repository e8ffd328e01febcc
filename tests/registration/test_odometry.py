import numpy as np
import pytest

from fovea_core.registration.odometry import KeyframeOdometry, PoseErrorTracker
from fovea_core.registration.rigid import axis_angle_to_matrix, make_transform


def step(yaw_deg, forward_m):
    return make_transform(axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(yaw_deg)])),
                          np.array([forward_m, 0.0, 0.0]))


def test_poses_chain_through_keyframes_and_keyframes_start_past_the_thresholds():
    odometry = KeyframeOdometry(keyframe_distance=1.0, keyframe_angle_deg=10.0)
    assert np.allclose(odometry.start("scan0"), np.eye(4))
    # scans 0.6 m apart: scan1 is registered to scan0 (0.6 m, keyframe stays), scan2 to scan0 (1.2 m: new
    # keyframe), scan3 to scan2 (0.6 m)
    assert np.allclose(odometry.update("scan1", step(0, 0.6)), step(0, 0.6))
    assert odometry.keyframe == "scan0"
    assert np.allclose(odometry.update("scan2", step(0, 1.2)), step(0, 1.2))
    assert odometry.keyframe == "scan2" and odometry.keyframes == 2
    assert np.allclose(odometry.update("scan3", step(0, 0.6)), step(0, 1.8))
    # a turn beyond the angle threshold also starts a keyframe
    odometry.update("scan4", step(12, 0.1))
    assert odometry.keyframe == "scan4" and odometry.keyframes == 3


def test_pose_errors_relative_to_the_first_truth():
    tracker = PoseErrorTracker(relative_to_first=True)
    origin = step(30, 5.0)
    assert tracker.add(np.eye(4), origin) == pytest.approx((0.0, 0.0), abs=1e-9)
    te, re = tracker.add(step(2, 1.1), origin @ step(0, 1.0))
    assert te == pytest.approx(0.1, abs=1e-9) and re == pytest.approx(2.0, abs=1e-6)
    tracker.add(step(0, 1.0), origin @ step(0, 1.0))
    assert tracker.max_translation_m == pytest.approx(0.1) and tracker.last[0] == pytest.approx(0.0, abs=1e-9)

"""Rigid-transform math (fovea_core.geometry.transforms): hand-computed values and generated properties."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea_core.geometry.transforms import (
    compose,
    interpolate_rigid,
    invert_rigid,
    matrix_to_quaternion,
    normalize_quaternion,
    quaternion_to_matrix,
    rigid_transform,
    slerp,
    transform_points,
    translation_quaternion,
)

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-1.0, 1.0, allow_nan=False)
quaternions = st.tuples(finite, finite, finite, finite).filter(lambda q: np.linalg.norm(q) > 0.1)
translations = st.tuples(*[st.floats(-50, 50, allow_nan=False)] * 3)


def yaw_quaternion(angle):
    return np.array([0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)])


def same_rotation(q_a, q_b, atol=1e-9):
    return np.allclose(q_a, q_b, atol=atol) or np.allclose(q_a, -np.asarray(q_b), atol=atol)


def test_quarter_turn_about_z_maps_x_onto_y():
    R = quaternion_to_matrix(yaw_quaternion(math.pi / 2))
    np.testing.assert_allclose(R @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(R @ [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], atol=1e-12)


def test_half_turn_about_x_keeps_accuracy_where_w_is_zero():
    R = np.diag([1.0, -1.0, -1.0])
    q = matrix_to_quaternion(R)
    assert same_rotation(q, [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(quaternion_to_matrix(q), R, atol=1e-12)


def test_zero_quaternion_is_rejected():
    with pytest.raises(ValueError, match="cannot be normalised"):
        normalize_quaternion([0, 0, 0, 0])


@SETTINGS
@given(quaternions)
def test_matrix_is_a_rotation_and_round_trips(q):
    R = quaternion_to_matrix(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    back = matrix_to_quaternion(R)
    assert back[3] >= 0
    assert same_rotation(back, normalize_quaternion(q))


def test_slerp_halfway_between_0_and_90_degrees_is_45_degrees():
    q = slerp(yaw_quaternion(0.0), yaw_quaternion(math.pi / 2), 0.5)
    assert same_rotation(q, yaw_quaternion(math.pi / 4))


def test_slerp_takes_the_short_arc_when_quaternions_have_opposite_signs():
    # 350 degrees written with w < 0 is the same as -10 degrees; going from 10 degrees the short way passes 0.
    q_end = -yaw_quaternion(math.radians(-10))
    q = slerp(yaw_quaternion(math.radians(10)), q_end, 0.5)
    assert same_rotation(q, yaw_quaternion(0.0))


@SETTINGS
@given(quaternions, quaternions, st.floats(0.0, 1.0))
def test_slerp_moves_at_constant_angular_rate(q0, q1, fraction):
    q0, q1 = normalize_quaternion(q0), normalize_quaternion(q1)
    total = 2 * math.acos(min(abs(float(np.dot(q0, q1))), 1.0))
    q = slerp(q0, q1, fraction)
    from_start = 2 * math.acos(min(abs(float(np.dot(q0, q))), 1.0))
    assert from_start == pytest.approx(fraction * total, abs=1e-6)
    assert same_rotation(slerp(q0, q1, 0.0), q0, atol=1e-7)
    assert same_rotation(slerp(q0, q1, 1.0), q1, atol=1e-7)


@SETTINGS
@given(translations, quaternions, translations, quaternions)
def test_inverse_and_composition(t_ab, q_ab, t_bc, q_bc):
    T_ab, T_bc = rigid_transform(t_ab, q_ab), rigid_transform(t_bc, q_bc)
    np.testing.assert_allclose(invert_rigid(T_ab) @ T_ab, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(invert_rigid(T_ab), np.linalg.inv(T_ab), atol=1e-9)
    T_ac = compose(T_ab, T_bc)
    points = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 0.0]])
    np.testing.assert_allclose(transform_points(T_ac, points), transform_points(T_ab, transform_points(T_bc, points)),
                               atol=1e-9)
    translation, quaternion = translation_quaternion(T_ac)
    np.testing.assert_allclose(rigid_transform(translation, quaternion), T_ac, atol=1e-9)


def test_interpolate_rigid_quarter_way():
    T = interpolate_rigid([0, 0, 0], yaw_quaternion(0), [4, -8, 2], yaw_quaternion(math.pi / 2), 0.25)
    np.testing.assert_allclose(T[:3, 3], [1, -2, 0.5])
    np.testing.assert_allclose(T[:3, :3], quaternion_to_matrix(yaw_quaternion(math.pi / 8)), atol=1e-12)

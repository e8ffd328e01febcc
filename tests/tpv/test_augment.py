"""Grid symmetries move labels, points and cameras together; camera dropout and the rigs."""
import numpy as np
import pytest

from fovea_core.tpv import augment, rigs
from fovea_core.tpv.config import tiny_config
from fovea_core.tpv.frame import IGNORE, Frame
from fovea_core.tpv.projection import ego_to_image

CFG = tiny_config()  # 16 m x 16 m, 16 x 16 x 8 voxels of 1 m x 1 m x 0.8 m


def _frame(rng):
    size = (CFG.image_width, CFG.image_height)
    rig = rigs.random_rig(rng, size)
    points = rng.uniform([-7.9, -7.9, -0.3], [7.9, 7.9, 5.9], (400, 3)).astype(np.float32)
    voxels = rng.integers(0, CFG.num_classes, CFG.voxel_shape)
    images = rng.integers(0, 255, (len(rig), size[1], size[0], 3), dtype=np.uint8)
    return Frame(rig.names, images, rig.intrinsics, rig.cam2ego, points, rng.integers(1, 9, 400), voxels)


def _voxel_index(points):
    lo = np.array([CFG.x_range[0], CFG.y_range[0], CFG.z_range[0]])
    return np.floor((points - lo) / np.array(CFG.voxel_size)).astype(int)


def _pixels(frame):
    p = np.c_[frame.points, np.ones(len(frame.points))] @ np.transpose(ego_to_image(frame.intrinsics, frame.cam2ego),
                                                                       (0, 2, 1))
    return p[..., :2] / p[..., 2:3], p[..., 2]


@pytest.mark.parametrize("seed", range(6))
def test_symmetry_keeps_each_point_on_its_voxel_label_and_its_pixel(seed):
    rng = np.random.default_rng(seed)
    frame = _frame(rng)
    moved = augment.grid_symmetry(frame, CFG, rng, max_shift_cells=3)
    old_idx, new_idx = _voxel_index(frame.points), _voxel_index(moved.points)
    inside = np.all((new_idx >= 0) & (new_idx < CFG.voxel_shape), axis=1)
    assert inside.sum() > 200
    np.testing.assert_array_equal(moved.voxel_labels[tuple(new_idx[inside].T)],
                                  frame.voxel_labels[tuple(old_idx[inside].T)])
    # cells shifted in from outside the old grid carry no label
    assert (moved.voxel_labels == IGNORE).sum() % (CFG.voxel_shape[2]) == 0
    # each point is seen at the same image position (mirrored with its image when the scene was mirrored)
    (uv0, d0), (uv1, d1) = _pixels(frame), _pixels(moved)
    np.testing.assert_allclose(d1, d0, atol=1e-4)
    mirrored = not np.array_equal(moved.images, frame.images)
    if mirrored:
        np.testing.assert_array_equal(moved.images, frame.images[:, :, ::-1])
        uv0 = np.stack([CFG.image_width - 1 - uv0[..., 0], uv0[..., 1]], -1)
    front = d0 > 0.5
    np.testing.assert_allclose(uv1[front], uv0[front], atol=1e-3)
    assert np.allclose(np.linalg.det(moved.cam2ego[:, :3, :3]), 1.0)  # still proper camera rotations


def test_drop_cameras_keeps_at_least_four_and_their_calibration():
    rng = np.random.default_rng(1)
    frame = _frame(np.random.default_rng(3))
    while len(frame.camera_names) < 6:
        frame = _frame(rng)
    out = augment.drop_cameras(frame, rng, probability=1.0)
    assert 4 <= len(out.camera_names) < len(frame.camera_names)
    idx = [frame.camera_names.index(n) for n in out.camera_names]
    np.testing.assert_array_equal(out.cam2ego, frame.cam2ego[idx])
    np.testing.assert_array_equal(out.images, frame.images[idx])


def test_training_rigs_vary_and_include_the_real_ones():
    kinds, counts = set(), set()
    for seed in range(40):
        rig = rigs.training_rig(seed, (112, 64))
        kinds.add(rig.kind)
        counts.add(len(rig))
        assert np.allclose(np.linalg.det(rig.cam2ego[:, :3, :3]), 1.0)
        assert np.all((rig.cam2ego[:, 2, 3] > 1.2) & (rig.cam2ego[:, 2, 3] < 2.4))
    assert kinds == {"random", "nuscenes", "pandaset"}
    assert counts >= {4, 5, 6, 7, 8}

"""Scene generator, renderer, frame format and the real-sample reader."""
import numpy as np

from fovea_core.tpv import render, scenes
from fovea_core.tpv.frame import Frame
from fovea_core.tpv.nuscenes_sample import load_rig, load_sample, points_in_box
from fovea_core.tpv.scenes import BUILDING, CLASS_NAMES, EMPTY, ROAD, VEHICLE

GRID = ((-10.0, 10.0), (-10.0, 10.0), (-0.4, 6.0), (10, 10, 4))


def test_generated_frame_is_deterministic_and_labels_agree(tmp_path):
    names, K, T = load_rig(image_size=(40, 24))
    a = render.make_frame(7, names, K, T, (40, 24), GRID)
    b = render.make_frame(7, names, K, T, (40, 24), GRID)
    assert a.images.shape == (6, 24, 40, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.voxel_labels, b.voxel_labels)
    assert a.images.std() > 10  # textured, not blank
    # Lidar hits lie on the surfaces of solids: just inside them (0.05 m along the downward / inward normal
    # is unknown, so test the ground: ground hits have z ~ 0 and a ground class).
    ground = a.point_labels <= 3
    assert np.abs(a.points[ground, 2]).max() < 0.15
    # The dense ground truth holds the ground under the ego vehicle (road) and some empty air above it.
    X, Y, Z = GRID[3]
    assert a.voxel_labels[X // 2, Y // 2, 0] == ROAD
    assert (a.voxel_labels[..., 3] == EMPTY).mean() > 0.3
    path = tmp_path / "f.npz"
    a.save(path)
    c = Frame.load(path)
    np.testing.assert_array_equal(c.point_labels, a.point_labels)
    np.testing.assert_array_equal(c.images, a.images)
    assert c.camera_names == a.camera_names


def test_voxel_labels_follow_the_primitives():
    scene = scenes.generate_scene(3)
    scene.boxes = np.array([[2.5, 2.5, 1.0, 1.5, 1.5, 1.0, 0.0, VEHICLE, 0],
                            [-5.0, -5.0, 3.0, 2.0, 2.0, 3.0, 0.0, BUILDING, 0]])
    scene.cylinders = np.zeros((0, 6))
    scene.spheres = np.zeros((0, 5))
    lab = scenes.voxel_labels(scene, (-10, 10), (-10, 10), (-0.4, 6.0), (10, 10, 4))  # 2 m x 2 m x 1.6 m
    assert lab[6, 6, 1] == VEHICLE       # x, y in [2, 4], z in [1.2, 2.0]: inside the car (z <= 2)
    assert lab[6, 6, 0] == VEHICLE       # the car wins its bottom layer over the road beneath it
    assert lab[2, 2, 2] == BUILDING
    assert lab[9, 0, 3] == EMPTY
    assert set(np.unique(lab)) <= set(range(len(CLASS_NAMES)))


def test_real_sample_reader():
    frame = load_sample(image_size=(160, 90))
    assert frame.camera_names[0] == "CAM_FRONT" and frame.images.shape == (6, 90, 160, 3)
    assert frame.points.shape == (34688, 3)
    # base_link: the ground under the car is near z = 0, so the lowest dense layer of points is close to it
    assert -0.8 < np.percentile(frame.points[:, 2], 5) < 0.3
    assert len(frame.boxes) == 69
    # The count of lidar points inside each box matches the annotation (this pins down the box z convention).
    matched = [(int(points_in_box(frame.points, b).sum()), b["num_lidar_pts"]) for b in frame.boxes]
    agree = sum(abs(got - want) <= max(2, 0.2 * want) for got, want in matched)
    assert agree == len(matched)


def test_frame_save_replaces_the_file_whole(tmp_path):
    # written beside the target and renamed: a reader sees the old file or the new one, never a partial one
    names, K, T = load_rig(image_size=(40, 24))
    a = render.make_frame(7, names, K, T, (40, 24), GRID)
    path = tmp_path / "f.npz"
    a.save(path)
    a.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]
    np.testing.assert_array_equal(Frame.load(path).images, a.images)

"""The PandaSet reader against hand-checked values of frame 00 (shared/data/tpv/pandaset_002, CC BY 4.0)."""
import json

import numpy as np
import pytest

from fovea_core.geometry.transforms import invert_rigid, transform_points
from fovea_core.tpv.frame import IGNORE, Frame
from fovea_core.tpv.nuscenes_sample import points_in_box
from fovea_core.tpv.pandaset import CAMERAS, CLASS_MAP, PandaSetSequence
from fovea_core.tpv.projection import ego_to_image
from fovea_core.tpv.scenes import CLASS_NAMES, PEDESTRIAN, POLE, ROAD, VEHICLE

# Read off frame 00's front_camera JPEG (960x540) by eye, with the lidar returns drawn over it: the white SUV
# ahead in our lane and the woman with a bag on the right-hand sidewalk (u left..right, v top..bottom).
WHITE_SUV = ("8ac00bad-822c-4040-b9a2-31424dbcd486", (370, 565, 258, 430))
PEDESTRIAN_RIGHT = ("d0da2ae7-b5bb-4489-8844-5dcc06ddae67", (890, 935, 250, 335))


@pytest.fixture(scope="module")
def seq():
    return PandaSetSequence()


@pytest.fixture(scope="module")
def frame0(seq):
    return seq.load_frame(0)


def _pixels(frame: Frame, cam: int, points: np.ndarray):
    p = np.c_[points, np.ones(len(points))] @ ego_to_image(frame.intrinsics, frame.cam2ego)[cam].T
    return p[:, 0] / p[:, 2], p[:, 1] / p[:, 2], p[:, 2]


@pytest.mark.parametrize("uuid, rect, cls", [(*WHITE_SUV, VEHICLE), (*PEDESTRIAN_RIGHT, PEDESTRIAN)])
def test_labelled_points_of_an_object_land_on_it_in_the_image(frame0, uuid, rect, cls):
    box = next(b for b in frame0.boxes if b["uuid"] == uuid)
    inside = points_in_box(frame0.points, box) & (frame0.point_labels == cls)
    assert inside.sum() > 100
    u, v, depth = _pixels(frame0, CAMERAS.index("front_camera"), frame0.points[inside])
    u0, u1, v0, v1 = rect
    on_object = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1) & (depth > 0)
    assert on_object.mean() > 0.95
    uc, vc, _ = _pixels(frame0, 0, box["center"][None])
    assert u0 <= uc[0] <= u1 and v0 <= vc[0] <= v1


def test_frame_projection_equals_the_camera_world_pose(seq, frame0):
    """base_link -> image through cam2ego gives the pixels of PROVENANCE.md's formula p_c = R^T (p_w - t)."""
    world = transform_points(frame0.ego2world, frame0.points[:2000])
    for i, cam in enumerate(CAMERAS):
        u, v, d = _pixels(frame0, i, frame0.points[:2000])
        p_c = transform_points(invert_rigid(seq.camera_poses[cam][0]), world)
        K = seq.native_K[cam]
        ok = p_c[:, 2] > 0.5
        np.testing.assert_allclose(u[ok], K[0, 0] * p_c[ok, 0] / p_c[ok, 2] + K[0, 2], atol=1e-6)
        np.testing.assert_allclose(v[ok], K[1, 1] * p_c[ok, 1] / p_c[ok, 2] + K[1, 2], atol=1e-6)


def test_class_mapping_table(seq, frame0):
    names = json.loads((seq.root / "classes.json").read_text())
    assert set(names.values()) == set(CLASS_MAP)  # every one of the 42 classes has a documented entry
    assert CLASS_MAP["Lane Line Marking"] == ROAD and CLASS_MAP["Signs"] == POLE
    assert CLASS_MAP["Pickup Truck"] == VEHICLE and CLASS_MAP["Pedestrian with Object"] == PEDESTRIAN
    assert CLASS_MAP["Motorcycle"] is None and CLASS_MAP["Other Static Object"] is None
    source = seq.sweep(0).source_labels
    ids = {v: int(k) for k, v in names.items()}
    road_like = ["Road", "Lane Line Marking", "Stop Line Marking", "Other Road Marking", "Driveway"]
    assert (frame0.point_labels == ROAD).sum() == sum((source == ids[n]).sum() for n in road_like)
    assert np.all(frame0.point_labels[source == ids["Motorcycle"]] == IGNORE)
    assert set(np.unique(frame0.point_labels)) <= set(range(1, len(CLASS_NAMES))) | {IGNORE}


def test_base_link_follows_rep103(seq, frame0):
    for frame in (frame0, seq.load_frame(55)):
        road = frame.points[(frame.point_labels == ROAD) & (np.hypot(frame.points[:, 0], frame.points[:, 1]) < 15)]
        assert abs(np.median(road[:, 2])) < 0.05       # origin on the road surface
    names, K, cam2ego = seq.rig((480, 270))
    assert names[0] == "front_camera" and K.shape == (6, 3, 3)
    assert np.all((cam2ego[:, 2, 3] > 1.7) & (cam2ego[:, 2, 3] < 2.3))   # cameras 1.8-2.1 m above the road
    assert cam2ego[0, :3, 2] @ [1, 0, 0] > 0.99                        # front camera looks along +x
    assert cam2ego[CAMERAS.index("left_camera"), :3, 2] @ [0, 1, 0] > 0.99  # left camera along +y
    # driving forward: the next frames' origins lie ahead (+x) of frame 0's base_link
    ahead = invert_rigid(frame0.ego2world) @ seq.ego2world(46)
    assert ahead[0, 3] > 4.0 and abs(ahead[1, 3]) < 0.5


def test_frame_round_trip_keeps_ignore_labels_and_pose(tmp_path, frame0):
    path = tmp_path / "f.npz"
    frame0.save(path)
    back = Frame.load(path)
    np.testing.assert_array_equal(back.point_labels, frame0.point_labels)
    np.testing.assert_allclose(back.ego2world, frame0.ego2world)
    assert (back.point_labels == IGNORE).any()

"""Lidar odometry on real PandaSet sweeps (bags/pandaset_lidar: frames 30-54 of sequence 002, 0.5 m voxels):
ICP tracks the ground truth; the global fallback takes over on an injected 90° turn and a 2 s gap and the
tracker recovers; the configured thread count reaches every library call; bad scans get clear errors."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from threadpoolctl import threadpool_info

from fovea_core.geometry.transforms import invert_rigid, rigid_transform
from fovea_core.paths import repo_root
from fovea_core.registration import features, icp, pipeline
from fovea_core.registration.icp import IcpConfig
from fovea_core.registration.odometry import LidarOdometry, OdometryConfig
from fovea_core.registration.pipeline import DegenerateInputError, Registration, RegistrationConfig
from fovea_core.registration.rigid import axis_angle_to_matrix, make_transform, rotation_error_deg, translation_error
from fovea_ros.bag.reader import BagReader
from fovea_ros.conversions import pointcloud2_to_array, xyz_array

BAG = repo_root() / "bags" / "pandaset_lidar"
TURN = make_transform(axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2])), np.zeros(3))


@pytest.fixture(scope="module")
def sweeps():
    """[(stamp_ns, points (N, 3), ground-truth odom ← base)] from the bag, in order."""
    clouds, truths = {}, {}
    with BagReader(BAG) as reader:
        for message in reader.messages():
            if message.topic == "/lidar/points":
                msg = deserialize_message(message.data, PointCloud2)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                clouds[stamp] = xyz_array(pointcloud2_to_array(msg))
            elif message.topic == "/ground_truth/odom":
                msg = deserialize_message(message.data, Odometry)
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                truths[stamp] = rigid_transform((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
    return [(stamp, clouds[stamp], truths[stamp]) for stamp in sorted(clouds)]


def global_registration(threads_: int = 1) -> Registration:
    return Registration(RegistrationConfig.outdoor(backend="onnxruntime", voxel_size=1.0, max_correspondences=1000,
                                                   threads=threads_))


def run(odometry, scans):
    """Steps with the error of each pose against the truth (re-expressed relative to the first scan)."""
    steps = []
    origin = invert_rigid(scans[0][2])
    for stamp, points, truth in scans:
        step = odometry.step(points, stamp)
        truth = origin @ truth
        error = (translation_error(step.pose, truth), rotation_error_deg(step.pose, truth)) if step.pose is not None \
            else None
        steps.append((step, error))
    return steps


def test_icp_odometry_tracks_the_real_sequence(sweeps):
    odometry = LidarOdometry(OdometryConfig(global_registration=False))
    steps = run(odometry, sweeps)
    assert [s.path for s, _ in steps] == ["start"] + ["icp"] * (len(sweeps) - 1)
    origin = invert_rigid(sweeps[0][2])
    truths = [origin @ truth for _, _, truth in sweeps]
    travelled = float(np.linalg.norm(truths[-1][:3, 3]))
    assert travelled > 6.0  # the bag's 2.5 s cover 7 m: a real motion to track
    # bounds: per-scan relative error < 3 cm / 0.15° on average, end drift < 1.5 % of the path / 0.5°
    relative = [(translation_error(invert_rigid(a.pose) @ b.pose, invert_rigid(ta) @ tb),
                 rotation_error_deg(invert_rigid(a.pose) @ b.pose, invert_rigid(ta) @ tb))
                for (a, _), (b, _), ta, tb in zip(steps, steps[1:], truths, truths[1:])]
    assert np.mean([r[0] for r in relative]) < 0.03 and np.mean([r[1] for r in relative]) < 0.15
    end_translation, end_rotation = steps[-1][1]
    assert end_translation < 0.015 * travelled and end_rotation < 0.5


def test_global_registration_takes_over_on_a_90_degree_turn_and_tracking_recovers(sweeps):
    """From scan 5 on the robot is turned by 90° in place (each later scan seen rotated): ICP from the
    constant-velocity prediction cannot follow, VBReg finds the turn, ICP tracks again afterwards."""
    scans = [(stamp, points if k < 5 else points @ TURN[:3, :3], truth if k < 5 else truth @ TURN)
             for k, (stamp, points, truth) in enumerate(sweeps[:9])]
    steps = run(LidarOdometry(OdometryConfig(), global_registration()), scans)
    paths = [s.path for s, _ in steps]
    assert paths[:5] == ["start", "icp", "icp", "icp", "icp"]
    assert paths[5] == "global", steps[5][0].reason
    assert "fitness collapse" in steps[5][0].reason or "large motion" in steps[5][0].reason
    assert paths[6:] == ["icp"] * 3
    for _, (translation, rotation) in steps[5:]:
        assert translation < 0.2 and rotation < 1.0


def test_global_registration_takes_over_after_a_2_second_gap(sweeps):
    scans = sweeps[:3] + sweeps[22:24]  # 2.0 s between the third and the fourth scan (2.9 m driven)
    steps = run(LidarOdometry(OdometryConfig(), global_registration()), scans)
    assert [s.path for s, _ in steps] == ["start", "icp", "icp", "global", "icp"]
    assert steps[3][0].reason.startswith("gap of 2.00 s")
    for _, (translation, rotation) in steps[3:]:
        assert translation < 0.2 and rotation < 1.0


def test_without_global_registration_a_jump_is_reported_lost(sweeps):
    scans = [(stamp, points if k < 3 else points @ TURN[:3, :3], truth) for k, (stamp, points, truth)
             in enumerate(sweeps[:4])]
    steps = run(LidarOdometry(OdometryConfig(global_registration=False)), scans)
    assert steps[3][0].path == "lost" and steps[3][0].pose is None and "fitness collapse" in steps[3][0].reason


def test_configured_threads_reach_every_library_call(sweeps, monkeypatch):
    """Every thread-taking call made on the ICP and the global path gets the configured count (3 here)."""
    seen: dict[str, list] = {}

    def spy(module, name, position=None, keyword="num_threads"):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            value = kwargs.get(keyword, args[position] if position is not None and len(args) > position else None)
            seen.setdefault(name, []).append(value)
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    small_gicp = icp.small_gicp
    spy(small_gicp, "voxelgrid_sampling", position=2)
    spy(small_gicp, "estimate_covariances", position=3)
    spy(small_gicp, "align")
    spy(small_gicp, "KdTree", position=1)
    import faiss
    spy(faiss, "omp_set_num_threads", position=0)
    spy(pipeline, "load_scorer", keyword="threads")

    def pools_in_effect(module, name):
        """BLAS / OpenMP size their pools from the process: record the pool sizes while the call runs."""
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.setdefault(f"{name}: OpenMP/BLAS pools", []).extend(
                sorted({pool["num_threads"] for pool in threadpool_info()}))
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    pools_in_effect(o3d.pipelines.registration, "compute_fpfh_feature")
    pools_in_effect(pipeline, "vote_and_fit")

    class RecordingTree(features.cKDTree):
        def query(self, *args, **kwargs):
            seen.setdefault("cKDTree.query", []).append(kwargs.get("workers"))
            return super().query(*args, **kwargs)
    monkeypatch.setattr(features, "cKDTree", RecordingTree)

    config = OdometryConfig(icp=IcpConfig(threads=3))
    odometry = LidarOdometry(config, global_registration(threads_=3))
    scans = [(stamp, points if k < 2 else points @ TURN[:3, :3], truth) for k, (stamp, points, truth)
             in enumerate(sweeps[:3])]
    steps = run(odometry, scans)
    assert steps[2][0].path == "global"  # both paths ran
    expected = {"voxelgrid_sampling", "estimate_covariances", "align", "KdTree", "omp_set_num_threads",
                "load_scorer", "cKDTree.query", "compute_fpfh_feature: OpenMP/BLAS pools",
                "vote_and_fit: OpenMP/BLAS pools"}
    assert expected <= set(seen), f"not called: {expected - set(seen)}"
    for name, values in seen.items():
        assert values and all(value == 3 for value in values), f"{name} got thread counts {values}"


def test_open3d_runs_within_the_configured_threads(sweeps, monkeypatch):
    """Open3D (TBB) is invisible to threadpoolctl: its FPFH and RANSAC must see the configured limit (1 here;
    TBB caps a limit at the core count, so 1 is the value that differs from the default on any machine with
    two cores or more), and the process-wide limit is restored afterwards."""
    registration_module = o3d.pipelines.registration
    seen = {}
    for name in ("compute_fpfh_feature", "registration_ransac_based_on_correspondence"):
        original = getattr(registration_module, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, []).append(o3d.utility.get_max_threads())
            return _original(*args, **kwargs)
        monkeypatch.setattr(registration_module, name, wrapper)
    before = o3d.utility.get_max_threads()
    result = Registration(RegistrationConfig.outdoor(voxel_size=1.0, method="ransac", threads=1)).register(
        sweeps[3][1], sweeps[0][1])
    assert result.success, result.message
    assert seen == {"compute_fpfh_feature": [1, 1], "registration_ransac_based_on_correspondence": [1]}
    assert o3d.utility.get_max_threads() == before


@pytest.mark.parametrize("points, stamp, message", [
    (np.full((500, 3), np.nan), 2, "no finite points"),
    (np.zeros((0, 3)), 2, "no finite points"),
    (np.zeros((10, 2)), 2, "must be an (N, 3) array"),
    (np.random.default_rng(0).uniform(-0.5, 0.5, (400, 3)), 2, "points between 1.0 and 100.0 m"),
    (None, 1, "is not after the previous one"),
])
def test_invalid_scans_raise_clear_errors(sweeps, points, stamp, message):
    odometry = LidarOdometry(OdometryConfig(global_registration=False))
    odometry.step(sweeps[0][1], 1)
    with pytest.raises(DegenerateInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        odometry.step(sweeps[1][1] if points is None else points, stamp)


def test_map_localizer_finds_the_pose_without_a_guess_and_relocalizes_on_request(sweeps):
    from fovea_core.registration.odometry import MapLocalizer

    origin = invert_rigid(sweeps[0][2])
    prior = np.vstack([points @ (origin @ truth)[:3, :3].T + (origin @ truth)[:3, 3]
                       for _, points, truth in sweeps[0:12:4]])  # a map from three real sweeps
    localizer = MapLocalizer(prior, global_registration())
    paths = []
    for k in (13, 14, 15):
        if k == 15:
            localizer.request_relocalization()
        stamp, points, truth = sweeps[k]
        step = localizer.step(points, stamp)
        paths.append((step.path, step.reason))
        assert translation_error(step.pose, origin @ truth) < 0.2 and rotation_error_deg(step.pose, origin @ truth) < 1.0
    assert paths == [("global", "start-up: no pose yet"), ("icp", ""), ("global", "requested")]


def test_unusable_maps_are_refused_with_the_reason():
    from fovea_core.registration.odometry import MapLocalizer

    with pytest.raises(DegenerateInputError, match="no finite points"):
        MapLocalizer(np.full((100, 3), np.nan), global_registration())
    plane = np.c_[np.random.default_rng(0).uniform(-20, 20, (5000, 2)), np.zeros(5000)]
    with pytest.raises(DegenerateInputError, match="feature-less"):
        MapLocalizer(plane, global_registration())


def test_deskew_undoes_the_motion_within_a_sweep():
    """A sensor moving by ``delta`` per sweep (0.8 m forward, 3° of yaw) sees static points at times s in
    [0, 1]; deskewing must put every point where it is seen at the sweep's end (s = 1)."""
    from scipy.spatial.transform import Rotation

    from fovea_core.registration.icp import deskew

    rng = np.random.default_rng(1)
    at_end = rng.uniform(-30, 30, (2000, 3))
    times = rng.uniform(0, 1, 2000)
    delta = make_transform(axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(3.0)])), np.array([0.8, 0.0, 0.0]))
    rotvec = Rotation.from_matrix(delta[:3, :3]).as_rotvec()
    observed = np.empty_like(at_end)
    for i, s in enumerate(times):  # end ← sensor(s) = Exp((s − 1) ξ): translation and rotation scaled alike
        rotation = Rotation.from_rotvec((s - 1.0) * rotvec).as_matrix()
        observed[i] = rotation.T @ (at_end[i] - (s - 1.0) * delta[:3, 3])
    assert np.abs(deskew(observed, times, delta) - at_end).max() < 1e-9
    assert np.abs(observed - at_end).max() > 0.5  # the skew was real

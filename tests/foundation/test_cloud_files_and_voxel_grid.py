import numpy as np
import pytest

from fovea_core.geometry.voxel_grid import voxel_downsample
from fovea_core.io.cloud_files import CloudFileError, read_cloud, write_ply
from fovea_core.paths import shared_data_dir

POINT = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])


def test_ply_round_trip(tmp_path):
    points = np.zeros(5, POINT)
    points["x"] = np.arange(5)
    points["intensity"] = 7
    write_ply(tmp_path / "c.ply", points)
    assert np.array_equal(read_cloud(tmp_path / "c.ply"), points)


def test_reads_the_real_outdoor_scan():
    scan = read_cloud(shared_data_dir() / "registration/outdoor_lidar_scan_pair/source.ply")
    assert scan.dtype.names == ("x", "y", "z", "scalar_intensity")
    assert len(scan) == 69_792 and np.isfinite(scan["x"]).all()


def test_binary_pcd_and_ascii_pcd(tmp_path):
    header = "VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
    xyz = np.array([[1, 2, 3], [4, 5, 6]], "<f4")
    (tmp_path / "b.pcd").write_bytes((header + "DATA binary\n").encode() + xyz.tobytes())
    (tmp_path / "a.pcd").write_text(header + "DATA ascii\n1 2 3\n4 5 6\n")
    for name in ("a.pcd", "b.pcd"):
        cloud = read_cloud(tmp_path / name)
        assert np.allclose(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), xyz)


def test_unreadable_files_raise_a_clear_error(tmp_path):
    (tmp_path / "x.ply").write_text("not a ply")
    with pytest.raises(CloudFileError, match="not a PLY"):
        read_cloud(tmp_path / "x.ply")
    with pytest.raises(CloudFileError, match="extension"):
        read_cloud(tmp_path / "x.xyz")


def test_voxel_downsample_matches_a_per_voxel_loop():
    rng = np.random.default_rng(3)
    points = np.zeros(2000, POINT)
    points["x"], points["y"], points["z"] = rng.uniform(-5, 5, (3, 2000))
    points["intensity"] = rng.uniform(0, 1, 2000)
    out = voxel_downsample(points, 1.0)
    groups = {}
    for p in points:
        groups.setdefault(tuple(np.floor([p["x"], p["y"], p["z"]]).astype(int)), []).append(p)
    assert len(out) == len(groups)
    for key, (x, y, z, i) in zip(sorted(groups), out):
        members = np.array([tuple(p) for p in groups[key]], dtype=float)
        assert np.allclose([x, y, z, i], members.mean(axis=0), atol=1e-5)


def test_voxel_downsample_range_filter_and_bad_arguments():
    points = np.zeros(3, POINT)
    points["x"] = [0.5, 5.0, 50.0]
    out = voxel_downsample(points, 0.1, min_range=1.0, max_range=10.0)
    assert out["x"].tolist() == [5.0]
    with pytest.raises(ValueError, match="voxel_size"):
        voxel_downsample(points, 0.0)
    with pytest.raises(ValueError, match="x, y, z"):
        voxel_downsample(np.zeros(3, [("a", "f4")]), 1.0)

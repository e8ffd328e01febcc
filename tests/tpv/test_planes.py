"""TPV point / voxel aggregation equals the explicit sum of the three plane samples."""
import numpy as np
import torch

from fovea_core.tpv.planes import TPV_AXES, MapSpec, point_features, voxel_features
from fovea_core.tpv.projection import metric_to_unit

RANGES = ((-4.0, 4.0), (-2.0, 2.0), (0.0, 3.0))
SHAPE = (8, 4, 3)  # X, Y, Z cells (1 m each)


def _planes(seed=0, channels=5):
    g = torch.Generator().manual_seed(seed)
    specs = [MapSpec(axes, tuple(SHAPE[a] for a in axes)) for axes in TPV_AXES]
    maps = [torch.randn(1, channels, *s.shape, generator=g) for s in specs]
    return specs, maps


def _bilinear(plane: np.ndarray, cont: tuple[float, float]) -> np.ndarray:
    """Explicit bilinear interpolation of plane (C, A, B) at continuous cell coordinates (a, b), zero outside."""
    a, b = cont[0] - 0.5, cont[1] - 0.5  # cell centres sit at integer + 0.5
    a0, b0 = int(np.floor(a)), int(np.floor(b))
    out = np.zeros(plane.shape[0])
    for da in (0, 1):
        for db in (0, 1):
            ia, ib = a0 + da, b0 + db
            w = (1 - abs(a - ia)) * (1 - abs(b - ib))
            if 0 <= ia < plane.shape[1] and 0 <= ib < plane.shape[2]:
                out += w * plane[:, ia, ib]
    return out


def test_point_feature_is_sum_of_three_bilinear_plane_samples():
    specs, maps = _planes()
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(*r, 20) for r in RANGES], 1).astype(np.float32)
    got = point_features(maps, specs, metric_to_unit(torch.from_numpy(pts)[None], RANGES))[0].numpy()
    lo = np.array([r[0] for r in RANGES])
    cell = np.array([(r[1] - r[0]) / n for r, n in zip(RANGES, SHAPE)])
    for p, feat in zip(pts, got):
        c = (p - lo) / cell  # continuous cell coordinates per axis
        expected = sum(_bilinear(m[0].numpy(), (c[s.axes[0]], c[s.axes[1]])) for m, s in zip(maps, specs))
        np.testing.assert_allclose(feat, expected, atol=1e-5)


def test_voxel_features_are_broadcast_sum_and_match_points_at_centres():
    specs, maps = _planes(seed=2)
    xy, yz, xz = (m[0] for m in maps)
    vox = voxel_features(maps, specs, SHAPE)[0]
    assert vox.shape == (5, *SHAPE)
    for x in range(SHAPE[0]):
        for y in range(SHAPE[1]):
            for z in range(SHAPE[2]):
                torch.testing.assert_close(vox[:, x, y, z], xy[:, x, y] + yz[:, y, z] + xz[:, x, z])
    centres = torch.tensor([[-3.5, -1.5, 0.5], [3.5, 1.5, 2.5], [0.5, -0.5, 1.5]])
    idx = [(0, 0, 0), (7, 3, 2), (4, 1, 1)]
    pf = point_features(maps, specs, metric_to_unit(centres[None], RANGES))[0]
    for f, (x, y, z) in zip(pf, idx):
        torch.testing.assert_close(f, vox[:, x, y, z])


def test_tpv_memory_is_sum_of_plane_sizes_not_volume():
    specs, maps = _planes()
    stored = sum(m.numel() for m in maps)
    assert stored == 5 * (8 * 4 + 4 * 3 + 8 * 3)
    assert stored < 5 * 8 * 4 * 3

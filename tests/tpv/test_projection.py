"""Projection of reference points into cameras against hand-computed pinhole results."""
import numpy as np
import torch
import torch.nn.functional as F

from fovea_core.tpv.nuscenes_sample import load_rig
from fovea_core.tpv.projection import (ego_to_image, pillar_reference_points, pixels_to_grid, project_points,
                                       scale_intrinsics)

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 100, 80
# Camera 1 m ahead of base_link, 1.5 m up, looking forward: optical z = +x, optical x = -y, optical y = -z.
CAM2EGO = np.array([[0.0, 0.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]])


def _project(points):
    ego2img = torch.from_numpy(ego_to_image(K[None], CAM2EGO[None])).float()
    pix, depth, vis = project_points(torch.tensor(points, dtype=torch.float32), ego2img, (WIDTH, HEIGHT))
    return pix[0].numpy(), depth[0].numpy(), vis[0].numpy()


def test_points_in_front_match_hand_computed_pinhole():
    # (11, 0, 1.5): straight ahead, depth 10 -> principal point.
    # (11, -1, 1.5): 1 m to the right -> u = 50 + 100 * 1 / 10 = 60.
    # (6, 0.5, 0.5): depth 5, 0.5 m left, 1 m down -> u = 50 - 10 = 40, v = 40 + 20 = 60.
    pix, depth, vis = _project([[11, 0, 1.5], [11, -1, 1.5], [6, 0.5, 0.5]])
    np.testing.assert_allclose(pix, [[50, 40], [60, 40], [40, 60]], atol=1e-4)
    np.testing.assert_allclose(depth, [10, 10, 5], atol=1e-5)
    assert vis.all()


def test_points_behind_camera_or_outside_image_are_not_visible():
    pts = [[-5, 0, 1.5],      # behind the camera (depth -6)
           [1.0, 0, 1.5],     # on the camera plane (depth 0)
           [11, -6, 1.5],     # u = 110: right of the image
           [11, 0, 6.0],      # v = 40 - 45 = -5: above the image
           [11, 0.5049, 1.5]]  # u = -0.49: inside the left edge pixel
    pix, depth, vis = _project(pts)
    assert vis.tolist() == [False, False, False, False, True]
    assert np.isfinite(pix).all()  # masked points stay finite so grid_sample never sees NaN
    np.testing.assert_allclose(pix[2], [110, 40], atol=1e-3)
    np.testing.assert_allclose(pix[3], [50, -5], atol=1e-3)


def test_grid_coordinates_sample_the_projected_pixel():
    image = torch.arange(HEIGHT * WIDTH, dtype=torch.float32).view(1, 1, HEIGHT, WIDTH)
    pix, _, _ = _project([[11, -1, 1.5], [6, 0.5, 0.5]])   # pixels (60, 40) and (40, 60)
    grid = pixels_to_grid(torch.from_numpy(pix), (WIDTH, HEIGHT)).view(1, 1, 2, 2)
    sampled = F.grid_sample(image, grid, align_corners=False).view(-1)
    assert sampled.tolist() == [40 * WIDTH + 60, 60 * WIDTH + 40]


def test_scaled_intrinsics_keep_pixel_centres():
    scaled = scale_intrinsics(K, 0.5, 0.25)
    # pixel centre u = 59 (edges 58.5..59.5) becomes (59 + 0.5) * 0.5 - 0.5 = 29.25 after halving
    point_cam = np.array([0.9, 0.0, 10.0])  # u = 50 + 9 = 59
    u = (scaled @ point_cam / point_cam[2])[0]
    assert abs(u - 29.25) < 1e-9


def test_pillar_points_and_real_rig_visibility():
    ranges = ((-10.0, 10.0), (-10.0, 10.0), (-1.0, 3.0))
    refs = pillar_reference_points(ranges, (0, 1), (4, 4), 4)
    assert refs.shape == (16, 4, 3)
    np.testing.assert_allclose(refs[0, :, 2], [-0.5, 0.5, 1.5, 2.5])            # evenly along z, cell-centred
    np.testing.assert_allclose(refs[0, 0, :2], [-7.5, -7.5])
    names, intr, cam2ego = load_rig(image_size=(160, 90))
    ego2img = torch.from_numpy(ego_to_image(intr, cam2ego)).float()
    ahead_behind = torch.tensor([[20.0, 0.0, 1.0], [-20.0, 0.0, 1.0]])
    pix, _, vis = project_points(ahead_behind, ego2img, (160, 90))
    front, back = names.index("CAM_FRONT"), names.index("CAM_BACK")
    assert vis[front, 0] and not vis[front, 1]
    assert vis[back, 1] and not vis[back, 0]
    assert abs(pix[front, 0, 0] - 80) < 5  # near the image centre column

"""Ground truth rasterised from hand-built boxes: footprints, reverse flow of a translating and of a turning
box (against the rigid-motion formula worked out by hand), the per-query rule agreeing with the raster, and
the constant-velocity baseline."""
import numpy as np

from fovea_core.occflow.agents import AgentTracks, constant_velocity, footprint_history, occupancy_and_flow, rasterise
from fovea_core.occflow.grid import BevGrid

GRID = BevGrid((-10.0, 10.0), (-10.0, 10.0), 0.5)   # 40 x 40 cells, centres at +-0.25, +-0.75, ...


def one_box(xy, yaw, size=(4.0, 2.0), cls=0, period=0.1):
    xy = np.asarray(xy, float)[:, None, :]
    return AgentTracks(xy, np.asarray(yaw, float)[:, None], np.ones(xy.shape[:2], bool), np.array([size]),
                       np.array([cls]), current=5, period=period)


def test_footprint_of_an_axis_aligned_box_is_exactly_its_cells():
    frames = 11
    tracks = one_box([(2.0, -3.0)] * frames, [0.0] * frames)
    occ, _, _ = rasterise(tracks, GRID, 0.0, flow_dt=0.5)
    centres = GRID.cell_centres()
    expected = (np.abs(centres[..., 0] - 2.0) <= 2.0) & (np.abs(centres[..., 1] + 3.0) <= 1.0)
    assert expected.sum() == 8 * 4          # 4 m x 2 m at 0.5 m cells
    assert np.array_equal(occ[0] > 0, expected)
    assert occ[1:].sum() == 0               # the other classes stay empty


def test_rotated_box_footprint_has_its_area():
    tracks = one_box([(0.0, 0.0)] * 11, [np.pi / 4] * 11, size=(6.0, 3.0))
    occ, _, _ = rasterise(tracks, BevGrid((-10.0, 10.0), (-10.0, 10.0), 0.1), 0.0, flow_dt=0.5)
    assert abs(occ[0].sum() * 0.01 - 18.0) < 0.5
    centres = BevGrid((-10.0, 10.0), (-10.0, 10.0), 0.1).cell_centres()
    on_diagonal = np.hypot(*centres.transpose(2, 0, 1)) < 1.0
    assert occ[0][on_diagonal].all()


def test_translating_box_has_constant_reverse_flow():
    # 8 m/s along +x: 0.5 s earlier every point of the box was 4 m further back along x
    t = np.arange(11) * 0.1 - 0.5
    tracks = one_box(np.stack([8.0 * t, np.zeros_like(t)], 1), np.zeros_like(t))
    occ, flow, ok = rasterise(tracks, GRID, 0.5, flow_dt=0.5)
    inside = occ[0] > 0
    assert inside.sum() == 32 and ok[0][inside].all()
    assert np.allclose(flow[0, 0][inside], -4.0) and np.allclose(flow[0, 1][inside], 0.0)
    assert np.all(flow[0][:, ~inside] == 0)


def test_turning_box_reverse_flow_is_the_rigid_motion():
    # The box turns about the origin at 0.4 rad/s on a circle of radius 5 m (centre at angle w t), heading
    # tangent. Worked by hand: p' = c(t - dt) + R(yaw(t - dt)) R(yaw(t))^T (p - c(t)) = R(-w dt) p, so the
    # reverse flow at p is R(-w dt) p - p.
    w, r, dt = 0.4, 5.0, 0.5
    t = np.arange(11) * 0.1 - 0.5
    centres = np.stack([r * np.cos(w * t), r * np.sin(w * t)], 1)
    tracks = one_box(centres, w * t + np.pi / 2)
    occ, flow, ok = rasterise(tracks, GRID, 0.5, flow_dt=dt)
    cells = GRID.cell_centres()[occ[0] > 0]
    got = flow[0].transpose(1, 2, 0)[occ[0] > 0]
    c, s = np.cos(-w * dt), np.sin(-w * dt)
    expected = cells @ np.array([[c, -s], [s, c]]).T - cells
    assert len(cells) > 20 and ok[0][occ[0] > 0].all()
    assert np.allclose(got, expected, atol=1e-5)
    # the field is not constant: the outer edge of the box moves faster than the inner
    speeds = np.linalg.norm(got, axis=1)
    radii = np.linalg.norm(cells, axis=1)
    assert np.corrcoef(speeds, radii)[0, 1] > 0.99


def test_queries_agree_with_the_raster_and_flow_needs_the_earlier_pose():
    t = np.arange(11) * 0.1 - 0.5
    tracks = one_box(np.stack([3.0 * t, np.ones_like(t)], 1), 0.1 * t, cls=1, size=(1.0, 1.0))
    tracks.valid[:3, 0] = False                   # the agent appears 0.3 s before t = 0
    occ_r, flow_r, ok_r = rasterise(tracks, GRID, 0.0, flow_dt=0.5)
    centres = GRID.cell_centres().reshape(-1, 2)
    occ_q, flow_q, ok_q = occupancy_and_flow(tracks, centres, tracks.frame_of(0.0), flow_dt=0.5)
    assert np.array_equal(occ_q.T.reshape(occ_r.shape), occ_r > 0)
    assert np.allclose(flow_q.transpose(1, 2, 0).reshape(flow_r.shape), flow_r)
    assert occ_r[1].sum() > 0 and not ok_r[1].any()   # occupied at t = 0, but no pose 0.5 s earlier
    _, _, ok_later = rasterise(tracks, GRID, 0.3, flow_dt=0.5)
    assert ok_later[1].any()


def test_constant_velocity_extrapolates_the_last_half_second():
    t = np.arange(36) * 0.1 - 0.5
    xy = np.stack([np.where(t <= 0, 6.0 * t, 12.0 * t), np.zeros_like(t)], 1)   # speeds up after t = 0
    tracks = one_box(xy, np.zeros_like(t))
    cv = constant_velocity(tracks)
    assert np.allclose(cv.xy[cv.frame_of(2.0), 0], [12.0, 0.0])   # 6 m/s from its history, for 2 s
    assert np.allclose(cv.xy[: tracks.current + 1], tracks.xy[: tracks.current + 1])
    late = one_box(xy, np.zeros_like(t))
    late.valid[tracks.current, 0] = False
    assert constant_velocity(late).num_agents == 0             # not observed at t = 0: not extrapolated


def test_footprint_history_marks_every_frame():
    t = np.arange(11) * 0.1 - 0.5
    tracks = one_box(np.stack([10.0 * t, np.zeros_like(t)], 1), np.zeros_like(t))
    planes = footprint_history(tracks, GRID, [1, 3, 5])
    assert planes.shape == (3, 40, 40)
    xs = [GRID.cell_centres()[..., 0][p > 0].mean() for p in planes]
    assert np.allclose(xs, [-4.0, -2.0, 0.0], atol=0.3)

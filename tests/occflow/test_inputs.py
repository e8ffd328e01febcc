"""Inputs: the masked sweep history, voxelisation, the map raster, and the real Argoverse 2 reader."""
import numpy as np
import pytest

from fovea_core.occflow import data
from fovea_core.occflow.av2_reader import Av2Scenario, Av2SensorLog
from fovea_core.occflow.config import tiny_config
from fovea_core.occflow.grid import BevGrid, lidar_planes, sweep_history, voxelise_sweep
from fovea_core.occflow.inference import OccFlowInference
from fovea_core.occflow.sample import model_inputs
from fovea_core.occflow.vector_map import MAP_CHANNELS, Lane, VectorMap, rasterise_map

CFG = tiny_config()
GRID = BevGrid.of(CFG)


def test_voxelisation_counts_returns_per_voxel_and_ignores_nan():
    pts = np.array([[0.1, 0.1, 0.2], [0.2, 0.2, 0.3], [0.1, 0.1, 2.9], [np.nan, 0, 0], [100.0, 0, 0]])
    counts = voxelise_sweep(pts, GRID, CFG.z_range, CFG.height_bins)
    assert counts.sum() == 3
    row, col, _ = GRID.cell_index(np.array([[0.1, 0.1]]))
    assert counts[:, row[0], col[0]].tolist() == [0, 2, 0, 1]   # bins of 1 m from z = -1


def test_short_history_is_masked_at_the_front_and_a_dropped_sweep_in_place():
    sweep = np.array([[1.0, 1.0, 0.5]])
    counts, valid = sweep_history([sweep, sweep], GRID, CFG)          # start-up: 2 of 3 sweeps
    assert valid.tolist() == [False, True, True] and counts[0].sum() == 0
    counts, valid = sweep_history([sweep, None, sweep], GRID, CFG)    # the middle one dropped
    assert valid.tolist() == [True, False, True] and counts[1].sum() == 0
    planes = lidar_planes(counts, valid).reshape(3, CFG.height_bins + 1, *GRID.shape)
    assert np.all(planes[1] == 0)                                     # masked: occupancy and validity zero
    assert np.all(planes[0, -1] == 1) and np.all(planes[2, -1] == 1)


def test_a_masked_sweep_is_not_an_empty_one():
    """An empty (all-free) sweep and a missing one must give different network inputs."""
    sweep = np.array([[1.0, 1.0, 0.5]])
    empty = np.zeros((0, 3))
    a = lidar_planes(*sweep_history([empty, sweep], GRID, CFG))
    b = lidar_planes(*sweep_history([None, sweep], GRID, CFG))
    assert not np.array_equal(a, b)


def test_model_inputs_have_the_configured_channels_and_mask_the_tracker():
    vmap = VectorMap({1: Lane(1, np.array([[-8.0, -1.0], [8.0, -1.0]]), np.array([[-8.0, 0.75], [8.0, 0.75]]),
                              np.array([[-8.0, -2.75], [8.0, -2.75]]))},
                     [np.array([[-8.0, -3.0], [8.0, -3.0], [8.0, 1.0], [-8.0, 1.0]])], [])
    raster = rasterise_map(vmap, GRID)
    assert raster.shape == (len(MAP_CHANNELS), *GRID.shape) and raster[-1].min() == 1.0
    assert raster[0].sum() == pytest.approx(32 * 8)                   # 16 m x 4 m drivable at 0.5 m
    on_lane = raster[1] > 0
    assert np.allclose(raster[2][on_lane], 1.0) and np.allclose(raster[3][on_lane], 0.0)   # heading +x
    assert rasterise_map(None, GRID).sum() == 0                       # map-less: all zero, validity too
    from fovea_core.occflow.agents import AgentTracks
    from fovea_core.occflow.sample import build_sample
    tracks = AgentTracks(np.zeros((9, 1, 2)), np.zeros((9, 1)), np.ones((9, 1), bool), np.array([[4.0, 2.0]]),
                         np.array([0]), current=3)
    sample = build_sample(CFG, [np.array([[1.0, 1.0, 0.5]])], tracks, vmap)
    lidar, map_in = model_inputs(sample, CFG)
    assert lidar.shape == (1, CFG.lidar_channels, *GRID.shape) and map_in.shape == (1, 7, *GRID.shape)
    no_tracker = model_inputs(sample.with_inputs(tracker=False), CFG)[0]
    tracker_planes = slice(CFG.sweeps * (CFG.height_bins + 1), None)
    assert lidar[0, tracker_planes].sum() > 0 and no_tracker[0, tracker_planes].sum() == 0
    assert model_inputs(sample.with_inputs(use_map=False), CFG)[1].sum() == 0


def test_av2_sensor_log_reader_on_the_real_log():
    log = Av2SensorLog.open()
    assert len(log.box_stamps) == 156 and len(log.map_city.lanes) == 183
    assert log.read_sweep(log.sweep_stamps[0]).shape == (99229, 3)
    tracks = log.tracks(log.sweep_stamps[1], past=5, future=30)
    assert tracks.num_frames == 36 and set(np.unique(tracks.cls)) <= {0, 1, 2}
    # ego-frame boxes at the current frame equal the file's own ego-frame boxes at that stamp
    b = log.boxes
    rows = np.nonzero((b["timestamp_ns"] == log.sweep_stamps[1]) & (b["category"] == "REGULAR_VEHICLE"))[0]
    file_xy = np.stack([b["tx_m"][rows], b["ty_m"][rows]], 1)
    got = tracks.xy[tracks.current][tracks.valid[tracks.current]]
    assert all(np.min(np.linalg.norm(got - p, axis=1)) < 1e-6 for p in file_xy)
    # motion compensation: the first sweep moved into the second's frame by the ego's ~0.1 s of travel
    moved = log.sweep_in(log.sweep_stamps[0], log.sweep_stamps[1]) - log.read_sweep(log.sweep_stamps[0])
    assert 0.01 < np.abs(moved[:, 0]).mean() < 2.0


def test_av2_scenario_reader_and_the_real_samples():
    sc = Av2Scenario.open()
    assert sc.xy.shape[0] == 110 and sc.observed_steps == 50
    tracks = sc.tracks(49, past=5, future=30)
    ego_like = np.linalg.norm(tracks.xy[tracks.current][tracks.valid[tracks.current]], axis=1)
    assert ego_like.min() > 1.0                    # the AV is not among the agents
    real = data.real_lidar_sample(CFG)
    assert real.sweep_valid.tolist() == [False, True, True] and real.source == "av2/real_lidar"
    assert real.lidar_counts.sum() > 1000


def test_inference_rejects_an_encoder_decoder_pair_of_different_configs(tmp_path):
    from fovea_core.occflow.export import export
    from fovea_core.occflow.model import ImplicitO

    export(ImplicitO(CFG), tmp_path / "a")
    export(ImplicitO(CFG.replace(offsets=2)), tmp_path / "b")
    with pytest.raises(ValueError, match="decoder_path"):
        OccFlowInference.load("onnxruntime", tmp_path / "a_encoder.onnx", tmp_path / "b_decoder.onnx")


def test_sweep_history_motion_compensates_into_the_latest_sweep_and_masks_gaps():
    from fovea_core.occflow.history import SweepHistory

    history = SweepHistory(CFG, max_gap=0.03)
    point = np.array([[5.0, 0.0, 0.5]], np.float32)           # a fixed world point ...
    far = np.array([[500.0, 0.0, 0.5]], np.float32)           # ... and one that never reaches the grid

    def pose(x):                                              # the ego drives along +x
        T = np.eye(4)
        T[0, 3] = x
        return T

    for i, x in enumerate([0.0, 1.0]):                        # seen from ego x = 0 (as 5 m) and x = 1 (as 4 m)
        slots = history.add(i * 100_000_000, np.concatenate([point - [x, 0, 0], far]), pose(x))
    assert slots[0] is None                                   # start-up: the oldest slot is masked
    assert np.allclose(slots[1], [[4.0, 0.0, 0.5]]) and np.allclose(slots[2], [[4.0, 0.0, 0.5]])
    slots = history.add(250_000_000, point - [2.5, 0, 0], pose(2.5))   # 150 ms later: the older ones are
    assert slots[0] is None and slots[1] is None and np.allclose(slots[2], [[2.5, 0.0, 0.5]])   # 1.5, 2.5 periods old
    slots = history.add(350_000_000, point - [3.5, 0, 0], pose(3.5))
    assert slots[0] is None and np.allclose(slots[1], [[1.5, 0.0, 0.5]]) and np.allclose(slots[2], [[1.5, 0.0, 0.5]])
    history.clear()
    assert history.slots() == [None] * CFG.sweeps


def test_only_agents_the_lidar_saw_are_targets_and_the_tracker_history_follows():
    from fovea_core.occflow.agents import AgentTracks
    from fovea_core.occflow.sample import MIN_RETURNS, build_sample

    # two parked cars; the sweeps hit only the first (returns 1 m up at its side); the second is occluded
    tracks = AgentTracks(np.array([[[3.0, 3.0], [-4.0, -4.0]]] * 6), np.zeros((6, 2)), np.ones((6, 2), bool),
                         np.array([[4.0, 2.0], [4.0, 2.0]]), np.array([0, 0]), current=3)
    hits = np.array([[3.0, 2.0, 0.5]] * MIN_RETURNS)
    sample = build_sample(CFG, [hits, hits, hits], tracks, None)
    seen = sample.seen(CFG)
    assert seen.tracks.num_agents == 1 and np.allclose(seen.tracks.xy[3, 0], [3.0, 3.0])
    assert sample.track_footprints.sum() > seen.track_footprints.sum() > 0        # the tracker forgets the hidden car
    fewer = build_sample(CFG, [hits[:MIN_RETURNS - 1]] * 3, tracks, None).seen(CFG)
    assert fewer.tracks.num_agents == 0
    boxes_only = build_sample(CFG, [], tracks, None)                               # annotations, no lidar: kept
    assert boxes_only.seen(CFG).tracks.num_agents == 2


def test_training_queries_cover_agents_at_their_own_and_at_other_times():
    from fovea_core.occflow.agents import AgentTracks, occupancy_and_flow

    frames = 36   # one car driving +x at 10 m/s from x = -7 m: its trail spans the grid over the horizon
    xy = np.stack([np.linspace(-7.0, -7.0 + 0.1 * 10 * (frames - 1), frames), np.zeros(frames)], 1)[:, None]
    tracks = AgentTracks(xy, np.zeros((frames, 1)), np.ones((frames, 1), bool), np.array([[4.0, 2.0]]),
                         np.array([0]), current=5)
    pts, f = data.sample_queries(tracks, CFG, 4000, np.random.default_rng(0))
    occ = occupancy_and_flow(tracks, pts, f, CFG.flow_dt)[0][:, 0]
    near = slice(0, int(4000 * CFG.near_actor_fraction))
    car_x = tracks.xy[f[near], 0, 0]
    on_trail = np.abs(pts[near, 1]) < 1.5
    # near-agent queries: occupied ones, and empty ones on the car's path away from where it is at their time
    assert occ[near].mean() > 0.2
    assert (on_trail & ~occ[near] & (np.abs(pts[near, 0] - car_x) > 4)).sum() > 200

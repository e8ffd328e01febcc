"""Each metric against a case worked out by hand."""
import math

import numpy as np
import pytest

from fovea_core.occflow.metrics import MetricTable, flow_epe, pr_auc, soft_iou, waypoint_metrics, warp_by_flow


def test_pr_auc_of_a_perfect_ranking_is_one_and_of_a_constant_is_the_prevalence():
    assert pr_auc(np.array([0.9, 0.1]), np.array([1, 0])) == pytest.approx(1.0)
    # one score for all four cells, one positive: precision 1/4 at every recall
    assert pr_auc(np.full(4, 0.5), np.array([1, 0, 0, 0])) == pytest.approx(0.25)


def test_pr_auc_interpolates_between_thresholds_along_predicted_positives():
    # scores 0.8 (pos), 0.6 (neg), 0.4 (pos). From P = 1 to 0: precision 1 over recall 0.5 -> 0.5.
    # From P = 3 (TP 2) to P = 2 (TP 1): TP = P - 1, precision = 1 - 1/P, recall from 1/2 to 1:
    # integral of (1 - 1/P) dP / 2 over [2, 3] = (1 - ln 1.5) / 2. P = 2 -> 1 adds no recall.
    expected = 0.5 + (1 - math.log(1.5)) / 2
    assert pr_auc(np.array([0.8, 0.6, 0.4]), np.array([1, 0, 1])) == pytest.approx(expected, abs=1e-9)


def test_pr_auc_is_undefined_without_positives():
    assert pr_auc(np.array([0.3, 0.7]), np.array([0, 0])) is None


def test_soft_iou():
    assert soft_iou(np.array([0.5, 1.0, 0.0]), np.array([1.0, 1.0, 0.0])) == pytest.approx(1.5 / 2.0)
    assert soft_iou(np.zeros(3), np.zeros(3)) is None


def test_flow_epe_counts_only_cells_with_true_flow():
    true = np.zeros((2, 2, 2))
    true[0, 0, 0] = 3.0                                      # one moving cell, 3 m along x
    pred = np.zeros((2, 2, 2))
    pred[:, 0, 0] = (3.0, 4.0)                               # 4 m off
    pred[:, 1, 1] = (10.0, 10.0)                             # a static cell: not counted
    assert flow_epe(pred, true) == pytest.approx(4.0)
    assert flow_epe(pred, np.zeros_like(true)) is None


def test_warp_looks_up_the_origin_at_the_reverse_flow():
    origin = np.zeros((8, 8))
    origin[5, 5] = 1.0
    flow = np.zeros((2, 8, 8))
    flow[0] = 0.5                                            # every cell's occupant came from 0.5 m (1 cell) in +x
    warped = warp_by_flow(origin, flow, resolution=0.5)
    assert warped[5, 4] == pytest.approx(1.0) and warped.sum() == pytest.approx(1.0)
    flow[0] = 0.25                                           # half a cell: bilinear
    assert warp_by_flow(origin, flow, 0.5)[5, 4] == pytest.approx(0.5)


def test_flow_grounded_occupancy_rewards_the_right_flow():
    true_now = np.zeros((8, 8))
    true_now[5, 4] = 1.0
    origin = np.zeros((8, 8))
    origin[5, 5] = 1.0                                       # the agent moved one cell in -x
    occ = np.full((8, 8), 0.2)
    occ[5, 4] = 0.9
    right = np.zeros((2, 8, 8))
    right[0] = 0.5
    m_right = waypoint_metrics(occ, right, true_now, right * true_now, origin, 0.5)
    m_wrong = waypoint_metrics(occ, -right, true_now, right * true_now, origin, 0.5)
    assert m_right["flow_grounded_auc"] == pytest.approx(1.0)
    assert m_wrong["flow_grounded_auc"] is not None and m_wrong["flow_grounded_auc"] < 0.1
    assert m_right["flow_epe"] == pytest.approx(0.0) and m_wrong["flow_epe"] == pytest.approx(1.0)


def test_metric_table_skips_undefined_and_averages_per_waypoint_first():
    table = MetricTable()
    table.add("m", 1.0, "vehicle", {"auc": 1.0})
    table.add("m", 1.0, "vehicle", {"auc": 0.0})
    table.add("m", 2.0, "vehicle", {"auc": None})
    table.add("m", 3.0, "vehicle", {"auc": 0.9})
    assert table.mean("m", "vehicle", "auc", 1.0) == pytest.approx(0.5)
    assert table.mean("m", "vehicle", "auc") == pytest.approx((0.5 + 0.9) / 2)
    assert table.count("m", "vehicle", "auc", 2.0) == (0, 1)


def test_motion_probe_tells_a_moving_forecast_from_a_static_one():
    from fovea_core.occflow.agents import AgentTracks
    from fovea_core.occflow.config import tiny_config
    from fovea_core.occflow.evaluate import MotionProbe, ground_truth, score
    from fovea_core.occflow.metrics import MetricTable
    from fovea_core.occflow.predict import constant_velocity_predictor
    from fovea_core.occflow.sample import build_sample

    cfg = tiny_config()
    frames, current = 36, 5        # a car driving +x at 2 m/s from x = -5 m at t = 0, and a parked one
    x = -5.0 + 0.2 * (np.arange(frames) - current)
    xy = np.stack([np.stack([x, np.full(frames, -3.0)], 1), np.tile([[2.0, 4.0]], (frames, 1))], 1)
    tracks = AgentTracks(xy, np.zeros((frames, 2)), np.ones((frames, 2), bool), np.array([[4.0, 2.0]] * 2),
                         np.array([0, 0]), current=current)
    sample = build_sample(cfg, [], tracks, None)

    def static(s, times):          # the t = 0 occupancy at every time: a prior that never moves
        now = ground_truth(s, cfg, 0.0)
        return [now] * len(times)

    probe = MotionProbe(cfg, min_speed=1.0)
    score([sample], {"constant velocity": constant_velocity_predictor(cfg), "static": static}, cfg, MetricTable(),
          log=lambda *a, **k: None, probe=probe)
    assert probe.vehicles == 1                                   # the parked car is not probed
    start = {n: np.concatenate(v["start"])[0] for n, v in probe.values.items()}
    true = {n: np.concatenate(v["true"])[0] for n, v in probe.values.items()}
    # waypoints 0.5 ... 3 s: the car has moved 1 ... 6 m (it is 4 m long)
    assert np.allclose(true["constant velocity"], 1.0) and np.allclose(start["constant velocity"][2:], 0.0)
    assert np.allclose(start["static"], 1.0) and np.allclose(true["static"][2:], 0.0)
    assert "static" in probe.markdown("test", cfg.waypoints)

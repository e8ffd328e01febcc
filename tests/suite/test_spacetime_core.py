"""The planner query's routing and merging (fovea_core.spacetime), without ROS."""
import numpy as np

from fovea_core.spacetime import (SOURCE_FLOW, SOURCE_NONE, SOURCE_SEMANTIC, SourceAnswer, merge_answers,
                                  route_points)


def test_points_go_by_t_and_non_finite_or_out_of_window_points_go_nowhere():
    xyz = np.zeros((7, 3), np.float32)
    xyz[5, 0] = np.nan
    t = np.array([0.0, -0.5, -0.51, 0.01, 3.0, 1.0, np.inf], np.float32)
    assert route_points(xyz, t, semantic_max_past_s=0.5, flow_horizon_s=3.0).tolist() == [
        SOURCE_SEMANTIC, SOURCE_SEMANTIC, SOURCE_NONE, SOURCE_FLOW, SOURCE_FLOW, SOURCE_NONE, SOURCE_NONE]


def test_merge_keeps_each_sources_values_and_validity_per_point():
    source = np.array([SOURCE_SEMANTIC, SOURCE_FLOW, SOURCE_SEMANTIC, SOURCE_NONE, SOURCE_FLOW], np.uint8)
    semantic = SourceAnswer(label=np.array([3, -1]), probability=np.array([0.8, 0.0], np.float32))
    flow = SourceAnswer(probability=np.array([0.4, np.nan], np.float32),
                        flow=np.array([[1.0, 2.0], [0.0, 0.0]], np.float32), point_ok=np.array([True, True]))
    m = merge_answers(source, semantic, flow)
    assert m.label.tolist() == [3, -1, -1, -1, -1]
    assert m.valid.tolist() == [True, True, False, False, False]   # -1 out of range; NaN occupancy
    assert np.allclose(m.occupancy[[1]], 0.4) and np.isnan(m.occupancy[[0, 2, 3]]).all()
    assert m.flow[1].tolist() == [1.0, 2.0] and np.isnan(m.flow[0]).all()
    flagged = merge_answers(source, semantic, SourceAnswer(probability=flow.probability, flow=flow.flow, usable=False))
    assert flagged.valid.tolist() == [True, False, False, False, False]   # an unreliable source is never valid
    status = merge_answers(source, semantic, SourceAnswer(probability=np.array([0.4, 0.5], np.float32),
                                                          point_ok=np.array([False, True])))
    assert status.valid.tolist() == [True, False, False, False, True]     # per-point status honoured
    nothing = merge_answers(source, SourceAnswer(), SourceAnswer())       # neither answered
    assert not nothing.valid.any() and (nothing.label == -1).all()

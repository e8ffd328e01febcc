"""The planner's spatio-temporal query, without ROS: route each (x, y, z, t) point to the source that can
answer it and merge the sources' answers into one per-point result.

``t`` is seconds after the query's "now": t <= 0 goes to semantic occupancy (TPV: the scene as last seen, so
only back to ``semantic_max_past_s``), t > 0 to occupancy flow (the future, up to ``flow_horizon_s``).
Points with a non-finite coordinate or a t outside both go nowhere and are not valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCE_NONE, SOURCE_SEMANTIC, SOURCE_FLOW = 0, 1, 2


def route_points(xyz: np.ndarray, t: np.ndarray, semantic_max_past_s: float, flow_horizon_s: float) -> np.ndarray:
    """(N,) uint8 source per point."""
    finite = np.isfinite(xyz).all(axis=1) & np.isfinite(t)
    source = np.full(len(t), SOURCE_NONE, np.uint8)
    source[finite & (t <= 0) & (t >= -semantic_max_past_s)] = SOURCE_SEMANTIC
    source[finite & (t > 0) & (t <= flow_horizon_s)] = SOURCE_FLOW
    return source


@dataclass
class SourceAnswer:
    """What one source returned for the points routed to it (None: it did not answer them)."""
    label: np.ndarray | None = None          # int32 (semantic)
    probability: np.ndarray | None = None    # float32 (label probability or occupancy)
    flow: np.ndarray | None = None           # (M, 2) float32 (flow)
    point_ok: np.ndarray | None = None       # (M,) bool from a per-point status, where the source gives one
    usable: bool = True                      # False when its output is flagged unreliable


@dataclass
class MergedAnswer:
    source: np.ndarray
    valid: np.ndarray
    label: np.ndarray
    label_probability: np.ndarray
    occupancy: np.ndarray
    flow: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


def merge_answers(source: np.ndarray, semantic: SourceAnswer, flow: SourceAnswer) -> MergedAnswer:
    n = len(source)
    out = MergedAnswer(source=source, valid=np.zeros(n, bool), label=np.full(n, -1, np.int32),
                       label_probability=np.full(n, np.nan, np.float32), occupancy=np.full(n, np.nan, np.float32),
                       flow=np.full((n, 2), np.nan, np.float32))
    sem = source == SOURCE_SEMANTIC
    if semantic.label is not None and semantic.probability is not None:
        out.label[sem], out.label_probability[sem] = semantic.label, semantic.probability
        out.valid[sem] = (semantic.label >= 0) & semantic.usable & _ok(semantic)
    fl = source == SOURCE_FLOW
    if flow.probability is not None:
        out.occupancy[fl] = flow.probability
        if flow.flow is not None:
            out.flow[fl] = flow.flow
        out.valid[fl] = np.isfinite(flow.probability) & flow.usable & _ok(flow)
    return out


def _ok(answer: SourceAnswer) -> np.ndarray | bool:
    return True if answer.point_ok is None else answer.point_ok

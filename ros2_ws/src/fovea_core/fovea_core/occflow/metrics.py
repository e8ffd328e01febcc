"""Occupancy-flow metrics, implemented from the Waymo Open Dataset Occupancy Flow challenge's definitions
(Waymo's own code is not used or copied).

Per waypoint k (every ``waypoint_dt`` to the horizon), per sample, on the grid's cells:
- **occupancy AUC**: area under the precision-recall curve of the predicted occupancy probabilities
  against the true occupancy (observed agents: present at t = 0), 100 thresholds evenly spaced in [0, 1],
  with the Davis & Goadrich interpolation between thresholds (precision interpolated along the number
  of predicted positives, not linearly in recall).
- **Soft-IoU**: sum(p * y) / sum(p + y - p * y).
- **flow EPE**: mean Euclidean error of the predicted reverse flow over the cells whose true flow is
  non-zero (metres over ``flow_dt``; Waymo uses grid cells over 1 s).
- **flow-grounded occupancy** AUC and Soft-IoU: the true occupancy at the previous waypoint (at k = 1 the
  current occupancy) warped by the predicted reverse flow (bilinear lookup at p + flow(p)), times the
  predicted occupancy, scored against the true occupancy at k.
Empty cases: a sample-waypoint without any true occupancy (AUC, Soft-IoU, flow-grounded) or without a
cell of non-zero true flow (EPE) is undefined there and *skipped* (counted in ``skipped``), not scored 0
as Waymo's divide-no-nan does; averages are over the defined sample-waypoints.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.ndimage import map_coordinates


def pr_auc(pred: np.ndarray, true: np.ndarray, num_thresholds: int = 100) -> float | None:
    """Interpolated precision-recall AUC; None when ``true`` has no positive."""
    pred, true = np.asarray(pred, np.float64).ravel(), np.asarray(true).ravel() > 0.5
    positives = int(true.sum())
    if positives == 0:
        return None
    eps = 1e-7
    thresholds = np.concatenate([[-eps], np.linspace(0, 1, num_thresholds)[1:-1], [1 + eps]])
    # Counts at each threshold (prediction > threshold is positive), via sorting instead of a loop.
    order = np.sort(pred[true])
    neg = np.sort(pred[~true])
    tp = positives - np.searchsorted(order, thresholds, side="right")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="right")
    fn = positives - tp
    tp, fp, fn = tp.astype(np.float64), fp.astype(np.float64), fn.astype(np.float64)
    # Between thresholds i and i+1, TP grows linearly with P = TP + FP: TP = slope * P + intercept, so the
    # precision TP / P = slope + intercept / P and d(recall) = slope dP / positives. Integrating:
    # slope * (dTP + intercept * ln(P_i / P_i+1)) / positives.
    p = tp + fp
    dtp = tp[:-1] - tp[1:]
    dp = p[:-1] - p[1:]
    slope = np.divide(dtp, dp, out=np.zeros_like(dtp), where=dp > 0)
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.divide(p[:-1], p[1:], out=np.ones_like(dtp), where=both)
    area = slope * (dtp + intercept * np.log(ratio)) / positives
    # The last segment runs down to P = 0; where P_i+1 = 0 the formula's log is undefined: the precision
    # there is the segment's constant slope (all its predicted positives share one score bin).
    area = np.where(both | (dp <= 0), area, slope * dtp / positives)
    return float(np.clip(area.sum(), 0.0, 1.0))


def soft_iou(pred: np.ndarray, true: np.ndarray) -> float | None:
    pred, true = np.asarray(pred, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    if true.sum() == 0:
        return None
    inter = float((pred * true).sum())
    union = float((pred + true - pred * true).sum())
    return inter / union if union > 0 else None


def flow_epe(pred_flow: np.ndarray, true_flow: np.ndarray) -> float | None:
    """(2, H, W) flows; mean |pred - true| over cells with non-zero true flow."""
    mask = np.abs(true_flow).sum(0) > 0
    if not mask.any():
        return None
    return float(np.linalg.norm(pred_flow[:, mask] - true_flow[:, mask], axis=0).mean())


def warp_by_flow(origin: np.ndarray, flow: np.ndarray, resolution: float) -> np.ndarray:
    """``origin`` (H, W) looked up at each cell's centre + its reverse ``flow`` (2, H, W) in metres
    (flow[0] along x = columns, flow[1] along y = rows); bilinear, zero outside the grid."""
    H, W = origin.shape
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = np.stack([rows + flow[1] / resolution, cols + flow[0] / resolution])
    return map_coordinates(origin.astype(np.float64), coords, order=1, mode="constant", cval=0.0)


def waypoint_metrics(pred_occ: np.ndarray, pred_flow: np.ndarray, true_occ: np.ndarray, true_flow: np.ndarray,
                     true_origin_occ: np.ndarray, resolution: float) -> dict[str, float | None]:
    """All metrics of one class at one waypoint: (H, W) occupancies, (2, H, W) flows."""
    grounded = warp_by_flow(true_origin_occ, pred_flow, resolution) * pred_occ
    return {"occupancy_auc": pr_auc(pred_occ, true_occ), "occupancy_soft_iou": soft_iou(pred_occ, true_occ),
            "flow_epe": flow_epe(pred_flow, true_flow),
            "flow_grounded_auc": pr_auc(np.clip(grounded, 0, 1), true_occ),
            "flow_grounded_soft_iou": soft_iou(np.clip(grounded, 0, 1), true_occ)}


class MetricTable:
    """Accumulates metrics per (method, waypoint, class) over samples; undefined values are skipped and counted."""

    def __init__(self) -> None:
        self.values: dict[tuple, list[float]] = defaultdict(list)
        self.skipped: dict[tuple, int] = defaultdict(int)

    def add(self, method: str, waypoint: float, cls: str, metrics: dict[str, float | None]) -> None:
        for name, value in metrics.items():
            key = (method, waypoint, cls, name)
            if value is None:
                self.skipped[key] += 1
            else:
                self.values[key].append(value)

    def mean(self, method: str, cls: str, name: str, waypoint: float | None = None) -> float | None:
        """Mean over samples at one waypoint, or (waypoint None) the mean of the per-waypoint means."""
        if waypoint is not None:
            v = self.values.get((method, waypoint, cls, name))
            return float(np.mean(v)) if v else None
        per = [self.mean(method, cls, name, w) for (m, w, c, n) in self.values
               if (m, c, n) == (method, cls, name)]
        per = [p for p in per if p is not None]
        return float(np.mean(per)) if per else None

    def waypoints(self, method: str) -> list[float]:
        return sorted({w for (m, w, _, _) in [*self.values, *self.skipped] if m == method})

    def count(self, method: str, cls: str, name: str, waypoint: float) -> tuple[int, int]:
        key = (method, waypoint, cls, name)
        return len(self.values.get(key, [])), self.skipped.get(key, 0)

    def to_json(self) -> dict:
        out = {}
        for (m, w, c, n), v in self.values.items():
            out.setdefault(m, {}).setdefault(c, {}).setdefault(n, {})[f"{w:g}"] = {
                "mean": float(np.mean(v)), "count": len(v), "skipped": self.skipped.get((m, w, c, n), 0)}
        return out

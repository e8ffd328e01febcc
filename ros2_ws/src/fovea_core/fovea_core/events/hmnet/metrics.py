"""Evaluation as in the paper: mIoU from a confusion matrix accumulated over the whole split; depth AbsRel,
RMSE and RMSElog over pixels with ground truth up to each range cut-off (predictions clipped to the cut-off)."""
from __future__ import annotations

import numpy as np


class SegmentationConfusion:
    def __init__(self, num_classes: int) -> None:
        self.n = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows: ground truth

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        idx = gt.astype(np.int64).reshape(-1) * self.n + pred.astype(np.int64).reshape(-1)
        self.matrix += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        return float(np.nanmean(self.iou()))

    def pixel_accuracy(self) -> float:
        return float(np.trace(self.matrix) / max(self.matrix.sum(), 1))


class DepthErrors:
    def __init__(self, cutoffs_m=(5.0, 10.0, 20.0), min_depth_m: float = 0.5) -> None:
        self.cutoffs = tuple(float(c) for c in cutoffs_m)
        self.min_depth = min_depth_m
        self.sums = {c: np.zeros(4) for c in self.cutoffs}  # count, sum abs rel, sum sq err, sum sq log err

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = pred.astype(np.float64).reshape(-1), gt.astype(np.float64).reshape(-1)
        for c in self.cutoffs:
            valid = (gt > self.min_depth) & (gt <= c)
            p, g = np.clip(pred[valid], self.min_depth, c), gt[valid]
            self.sums[c] += [valid.sum(), np.sum(np.abs(p - g) / g), np.sum((p - g) ** 2),
                             np.sum((np.log(p) - np.log(g)) ** 2)]

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for c, (n, rel, sq, sqlog) in self.sums.items():
            n = max(n, 1)
            out[f"{c:g}m"] = {"abs_rel": rel / n, "rmse": float(np.sqrt(sq / n)), "rmse_log": float(np.sqrt(sqlog / n)),
                              "pixels": int(self.sums[c][0])}
        return out

"""Semantic occupancy metrics as TPVFormer reports them: IoU per class accumulated over the whole split.

IoU_c = TP_c / (TP_c + FP_c + FN_c) = TP / (GT + Pred - TP), with counts summed over every frame before the
division (not averaged per frame). mIoU is the mean over the semantic classes (the empty class is excluded,
as in the paper's lidarseg / occupancy tables). A class with no ground truth anywhere in the split is left
out of the mean (reported as NaN) because its IoU is undefined (it could only be 0 through false positives,
and those are still counted against the classes they were confused with).
"""
from __future__ import annotations

import numpy as np


class IoUAccumulator:
    def __init__(self, num_classes: int, ignore_index: int = -1):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows: ground truth

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        prediction = np.asarray(prediction).ravel()
        target = np.asarray(target).ravel()
        keep = target != self.ignore_index
        idx = target[keep] * self.num_classes + prediction[keep]
        self.confusion += np.bincount(idx, minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def per_class_iou(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(np.float64)
        gt = self.confusion.sum(1)
        pred = self.confusion.sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = tp / (gt + pred - tp)
        iou[gt == 0] = np.nan
        return iou

    def miou(self, exclude=(0,)) -> float:
        iou = self.per_class_iou()
        keep = [c for c in range(self.num_classes) if c not in exclude and not np.isnan(iou[c])]
        return float(np.mean(iou[keep])) if keep else float("nan")

    def geometry_iou(self, empty: int = 0) -> float:
        """Occupied-vs-empty IoU (the 'IoU' column of occupancy benchmarks)."""
        c = self.confusion
        tp = c.sum() - c[empty, :].sum() - c[:, empty].sum() + c[empty, empty]
        gt = c.sum() - c[empty, :].sum()
        pred = c.sum() - c[:, empty].sum()
        return float(tp / max(gt + pred - tp, 1))

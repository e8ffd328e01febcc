"""Training losses: cross-entropy on voxels (dense supervision) + Lovász-softmax on lidar points.

Lovász-softmax (Berman et al., CVPR 2018) is a convex surrogate of the per-class Jaccard loss; the paper
uses it on points to optimise IoU directly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, ignore_empty_class: bool = False) -> torch.Tensor:
    """probs (P, C) softmax outputs, labels (P,). Mean over the classes present in ``labels``."""
    losses = []
    for c in range(probs.shape[1]):
        if ignore_empty_class and c == 0:
            continue
        fg = (labels == c).float()
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else probs.sum() * 0.0


def class_weights(frequencies: torch.Tensor) -> torch.Tensor:
    """Inverse-log-frequency weights (rare classes count more, empty space less)."""
    f = frequencies.float() / frequencies.sum().clamp(min=1)
    return 1.0 / torch.log(1.02 + f)


def tpv_loss(voxel_logits, voxel_labels, point_logits, point_labels, voxel_weights=None, lovasz_weight=1.0):
    """voxel_logits (B, C, X, Y, Z), voxel_labels (B, X, Y, Z); point_logits (B, P, C), point_labels (B, P)
    (-1 = no label / IGNORE, in both). Returns (total, parts dict)."""
    ce = F.cross_entropy(voxel_logits, voxel_labels, weight=voxel_weights, ignore_index=-1)
    valid = point_labels.reshape(-1) >= 0
    logits = point_logits.reshape(-1, point_logits.shape[-1])[valid]
    lov = lovasz_softmax(logits.softmax(-1), point_labels.reshape(-1)[valid])
    point_ce = F.cross_entropy(logits, point_labels.reshape(-1)[valid]) if valid.any() else ce * 0.0
    total = ce + lovasz_weight * lov + point_ce
    return total, {"voxel_ce": float(ce.detach()), "point_lovasz": float(lov.detach()), "point_ce": float(point_ce.detach())}

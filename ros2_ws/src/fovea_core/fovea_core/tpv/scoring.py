"""Scoring helpers shared by the evaluations: a torch model's labels for a frame, IoU tables, top views."""
from __future__ import annotations

import numpy as np
import torch

from . import data
from .frame import Frame
from .metrics import IoUAccumulator
from .scenes import CLASS_NAMES


@torch.no_grad()
def predict(model, frame: Frame, points: np.ndarray | None = None):
    """(voxel labels (X,Y,Z), voxel probabilities (C,X,Y,Z), point labels (P,) never 0, point probabilities
    over the semantic classes (P, C-1))."""
    images, ego2img = data.model_inputs(frame, model.cfg)
    pts = frame.points if points is None else points
    pts_t = torch.from_numpy(np.asarray(pts[:, :3], np.float32))[None]
    vox_logits, pt_logits = model(images, ego2img, pts_t)
    vox_prob = vox_logits[0].softmax(0).numpy()
    # A lidar return lies on a surface, so its label is the best *semantic* class (empty excluded).
    pt_prob = pt_logits[0, :, 1:].softmax(-1).numpy()
    return vox_prob.argmax(0), vox_prob, pt_prob.argmax(-1) + 1, pt_prob



def iou_table(acc: IoUAccumulator) -> dict:
    """Per-class IoU (None where the split has no ground truth of the class) and the mean of the others."""
    iou = acc.per_class_iou()
    return {"per_class_iou": {CLASS_NAMES[c]: (None if np.isnan(iou[c]) else round(float(iou[c]), 4))
                              for c in range(1, len(CLASS_NAMES))},
            "miou": round(acc.miou(), 4)}


def top_view(voxel_labels: np.ndarray) -> np.ndarray:
    """(X, Y) class of the top-most occupied voxel of each column (0 where the column is empty)."""
    occ = voxel_labels > 0
    highest = occ.shape[2] - 1 - np.argmax(occ[..., ::-1], -1)
    return np.where(occ.any(-1), np.take_along_axis(voxel_labels, highest[..., None], -1)[..., 0], 0)



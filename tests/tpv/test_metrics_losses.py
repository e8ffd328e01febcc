"""Split-accumulated IoU and the training losses."""
import numpy as np
import torch

from fovea_core.tpv.losses import class_weights, lovasz_softmax, tpv_loss
from fovea_core.tpv.metrics import IoUAccumulator


def test_iou_is_accumulated_over_the_split_not_averaged_per_frame():
    acc = IoUAccumulator(3)
    acc.update(np.array([1, 1, 0, 2]), np.array([1, 2, 0, 2]))   # class 1: TP 1, FP 1; class 2: TP 1, FN 1
    acc.update(np.array([1, 0]), np.array([1, 1]))               # class 1: TP 1, FN 1
    iou = acc.per_class_iou()
    assert iou[1] == 2 / 4       # TP 2 / (GT 3 + Pred 3 - TP 2)
    assert iou[2] == 1 / 2       # TP 1 / (GT 2 + Pred 1 - TP 1)
    assert acc.miou() == (0.5 + 0.5) / 2  # empty class 0 excluded


def test_class_without_ground_truth_is_left_out_of_the_mean():
    acc = IoUAccumulator(4)
    acc.update(np.array([1, 3, 0]), np.array([1, 1, 0]))  # class 3 predicted but never in GT; class 2 absent
    iou = acc.per_class_iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert acc.miou() == iou[1] == 0.5
    assert acc.geometry_iou() == 1.0  # both non-empty predictions sit on occupied ground truth


def test_lovasz_is_zero_for_perfect_and_positive_for_wrong_predictions():
    labels = torch.tensor([0, 1, 2, 1])
    perfect = torch.nn.functional.one_hot(labels, 3).float()
    assert float(lovasz_softmax(perfect, labels)) == 0.0
    wrong = torch.nn.functional.one_hot(torch.tensor([1, 0, 0, 2]), 3).float()
    assert float(lovasz_softmax(wrong, labels)) == 1.0


def test_tpv_loss_ignores_unlabelled_points_and_has_gradients():
    torch.manual_seed(0)
    vox = torch.randn(1, 3, 4, 4, 2, requires_grad=True)
    pts = torch.randn(1, 5, 3, requires_grad=True)
    total, parts = tpv_loss(vox, torch.randint(0, 3, (1, 4, 4, 2)), pts, torch.tensor([[1, 2, -1, -1, 0]]),
                            class_weights(torch.tensor([100, 10, 1])))
    total.backward()
    assert torch.isfinite(total) and set(parts) == {"voxel_ce", "point_lovasz", "point_ce"}
    assert pts.grad[0, 2].abs().sum() == 0 and pts.grad[0, 0].abs().sum() > 0
    w = class_weights(torch.tensor([100, 10, 1]))
    assert w[0] < w[1] < w[2]

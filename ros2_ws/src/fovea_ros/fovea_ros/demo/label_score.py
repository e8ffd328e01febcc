"""Score a stage's labelled point clouds against the ground-truth labels its bag carries (e.g. the TPV node's
``labelled_points`` against ``/pandaset/lidar/labels``).

Prediction and truth are matched by header stamp and are index-aligned (the node publishes the input cloud's
rows in their order, with a ``label`` field added). Truth rows equal to ``ignore`` have no class and count
nowhere; rows the node left at label 0 (outside its grid: no prediction) are reported, not scored. IoU per class
is accumulated over every matched cloud (the split-accumulated definition of ``fovea_core.tpv.metrics``).

Stage spec (``config/demo.yaml``)::

    label_score: {prediction: /tpv/labelled_points, truth: /pandaset/lidar/labels, classes: [empty, road, ...],
                  ignore: 255}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from fovea_core.tpv.metrics import IoUAccumulator
from fovea_ros.bag.reader import BagReader
from fovea_ros.conversions import pointcloud2_to_array


def _clouds(path: Path, topic: str) -> dict[int, np.ndarray]:
    out = {}
    with BagReader(path) as bag:
        for record in bag.messages([topic]):
            msg = deserialize_message(record.data, PointCloud2)
            out[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = pointcloud2_to_array(msg)
    return out


def score_labels(recording: Path, bag: Path, spec: dict) -> dict:
    classes = list(spec["classes"])
    ignore = int(spec.get("ignore", 255))
    truth = _clouds(bag, spec["truth"])
    predicted = _clouds(recording, spec["prediction"]) if Path(recording).exists() else {}
    acc = IoUAccumulator(len(classes))
    matched, scored, unlabelled, mismatched = 0, 0, 0, 0
    for stamp, pred in predicted.items():
        if stamp not in truth:
            continue
        gt = truth[stamp]["label"].astype(np.int64)
        if len(gt) != len(pred):
            mismatched += 1
            continue
        matched += 1
        lab = pred["label"].astype(np.int64)
        has_class = (gt != ignore) & (gt < len(classes))
        seen = has_class & (lab > 0)
        unlabelled += int((has_class & (lab == 0)).sum())
        scored += int(seen.sum())
        acc.update(lab[seen], gt[seen])
    iou = acc.per_class_iou()
    return {"prediction": spec["prediction"], "truth": spec["truth"], "clouds_in_bag": len(truth),
            "clouds_recorded": len(predicted), "clouds_scored": matched, "clouds_size_mismatch": mismatched,
            "points_scored": scored, "points_without_prediction": unlabelled,
            "miou": None if not scored else round(acc.miou(), 4),
            "per_class_iou": {classes[c]: (None if np.isnan(iou[c]) else round(float(iou[c]), 4))
                              for c in range(1, len(classes))}}

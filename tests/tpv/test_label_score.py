"""The demo's label score: labelled clouds matched to the bag's label clouds by stamp, index-aligned, IoU per
class accumulated over the clouds; ignored truth rows and rows without a prediction are not scored."""
import numpy as np
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer

from fovea_core.paths import repo_root
from fovea_core.tpv.scenes import CLASS_NAMES
from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.typestore import build_typestore, compat_types
from fovea_ros.conversions import array_to_pointcloud2, pointcloud2_to_array
from fovea_ros.demo.label_score import score_labels

BAG = repo_root() / "bags" / "pandaset_002"
SPEC = {"prediction": "/tpv/labelled_points", "truth": "/pandaset/lidar/labels", "classes": list(CLASS_NAMES),
        "ignore": 255}


def _truth_clouds():
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2
    with BagReader(BAG) as reader:
        return [deserialize_message(r.data, PointCloud2) for r in reader.messages(["/pandaset/lidar/labels"])]


def _recording(path, clouds):
    typestore = build_typestore(compat_types())
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/tpv/labelled_points", "sensor_msgs/msg/PointCloud2", typestore=typestore)
        for i, msg in enumerate(clouds):
            writer.write(conn, i + 1, serialize_message(msg))


def test_perfect_and_perturbed_predictions(tmp_path):
    truth = _truth_clouds()
    perfect, perturbed = [], []
    rng = np.random.default_rng(0)
    for msg in truth:
        gt = pointcloud2_to_array(msg)
        pred = np.zeros(len(gt), dtype=[("x", "<f4"), ("label", "<u2")])
        pred["label"] = np.where(gt["label"] == 255, 3, gt["label"])  # ignored rows: any prediction is fine
        perfect.append(array_to_pointcloud2(pred, msg.header))
        wrong = pred.copy()
        flip = rng.random(len(wrong)) < 0.3
        wrong["label"][flip & (gt["label"] == 6)] = 1  # 30 % of vehicle returns called road
        wrong["label"][:100] = 0                        # no prediction (outside the grid)
        perturbed.append(array_to_pointcloud2(wrong, msg.header))
    _recording(tmp_path / "perfect", perfect)
    _recording(tmp_path / "perturbed", perturbed[:2])
    good = score_labels(tmp_path / "perfect", BAG, SPEC)
    assert good["clouds_scored"] == 3 and good["miou"] == 1.0
    bad = score_labels(tmp_path / "perturbed", BAG, SPEC)
    assert bad["clouds_scored"] == 2 and bad["points_without_prediction"] <= 200
    assert 0.6 < bad["per_class_iou"]["vehicle"] < 0.8 and bad["per_class_iou"]["building"] == 1.0
    assert bad["per_class_iou"]["road"] < 1.0 and bad["miou"] < 1.0

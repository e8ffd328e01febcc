"""bags/pandaset_002 against the PandaSet reader: the rig the node builds from CameraInfo + /tf_static is the
reader's, the lidar comes back into base_link through TF, the label topic is index-aligned with the sweep."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, PointCloud2
from tf2_msgs.msg import TFMessage

from fovea_core.geometry.transforms import transform_points
from fovea_core.paths import repo_root
from fovea_core.tpv.pandaset import CAMERAS, PandaSetSequence
from fovea_ros.bag.reader import BagReader
from fovea_ros.conversions import camera_info_to_calibration, pointcloud2_to_array, xyz_array
from fovea_ros.tf_buffer import TfBuffer

BAG = repo_root() / "bags" / "pandaset_002"


@pytest.fixture(scope="module")
def bag():
    with BagReader(BAG) as reader:
        types = {t.name: t.msgtype for t in reader.topics}
        classes = {"sensor_msgs/msg/CameraInfo": CameraInfo, "sensor_msgs/msg/PointCloud2": PointCloud2,
                   "tf2_msgs/msg/TFMessage": TFMessage}
        messages = {}
        for record in reader.messages():
            if types[record.topic] in classes:
                messages.setdefault(record.topic, []).append(deserialize_message(record.data,
                                                                                 classes[types[record.topic]]))
    return messages


@pytest.fixture(scope="module")
def seq():
    return PandaSetSequence()


def test_rig_from_camera_info_and_tf_equals_the_readers(bag, seq):
    tf = TfBuffer()
    for msg in bag["/tf_static"]:
        tf.add_tf_message(msg, is_static=True)
    infos = [camera_info_to_calibration(bag[f"/pandaset/{c}/camera_info"][0]) for c in CAMERAS]
    size = (infos[0].width, infos[0].height)
    names, K, cam2ego = seq.rig(size)
    assert names == list(CAMERAS)
    for i, info in enumerate(infos):
        np.testing.assert_allclose(info.K, K[i], atol=1e-9)
        np.testing.assert_allclose(tf.lookup_matrix("base_link", info.frame_id), cam2ego[i], atol=1e-6)


def test_lidar_through_tf_lands_on_the_readers_base_link_points_and_labels_align(bag, seq):
    tf = TfBuffer()
    for msg in bag["/tf_static"]:
        tf.add_tf_message(msg, is_static=True)
    clouds, labels = bag["/pandaset/lidar/points"], bag["/pandaset/lidar/labels"]
    assert len(clouds) == len(labels) == 3
    for cloud_msg, label_msg in zip(clouds, labels):
        assert cloud_msg.header.stamp == label_msg.header.stamp and cloud_msg.width == label_msg.width
        stamp_s = cloud_msg.header.stamp.sec + cloud_msg.header.stamp.nanosec * 1e-9
        frame_id = int(np.argmin(np.abs(seq.lidar_times - stamp_s)))
        frame = seq.load_frame(frame_id)
        pts = transform_points(tf.lookup_matrix("base_link", cloud_msg.header.frame_id),
                               xyz_array(pointcloud2_to_array(cloud_msg)))
        keep = np.all(np.abs(frame.points[:, :2]) < 25.0, axis=1)
        np.testing.assert_allclose(pts, frame.points[keep], atol=2e-3)
        lab = pointcloud2_to_array(label_msg)
        expected = np.where(frame.point_labels[keep] < 0, 255, frame.point_labels[keep])
        np.testing.assert_array_equal(lab["label"], expected)

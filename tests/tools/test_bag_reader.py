"""BagReader: raw messages in order from sqlite3 and MCAP, and a typestore that decodes custom types."""
import numpy as np
import pytest
from bag_test_helpers import BAG_START_NS, CUSTOM_TYPE, EVENT_BAG, write_bag
from rosbags.typesys import Stores, get_typestore

from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.typestore import build_typestore, load_msg_folder, types_from_python_class


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_reader_yields_the_written_bytes_in_log_time_order(tmp_path, storage):
    written = write_bag(tmp_path / "bag", storage)
    with BagReader(tmp_path / "bag", compat_dirs=[]) as bag:
        read = list(bag.messages())
        assert bag.storage_identifier == storage
        assert bag.message_count == len(written)
        assert bag.start_ns == BAG_START_NS
        assert bag.end_ns == written[-1].log_time_ns
        assert {t.name: t.message_count for t in bag.topics} == {"/cloud": 3, "/image": 3, "/blob": 2}
    assert [(m.topic, m.msgtype, m.log_time_ns, m.data) for m in read] == \
        [(w.topic, w.msgtype, w.log_time_ns, w.data) for w in written]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_custom_type_decodes_from_the_definition_stored_in_the_bag(tmp_path, storage):
    write_bag(tmp_path / "bag", storage, clouds=0, images=0, blobs=3)
    with BagReader(tmp_path / "bag", compat_dirs=[]) as bag:
        assert CUSTOM_TYPE not in get_typestore(Stores.ROS2_JAZZY).fielddefs  # only the bag knows it
        blobs = [bag.decode(m) for m in bag.messages(["/blob"])]
    assert [b.counter for b in blobs] == [0, 1, 2]
    assert [b.note for b in blobs] == ["blob 0", "blob 1", "blob 2"]
    np.testing.assert_array_equal(blobs[2].values, [0.0, 1.0, 2.0])


def test_topic_filter_and_start_time(tmp_path):
    written = write_bag(tmp_path / "bag", "mcap")
    start = written[3].log_time_ns
    with BagReader(tmp_path / "bag", compat_dirs=[]) as bag:
        images = list(bag.messages(["/image"], start_ns=start))
        assert list(bag.messages([])) == []
    assert [m.log_time_ns for m in images] == [w.log_time_ns for w in written
                                               if w.topic == "/image" and w.log_time_ns >= start]


def test_compat_folder_types_decode_a_version_5_bag_without_stored_definitions(tmp_path):
    # Version 5 bags store no definitions; the EventPacket layout comes from a compat folder.
    msg_dir = tmp_path / "compat" / "event_camera_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    (msg_dir / "EventPacket.msg").write_text(
        "std_msgs/Header header\nuint32 height\nuint32 width\nuint64 seq\nuint64 time_base\n"
        "string encoding\nbool is_bigendian\nuint8[] events\n")
    assert "event_camera_msgs/msg/EventPacket" in load_msg_folder(tmp_path / "compat")
    with BagReader(EVENT_BAG, compat_dirs=[tmp_path / "compat"]) as bag:
        assert bag.version == 5 and bag.storage_identifier == "sqlite3"
        messages = list(bag.messages())
        packets = [bag.decode(m) for m in messages]
    assert len(packets) == 105
    assert {p.encoding for p in packets} == {"evt3"}
    stamps = [p.header.stamp.sec * 10**9 + p.header.stamp.nanosec for p in packets]
    assert stamps == sorted(stamps)
    seqs = [p.seq for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + 105))  # the driver's own counter: no packet missing
    assert all(len(p.events) > 0 and p.width > 0 and p.height > 0 for p in packets)


def test_without_a_definition_the_custom_event_type_is_not_decodable(tmp_path):
    with BagReader(EVENT_BAG, compat_dirs=[]) as bag:
        assert not bag.can_decode("event_camera_msgs/msg/EventPacket")


@pytest.mark.parametrize("msgtype", ["sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/CameraInfo",
                                     "diagnostic_msgs/msg/DiagnosticArray", "sensor_msgs/msg/Image"])
def test_definitions_from_python_classes_hash_like_the_standard_ones(msgtype):
    # The recorder describes types it only knows as Python classes; the result must be the real definition.
    described = build_typestore(types_from_python_class(msgtype))
    assert described.hash_rihs01(msgtype) == get_typestore(Stores.ROS2_JAZZY).hash_rihs01(msgtype)

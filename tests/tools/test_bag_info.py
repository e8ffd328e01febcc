"""fovea info: storage, counts, time range and frequencies of generated bags and of a real event bag."""
import json

import pytest
from bag_test_helpers import BAG_START_NS, EVENT_BAG, write_bag

from fovea_ros.bag import info


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_info_json_reports_counts_types_and_frequency(tmp_path, capsys, storage):
    written = write_bag(tmp_path / "bag", storage, clouds=5, images=4, blobs=2, period_ns=50_000_000)
    assert info.main([str(tmp_path / "bag"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["storage"] == storage
    assert report["version"] == 9
    assert report["message_count"] == len(written) == 11
    assert report["start_ns"] == BAG_START_NS
    assert report["end_ns"] == max(w.log_time_ns for w in written)
    topics = {t["name"]: t for t in report["topics"]}
    assert {name: t["count"] for name, t in topics.items()} == {"/cloud": 5, "/image": 4, "/blob": 2}
    assert topics["/cloud"]["type"] == "sensor_msgs/msg/PointCloud2"
    assert topics["/blob"]["type"] == "fovea_test_msgs/msg/Blob"
    assert all(t["serialization"] == "cdr" for t in topics.values())
    for t in topics.values():  # messages are 50 ms apart on every topic
        assert t["frequency_hz"] == pytest.approx(20.0)


def test_info_text_lists_the_real_event_bag(capsys):
    assert info.main([str(EVENT_BAG)]) == 0
    text = capsys.readouterr().out
    assert "sqlite3 (rosbag2 version 5)" in text
    line = next(line for line in text.splitlines() if "/event_camera/events" in line)
    assert "event_camera_msgs/msg/EventPacket" in line and " 105 msgs" in line
    assert "Messages:  105" in text


def test_info_of_the_event_bag_as_data():
    report = info.bag_info(EVENT_BAG)
    assert report.message_count == 105
    assert report.duration_s == pytest.approx(0.840424716, abs=1e-9)  # from the bag's metadata.yaml
    (topic,) = report.topics
    assert (topic.name, topic.count) == ("/event_camera/events", 105)
    assert topic.frequency_hz == pytest.approx(104 / 0.840424716, rel=1e-6)


def test_info_fails_cleanly_on_a_missing_bag(tmp_path, capsys):
    assert info.main([str(tmp_path / "nope")]) == 1
    assert "cannot read" in capsys.readouterr().err

"""fovea record: topics from another process into a self-describing MCAP, with honest loss accounting."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from bag_test_helpers import LARGE_CLOUD_POINTS, fovea_ros_pythonpath, make_image, make_typestore, write_bag
from rclpy.duration import Duration
from rosbags.highlevel import AnyReader
from rosbags.interfaces import MessageDefinitionFormat

from fovea_ros.bag import record
from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.replay import sigterm_as_interrupt
from fovea_ros.bag.record import SUMMARY_FILE, BagRecorder, RecordOptions
from fovea_ros.bag.ros_context import PrivateNode


def _replay_in_child_process(bag, *extra):
    env = {**os.environ, "PYTHONPATH": fovea_ros_pythonpath()}
    return subprocess.Popen([sys.executable, "-m", "fovea_ros.cli", "replay", str(bag), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_recording_a_replay_from_another_process_keeps_every_byte(tmp_path):
    written = write_bag(tmp_path / "source", "sqlite3", clouds=3, images=4, blobs=0, period_ns=40_000_000,
                        cloud_points=LARGE_CLOUD_POINTS)
    replayer = _replay_in_child_process(tmp_path / "source", "--wait-for-subscribers", "1")
    recorder = BagRecorder(tmp_path / "out", RecordOptions(topics=["/cloud", "/image"]))
    recorder.start()
    try:
        assert recorder.wait_until_subscribed(15.0)
        assert recorder.wait_for_replay_done(15.0)
    finally:
        summary = recorder.stop()
        out, err = replayer.communicate(timeout=15)
    assert replayer.returncode == 0, err

    with BagReader(tmp_path / "out", compat_dirs=[]) as bag:
        assert bag.storage_identifier == "mcap"
        recorded = list(bag.messages())
    for topic in ("/cloud", "/image"):
        assert [m.data for m in recorded if m.topic == topic] == [w.data for w in written if w.topic == topic]
    assert {m.msgtype for m in recorded if m.topic == "/cloud"} == {"sensor_msgs/msg/PointCloud2"}

    # self-describing: the MCAP carries full definitions, so a reader with no typestore of its own decodes it
    with AnyReader([tmp_path / "out"]) as any_reader:  # no default typestore: only what the bag stores
        assert all(c.msgdef.format == MessageDefinitionFormat.MSG for c in any_reader.connections)
        conn, _, raw = next(m for m in any_reader.messages() if m[0].topic == "/cloud")
        cloud_msg = any_reader.deserialize(raw, conn.msgtype)
    assert (cloud_msg.width, cloud_msg.point_step, cloud_msg.header.frame_id) == (LARGE_CLOUD_POINTS, 16, "lidar")

    report = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert report["total_written"] == 7 and report["total_dropped"] == 0
    cloud = report["topics"]["/cloud"]
    assert (cloud["received"], cloud["written"], cloud["dropped_writer_queue_full"]) == (3, 3, 0)
    assert cloud["replay_published"] == 3 and cloud["missing_vs_replay"] == 0
    assert cloud["replay_window_complete"] is True
    clouds = [w for w in written if w.topic == "/cloud"]
    assert (cloud["first_header_stamp_ns"], cloud["last_header_stamp_ns"]) == (clouds[0].stamp_ns,
                                                                               clouds[-1].stamp_ns)
    assert cloud["header_stamps_out_of_order"] == 0
    assert summary.topics["/image"].written == 4


@pytest.fixture
def image_publisher():
    """An in-test publisher of serialized Images (a private context, so it is a separate DDS participant).
    Transient-local, so the recorder (which matches its publishers' durability) gets every message even if its
    side of the matching completes after the first publish."""
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image
    ros = PrivateNode("fovea_test_image_source")
    publisher = ros.node.create_publisher(Image, "/image",
                                          QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    store = make_typestore()
    messages = [bytes(store.serialize_cdr(make_image(store, 1_000_000_000 + i, seed=i), "sensor_msgs/msg/Image"))
                for i in range(10)]
    yield publisher, messages
    ros.close()


def _wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _wait_matched(publisher):
    _wait_for(lambda: publisher.get_subscription_count() >= 1)


def test_writer_queue_overflow_is_counted_as_drops(tmp_path, image_publisher):
    publisher, messages = image_publisher
    options = RecordOptions(topics=["/image"], queue_size=2, expected_counts={"/image": 12})
    recorder = BagRecorder(tmp_path / "out", options)
    recorder.start()
    assert recorder.wait_until_subscribed(10.0)
    _wait_matched(publisher)
    with recorder._writer_lock:  # a stalled writer (slow disk): the bounded queue fills, the rest is dropped
        for data in messages:
            publisher.publish(data)
        _wait_for(lambda: recorder.received("/image") == len(messages))
    summary = recorder.stop()

    image = summary.topics["/image"]
    assert image.received == 10
    assert image.dropped_writer_queue_full > 0
    assert image.written + image.dropped_writer_queue_full == image.received
    assert image.missing_vs_expected == 2  # 12 expected by the caller, 10 arrived
    with BagReader(tmp_path / "out", compat_dirs=[]) as bag:
        assert bag.message_count == image.written
    report = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert report["topics"]["/image"]["dropped_writer_queue_full"] == image.dropped_writer_queue_full
    assert report["total_dropped"] == image.dropped_writer_queue_full


def test_max_messages_ends_the_recording(tmp_path, image_publisher):
    publisher, messages = image_publisher
    done = []
    recorder = BagRecorder(tmp_path / "out", RecordOptions(topics=["/image"], max_messages=4),
                           on_done=done.append)
    recorder.start()
    assert recorder.wait_until_subscribed(10.0)
    _wait_matched(publisher)
    for data in messages:
        publisher.publish(data)
    summary = recorder.wait(10.0)
    assert summary is not None and done == [summary]
    assert summary.stop_reason == "message limit reached"
    assert summary.topics["/image"].written == 4
    with BagReader(tmp_path / "out", compat_dirs=[]) as bag:
        assert [m.data for m in bag.messages()] == messages[:4]


def test_cli_recorder_stopped_by_ctrl_c_closes_a_complete_bag(tmp_path, image_publisher):
    publisher, messages = image_publisher
    env = {**os.environ, "PYTHONPATH": fovea_ros_pythonpath()}
    child = subprocess.Popen([sys.executable, "-m", "fovea_ros.cli", "record", str(tmp_path / "out"),
                              "--topics", "image", "--expect", "image=6"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: publisher.get_subscription_count() >= 1, 15.0)
        for data in messages[:5]:
            publisher.publish(data)
        assert publisher.wait_for_all_acked(Duration(seconds=5))
        child.send_signal(signal.SIGINT)  # how the demo and launch stop it
        out, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    report = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert report["stop_reason"] == "interrupted"
    assert report["topics"]["/image"]["written"] == 5
    assert report["topics"]["/image"]["missing_vs_expected"] == 1  # the caller expected 6
    with BagReader(tmp_path / "out", compat_dirs=[]) as bag:
        assert [m.data for m in bag.messages()] == messages[:5]


def test_sigterm_stops_the_cli_tools_like_ctrl_c_and_only_while_they_run():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)  # the handler raises here at the latest
    assert signal.getsignal(signal.SIGTERM) is previous


def test_cli_duration_without_publishers_reports_the_topic_as_not_recorded(tmp_path, capsys):
    assert record.main([str(tmp_path / "out"), "--topics", "/nobody", "--duration", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "duration reached" in text and "/nobody" in text and "no publisher was discovered" in text
    report = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert report["not_recorded"] == {"/nobody": "no publisher was discovered"}
    assert record.main([str(tmp_path / "out"), "--topics", "/x"]) == 2  # never overwrites a bag

"""fovea replay: a subscriber in another process receives every message with the recorded stamps and bytes."""
import hashlib
import threading
import time

import pytest
from bag_test_helpers import LARGE_CLOUD_POINTS, write_bag
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from fovea_ros.bag import replay
from fovea_ros.bag.qos import replay_profile
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.bag.ros_context import PrivateNode

CLOUD, IMAGE = "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/Image"


def _by_topic(received):
    topics = {}
    for r in received:
        topics.setdefault(r["topic"], []).append(r)
    return topics


def test_replay_delivers_sensor_sized_messages_byte_for_byte(tmp_path, probe_factory):
    written = write_bag(tmp_path / "bag", "sqlite3", clouds=3, images=3, blobs=2, period_ns=60_000_000,
                        cloud_points=LARGE_CLOUD_POINTS)
    replayable = [w for w in written if w.topic != "/blob"]
    probe = probe_factory({"/cloud": CLOUD, "/image": IMAGE}, expect=len(replayable))
    with BagPlayer(tmp_path / "bag", ReplayOptions(wait_for_subscribers=1)) as player:
        probe.wait_matched()
        summary = player.play()
    received = probe.result()

    assert summary.published == {"/cloud": 3, "/image": 3}
    assert "no importable Python message package" in summary.skipped["/blob"]  # reported, not fatal
    got, want = _by_topic(received), _by_topic([vars(w) for w in replayable])
    for topic in ("/cloud", "/image"):
        # in order, with the recorded header stamps, and the very bytes of the bag (no decode/re-encode)
        assert [r["stamp_ns"] for r in got[topic]] == [w["stamp_ns"] for w in want[topic]]
        assert [r["sha256"] for r in got[topic]] == [hashlib.sha256(w["data"]).hexdigest() for w in want[topic]]
    assert min(r["size"] for r in got["/cloud"]) >= 1_000_000


def test_rate_scales_the_recorded_timing(tmp_path, probe_factory):
    period_s, rate = 0.2, 2.0
    written = write_bag(tmp_path / "bag", "mcap", clouds=0, images=6, blobs=0, period_ns=int(period_s * 1e9))
    probe = probe_factory({"/image": IMAGE}, expect=6)
    options = ReplayOptions(rate=rate, wait_for_subscribers=1, record_timing=True)
    with BagPlayer(tmp_path / "bag", options) as player:
        probe.wait_matched()
        summary = player.play()
    received = probe.result()

    assert [r["stamp_ns"] for r in received] == [w.stamp_ns for w in written]
    due_ns = [due for _, _, due, _ in summary.timing]
    assert [(d - due_ns[0]) * 1e-9 for d in due_ns] == pytest.approx([i * period_s / rate for i in range(6)])
    lateness_s = [(published - due) * 1e-9 for _, _, due, published in summary.timing]
    assert all(0 <= late < 0.1 for late in lateness_s), lateness_s  # never early, never far behind
    span_s = (received[-1]["received_ns"] - received[0]["received_ns"]) * 1e-9
    assert 0.4 <= span_s <= 0.75  # 0.5 s scheduled, the recorded span being 1.0 s (loose: shared CPU)


def test_cli_topics_filter_remap_start_offset_delay_and_clock(tmp_path, probe_factory):
    written = write_bag(tmp_path / "bag", "mcap", clouds=3, images=3, blobs=1, period_ns=100_000_000)
    offset_ns = 100_000_000
    first_ns = written[0].log_time_ns + offset_ns
    images = [w for w in written if w.topic == "/image" and w.log_time_ns >= first_ns]
    probe = probe_factory({"/camera/image": IMAGE, "/cloud": CLOUD, "/clock": "rosgraph_msgs/msg/Clock"},
                          expect=len(images), linger_s=0.5, await_topics=[])
    # no hook into the CLI between creating publishers and publishing, so give the probe's side of the
    # matching a moment (--delay) after the player's side has seen the subscriptions
    code = replay.main([str(tmp_path / "bag"), "--topics", "/image", "--remap", "/image:=/camera/image",
                        "--start-offset", "0.1", "--clock", "50", "--wait-for-subscribers", "1", "--delay", "0.3"])
    got = _by_topic(probe.result())

    assert code == 0
    assert "/cloud" not in got  # filtered out
    assert [r["stamp_ns"] for r in got["/camera/image"]] == [w.stamp_ns for w in images]
    clock = [r["stamp_ns"] for r in got["/clock"]]
    assert len(clock) >= 5  # ~0.2 s of bag time at 50 Hz, plus the closing tick
    assert clock == sorted(clock)
    assert clock[0] == first_ns and clock[-1] == images[-1].log_time_ns
    assert all(first_ns <= c <= images[-1].log_time_ns for c in clock)


def test_loop_replays_until_stopped_and_reports_when_done(tmp_path):
    write_bag(tmp_path / "bag", "sqlite3", clouds=0, images=2, blobs=0, period_ns=10_000_000)
    done = threading.Event()
    reports = []
    player = BagPlayer(tmp_path / "bag", ReplayOptions(loop=True, rate=4.0),
                       on_done=lambda s: (reports.append(s), done.set()))
    try:
        player.start()
        assert not done.wait(0.3)  # a looping player keeps going
        summary = player.stop()
    finally:
        player.close()
    assert done.is_set() and reports == [summary]
    assert summary.stopped_early and summary.loops >= 2
    assert 2 * summary.loops <= summary.published["/image"] <= 2 * summary.loops + 2


def test_loop_with_nothing_after_the_start_offset_ends_instead_of_spinning(tmp_path):
    write_bag(tmp_path / "bag", "mcap", clouds=0, images=2, blobs=0, period_ns=10_000_000)
    with BagPlayer(tmp_path / "bag", ReplayOptions(loop=True, start_offset_s=5.0)) as player:
        summary = player.play()
    assert summary.published == {"/image": 0} and not summary.stopped_early


def test_publishers_offer_the_recorded_qos_on_the_graph(tmp_path):
    best_effort = _qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE)
    latched = _qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)
    write_bag(tmp_path / "bag", "sqlite3", clouds=1, images=1, blobs=0,
              offered_qos={"/image": [best_effort], "/cloud": [latched]})
    observer = PrivateNode("fovea_test_qos_observer")
    try:
        with BagPlayer(tmp_path / "bag") as player:
            assert player.replayable_topics == {"/cloud": "/cloud", "/image": "/image"}
            deadline = time.monotonic() + 10
            while not (observer.node.get_publishers_info_by_topic("/image")
                       and observer.node.get_publishers_info_by_topic("/cloud")):
                assert time.monotonic() < deadline, "replay publishers never appeared on the graph"
                time.sleep(0.02)
            image_qos = observer.node.get_publishers_info_by_topic("/image")[0].qos_profile
            cloud_qos = observer.node.get_publishers_info_by_topic("/cloud")[0].qos_profile
    finally:
        observer.close()
    assert image_qos.reliability == ReliabilityPolicy.BEST_EFFORT
    assert (cloud_qos.reliability, cloud_qos.durability) == (ReliabilityPolicy.RELIABLE,
                                                             DurabilityPolicy.TRANSIENT_LOCAL)


def test_bag_without_any_replayable_type_fails_with_the_reason(tmp_path, capsys):
    write_bag(tmp_path / "bag", "mcap", clouds=0, images=0, blobs=2)
    assert replay.main([str(tmp_path / "bag")]) == 1
    err = capsys.readouterr().err
    assert "/blob" in err and "fovea_test_msgs/msg/Blob" in err


def _qos(reliability, durability):
    forever = QosTime(sec=9223372036, nsec=854775807)
    return Qos(QosHistory.KEEP_LAST, 5, reliability, durability, forever, forever, QosLiveliness.AUTOMATIC,
               forever, False)


def test_replay_qos_follows_the_recorded_publishers():
    reliable = _qos(QosReliability.RELIABLE, QosDurability.VOLATILE)
    best_effort = _qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE)
    latched = _qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL)
    assert replay_profile("/a", [reliable], 10).reliability == ReliabilityPolicy.RELIABLE
    assert replay_profile("/a", [reliable, best_effort], 10).reliability == ReliabilityPolicy.BEST_EFFORT
    assert replay_profile("/a", [], 10).reliability == ReliabilityPolicy.RELIABLE  # nothing recorded
    assert replay_profile("/a", [latched], 10).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert replay_profile("/a", [latched, reliable], 10).durability == DurabilityPolicy.VOLATILE
    assert replay_profile("/tf_static", [best_effort], 3).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert replay_profile("/a", [reliable], 10, "best_effort").reliability == ReliabilityPolicy.BEST_EFFORT
    assert replay_profile("/a", [reliable], 42).depth == 42


@pytest.mark.parametrize("bad", [{"rate": 0.0}, {"clock_hz": -1.0}, {"reliability": "sometimes"}])
def test_invalid_options_are_refused(bad):
    with pytest.raises(ValueError):
        ReplayOptions(**bad)



def test_publishing_waits_for_the_named_node_not_just_any_subscriber(tmp_path):
    """A probe matched on the topic is not the node under test: with wait_for_nodes the replay holds until
    that node's own subscription is there."""
    from std_msgs.msg import String  # noqa: F401 (keeps the message package import cheap in the nodes below)
    from sensor_msgs.msg import Image

    write_bag(tmp_path / "bag", "mcap", clouds=0, images=2, blobs=0, period_ns=10_000_000)
    bystander, node_under_test = PrivateNode("bystander"), None
    bystander.node.create_subscription(Image, "/image", lambda m: None, 10)
    options = ReplayOptions(wait_for_subscribers=1, wait_for_nodes=["late_node"], wait_timeout_s=20.0,
                            record_timing=True)
    try:
        with BagPlayer(tmp_path / "bag", options) as player:
            player.start()
            time.sleep(1.5)
            assert player.wait(0) is None  # still waiting: the bystander is matched, late_node is not there
            node_under_test = PrivateNode("late_node")
            node_under_test.node.create_subscription(Image, "/image", lambda m: None, 10)
            created_ns = time.monotonic_ns()
            summary = player.wait(20.0)
    finally:
        bystander.close()
        if node_under_test is not None:
            node_under_test.close()
    assert summary is not None and summary.published == {"/image": 2}
    assert all(published >= created_ns for _, _, _, published in summary.timing)


def _replay_process(bag, *args):
    import signal
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "fovea_ros.cli", "replay", str(bag), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("when", ["while playing", "while starting"])
def test_ctrl_c_stops_fovea_replay_quietly(tmp_path, probe_factory, when):
    import signal

    write_bag(tmp_path / "bag", "sqlite3", clouds=2, images=2, blobs=0, period_ns=50_000_000)
    if when == "while playing":
        probe = probe_factory({"/image": IMAGE}, expect=3, linger_s=0.0, await_topics=[])
        proc = _replay_process(tmp_path / "bag", "--loop")
        probe.result()  # three images arrived: the replay is looping
    else:
        proc = _replay_process(tmp_path / "bag", "--loop")
        time.sleep(0.3)  # still importing or setting up
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert "Traceback" not in output and "Exception in thread" not in output, output
    if when == "while playing":
        assert proc.returncode == 0 and "replayed" in output and "stopped early" in output, output
    else:
        assert proc.returncode in (0, 130), output
        assert len([line for line in output.splitlines() if line.strip()]) <= 2, output

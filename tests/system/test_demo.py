"""The main job end to end: each stage's bundled bag replayed by the tool → its node graph (own process) → the
recorder (own process), one combined report. Run here: the reference stage (strict books) and the fastest
method stage (TPV occupancy: camera sets); every number is checked against the bags themselves."""
import json
import subprocess
import sys
from pathlib import Path

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, PointCloud2

from fovea_ros.bag.reader import BagReader
from fovea_ros.demo.stages import StageRun, load_stages

REPO = Path(__file__).resolve().parents[2]
STAGES = {s.name: s for s in load_stages(REPO / "config" / "demo.yaml")}


def header_stamps(bag, topic, msg_type):
    with BagReader(bag) as reader:
        return [(m.header.stamp.sec, m.header.stamp.nanosec)
                for m in (deserialize_message(raw.data, msg_type) for raw in reader.messages([topic]))]


def message_counts(bag):
    with BagReader(bag) as reader:
        return {t.name: t.message_count for t in reader.topics}


def test_demo_runs_the_reference_and_tpv_stages_and_accounts_for_every_input(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "demo", "--out", str(tmp_path),
                          "--stages", "reference", "tpv_occupancy"], cwd=REPO, capture_output=True, text=True,
                         timeout=150)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and [s["name"] for s in report["stages"]] == ["reference", "tpv_occupancy"]
    reference, tpv = report["stages"]

    # reference: strict books; each input is an output or a counted drop, every output recorded
    bag = REPO / STAGES["reference"].bag
    bag_stamps = header_stamps(bag, "/lidar/points", PointCloud2)
    lidar = reference["inputs"]["/lidar/points"]
    assert lidar["published"] == lidar["seen"] == len(bag_stamps) == message_counts(bag)["/lidar/points"]
    filtered = reference["outputs"]["/lidar/points_filtered"]
    assert filtered["seen"] + reference["node"]["drops_total"] == len(bag_stamps)
    assert filtered["recorded"] == filtered["seen"] > 0
    recorded = header_stamps(tmp_path / "reference" / "recording", "/lidar/points_filtered", PointCloud2)
    assert len(recorded) == filtered["recorded"]
    assert set(recorded) <= set(bag_stamps) and recorded == sorted(recorded)
    lat = reference["end_to_end_latency_ms"]
    assert lat["count"] == filtered["seen"] and 0 < lat["p50"] <= lat["p99"]
    assert reference["node"]["name"] == "fovea/voxel_filter" and reference["node"]["processing_time_ms"]["p50"] > 0

    # tpv_occupancy: as many camera sets as the bag holds complete ones, each an output or a counted drop
    bag = REPO / STAGES["tpv_occupancy"].bag
    counts = message_counts(bag)
    complete_sets = min(counts[t] for t in STAGES["tpv_occupancy"].inputs)
    assert tpv["messages_replayed"] == sum(counts[t] for t in STAGES["tpv_occupancy"].replay)
    assert tpv["node"]["inputs"] == complete_sets > 0
    occupancy = tpv["outputs"]["/tpv/occupancy"]
    assert occupancy["seen"] + tpv["node"]["drops_total"] == complete_sets
    assert occupancy["recorded"] == occupancy["seen"] > 0
    camera_stamps = set(header_stamps(bag, "/cam_front/image_raw", Image))
    recorded = header_stamps(tmp_path / "tpv_occupancy" / "recording", "/tpv/occupancy", PointCloud2)
    assert len(recorded) == occupancy["recorded"] and set(recorded) <= camera_stamps
    assert int(tpv["method_values"]["occupied_voxels"]) > 0
    assert all(check["ok"] for stage in report["stages"] for check in stage["checks"])

    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# Fovea demo report")
    assert "| reference | pass |" in markdown and "| tpv_occupancy | pass |" in markdown


class StubProbe:
    """What the probe would have seen: counts per topic and the node's last diagnostics."""

    def __init__(self, counts, status):
        self.counts, self._status = counts, status

    def count(self, topic):
        return self.counts.get(topic, 0)

    def status(self, name):
        return self._status

    def latencies_ms(self, input_topic, output_topic):
        return [1.0] * self.counts.get(output_topic, 0)


def test_strict_books_fail_when_an_input_is_unaccounted_for(tmp_path):
    stage = StageRun(STAGES["reference"], REPO, REPO / "config", tmp_path)
    status = {"inputs/lidar/points": "10", "drops_total": "1", "processed": "8"}
    balanced = stage.checks(StubProbe({"/lidar/points": 10, "/lidar/points_filtered": 9}, status),
                             {"/lidar/points": 10}, alive=True, graph_code=None, recorded={"/lidar/points_filtered": 9})
    assert all(c["ok"] for c in balanced)
    missing = stage.checks(StubProbe({"/lidar/points": 10, "/lidar/points_filtered": 8}, status),
                            {"/lidar/points": 10}, alive=True, graph_code=None, recorded={"/lidar/points_filtered": 8})
    assert [c["name"] for c in missing if not c["ok"]] == ["outputs + counted drops == inputs"]
    died = stage.checks(StubProbe({"/lidar/points": 10, "/lidar/points_filtered": 9}, status),
                         {"/lidar/points": 10}, alive=False, graph_code=1, recorded={"/lidar/points_filtered": 8})
    assert {c["name"] for c in died if not c["ok"]} == {"node alive to the end",
                                                        "recorded == seen on /lidar/points_filtered"}


def test_unknown_stage_is_refused():
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "demo", "--stages", "no_such_stage"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no_such_stage" in run.stderr


def test_event_books_fail_when_a_packet_is_neither_received_nor_counted_lost(tmp_path):
    stage = StageRun(STAGES["event_memory"], REPO, REPO / "config", tmp_path)
    outputs = list(STAGES["event_memory"].outputs)
    recorded = {t: 40 for t in outputs}
    counted = {"inputs/event_camera/events": "150", "lost_packets_seq": "50", "processed": "40", "drops_total": "50"}
    uncounted = {**counted, "lost_packets_seq": "49"}
    probe_counts = {"/event_camera/events": 200, **{t: 40 for t in outputs}}
    ok = stage.checks(StubProbe(probe_counts, counted), {"/event_camera/events": 200}, True, None, recorded)
    assert all(c["ok"] for c in ok)
    bad = stage.checks(StubProbe(probe_counts, uncounted), {"/event_camera/events": 200}, True, None,
                       {**recorded, outputs[0]: 39})
    assert [c["name"] for c in bad if not c["ok"]] == ["every packet received or counted lost (seq gap)",
                                                       f"every processed window recorded on {outputs[0]}"]

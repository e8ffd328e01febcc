"""The main job end to end: the bundled real-data bag replayed by the tool → the node graph (own process) →
the recorder (own process). Every input is accounted for, the outputs carry the bag's stamps, and the
recording holds them."""
import json
import subprocess
import sys
from pathlib import Path

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from fovea_ros.bag.reader import BagReader

REPO = Path(__file__).resolve().parents[2]
BAG = REPO / "bags" / "demo_lidar"


def header_stamps(bag, topic):
    with BagReader(bag) as reader:
        return [(m.header.stamp.sec, m.header.stamp.nanosec)
                for m in (deserialize_message(raw.data, PointCloud2) for raw in reader.messages([topic]))]


def test_demo_replays_the_bag_through_the_graph_and_records_every_output(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "demo", "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    bag_stamps = header_stamps(BAG, "/lidar/points")
    assert report["inputs_published"] == len(bag_stamps) == 10
    assert report["inputs_seen"] == 10
    assert report["outputs_seen"] + report["node_drops"] == 10
    assert report["outputs_recorded"] == report["outputs_seen"] >= 8
    recorded = header_stamps(tmp_path / "recording", "/lidar/points_filtered")
    assert len(recorded) == report["outputs_recorded"]
    assert set(recorded) <= set(bag_stamps) and recorded == sorted(recorded)
    lat = report["end_to_end_latency_ms"]
    assert lat["count"] == report["outputs_seen"] and 0 < lat["p50"] <= lat["p99"]
    assert "fovea/voxel_filter" in report["diagnostics"]
    assert (tmp_path / "report.md").read_text().startswith("# Fovea demo report")

"""The whole gating chain with real nodes: the stream anomaly node and the event-memory node share one event
camera; a 100 ms frame desync is injected into a simulated event + frame recording (the anomaly tests'
generator) and replayed with its recorded timing (half speed); the health node must flag the event camera
and, through the rules, event memory's output as unreliable while the anomaly node warns, naming the
anomaly node's verdict, and clear it after the desync ends."""
import importlib.util
import sys
import time
from pathlib import Path

import pytest
import yaml

from fovea_msgs.msg import Health, HealthArray, StreamAnomaly
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.nodes.health_node import health_qos

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[2]
ANOMALY_TESTS = REPO / "tests" / "anomaly"

RULES = {   # only the anomaly gating here: drops and latency budgets (load-dependent) are tested elsewhere
    "stale_after_s": 5.0, "max_drop_fraction": 1.0,
    "anomaly_sources": [{"name": "event_anomaly", "topic": "/event_anomaly/score",
                         "type": "fovea_msgs/msg/StreamAnomaly", "stale_after_s": 5.0}],
    "sensors": [{"name": "event_camera", "topic": "/event_camera/events", "anomaly": "event_anomaly"},
                {"name": "frame_camera", "topic": "/camera/image_raw", "anomaly": "event_anomaly"}],
    "outputs": [{"name": "event_memory", "node": "event_memory", "topic": "/event_memory/segmentation",
                 "inputs": ["event_camera"]},
                {"name": "stream_check", "node": "event_anomaly", "topic": "/event_anomaly/score"}],
}


def anomaly_test_module():
    """The anomaly node tests' desync bag (one generator for both suites of tests)."""
    sys.path.insert(0, str(ANOMALY_TESTS))
    spec = importlib.util.spec_from_file_location("anomaly_node_bags", ANOMALY_TESTS / "streams_bag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_frame_desync_flags_event_memory_output_through_the_anomaly_verdict(peer, start_python, tmp_path):
    bags = anomaly_test_module()
    from anomaly_helpers import simulated
    from fovea_core.events.anomaly.faults import offset

    clean = simulated(seed=21, duration_s=4.0, width=96, height=72)
    faulty, _ = offset(clean, bags.ONSET, bags.END, 100.0)
    bag = tmp_path / "desync"
    bags.write_streams_bag(faulty, bag)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))

    health, scores = [], []
    peer.node.create_subscription(HealthArray, "/fovea/health", health.append, health_qos())
    peer.node.create_subscription(StreamAnomaly, "/event_anomaly/score", scores.append, 100)
    env = {"FOVEA_ROOT": str(REPO)}
    start_python("-m", "fovea_ros.nodes.event_anomaly_node", "--ros-args", "-p", "diagnostics_period:=0.2", env=env)
    start_python("-m", "fovea_ros.nodes.event_memory_node", "--ros-args", "-p", "diagnostics_period:=0.2",
                 "-p", "input_topic:=/event_camera/events", "-p", "latency_budget_ms:=0.0", env=env)
    start_python("-m", "fovea_ros.nodes.health_node", "--ros-args", "-p", f"rules_file:={rules}",
                 "-p", "publish_period:=0.2", env=env)
    assert peer.wait_for(lambda: peer.node.count_publishers("/event_anomaly/score") >= 1
                         and peer.node.count_publishers("/event_memory/segmentation") >= 1
                         and peer.node.count_publishers("/fovea/health") >= 1, 90), "the nodes never came up"
    time.sleep(1.0)

    timeline = []   # (event_memory output level, its reasons, the latest anomaly state), sampled every 50 ms
    options = ReplayOptions(rate=0.5, wait_for_subscribers=1, wait_timeout_s=30.0, wait_for_nodes=["event_anomaly"])
    with BagPlayer(bag, options) as player:
        player.start()
        while player.wait(0.05) is None:
            if health:
                out = next((e for e in health[-1].entries if e.kind == "output" and e.name == "event_memory"), None)
                if out is not None:
                    timeline.append((out.level, list(out.reasons), scores[-1].state if scores else None))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:   # the worker may still be scoring the last frames
        out = next((e for e in health[-1].entries if e.kind == "output" and e.name == "event_memory"), None)
        timeline.append((out.level, list(out.reasons), scores[-1].state if scores else None))
        if out.level == Health.OK and scores and scores[-1].state == StreamAnomaly.OK and any(
                level == Health.UNRELIABLE for level, _, _ in timeline):
            break
        time.sleep(0.05)

    warned = [s for s in scores if s.state >= StreamAnomaly.WARN]
    assert warned, f"the anomaly node never warned ({len(scores)} scores)"
    by_verdict = [i for i, (level, reasons, _) in enumerate(timeline)
                  if level == Health.UNRELIABLE and reasons and "event_anomaly" in reasons[0]]
    assert by_verdict, f"event memory's output was never flagged by the verdict: {timeline[-5:]}"
    first = by_verdict[0]
    assert timeline[first][1][0].startswith("input event_camera unreliable: event_anomaly ")
    # while the anomaly node said OK before the fault, the output was OK (nothing else is judged here)
    assert any(level == Health.OK and state == StreamAnomaly.OK for level, _, state in timeline[:first])
    # after the desync the anomaly node is back to OK, and so is the output (until the replayed stream ends
    # and goes stale, which the rules then report as such)
    assert scores[-1].state == StreamAnomaly.OK, [s.state for s in scores[-10:]]
    assert any(level == Health.OK for level, _, _ in timeline[by_verdict[-1]:]), "never cleared after the fault"

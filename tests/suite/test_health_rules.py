"""The health core (fovea_core.health) without ROS: rules parsing and every judgement, time passed in."""
import pytest

from fovea_core.health import HealthMonitor, Level, NodeReport, RulesError, Verdict
from fovea_core.health.rules import parse_rules

RULES = {
    "stale_after_s": 3.0, "max_drop_fraction": 0.2, "drop_window_s": 10.0,
    "anomaly_sources": [{"name": "event_anomaly", "topic": "/event_anomaly/score", "type": "x/msg/Y"}],
    "sensors": [
        {"name": "event_camera", "topic": "/event_camera/events", "anomaly": "event_anomaly", "min_rate_hz": 50},
        {"name": "lidar", "topic": "/lidar/points", "min_rate_hz": 5.0, "stale_after_s": 2.0},
    ],
    "outputs": [
        {"name": "filtered", "node": "voxel_filter", "topic": "/lidar/points_filtered", "inputs": ["lidar"]},
        {"name": "odometry", "node": "registration", "topic": "/registration/odom",
         "inputs": [{"name": "filtered", "cap": "degraded"}]},
        {"name": "event_memory", "node": "event_memory", "topic": "/event_memory/segmentation",
         "inputs": ["event_camera"]},
    ],
}


def report(node, inputs=None, rates=None, level=0, message="ok", **values):
    vals = {"lifecycle_state": "active", "over_budget": "false", **{k: str(v) for k, v in values.items()}}
    vals.update({f"inputs/{k}": str(v) for k, v in (inputs or {}).items()})
    vals.update({f"input_rate_hz/{k}": str(v) for k, v in (rates or {}).items()})
    return NodeReport(f"fovea/{node}", level, message, vals)


def levels(entries):
    """name -> level; nodes as 'node:<name>' (a node and its output may share a name)."""
    return {(f"node:{e.name}" if e.kind == "node" else e.name): e.level for e in entries}


def reasons(entries, name):
    return next(e.judgement.reasons for e in entries if (f"node:{e.name}" if e.kind == "node" else e.name) == name)


def healthy(monitor, t, n):
    monitor.on_diagnostics(report("voxel_filter", {"lidar/points": n}, {"lidar/points": 10.0}), t)
    monitor.on_diagnostics(report("registration", {"lidar/points": n}, {"lidar/points": 10.0}), t)
    monitor.on_diagnostics(report("event_memory", {"event_camera/events": 20 * n},
                                  {"event_camera/events": 200.0}), t)
    monitor.on_verdict(Verdict("event_anomaly", "ok", score=0.1, threshold=1.0), t)


def test_everything_is_unknown_until_heard_then_ok():
    monitor = HealthMonitor(parse_rules(RULES))
    assert set(levels(monitor.evaluate(0.0)).values()) == {Level.UNKNOWN}
    healthy(monitor, 1.0, 10)
    assert set(levels(monitor.evaluate(1.5)).values()) == {Level.OK}


def test_a_silent_sensor_makes_its_outputs_unreliable_and_the_cap_limits_the_next():
    monitor = HealthMonitor(parse_rules(RULES))
    for t in range(5):
        healthy(monitor, float(t), 10 + t)
    monitor.on_diagnostics(report("voxel_filter", {"lidar/points": 14}, {"lidar/points": 0.0}), 6.0)
    monitor.on_diagnostics(report("registration", {"lidar/points": 14}, {"lidar/points": 0.0}), 6.0)
    entries = monitor.evaluate(6.5)           # last new lidar count at t=4: 2.5 s > the sensor's 2 s
    got = levels(entries)
    assert got["lidar"] == Level.UNRELIABLE and got["filtered"] == Level.UNRELIABLE
    assert got["odometry"] == Level.DEGRADED  # capped: its input 'filtered' can only degrade it
    assert got["event_memory"] == Level.OK
    assert "no new message on /lidar/points for 2.5 s" in reasons(entries, "lidar")[0]
    assert reasons(entries, "filtered")[0].startswith("input lidar unreliable: no new message")


def test_anomaly_verdict_flags_the_sensor_and_its_dependent_output_then_clears():
    monitor = HealthMonitor(parse_rules(RULES))
    healthy(monitor, 0.0, 10)
    healthy(monitor, 1.0, 11)
    monitor.on_verdict(Verdict("event_anomaly", "warn", score=3.2, threshold=1.0, fault="offset",
                               offset_ms=40.0), 1.5)
    entries = monitor.evaluate(1.6)
    assert levels(entries)["event_camera"] == Level.UNRELIABLE
    assert levels(entries)["event_memory"] == Level.UNRELIABLE
    assert levels(entries)["filtered"] == Level.OK
    assert reasons(entries, "event_memory")[0] == ("input event_camera unreliable: event_anomaly warn: offset, "
                                                   "offset +40 ms, score 3.2 vs threshold 1")
    monitor.on_verdict(Verdict("event_anomaly", "ok", score=0.2, threshold=1.0), 2.0)
    assert levels(monitor.evaluate(2.1))["event_memory"] == Level.OK
    monitor.on_verdict(Verdict("event_anomaly", "starting"), 2.2)
    assert levels(monitor.evaluate(2.3))["event_memory"] == Level.UNKNOWN
    # verdicts stop: the stream is unchecked, not known bad
    healthy_without_verdict = report("event_memory", {"event_camera/events": 999}, {"event_camera/events": 200.0})
    monitor.on_diagnostics(healthy_without_verdict, 6.0)
    entries = monitor.evaluate(6.0)
    assert levels(entries)["event_camera"] == Level.DEGRADED
    assert "no verdict from event_anomaly for 3.8 s" in reasons(entries, "event_camera")[0]


def test_node_rules_over_budget_drops_inactive_error_and_silence():
    monitor = HealthMonitor(parse_rules(RULES))
    healthy(monitor, 0.0, 10)
    monitor.on_diagnostics(report("voxel_filter", {"lidar/points": 20}, {"lidar/points": 10.0},
                                  over_budget="true", processing_time_p99_ms="80.0", latency_budget_ms="50"), 1.0)
    entries = monitor.evaluate(1.0)
    assert levels(entries)["node:voxel_filter"] == Level.DEGRADED and levels(entries)["filtered"] == Level.DEGRADED
    assert reasons(entries, "filtered") == ["node voxel_filter: processing p99 80.0 ms over its 50 ms budget"]

    # 30 of 40 work items (10 processed + 30 dropped) in the window: degraded, with the main reason; points
    # removed from clouds that were kept are parts of inputs, not work items
    monitor.on_diagnostics(report("registration", {"lidar/points": 10}, {"lidar/points": 10.0}, processed=0), 1.5)
    monitor.on_diagnostics(report("registration", {"lidar/points": 50}, {"lidar/points": 10.0}, processed=10,
                                  **{"drops/superseded: worker busy": 30, "drops/non-finite points removed": 900}),
                           2.0)
    entries = monitor.evaluate(2.0)
    assert levels(entries)["node:registration"] == Level.DEGRADED
    assert "dropped 30 of 40 work items" in reasons(entries, "node:registration")[0]
    assert "superseded: worker busy" in reasons(entries, "node:registration")[0]
    monitor.on_diagnostics(report("voxel_filter", {"lidar/points": 60}, {"lidar/points": 10.0}, processed=100,
                                  **{"drops/non-finite points removed": 5000}), 2.0)
    assert levels(monitor.evaluate(2.0))["node:voxel_filter"] == Level.OK

    monitor.on_diagnostics(report("event_memory", {"event_camera/events": 400}, lifecycle_state="inactive"), 2.0)
    assert levels(monitor.evaluate(2.0))["event_memory"] == Level.UNRELIABLE
    monitor.on_diagnostics(report("event_memory", level=2, message="unconfigured: parameter 'model_path': no file",
                                  lifecycle_state="unconfigured"), 2.5)
    entries = monitor.evaluate(2.5)
    assert reasons(entries, "event_memory")[0] == "node event_memory: unconfigured: parameter 'model_path': no file"
    assert levels(monitor.evaluate(10.0))["node:voxel_filter"] == Level.UNRELIABLE  # silent 9 s: node down


def test_verdict_levels_come_from_the_rules():
    rules = dict(RULES, anomaly_sources=[dict(RULES["anomaly_sources"][0], levels={"warn": "degraded"})])
    monitor = HealthMonitor(parse_rules(rules))
    healthy(monitor, 0.0, 10)
    monitor.on_verdict(Verdict("event_anomaly", "warn", fault="frozen"), 0.5)
    assert levels(monitor.evaluate(0.5))["event_memory"] == Level.DEGRADED
    monitor.on_verdict(Verdict("event_anomaly", "error", fault="frame_stall"), 0.6)
    assert levels(monitor.evaluate(0.6))["event_memory"] == Level.UNRELIABLE


def test_a_slow_sensor_is_degraded():
    monitor = HealthMonitor(parse_rules(RULES))
    healthy(monitor, 0.0, 10)
    monitor.on_diagnostics(report("voxel_filter", {"lidar/points": 12}, {"lidar/points": 2.0}), 1.0)
    monitor.on_diagnostics(report("registration", {"lidar/points": 12}, {"lidar/points": 2.0}), 1.0)
    entries = monitor.evaluate(1.0)
    assert levels(entries)["lidar"] == Level.DEGRADED
    assert reasons(entries, "lidar") == ["2.0 Hz on /lidar/points, below 5 Hz"]


@pytest.mark.parametrize("change, message", [
    (lambda r: r["outputs"][0].update(inputs=["radar"]), "input 'radar' is neither a sensor nor an output"),
    (lambda r: r["outputs"][0].update(inputs=["odometry"]), "depends on itself"),
    (lambda r: r["sensors"][0].update(anomaly="nope"), "anomaly source 'nope' is not in anomaly_sources"),
    (lambda r: r["sensors"][1].update(min_rate=3), "unknown key(s) ['min_rate']"),
    (lambda r: r["outputs"][1]["inputs"][0].update(cap="bad"), "is not a health level"),
    (lambda r: r["outputs"].append(dict(r["outputs"][0])), "'filtered' is named twice"),
    (lambda r: r.update(stale_after_s=-1), "stale_after_s: expected a positive number"),
    (lambda r: r["anomaly_sources"][0].update(levels={"warn": "degraded", "bad": "ok"}), "'bad' is not a verdict"),
])
def test_invalid_rules_name_what_is_wrong(change, message):
    import copy
    rules = copy.deepcopy(RULES)
    change(rules)
    with pytest.raises(RulesError, match=None) as err:
        parse_rules(rules)
    assert message in str(err.value)

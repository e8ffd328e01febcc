"""``fovea demo``: the main job. Replay the bundled bag through the suite, record the outputs, write a report.

As on a robot, the node graph (``fovea run config/demo_graph.yaml``) and the recorder (``fovea record``) run
as their own processes; this process replays the bag (the ``fovea replay`` player) and also listens to the input and output
topics to measure the pipeline's end-to-end latency (input received → output received, matched by header
stamp: outputs carry their input's stamp) and keeps the nodes' last /diagnostics.

Writes into ``--out`` (default ``out/demo``): ``recording/`` (MCAP of the outputs and diagnostics),
``report.md`` and ``report.json`` (message counts, latency p50/p99, node processing time, drops).
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fovea_ros.bag.replay import BagPlayer, ReplayOptions

DEFAULT_BAG = "bags/demo_lidar"
DEFAULT_GRAPH = "config/demo_graph.yaml"
INPUT_TOPIC = "/lidar/points"
OUTPUT_TOPIC = "/lidar/points_filtered"


class Probe:
    """Listens to the pipeline's input and output and to /diagnostics in this process."""

    def __init__(self, input_topic: str, output_topic: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import PointCloud2

        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node("fovea_demo_probe", context=self._context)
        self.input_seen: dict[int, float] = {}
        self.output_seen: dict[int, float] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        stamp = lambda m: m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec  # noqa: E731
        self.node.create_subscription(PointCloud2, input_topic,
                                      lambda m: self.input_seen.setdefault(stamp(m), time.monotonic()),
                                      qos_profile_sensor_data)
        self.node.create_subscription(PointCloud2, output_topic,
                                      lambda m: self.output_seen.setdefault(stamp(m), time.monotonic()),
                                      qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {"level": int.from_bytes(status.level, "little")
                                             if isinstance(status.level, bytes) else int(status.level),
                                             "message": status.message,
                                             **{kv.key: kv.value for kv in status.values}}

    def node_drops(self) -> int:
        return sum(int(values.get("drops_total", 0)) for values in self.diagnostics.values())

    def latencies_ms(self) -> list[float]:
        return [(self.output_seen[s] - self.input_seen[s]) * 1e3 for s in self.output_seen if s in self.input_seen]

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()
        self._context.try_shutdown()


def _fovea(*args: str) -> list[str]:
    return [sys.executable, "-m", "fovea_ros.cli", *args]


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lat = report["end_to_end_latency_ms"]
    lines = [
        "# Fovea demo report", "",
        f"Bag: `{report['bag']}` · graph: `{report['graph']}` · replay rate {report['rate']}", "",
        "| topic | messages |", "|---|---|",
        f"| {report['input_topic']} (published by replay) | {report['inputs_published']} |",
        f"| {report['input_topic']} (seen by the probe) | {report['inputs_seen']} |",
        f"| {report['output_topic']} (seen by the probe) | {report['outputs_seen']} |",
        f"| {report['output_topic']} (recorded) | {report['outputs_recorded']} |",
        f"| inputs dropped by the nodes (counted, see diagnostics) | {report['node_drops']} |", "",
        f"End-to-end latency (input received → output received, same stamp): p50 {lat['p50']} ms, "
        f"p99 {lat['p99']} ms over {lat['count']} messages.", "",
        "Nodes (last /diagnostics):", "",
    ]
    for name, values in report["diagnostics"].items():
        lines.append(f"- `{name}`: processing p50 {values.get('processing_time_p50_ms')} ms, "
                     f"p99 {values.get('processing_time_p99_ms')} ms, processed {values.get('processed')}, "
                     f"drops {values.get('drops_total')} — {values.get('message')}")
    lines += ["", f"Recording: `{report['recording']}`"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", default=DEFAULT_BAG)
    parser.add_argument("--graph", default=DEFAULT_GRAPH)
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--rate", type=float, default=1.0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recording = out / "recording"
    if recording.exists():
        import shutil
        shutil.rmtree(recording)

    probe = Probe(INPUT_TOPIC, OUTPUT_TOPIC)
    graph = subprocess.Popen(_fovea("run", args.graph))
    recorder = subprocess.Popen(_fovea("record", str(recording), "--topics", OUTPUT_TOPIC, "/diagnostics"))
    try:
        # start only when the recorder listens to the output and the node and the probe to the input, so
        # nothing is published into the void
        deadline = time.monotonic() + 30.0
        while probe.node.count_subscribers(OUTPUT_TOPIC) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        options = ReplayOptions(rate=args.rate, wait_for_subscribers=2, wait_timeout_s=30.0, topics=[INPUT_TOPIC])
        with BagPlayer(args.bag, options) as player:
            replay = player.play()
        print(replay.format())
        published = replay.published.get(INPUT_TOPIC, 0)
        # every input ends as an output or as a counted drop; wait until the books balance (or time out)
        deadline = time.monotonic() + 20.0
        while len(probe.output_seen) + probe.node_drops() < published and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # one more diagnostics period, so the report sees the last message processed
    finally:
        record_code = _stop(recorder)
        _stop(graph)
        probe.close()
    summary_path = recording / "record_summary.json"
    recorded = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    latencies = probe.latencies_ms()
    report = {
        "bag": args.bag, "graph": args.graph, "rate": args.rate,
        "input_topic": INPUT_TOPIC, "output_topic": OUTPUT_TOPIC,
        "inputs_published": published, "inputs_seen": len(probe.input_seen), "outputs_seen": len(probe.output_seen),
        "node_drops": probe.node_drops(),
        "outputs_recorded": recorded.get("topics", {}).get(OUTPUT_TOPIC, {}).get("written", 0),
        "recorder_exit_code": record_code,
        "end_to_end_latency_ms": {
            "count": len(latencies),
            "p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "p99": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
        },
        "diagnostics": probe.diagnostics,
        "recording": str(recording),
    }
    write_report(out, report)
    print((out / "report.md").read_text())
    # nothing may vanish: each input is an output or a drop the node counted, and every output is recorded
    balanced = report["outputs_seen"] + report["node_drops"] == published and \
        report["outputs_recorded"] == report["outputs_seen"] and published > 0
    if not balanced:
        print(f"fovea demo: {published} inputs, {report['outputs_seen']} outputs seen, {report['node_drops']} "
              f"counted drops, {report['outputs_recorded']} outputs recorded: messages are unaccounted for",
              file=sys.stderr)
    return 0 if balanced else 1


if __name__ == "__main__":
    sys.exit(main())

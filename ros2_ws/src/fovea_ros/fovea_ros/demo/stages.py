"""One demo stage: a bag replayed into a node graph, its outputs recorded, the books checked.

The graph (``fovea run GRAPH``) and the recorder (``fovea record``) run as their own processes, as on a
robot; this process replays the bag (:class:`fovea_ros.bag.replay.BagPlayer`) and listens with a
:class:`~fovea_ros.demo.probe.Probe`. The accounting rules are described in ``config/demo.yaml``.

Sensor-data QoS is best effort: the middleware may drop a message by design, between the replay and the node
as between the node and the recorder. The books therefore keep each hop apart. For every input topic the
replay says what it sent, the node what it received and how many its publisher's sequence numbers show lost
before its callback (``lost_before_callback``); the rest is loss nobody could see yet (the stream's tail).
Middleware loss is reported, and fails the stage only beyond :data:`MAX_MIDDLEWARE_LOSS` of a topic (a
broken transport, not a dropped sample). What the node received must balance exactly against its own
counts (outputs it published + drops it counted), and what the recorder wrote against what the node
published. Nothing starts before the probe is matched with the node's publishers and the node's
subscriptions with the replay's (:class:`~fovea_ros.bag.replay.ReplayOptions` ``wait_for_nodes``).
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.demo.probe import Probe

ACCOUNTING_RULES = ("strict", "camera_sets", "windows")
STARTUP_TIMEOUT_S = 90.0   # node start-up (model loading) on a busy CPU
DRAIN_TIMEOUT_S = 60.0     # after the replay, for the node to work off its backlog
QUIET_S = 5.0              # nothing new for this long with an empty backlog: the node is done
MAX_MIDDLEWARE_LOSS = 0.25  # of a topic's messages; beyond this the transport is broken, not merely best effort
PER_ITEM_DROPS = ("non-finite points removed",)  # drops that count points inside an input, not inputs


@dataclass
class StageSpec:
    name: str
    bag: str
    graph: str
    replay: list[str]
    inputs: list[str]
    outputs: dict[str, str]
    node: str
    node_inputs: str
    accounting: str
    description: str = ""
    latency_input: str | None = None
    method_values: list[str] = field(default_factory=list)
    label_score: dict | None = None  # labelled outputs scored against the bag's labels (demo/label_score.py)

    def __post_init__(self) -> None:
        if self.accounting not in ACCOUNTING_RULES:
            raise ValueError(f"stage {self.name}: accounting {self.accounting!r} is not one of {ACCOUNTING_RULES}")
        if not self.outputs or not set(self.inputs) <= set(self.replay):
            raise ValueError(f"stage {self.name}: needs outputs, and its inputs must be replayed topics")

    @property
    def primary_output(self) -> str:
        return next(iter(self.outputs))


def load_stages(path: str | Path) -> list[StageSpec]:
    with open(path, encoding="utf-8") as f:
        entries = (yaml.safe_load(f) or {}).get("stages") or []
    stages = [StageSpec(**entry) for entry in entries]
    if not stages:
        raise ValueError(f"{path}: no stages")
    return stages


def _fovea(*args: str) -> list[str]:
    return [sys.executable, "-m", "fovea_ros.cli", *args]


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _int(values: dict[str, str], key: str) -> int:
    try:
        return int(float(values.get(key, 0)))
    except ValueError:
        return 0


def _float(values: dict[str, str], key: str) -> float | None:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"count": 0, "p50": None, "p99": None}
    return {"count": len(samples), "p50": round(float(np.percentile(samples, 50)), 2),
            "p99": round(float(np.percentile(samples, 99)), 2)}


class StageRun:
    """Runs one stage and returns its report section (a dict); ``passed`` says whether its books balance."""

    def __init__(self, spec: StageSpec, repo: Path, config: Path, out: Path, rate: float = 1.0,
                 bag_types: dict[str, str] | None = None) -> None:
        """``bag_types`` (topic -> type) instead of the bag's own: the suite stage replays several bags."""
        self.spec, self.repo, self.config, self.rate = spec, repo, config, rate
        self.out = out / spec.name
        self.recording = self.out / "recording"
        if bag_types is None:
            with BagReader(repo / spec.bag) as bag:
                bag_types = {t.name: t.msgtype for t in bag.topics}
        self.bag_types = bag_types
        missing = set(spec.replay) - set(self.bag_types)
        if missing:
            raise ValueError(f"stage {spec.name}: {spec.bag} has no topics {sorted(missing)}")

    # ---- the run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        spec, started = self.spec, time.monotonic()
        if self.recording.exists():
            shutil.rmtree(self.recording)
        self.out.mkdir(parents=True, exist_ok=True)
        probe = Probe({**{t: self.bag_types[t] for t in spec.replay}, **spec.outputs})
        with open(self.out / "graph.log", "w") as graph_log, open(self.out / "recorder.log", "w") as record_log:
            graph = subprocess.Popen(_fovea("run", str(self.config / spec.graph)), cwd=self.repo,
                                     stdout=graph_log, stderr=subprocess.STDOUT)
            recorder = subprocess.Popen(_fovea("record", str(self.recording), "--topics", *spec.outputs,
                                               "/diagnostics"), cwd=self.repo,
                                        stdout=record_log, stderr=subprocess.STDOUT)
            published: dict[str, int] = {}
            try:
                if self._wait_for_graph(probe, graph):
                    published = self._replay()
                    self._wait_for_node(probe, graph, published)
                    time.sleep(1.5)  # one more diagnostics period: the report sees the last message processed
                alive = graph.poll() is None
            finally:
                _stop(recorder)
                graph_code = _stop(graph)
                probe.close()
        return self._section(probe, published, alive, graph_code, time.monotonic() - started)

    def _wait_for_graph(self, probe: Probe, graph: subprocess.Popen) -> bool:
        """Start only when the recorder and the probe listen to every output and the probe is matched with
        the node's publisher of each (seeing the recorder's subscription is not enough: on a busy machine
        the probe once saw none of the 10 outputs the recorder wrote, still unmatched when they passed)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and graph.poll() is None:
            if all(probe.subscribers(t) >= 2 and probe.matched(t) >= 1 for t in self.spec.outputs):
                return True
            time.sleep(0.1)
        return False

    @property
    def node_name(self) -> str:
        return self.spec.node.split("/")[-1]  # "fovea/voxel_filter" -> the node "voxel_filter"

    def _replay(self) -> dict[str, int]:
        # every replayed topic has two subscribers when the node listens: the node and the probe; and the
        # node's own subscription must be there (the count alone could be the probe and someone else)
        options = ReplayOptions(rate=self.rate, wait_for_subscribers=2, wait_for_nodes=[self.node_name],
                                wait_timeout_s=30.0, topics=self.spec.replay)
        with BagPlayer(self.repo / self.spec.bag, options) as player:
            summary = player.play()
        print(summary.format(), flush=True)
        return dict(summary.published)

    def _wait_for_node(self, probe: Probe, graph: subprocess.Popen, published: dict[str, int]) -> None:
        """Until the books balance, or the node has been idle (empty backlog, nothing new) for QUIET_S."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        last, last_change = None, time.monotonic()
        while time.monotonic() < deadline and graph.poll() is None:
            status = probe.status(self.spec.node)
            if status.get("backlog") == "0" and all(
                    check["ok"] for check in self.checks(probe, published, alive=True, graph_code=0)):
                return
            now_state = (tuple(probe.count(t) for t in self.spec.outputs), status.get("processed"),
                         status.get("drops_total"), status.get("backlog"))
            if now_state != last:
                last, last_change = now_state, time.monotonic()
            elif status.get("backlog") == "0" and time.monotonic() - last_change > QUIET_S:
                return
            time.sleep(0.1)

    # ---- the books ---------------------------------------------------------------------------------
    def _recorded(self) -> dict[str, int]:
        path = self.recording / "record_summary.json"
        topics = json.loads(path.read_text()).get("topics", {}) if path.exists() else {}
        return {t: int(topics.get(t, {}).get("written", 0)) for t in self.spec.outputs}

    def middleware(self, status: dict[str, str], published: dict[str, int]) -> dict[str, dict[str, int]]:
        """Per input topic: sent by the replay, received by the node, counted lost before its callback by
        the node (publisher sequence numbers), and the rest nobody has seen (the stream's tail)."""
        out = {}
        for topic in self.spec.inputs:
            key = topic.lstrip("/")
            sent = published.get(topic, 0)
            received = _int(status, f"inputs/{key}")
            counted = _int(status, f"lost_before_callback/{key}")
            out[topic] = {"sent": sent, "received": received, "counted_lost": counted,
                          "unseen": max(sent - received - counted, 0)}
        return out

    def checks(self, probe: Probe, published: dict[str, int], alive: bool, graph_code: int | None,
               recorded: dict[str, int] | None = None) -> list[dict]:
        spec = self.spec
        status = probe.status(spec.node)
        seen = probe.count(spec.primary_output)
        drops = sum(int(v) for k, v in status.items()
                    if k.startswith("drops/") and k.removeprefix("drops/") not in PER_ITEM_DROPS)
        node_inputs = _int(status, spec.node_inputs)
        published_out = {t: _int(status, f"outputs/{t.lstrip('/')}") for t in spec.outputs}
        replayed = sum(published.get(t, 0) for t in spec.inputs)
        hops = self.middleware(status, published)
        checks = [("inputs replayed", replayed > 0, f"{replayed} messages on {len(spec.inputs)} input topic(s)"),
                  ("node alive to the end", alive, "graph process still running before it was stopped"
                   if alive else f"graph process exited early (code {graph_code}), see graph.log"),
                  ("node reported /diagnostics", bool(status), spec.node),
                  ("at least one output", seen > 0, f"{seen} on {spec.primary_output}")]
        for topic, hop in hops.items():
            lost = hop["sent"] - hop["received"]
            checks.append((f"middleware loss on {topic} within {MAX_MIDDLEWARE_LOSS:.0%}",
                           0 <= lost <= MAX_MIDDLEWARE_LOSS * hop["sent"] and hop["counted_lost"] <= lost,
                           f"{hop['received']} of {hop['sent']} received; {hop['counted_lost']} counted lost before "
                           f"the callback by the node, {hop['unseen']} unseen (tail)"))
        primary = published_out[spec.primary_output]
        if spec.accounting == "strict":
            received = hops[spec.inputs[0]]["received"]
            checks.append(("outputs + counted drops == inputs received", primary + drops == received,
                           f"{primary} published + {drops} dropped vs {received} received"))
            if spec.latency_input:
                inputs = self._input_stamps()
                outputs = probe.stamps(spec.primary_output)
                checks.append(("every output carries an input's stamp", outputs <= inputs,
                               f"{len(outputs & inputs)} of {len(outputs)} seen outputs carry a stamp of the bag's "
                               f"{spec.latency_input}"))
        elif spec.accounting == "camera_sets":
            complete_sets = min(published.get(t, 0) for t in spec.inputs)
            worst_member_loss = max(h["sent"] - h["received"] for h in hops.values())
            set_drops = sum(int(v) for k, v in status.items() if k.startswith("drops/")
                            and not k.startswith(("drops/sync: ", "drops/rejected transform", "drops/invalid ")))
            checks += [("every complete set formed or lost a member in the middleware",
                        node_inputs <= complete_sets <= node_inputs + worst_member_loss,
                        f"{node_inputs} sets of {complete_sets} in the bag; {worst_member_loss} member(s) lost at "
                        "most on one input"),
                       ("outputs + counted drops == sets", primary + set_drops == node_inputs,
                        f"{primary} published + {set_drops} dropped vs {node_inputs}")]
        else:  # windows: packets the middleware lost are known to the node by their seq gaps
            sent = published.get(spec.inputs[0], 0)
            lost = _int(status, "lost_packets_seq")
            checks.append(("every packet received, counted lost (seq gap) or lost at the tail",
                           node_inputs + lost <= sent and sent - node_inputs - lost <= MAX_MIDDLEWARE_LOSS * sent,
                           f"{node_inputs} received + {lost} counted lost vs {sent}"))
            processed = _int(status, "processed")
            checks += [(f"every processed window published on {t}", published_out[t] == processed,
                        f"{published_out[t]}/{processed}") for t in spec.outputs]
        if recorded is not None:
            for t in spec.outputs:
                n = published_out[t]
                checks.append((f"recorded what the node published on {t}, less middleware loss",
                               0 < recorded[t] <= n and n - recorded[t] <= MAX_MIDDLEWARE_LOSS * n,
                               f"{recorded[t]} recorded of {n} published ({probe.count(t)} seen by the probe)"))
        return [{"name": name, "ok": bool(ok), "detail": detail} for name, ok, detail in checks]

    def _input_stamps(self) -> set[int]:
        """Header stamps of the bag's latency input (what an output's stamp must be one of)."""
        from rclpy.serialization import deserialize_message

        from fovea_ros.bag.typestore import import_message_class

        if not hasattr(self, "_stamps_cache"):
            topic = self.spec.latency_input
            msg_class = import_message_class(self.bag_types[topic])
            with BagReader(self.repo / self.spec.bag) as bag:
                self._stamps_cache = {m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
                                      for m in (deserialize_message(r.data, msg_class) for r in bag.messages([topic]))}
        return self._stamps_cache

    def _section(self, probe: Probe, published: dict[str, int], alive: bool, graph_code: int | None,
                 wall_s: float) -> dict:
        spec = self.spec
        status = probe.status(spec.node)
        recorded = self._recorded()
        checks = self.checks(probe, published, alive, graph_code, recorded)
        latency = (_percentiles(probe.latencies_ms(spec.latency_input, spec.primary_output))
                   if spec.latency_input else None)
        method_values = {k: status[k] for k in spec.method_values if k in status}
        if spec.label_score:
            from fovea_ros.demo.label_score import score_labels
            score = score_labels(self.recording, self.repo / spec.bag, spec.label_score)
            method_values["label_miou"] = score["miou"]
            method_values["label_iou_per_class"] = score["per_class_iou"]
            checks.append({"name": f"{score['prediction']} scored against the bag's {score['truth']}",
                           "ok": score["clouds_scored"] > 0 and not score["clouds_size_mismatch"],
                           "detail": f"mIoU {score['miou']} over {score['points_scored']} labelled returns in "
                                     f"{score['clouds_scored']} of {score['clouds_in_bag']} clouds "
                                     f"({score['points_without_prediction']} outside the node's grid)"})
        return {
            "name": spec.name, "description": spec.description, "bag": spec.bag, "graph": f"config/{spec.graph}",
            "accounting": spec.accounting, "wall_s": round(wall_s, 1),
            "messages_replayed": sum(published.values()),
            "inputs": {t: {"published": published.get(t, 0), "seen": probe.count(t),
                           **self.middleware(status, published)[t]} for t in spec.inputs},
            "outputs": {t: {"published": _int(status, f"outputs/{t.lstrip('/')}"), "seen": probe.count(t),
                            "recorded": recorded[t]} for t in spec.outputs},
            "primary_output": spec.primary_output,
            "node": {
                "name": spec.node, "inputs": _int(status, spec.node_inputs), "processed": _int(status, "processed"),
                "drops_total": _int(status, "drops_total"),
                "drops": {k.removeprefix("drops/"): int(v) for k, v in status.items() if k.startswith("drops/")},
                "lost_before_callback": _int(status, "lost_before_callback_total"),
                "processing_time_ms": {"p50": _float(status, "processing_time_p50_ms"),
                                       "p99": _float(status, "processing_time_p99_ms")},
                "level": status.get("level"), "message": status.get("message"),
            },
            "end_to_end_latency_ms": latency,
            "method_values": method_values,
            "checks": checks, "passed": all(c["ok"] for c in checks),
            "recording": str(self.recording), "diagnostics": status,
        }

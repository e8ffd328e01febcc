"""The health monitor: what the nodes report in, a judgement per sensor, node and output out.

Time is passed in (monotonic seconds), never read here, so every rule is unit-tested deterministically.

- **Node** ``n`` (its ``/diagnostics`` status ``fovea/n``): unknown until heard; unreliable when silent for
  ``stale_after_s``, not *active*, or reporting ERROR; degraded when its processing p99 is over its latency
  budget (``over_budget``) or it dropped more than ``max_drop_fraction`` of its work over ``drop_window_s``
  (work = items processed + items dropped, in the node's own units: a cloud, a camera set, a 5 ms window).
- **Sensor** (a topic some node counts as ``inputs/<key>``): unknown until a node has counted a message;
  unreliable when no node has counted a new one for ``stale_after_s``; degraded below ``min_rate_hz``; and,
  where the rules name an anomaly source, the level its rules give the latest verdict's state (by default
  unknown while starting, unreliable on warn and error), degraded when the verdicts have stopped.
- **Output**: its node's judgement, and each input's (sensor or output) capped by the dependency's ``cap``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fovea_core.health.levels import Judgement, Level
from fovea_core.health.rules import HealthRules

DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DIAGNOSTIC_ERROR, DIAGNOSTIC_STALE = 0, 1, 2, 3
# drop reasons that count parts of an input (points removed from a cloud kept), not inputs or work items
PER_ITEM_DROPS = ("non-finite points removed",)


@dataclass
class NodeReport:
    """One ``diagnostic_msgs/DiagnosticStatus`` as plain data."""
    name: str                     # e.g. "fovea/event_memory"
    level: int                    # diagnostic_msgs levels: 0 OK, 1 WARN, 2 ERROR, 3 STALE
    message: str
    values: dict[str, str] = field(default_factory=dict)


VERDICT_STATES = ("starting", "ok", "warn", "error")


@dataclass
class Verdict:
    """The anomaly node's latest judgement of its streams."""
    source: str
    state: str                    # one of VERDICT_STATES
    score: float | None = None
    threshold: float | None = None
    fault: str = ""               # suspected fault, e.g. "offset"
    offset_ms: float | None = None

    def __post_init__(self) -> None:
        if self.state not in VERDICT_STATES:
            raise ValueError(f"verdict state {self.state!r} is not one of {VERDICT_STATES}")


@dataclass
class Entry:
    name: str
    kind: str                     # sensor | node | output
    topic: str
    judgement: Judgement

    @property
    def level(self) -> Level:
        return self.judgement.level


def _number(values: dict[str, str], key: str) -> float | None:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


class _NodeHistory:
    """Arrival of a node's reports and the (time, inputs, drops by reason) samples of the drop window."""

    def __init__(self) -> None:
        self.report: NodeReport | None = None
        self.heard_s = 0.0
        self.samples: deque[tuple[float, float, dict[str, float]]] = deque()   # (time, processed, drops)


class HealthMonitor:
    def __init__(self, rules: HealthRules) -> None:
        self.rules = rules
        self._nodes: dict[str, _NodeHistory] = {}              # diagnostics name -> history
        self._counts: dict[tuple[str, str], tuple[float, float]] = {}   # (node, key) -> (count, last increase s)
        self._verdicts: dict[str, tuple[float, Verdict]] = {}

    # ---- what comes in -------------------------------------------------------------------------------
    def on_diagnostics(self, report: NodeReport, now_s: float) -> None:
        history = self._nodes.setdefault(report.name, _NodeHistory())
        history.report, history.heard_s = report, now_s
        processed = _number(report.values, "processed") or 0.0
        drops = {k.removeprefix("drops/"): v for k in report.values if k.startswith("drops/")
                 if (v := _number(report.values, k)) is not None and k.removeprefix("drops/") not in PER_ITEM_DROPS}
        history.samples.append((now_s, processed, drops))
        while len(history.samples) > 2 and now_s - history.samples[1][0] >= self.rules.drop_window_s:
            history.samples.popleft()
        for key, value in report.values.items():
            if key.startswith("inputs/") and (count := _number(report.values, key)) is not None:
                topic_key = (report.name, key.removeprefix("inputs/"))
                previous = self._counts.get(topic_key)
                if previous is None:
                    self._counts[topic_key] = (count, now_s if count > 0 else float("-inf"))
                elif count != previous[0]:  # grew, or the node restarted and counts from zero again
                    self._counts[topic_key] = (count, now_s if count > 0 else previous[1])

    def on_verdict(self, verdict: Verdict, now_s: float) -> None:
        self._verdicts[verdict.source] = (now_s, verdict)

    # ---- judgements ----------------------------------------------------------------------------------
    def evaluate(self, now_s: float) -> list[Entry]:
        entries: list[Entry] = []
        sensors = {name: self._judge_sensor(name, now_s) for name in self.rules.sensors}
        entries += [Entry(name, "sensor", self.rules.sensors[name].topic, j) for name, j in sensors.items()]
        nodes = {name: self._judge_node(name, now_s) for name in self.rules.nodes}
        entries += [Entry(name, "node", "", j) for name, j in nodes.items()]
        outputs: dict[str, Judgement] = {}
        for name, rule in self.rules.outputs.items():
            judgement = Judgement()
            node = nodes[rule.node]
            for level, reason in node.flags:
                judgement.flag(level, f"node {rule.node}: {reason}")
            for dep in rule.inputs:
                upstream = sensors.get(dep.name) or outputs[dep.name]
                level = upstream.level
                if level != Level.OK:
                    capped = level if level.severity <= dep.cap.severity else dep.cap
                    why = upstream.reasons[0] if upstream.reasons else level.name.lower()
                    judgement.flag(capped, f"input {dep.name} {level.name.lower()}: {why}")
            outputs[name] = judgement
            entries.append(Entry(name, "output", rule.topic, judgement))
        return entries

    def _judge_node(self, node: str, now_s: float) -> Judgement:
        history = self._nodes.get(f"fovea/{node}")
        judgement = Judgement()
        if history is None or history.report is None:
            judgement.flag(Level.UNKNOWN, "no /diagnostics heard yet")
            return judgement
        report, silent = history.report, now_s - history.heard_s
        if silent > self.rules.stale_after_s:
            judgement.flag(Level.UNRELIABLE, f"no /diagnostics for {silent:.1f} s (node down?)")
            return judgement
        state = report.values.get("lifecycle_state", "active")
        if report.level >= DIAGNOSTIC_ERROR:
            judgement.flag(Level.UNRELIABLE, report.message or "reports ERROR")
        elif state != "active":
            judgement.flag(Level.UNRELIABLE, f"is {state}, not active")
        if report.values.get("over_budget") == "true":
            p99, budget = report.values.get("processing_time_p99_ms"), report.values.get("latency_budget_ms")
            judgement.flag(Level.DEGRADED, f"processing p99 {p99} ms over its {budget} ms budget")
        self._judge_drops(history, judgement)
        return judgement

    def _judge_drops(self, history: _NodeHistory, judgement: Judgement) -> None:
        if len(history.samples) < 2:
            return
        (_, processed0, drops0), (_, processed1, drops1) = history.samples[0], history.samples[-1]
        new_drops = {r: n - drops0.get(r, 0.0) for r, n in drops1.items() if n - drops0.get(r, 0.0) > 0}
        total = sum(new_drops.values())
        work = max(processed1 - processed0, 0.0) + total   # items the node took on: processed or dropped
        if total <= 0 or total <= self.rules.max_drop_fraction * work:
            return
        worst = max(new_drops, key=new_drops.get)
        judgement.flag(Level.DEGRADED, f"dropped {total:.0f} of {work:.0f} work items in the last "
                                       f"{self.rules.drop_window_s:g} s (most: {worst})")

    def _judge_sensor(self, name: str, now_s: float) -> Judgement:
        rule = self.rules.sensors[name]
        judgement = Judgement()
        seen = [(node, v) for (node, key), v in self._counts.items() if key == rule.input_key]
        if not seen:
            judgement.flag(Level.UNKNOWN, f"no node counts {rule.topic} yet")
        else:
            last = max(v[1] for _, v in seen)
            if last == float("-inf"):
                judgement.flag(Level.UNKNOWN, f"no message on {rule.topic} yet")
            elif now_s - last > rule.stale_after_s:
                judgement.flag(Level.UNRELIABLE, f"no new message on {rule.topic} for {now_s - last:.1f} s")
            elif rule.min_rate_hz is not None:
                rates = [r for node, _ in seen if (history := self._nodes.get(node)) and history.report
                         if (r := _number(history.report.values, f"input_rate_hz/{rule.input_key}")) is not None]
                if rates and max(rates) < rule.min_rate_hz:
                    judgement.flag(Level.DEGRADED, f"{max(rates):.1f} Hz on {rule.topic}, below {rule.min_rate_hz:g} Hz")
        if rule.anomaly is not None:
            self._judge_anomaly(rule.anomaly, now_s, judgement)
        return judgement

    def _judge_anomaly(self, source: str, now_s: float, judgement: Judgement) -> None:
        heard = self._verdicts.get(source)
        stale_after = self.rules.anomaly_sources[source].stale_after_s
        if heard is None:
            judgement.flag(Level.UNKNOWN, f"no verdict from {source} yet")
            return
        heard_s, verdict = heard
        level = self.rules.anomaly_sources[source].levels[verdict.state]
        if now_s - heard_s > stale_after:
            judgement.flag(Level.DEGRADED, f"no verdict from {source} for {now_s - heard_s:.1f} s (unchecked)")
        elif verdict.state == "starting":
            judgement.flag(level, f"{source}: starting (not enough history to judge yet)")
        elif verdict.state != "ok":
            what = verdict.fault or "anomaly"
            if verdict.offset_ms is not None:
                what += f", offset {verdict.offset_ms:+.0f} ms"
            if verdict.score is not None and verdict.threshold is not None:
                what += f", score {verdict.score:.3g} vs threshold {verdict.threshold:.3g}"
            judgement.flag(level, f"{source} {verdict.state}: {what}")

"""The suite stage: every node in one graph, one process each, the vehicle and event bags replayed together.

A suite (``suites:`` in ``config/demo.yaml``) names a graph (``fovea run GRAPH --processes``: the managed
nodes start unconfigured and the lifecycle manager brings them up, as ``launch/fovea_suite.launch.py`` does
on a robot), the stages whose bags it replays at once (``replay``: each a stage name, optionally with
``topics`` (default: the stage's), ``remaps`` so that two bags' topics do not collide, and ``reliability``), and the stages whose books it checks (``members``: each
a stage name with optional overrides of its spec, e.g. ``inputs`` after a remap). Each member's books are the
stage's own (:class:`~fovea_ros.demo.stages.StageRun` checks), on one shared probe and one recording of every
member's outputs, ``/diagnostics`` and ``/fovea/health``. The suite itself also checks that the lifecycle
manager brought every node up, that the health node judged every entry, and that the planner query answered.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fovea_ros.bag.reader import BagReader
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.demo.probe import Probe
from fovea_ros.demo.stages import StageRun, StageSpec, _fovea, _stop

STARTUP_TIMEOUT_S = 300.0     # every process imports its stack and loads its model on a shared CPU
REPLAY_SETTLE_S = 2.0         # after a replay's publishers exist and its wait is over, before publishing
MANAGER = "fovea/lifecycle_manager"
HEALTH_TOPIC = "/fovea/health"
QUERY_SERVICE = "/fovea/query_space_time"


@dataclass
class SuiteSpec:
    name: str
    graph: str
    replay: list[dict]
    members: list[dict]
    description: str = ""
    query: dict = field(default_factory=dict)   # a planner query (x, y, z, t, frame_id; ask_when_seen: topics)
    node_parameters: dict = field(default_factory=dict)   # executable -> parameter overrides for this run
    rate: float = 1.0                           # replay rate, times fovea demo's --rate


def load_suites(path: str | Path) -> list[SuiteSpec]:
    with open(path, encoding="utf-8") as f:
        entries = (yaml.safe_load(f) or {}).get("suites") or []
    return [SuiteSpec(**entry) for entry in entries]


def _member_spec(stages: dict[str, StageSpec], entry: dict, suite: str) -> StageSpec:
    entry = dict(entry)
    name = entry.pop("stage")
    if name not in stages:
        raise ValueError(f"suite {suite}: no stage {name!r} in the stages")
    overrides = {k: v for k, v in entry.items()}
    if "inputs" in overrides and "replay" not in overrides:
        overrides["replay"] = list(overrides["inputs"])
    return dataclasses.replace(stages[name], **overrides)


class SuiteRun:
    def __init__(self, spec: SuiteSpec, stages: list[StageSpec], repo: Path, config: Path, out: Path,
                 rate: float = 1.0) -> None:
        self.spec, self.repo, self.config, self.rate = spec, repo, config, rate * spec.rate
        by_name = {s.name: s for s in stages}
        self.out = out / spec.name
        self.recording = self.out / "recording"
        self.replays = []   # (bag path, topics, remaps)
        self.reliability: dict[str, str | None] = {}   # bag -> replay reliability override
        self.types: dict[str, str] = {}
        for entry in spec.replay:
            stage = by_name.get(entry.get("stage"))
            if stage is None:
                raise ValueError(f"suite {spec.name}: replay names no known stage: {entry}")
            remaps = dict(entry.get("remaps") or {})
            topics = list(entry.get("topics") or stage.replay)   # more of the bag than the stage replays
            with BagReader(repo / stage.bag) as bag:
                bag_types = {t.name: t.msgtype for t in bag.topics}
            missing = set(topics) - set(bag_types)
            if missing:
                raise ValueError(f"suite {spec.name}: {stage.bag} has no topics {sorted(missing)}")
            self.replays.append((stage.bag, topics, remaps))
            self.reliability[stage.bag] = entry.get("reliability")
            self.types.update({remaps.get(t, t): bag_types[t] for t in topics})
        self.members = []
        for entry in spec.members:
            member = _member_spec(by_name, entry, spec.name)
            # its inputs came from the bag replayed with them here (the report draws that bag's messages)
            source = next((bag for bag, topics, remaps in self.replays
                           if member.inputs[0] in {remaps.get(t, t) for t in topics}), member.bag)
            member = dataclasses.replace(member, bag=source)
            run = StageRun(member, repo, config, out, rate=self.rate, bag_types={**self.types, **member.outputs})
            run.recording = self.recording
            self._remapped_stamps(run)
            self.members.append(run)

    def _remapped_stamps(self, run: StageRun) -> None:
        """A member whose latency input is a remapped name: its books read the input stamps from the bag
        under the bag's own topic name."""
        from rclpy.serialization import deserialize_message

        from fovea_ros.bag.typestore import import_message_class

        topic = run.spec.latency_input
        if topic is None:
            return
        for bag, topics, remaps in self.replays:
            original = next((t for t in topics if remaps.get(t) == topic and t != topic), None)
            if original is None or bag != run.spec.bag:
                continue
            msg_class = import_message_class(self.types[topic])
            with BagReader(self.repo / bag) as reader:
                run._stamps_cache = {m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in (
                    deserialize_message(r.data, msg_class) for r in reader.messages([original]))}

    @property
    def outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for run in self.members:
            outputs.update(run.spec.outputs)
        return outputs

    def run(self) -> dict:
        started = time.monotonic()
        if self.recording.exists():
            shutil.rmtree(self.recording)
        self.out.mkdir(parents=True, exist_ok=True)
        probe = Probe({**self.types, **self.outputs, HEALTH_TOPIC: "fovea_msgs/msg/HealthArray"})
        published: dict[str, int] = {}
        health: list = []
        probe.node.create_subscription(_health_class(), HEALTH_TOPIC, health.append, _health_qos())
        query, health_snapshot, health_when = None, None, "at the end"
        graph_file = self._graph_file()
        with open(self.out / "graph.log", "w") as graph_log, open(self.out / "recorder.log", "w") as record_log:
            graph = subprocess.Popen(_fovea("run", str(graph_file), "--processes"),
                                     cwd=self.repo, stdout=graph_log, stderr=subprocess.STDOUT)
            recorder = subprocess.Popen(_fovea("record", str(self.recording), "--topics", *self.outputs,
                                               "/diagnostics", HEALTH_TOPIC),
                                        cwd=self.repo, stdout=record_log, stderr=subprocess.STDOUT)
            players: list[BagPlayer] = []
            try:
                up = self._wait_for_graph(probe, graph)
                if up:
                    live = _LiveQuery(self, probe, health)
                    published = self._replay(players)
                    live.replay_done.set()
                    for run in self.members:
                        run._wait_for_node(probe, graph, published)
                    live.books_done.set()
                    query, health_snapshot, health_when = live.result()
                    time.sleep(1.5)  # one more diagnostics period
                alive = graph.poll() is None
            finally:
                for player in players:  # only now: a reliable writer must outlive its slowest reader's backlog
                    player.close()
                _stop(recorder)
                graph_code = _stop(graph, timeout=30.0)
                probe.close()
        wall = time.monotonic() - started
        members = [run._section(probe, published, alive, graph_code, wall) for run in self.members]
        for member in members:
            member["name"] = f"{self.spec.name}/{member['name']}"
        checks = self._suite_checks(probe, health, query, up)
        passed = all(m["passed"] for m in members) and all(c["ok"] for c in checks)
        return {"name": self.spec.name, "kind": "suite", "description": self.spec.description,
                "graph": f"config/{self.spec.graph}", "wall_s": round(wall, 1), "bags": [r[0] for r in self.replays],
                "messages_replayed": sum(published.values()), "members": members, "checks": checks,
                "passed": passed, "recording": str(self.recording), "query": query,
                "health": _health_table(health_snapshot or health[-1]) if health else [],
                "health_when": health_when,
                "manager": probe.status(MANAGER)}

    # ---- steps -------------------------------------------------------------------------------------
    def _graph_file(self) -> Path:
        """The suite's graph, with this run's ``node_parameters`` on top (written beside the recording)."""
        graph = self.config / self.spec.graph
        if not self.spec.node_parameters:
            return graph
        data = yaml.safe_load(graph.read_text())
        for node in data["nodes"]:
            node["parameters"] = {**(node.get("parameters") or {}),
                                  **self.spec.node_parameters.get(node["executable"], {})}
            if node.get("config"):
                node["config"] = str(self.config / node["config"])
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"run_{self.spec.graph}"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _wait_for_graph(self, probe: Probe, graph: subprocess.Popen) -> bool:
        """Every output listened to by the recorder and the probe (its node active: the manager brought it
        up) and the manager reporting every node active."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and graph.poll() is None:
            manager = probe.status(MANAGER)
            if ("every node active" in manager.get("message", "")
                    and all(probe.subscribers(t) >= 2 and probe.matched(t) >= 1 for t in self.outputs)
                    and all(self._listens(probe, run) for run in self.members)):
                return True
            time.sleep(0.2)
        return False

    @staticmethod
    def _listens(probe: Probe, run: StageRun) -> bool:
        """The member's node has its own subscription on each of its inputs."""
        return all(run.node_name in {i.node_name for i in probe.node.get_subscriptions_info_by_topic(t)}
                   for t in run.spec.inputs)

    def _nodes_on_every_topic(self, topics: list[str]) -> list[str]:
        """Member nodes that subscribe every replayed topic of a bag: the replay waits for their subscriptions
        (a node that takes only some of a bag's topics was checked by _listens)."""
        return [run.node_name for run in self.members if set(topics) <= set(run.spec.replay)]

    def _replay(self, players: list) -> dict[str, int]:
        """Every bag at once; the players stay open (``players``) until the books are read."""
        for bag, topics, remaps in self.replays:
            # a bag's topics go to different nodes (the DAVIS events to two, its frames to one): the replay's
            # wait covers the nodes that take every topic; the others' readers, present in the graph
            # (_listens), get REPLAY_SETTLE_S to match the new publishers (without it event memory once
            # received none of the 52 packets: the replay started when the probe and the anomaly node matched)
            options = ReplayOptions(rate=self.rate, wait_for_subscribers=2, wait_timeout_s=30.0, topics=topics,
                                    remaps=remaps, reliability=self.reliability.get(bag), delay_s=REPLAY_SETTLE_S,
                                    wait_for_nodes=self._nodes_on_every_topic([remaps.get(t, t) for t in topics]))
            player = BagPlayer(self.repo / bag, options, node_name=f"fovea_replay_{len(players)}")
            player.start()
            players.append(player)
        published: dict[str, int] = {}
        for player in players:
            summary = player.wait(120.0)
            if summary is not None:
                print(summary.format(), flush=True)
                for topic, n in summary.published.items():
                    published[topic] = published.get(topic, 0) + n
        return published

    def _ask_planner_query(self, probe: Probe) -> dict | None:
        """One spatio-temporal query as a planner would send it, answered by the running graph."""
        if not self.spec.query:
            return None
        from fovea_msgs.srv import QuerySpaceTime

        q = self.spec.query
        request = QuerySpaceTime.Request(x=q["x"], y=q["y"], z=q["z"], t=q["t"])
        request.header.frame_id = q.get("frame_id", "base_link")
        client = probe.node.create_client(QuerySpaceTime, QUERY_SERVICE)
        if not client.wait_for_service(timeout_sec=10.0):
            return {"answered": False, "message": f"{QUERY_SERVICE} is not offered"}
        time.sleep(0.5)  # let the server match our response reader (see fovea_ros.service_calls)
        future = client.call_async(request)
        deadline = time.monotonic() + 30.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not future.done():
            return {"answered": False, "message": "no answer within 30 s"}
        r = future.result()
        return {"answered": r.success, "message": r.message, "points": len(r.source),
                "source": list(r.source), "valid": list(r.valid), "label": list(r.label),
                "class_names": list(r.class_names),
                "label_probability": [round(float(v), 3) for v in r.label_probability],
                "occupancy": [round(float(v), 3) for v in r.occupancy],
                "sources": [{"name": s.name, "points": s.points, "answered": s.answered, "message": s.message,
                             "health": _LEVELS.get(s.health.level, "?")} for s in r.sources]}

    def _suite_checks(self, probe: Probe, health: list, query: dict | None, up: bool) -> list[dict]:
        manager = probe.status(MANAGER)
        nodes = {k.removeprefix("node/"): v for k, v in manager.items() if k.startswith("node/")}
        checks = [("lifecycle manager brought every node up", up and bool(nodes) and all(
                      v == "active" for v in nodes.values()),
                   ", ".join(f"{n} {s}" for n, s in nodes.items()) or manager.get("message", "no manager status")),
                  ("health judged every entry", bool(health) and all(e.level != 3 for e in health[-1].entries),
                   f"{len(health[-1].entries)} entries, unknown: "
                   f"{[e.name for e in health[-1].entries if e.level == 3]}" if health else "no /fovea/health")]
        if self.spec.query:
            answered = bool(query and query.get("answered")) and all(
                s["answered"] for s in query["sources"] if s["points"])
            checks.append(("planner query answered by every source asked", answered,
                           f"asked {query.get('asked')}: {query.get('message')}; " + json.dumps(query["sources"])
                           if query and "sources" in query else str(query)))
        return [{"name": n, "ok": bool(ok), "detail": d} for n, ok, d in checks]


_LEVELS = {0: "ok", 1: "degraded", 2: "unreliable", 3: "unknown"}


class _LiveQuery:
    """Asks the planner query while the bags still play, as soon as every topic of the query's
    ``ask_when_seen`` has carried an output (a planner asks a live graph; asked after the replay, every source's
    output is stale and the health node rightly marks it unreliable). A source that has not published by the
    time every member's books are in (a slow CPU) is asked then, after the replay, as the report says. Keeps the
    health news of the moment it asked."""

    def __init__(self, suite: "SuiteRun", probe: Probe, health: list) -> None:
        self.replay_done, self.books_done = threading.Event(), threading.Event()
        self._suite, self._probe, self._health = suite, probe, health
        self._answer: tuple = (None, None, "at the end")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        topics = self._suite.spec.query.get("ask_when_seen", []) if self._suite.spec.query else []
        while not self.books_done.is_set() and not all(self._probe.count(t) for t in topics):
            time.sleep(0.1)
        live = not self.replay_done.is_set()
        query = self._suite._ask_planner_query(self._probe)
        if query is not None:
            query["asked"] = "while the bags played" if live else "after the replay"
        snapshot = self._health[-1] if live and self._health else None   # else the news at the end
        self._answer = (query, snapshot, "when the planner query was asked" if snapshot else "at the end")

    def result(self) -> tuple:
        self._thread.join(timeout=60.0)   # a query answers within 30 s (_ask_planner_query)
        return self._answer


def _health_class():
    from fovea_msgs.msg import HealthArray
    return HealthArray


def _health_qos():
    from fovea_ros.nodes.health_node import health_qos
    return health_qos()


def _health_table(msg) -> list[dict]:
    return [{"name": e.name, "kind": e.kind, "topic": e.topic, "level": _LEVELS.get(e.level, "?"),
             "reasons": list(e.reasons)} for e in msg.entries]


def render_suites_markdown(suites: list[dict]) -> list[str]:
    """Markdown lines for each suite: its own checks, the health table, the planner query's answer (its
    members' books are stage sections of their own)."""
    lines: list[str] = []
    for s in suites:
        lines += ["", f"## suite {s['name']}: {'pass' if s['passed'] else 'FAIL'}", "", s["description"], "",
                  f"Graph `{s['graph']}` (one process per node, lifecycle manager) · bags {', '.join(s['bags'])} "
                  f"replayed together · {s['messages_replayed']} messages · {s['wall_s']} s", "",
                  f"Lifecycle manager: {s['manager'].get('message', 'no status')}", "", "Checks:", ""]
        lines += [f"- {'ok' if c['ok'] else '**FAILED**'}: {c['name']} ({c['detail']})" for c in s["checks"]]
        if s["health"]:
            lines += ["", f"Health {s.get('health_when', 'at the end')} (/fovea/health):", "", "| kind | name | topic | level | reason |",
                      "|---|---|---|---|---|"]
            lines += [f"| {e['kind']} | {e['name']} | {e['topic']} | {e['level']} | {(e['reasons'] or [''])[0]} |"
                      for e in s["health"]]
        q = s.get("query")
        if q:
            lines += ["", f"Planner query (/fovea/query_space_time), asked {q.get('asked', 'after the replay')}: "
                          f"{q.get('message')}"]
            lines += [f"- source {src['name']}: {src['points']} points, answered {src['answered']}, health "
                      f"{src['health']}: {src['message']}" for src in q.get("sources", [])]
    return lines

"""The suite's files agree with each other, without running them: every node of the suite graph is managed
by the lifecycle manager in graph order, the health rules name the suite's nodes, and the demo's suite
stage replays every input its member stages account for (the remapped names included)."""
from pathlib import Path

import yaml

from fovea_core.health import load_rules
from fovea_ros.demo.stages import load_stages
from fovea_ros.demo.suite import SuiteRun, load_suites
from fovea_ros.graph import load_graph

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
MANAGER = "lifecycle_manager_node"


def node_name(spec):
    # every node file <x>_node.py names its node <x> (tests/foundation checks each NAME against its config)
    return spec.name or spec.executable.removesuffix("_node")


def test_the_manager_brings_up_every_node_of_the_suite_graph_in_order():
    specs = load_graph(CONFIG / "suite_graph.yaml")
    managed = [s for s in specs if s.executable != MANAGER]
    manager = next(s for s in specs if s.executable == MANAGER)
    assert [node_name(s) for s in managed] == manager.parameters["node_names"]
    assert all(s.parameters.get("autostart") is False for s in managed), "managed nodes must wait for the manager"
    executables = {s.executable for s in specs}
    assert len(executables) == len(specs), "one node per executable in the suite"


def test_health_rules_name_the_suite_graph_nodes():
    rules = load_rules(CONFIG / "health_rules.yaml")
    graph = {node_name(s) for s in load_graph(CONFIG / "suite_graph.yaml")}
    assert set(rules.nodes) <= graph, f"rules name nodes not in the suite: {set(rules.nodes) - graph}"
    judged = graph - set(rules.nodes) - {"health", "lifecycle_manager"}
    assert not judged, f"suite nodes without a health rule: {judged}"


def test_the_suite_stage_replays_every_input_its_members_account_for(tmp_path):
    stages = load_stages(CONFIG / "demo.yaml")
    suites = load_suites(CONFIG / "demo.yaml")
    assert [s.name for s in suites] == ["suite"]
    run = SuiteRun(suites[0], stages, REPO, CONFIG, tmp_path)
    replayed = set(run.types)
    for member in run.members:
        assert set(member.spec.inputs) <= replayed, f"{member.spec.name}: inputs not replayed"
        assert member.recording == run.recording
    graph = yaml.safe_load(run._graph_file().read_text())
    overrides = suites[0].node_parameters
    for node in graph["nodes"]:
        for key, value in overrides.get(node["executable"], {}).items():
            assert node["parameters"][key] == value
        if node.get("config"):
            assert Path(node["config"]).is_file()

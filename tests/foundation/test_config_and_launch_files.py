"""What robots load without this environment being able to run it: every node YAML in config/ names only
parameters its node declares, with values the node accepts; launch files compile; RViz configs parse; the
graph files name known executables."""
import importlib
import py_compile
from pathlib import Path

import pytest
import yaml

from fovea_ros.graph import NodeSpec, launch_parameters, load_graph, node_executables
from fovea_ros.node_base import COMMON_PARAMETERS
from fovea_ros.parameters import flatten_parameters, load_node_config

REPO = Path(__file__).resolve().parents[2]
NODE_CLASSES = {importlib.import_module(module).NODE_CLASS.NAME: importlib.import_module(module).NODE_CLASS
                for module in node_executables().values()}


@pytest.mark.parametrize("name", sorted(NODE_CLASSES))
def test_node_config_matches_the_declared_parameters(name):
    path = REPO / "config" / f"{name}.yaml"
    assert path.is_file(), f"node {name} has no config/{name}.yaml"
    params = {p.name: p for p in (*COMMON_PARAMETERS, *NODE_CLASSES[name].PARAMETERS)}
    values = flatten_parameters(load_node_config(path, name))
    assert values, f"{path} has no ros__parameters for {name}"
    for key, value in values.items():
        assert key in params, f"{path}: '{key}' is not a parameter of {name}"
        params[key].validate(value)
    assert values.get("latency_budget_ms", 0) > 0, f"{path} names no latency_budget_ms for {name}"


@pytest.mark.parametrize("path", sorted((REPO / "launch").glob("*.launch.py")), ids=lambda p: p.name)
def test_launch_files_start_fovea_nodes_as_managed_nodes(path):
    text = path.read_text()
    for executable in node_executables():
        if f'executable="{executable}"' in text:
            call = text[:text.index(f'executable="{executable}"')].rsplit("(", 1)[0].split()[-1]
            assert call.endswith("LifecycleNode"), f"{path.name} starts {executable} with {call}, not LifecycleNode"
    if "graph_nodes" in text:  # the graph launch files: their nodes come from the shared helper
        helper = (REPO / "ros2_ws/src/fovea_ros/fovea_ros/launch_graph.py").read_text()
        assert "LifecycleNode(package=\"fovea_ros\", executable=spec.executable" in helper


@pytest.mark.parametrize("path", sorted((REPO / "launch").glob("*.launch.py")), ids=lambda p: p.name)
def test_launch_files_compile(path):
    py_compile.compile(str(path), doraise=True)


@pytest.mark.parametrize("path", sorted((REPO / "rviz").glob("*.rviz")), ids=lambda p: p.name)
def test_rviz_configs_parse(path):
    config = yaml.safe_load(path.read_text())
    assert config["Visualization Manager"]["Displays"]


def test_graph_files_name_known_executables():
    graphs = [p for p in (REPO / "config").glob("*graph*.yaml")]
    assert graphs
    for graph in graphs:
        for spec in load_graph(graph):
            assert spec.executable in node_executables()
            if spec.config:
                assert (REPO / "config" / spec.config).is_file()


def test_launch_parameters_without_a_manager_let_each_node_start_itself(tmp_path):
    (tmp_path / "tpv.yaml").write_text("tpv_occupancy:\n  ros__parameters: {}\n")
    spec = NodeSpec("tpv_occupancy_node", config="tpv.yaml", parameters={"autostart": False, "threads": 2})
    params = launch_parameters(spec, tmp_path, use_sim_time=True, autostart=True)
    assert params == [str(tmp_path / "tpv.yaml"), {"autostart": False, "threads": 2, "use_sim_time": True}]
    assert launch_parameters(NodeSpec("voxel_filter_node"), tmp_path, False, True) == [
        {"autostart": True, "use_sim_time": False}]


def test_launch_parameters_with_a_manager_leave_the_bring_up_to_it(tmp_path):
    manager = NodeSpec("lifecycle_manager_node", parameters={"autostart_nodes": True, "node_names": ["a"]})
    member = NodeSpec("voxel_filter_node", parameters={"autostart": True})
    assert launch_parameters(manager, tmp_path, True, False, manager="lifecycle_manager_node") == [
        {"autostart_nodes": False, "node_names": ["a"], "use_sim_time": True}]
    assert launch_parameters(member, tmp_path, True, True, manager="lifecycle_manager_node") == [
        {"autostart": False, "use_sim_time": True}]

"""A node graph described in YAML, started by ``fovea run`` here and by ``launch/fovea_graph.launch.py`` on
a robot, so both run the same nodes with the same parameters.

    nodes:
      - executable: voxel_filter_node     # a fovea_ros executable (ros2_ws/src/fovea_ros/fovea_ros/nodes/)
        name: voxel_filter                # optional node name (default: the node's own NAME)
        config: voxel_filter.yaml         # optional; relative to the config/ folder
        parameters: {voxel_size: 0.1}     # optional overrides, highest precedence
        remappings: {points_in: /lidar/points}

``fovea run GRAPH.yaml`` starts them in one process (one executor, shared memory: the default here) or with
``--processes`` one process per node, as ``ros2 launch`` does. Nodes are managed (lifecycle) nodes: with their
``autostart`` parameter (default true) each is configured and activated in graph order; a node that cannot be
configured logs one line saying why and the run exits with code 2. With ``autostart: false`` nodes wait
unconfigured for ``ros2 lifecycle set``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fovea_ros.parameters import config_dir

NODES_PACKAGE = "fovea_ros.nodes"


def node_executables() -> dict[str, str]:
    """Executable name -> module: every ``nodes/<x>_node.py`` is the executable ``<x>_node``."""
    folder = Path(__file__).parent / "nodes"
    return {p.stem: f"{NODES_PACKAGE}.{p.stem}" for p in sorted(folder.glob("*_node.py"))}


@dataclass
class NodeSpec:
    executable: str
    name: str | None = None
    config: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        modules = node_executables()
        if self.executable not in modules:
            raise ValueError(f"unknown executable {self.executable!r}; known: {', '.join(modules)}")
        return modules[self.executable]

    def config_path(self, base: Path | None) -> str | None:
        if self.config is None:
            return None
        path = Path(self.config)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} of node {self.executable} not found")
        return str(path)

    def ros_args(self, base: Path | None, overrides_file: str | None) -> list[str]:
        """The ``--ros-args`` that give this node its name, parameter files and remappings."""
        args = ["--ros-args"]
        if self.name:
            args += ["-r", f"__node:={self.name}"]
        config = self.config_path(base)
        if config:
            args += ["--params-file", config]
        if overrides_file:
            args += ["--params-file", overrides_file]
        for src, dst in self.remappings.items():
            args += ["-r", f"{src}:={dst}"]
        return args


def load_graph(path: str | Path) -> list[NodeSpec]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    entries = data.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty 'nodes:' list")
    specs = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - {"executable", "name", "config", "parameters", "remappings"}
        if "executable" not in entry or unknown:
            raise ValueError(f"{path}: node #{i}: needs 'executable'; unknown keys {sorted(unknown)}")
        specs.append(NodeSpec(**entry))
    return specs


def launch_parameters(spec: NodeSpec, base: Path | None, use_sim_time: bool, autostart: bool,
                      manager: str | None = None) -> list:
    """The ``parameters`` list ``ros2 launch`` gives a node of the graph: its config file, then the overrides.

    Without ``manager`` every node brings itself up (``autostart``). With ``manager`` (the executable of the
    lifecycle manager in the graph) the manager gets ``autostart_nodes`` and every other node waits
    unconfigured, so the manager brings them up in the graph's order."""
    parameters: list = [spec.config_path(base)] if spec.config else []
    if manager is None:
        overrides = {"autostart": autostart, **spec.parameters}
    elif spec.executable == manager:
        overrides = {**spec.parameters, "autostart_nodes": autostart}
    else:
        overrides = {**spec.parameters, "autostart": False}
    overrides["use_sim_time"] = use_sim_time
    return parameters + [overrides]


def write_overrides(spec: NodeSpec, folder: str) -> str | None:
    """Parameter overrides as a parameter file (``/**`` so it applies whatever the node's name)."""
    if not spec.parameters:
        return None
    path = os.path.join(folder, f"{spec.name or spec.executable}.overrides.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}, f)
    return path


def build_nodes(specs: list[NodeSpec], base: Path | None, tmpdir: str) -> list:
    """Instantiate every node of the graph in this process (rclpy must be initialised)."""
    nodes = []
    for spec in specs:
        module = importlib.import_module(spec.module)
        node_class = module.NODE_CLASS
        nodes.append(node_class(config_path=spec.config_path(base),
                                cli_args=spec.ros_args(base, write_overrides(spec, tmpdir))))
    return nodes


def run_in_process(specs: list[NodeSpec], base: Path | None) -> int:
    """All nodes in this process on one executor, brought up in graph order (configure, then activate each,
    as a lifecycle manager does); the first node that cannot start ends the run with exit code 2."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from fovea_ros.node_base import ConfigurationError, bring_up_or_raise

    rclpy.init()
    executor = MultiThreadedExecutor()
    nodes = []
    with tempfile.TemporaryDirectory(prefix="fovea-graph-") as tmpdir:
        try:
            nodes = build_nodes(specs, base, tmpdir)
            for node in nodes:
                bring_up_or_raise(node)
                executor.add_node(node)
            executor.spin()
        except ConfigurationError:
            return 2
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            for node in nodes:
                node.destroy_node()
            rclpy.try_shutdown()
    return 0


def run_in_processes(specs: list[NodeSpec], base: Path | None) -> int:
    """One process per node, as ``ros2 launch`` does; when one exits with an error the others are stopped
    and its exit code is the graph's."""
    with tempfile.TemporaryDirectory(prefix="fovea-graph-") as tmpdir:
        procs = [subprocess.Popen([sys.executable, "-m", spec.module, *spec.ros_args(base, write_overrides(spec, tmpdir))])
                 for spec in specs]
        failed = 0
        try:
            while any(p.poll() is None for p in procs) and not failed:
                failed = next((p.returncode for p in procs if p.returncode not in (None, 0)), 0)
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(15))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
    return failed or max((c for c in codes if c > 0), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea run", description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", help="graph YAML (a path, or a file name in config/)")
    parser.add_argument("--processes", action="store_true", help="one process per node (as ros2 launch)")
    args = parser.parse_args(argv)
    base = config_dir()
    path = Path(args.graph)
    if not path.is_file() and base is not None and (base / path).is_file():
        path = base / path
    try:
        specs = load_graph(path)
        for spec in specs:  # a wrong executable or a missing config file: one line, before anything starts
            spec.module, spec.config_path(base)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"fovea run: {exc}", file=sys.stderr)
        return 2
    return run_in_processes(specs, base) if args.processes else run_in_process(specs, base)


if __name__ == "__main__":
    sys.exit(main())

"""Launch actions for a graph YAML in config/, shared by ``launch/fovea_graph.launch.py`` and
``launch/fovea_suite.launch.py`` (they differ only in who brings the nodes up: each node itself, or the
lifecycle manager). ``launch`` and ``launch_ros`` are imported when a launch file calls this, so the rest of
``fovea_ros`` does not need them."""
from __future__ import annotations

import os

from fovea_ros.graph import launch_parameters, load_graph


def graph_nodes(context, manager: str | None = None) -> list:
    """One ``LifecycleNode`` per node of the ``graph`` launch argument (``OpaqueFunction`` body)."""
    from ament_index_python.packages import get_package_share_directory
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode

    config = os.path.join(get_package_share_directory("fovea_bringup"), "config")
    graph = LaunchConfiguration("graph").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    autostart = LaunchConfiguration("autostart").perform(context).lower() == "true"
    path = graph if os.path.isabs(graph) else os.path.join(config, graph)
    return [LifecycleNode(package="fovea_ros", executable=spec.executable, name=spec.name or "", namespace="",
                          parameters=launch_parameters(spec, config, use_sim_time, autostart, manager),
                          remappings=list(spec.remappings.items()), output="screen")
            for spec in load_graph(path)]

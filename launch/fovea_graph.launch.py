"""Start the nodes a graph YAML in config/ names (the same file `fovea run` reads).

    ros2 launch fovea_bringup fovea_graph.launch.py graph:=demo_graph.yaml use_sim_time:=true
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from fovea_ros.graph import load_graph


def _nodes(context):
    config = os.path.join(get_package_share_directory("fovea_bringup"), "config")
    graph = LaunchConfiguration("graph").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    autostart = LaunchConfiguration("autostart").perform(context).lower() == "true"
    actions = []
    for spec in load_graph(graph if os.path.isabs(graph) else os.path.join(config, graph)):
        parameters = [spec.config_path(config)] if spec.config else []
        parameters.append({"autostart": autostart, **spec.parameters, "use_sim_time": use_sim_time})
        actions.append(LifecycleNode(package="fovea_ros", executable=spec.executable, name=spec.name or "",
                                     namespace="", parameters=parameters,
                                     remappings=list(spec.remappings.items()), output="screen"))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value="demo_graph.yaml", description="graph YAML in config/"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true when replaying a bag"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: nodes wait unconfigured for `ros2 lifecycle set` (or a manager)"),
        OpaqueFunction(function=_nodes),
    ])

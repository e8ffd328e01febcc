"""The whole Fovea suite in one launch: every node of config/suite_graph.yaml (the file `fovea run` and the
demo's suite stage read), each in its own process as a managed node started unconfigured, and the lifecycle
manager that configures and activates them in the graph's order (like nav2_lifecycle_manager).

    ros2 launch fovea_bringup fovea_suite.launch.py use_sim_time:=true
    ros2 service call /lifecycle_manager/manage_nodes fovea_msgs/srv/ManageNodes "{command: 1}"   # pause
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from fovea_ros.graph import load_graph

MANAGER = "lifecycle_manager_node"


def _nodes(context):
    config = os.path.join(get_package_share_directory("fovea_bringup"), "config")
    graph = LaunchConfiguration("graph").perform(context)
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    autostart = LaunchConfiguration("autostart").perform(context).lower() == "true"
    actions = []
    for spec in load_graph(graph if os.path.isabs(graph) else os.path.join(config, graph)):
        parameters = [spec.config_path(config)] if spec.config else []
        overrides = {**spec.parameters, "use_sim_time": use_sim_time}
        if spec.executable == MANAGER:
            overrides["autostart_nodes"] = autostart  # false: bring the graph up with a manage_nodes call
        else:
            overrides["autostart"] = False            # the manager brings it up, in order
        parameters.append(overrides)
        actions.append(LifecycleNode(package="fovea_ros", executable=spec.executable, name=spec.name or "",
                                     namespace="", parameters=parameters,
                                     remappings=list(spec.remappings.items()), output="screen"))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value="suite_graph.yaml", description="graph YAML in config/"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true when replaying bags"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the manager waits for a STARTUP call on manage_nodes"),
        OpaqueFunction(function=_nodes),
    ])

"""The whole Fovea suite in one launch: every node of config/suite_graph.yaml (the file `fovea run` and the
demo's suite stage read), each in its own process as a managed node started unconfigured, and the lifecycle
manager that configures and activates them in the graph's order (like nav2_lifecycle_manager).

    ros2 launch fovea_bringup fovea_suite.launch.py use_sim_time:=true
    ros2 service call /lifecycle_manager/manage_nodes fovea_msgs/srv/ManageNodes "{command: 1}"   # pause
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from fovea_ros.launch_graph import graph_nodes

MANAGER = "lifecycle_manager_node"


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value="suite_graph.yaml", description="graph YAML in config/"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true when replaying bags"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the manager waits for a STARTUP call on manage_nodes"),
        OpaqueFunction(function=graph_nodes, kwargs={"manager": MANAGER}),
    ])

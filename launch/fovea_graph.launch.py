"""Start the nodes a graph YAML in config/ names (the same file `fovea run` reads); each node configures and
activates itself unless autostart:=false.

    ros2 launch fovea_bringup fovea_graph.launch.py graph:=demo_graph.yaml use_sim_time:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from fovea_ros.launch_graph import graph_nodes


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("graph", default_value="demo_graph.yaml", description="graph YAML in config/"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true when replaying a bag"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: nodes wait unconfigured for `ros2 lifecycle set` (or a manager)"),
        OpaqueFunction(function=graph_nodes),
    ])

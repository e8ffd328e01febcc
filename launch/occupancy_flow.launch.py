"""Occupancy flow node (ImplicitO: occupancy + reverse flow at any (x, y, t), QueryPoints service),
parameters from config/occupancy_flow.yaml; optional RViz.

    ros2 launch fovea_bringup occupancy_flow.launch.py use_sim_time:=true rviz:=true
    ros2 bag play --clock bags/av2_7fab2350        # in another terminal
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node


def generate_launch_description():
    share = get_package_share_directory("fovea_bringup")
    config = os.path.join(share, "config", "occupancy_flow.yaml")
    rviz_config = os.path.join(share, "rviz", "occupancy_flow.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        DeclareLaunchArgument("map_file", default_value="",
                              description="Argoverse 2 vector map JSON (empty: map-less)"),
        DeclareLaunchArgument("rviz", default_value="false"),
        LifecycleNode(package="fovea_ros", executable="occupancy_flow_node", name="occupancy_flow", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart"),
                                           "map_file": LaunchConfiguration("map_file")}],
                      additional_env={"OMP_NUM_THREADS": "1"}),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
             parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

"""HMNet event-memory node, parameters from config/event_memory.yaml.

    ros2 launch fovea_bringup event_memory.launch.py use_sim_time:=true
    ros2 launch fovea_bringup event_memory.launch.py rviz:=true
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
    config = os.path.join(share, "config", "event_memory.yaml")
    rviz_config = os.path.join(share, "rviz", "event_memory.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        DeclareLaunchArgument("rviz", default_value="false"),
        LifecycleNode(package="fovea_ros", executable="event_memory_node", name="event_memory", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart")}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

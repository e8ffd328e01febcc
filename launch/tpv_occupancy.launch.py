"""TPV occupancy node, parameters from config/tpv_occupancy.yaml; optional RViz.

    ros2 launch fovea_bringup tpv_occupancy.launch.py use_sim_time:=true rviz:=true
    fovea replay bags/nuscenes_sample --clock 40     # in another terminal
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
    config = os.path.join(share, "config", "tpv_occupancy.yaml")
    rviz = os.path.join(share, "rviz", "tpv_occupancy.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        DeclareLaunchArgument("rviz", default_value="false"),
        LifecycleNode(package="fovea_ros", executable="tpv_occupancy_node", name="tpv_occupancy", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart")}]),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz],
             parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

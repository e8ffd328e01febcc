"""Reference node: voxel-grid downsampling, parameters from config/voxel_filter.yaml.

    ros2 launch fovea_bringup voxel_filter.launch.py use_sim_time:=true
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description():
    config = os.path.join(get_package_share_directory("fovea_bringup"), "config", "voxel_filter.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        LifecycleNode(package="fovea_ros", executable="voxel_filter_node", name="voxel_filter", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart")}]),
    ])

"""Registration node (VBReg odometry / localization / RegisterClouds service), parameters from
config/registration.yaml; optional RViz.

    ros2 launch fovea_bringup registration.launch.py use_sim_time:=true rviz:=true
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
    config = os.path.join(share, "config", "registration.yaml")
    rviz_config = os.path.join(share, "rviz", "registration.rviz")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        DeclareLaunchArgument("rviz", default_value="false"),
        # One OpenMP thread: Open3D's FPFH and the network's runtime otherwise fight over the cores (measured on
        # a 2-core CPU: describing a scan 49 -> 31 ms); raise it on machines with cores to spare.
        LifecycleNode(package="fovea_ros", executable="registration_node", name="registration", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart")}],
                      additional_env={"OMP_NUM_THREADS": "1"}),
        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
             parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])

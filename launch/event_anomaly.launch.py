"""Event/frame stream anomaly node, parameters from config/event_anomaly.yaml.

    ros2 launch fovea_bringup event_anomaly.launch.py use_sim_time:=true
    ros2 bag play bags/davis346_offset           # in another terminal: a real DAVIS346 clip with a desync

The score (fovea_msgs/StreamAnomaly on /event_anomaly/score) plots over time in Foxglove or PlotJuggler;
/diagnostics carries the state (OK / WARN / ERROR) for rqt_robot_monitor.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description():
    config = os.path.join(get_package_share_directory("fovea_bringup"), "config", "event_anomaly.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: the node waits unconfigured for `ros2 lifecycle set`"),
        LifecycleNode(package="fovea_ros", executable="event_anomaly_node", name="event_anomaly", namespace="",
                      output="screen",
                      parameters=[config, {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                           "autostart": LaunchConfiguration("autostart")}]),
    ])

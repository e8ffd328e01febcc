"""The lifecycle manager with real rclpy: managed nodes in their own processes (autostart:=false) brought up,
paused, resumed, reset and shut down in order through their standard lifecycle services; a node that cannot
be configured stops the bring-up with its own reason; a node that dies is reported."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from fovea_msgs.srv import ManageNodes
from fovea_ros.conversions import array_to_pointcloud2

from suite_helpers import latest_status, level

pytestmark = pytest.mark.ros
MANAGER = "/lifecycle_manager"


def start_voxel(start_python, name, *params):
    args = ["-r", f"__node:={name}", "-p", "autostart:=false", "-p", f"input_topic:=/{name}/in",
            "-p", f"output_topic:=/{name}/out"]
    for p in params:
        args += ["-p", p]
    return start_python("-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", *args)


def start_manager(start_python, names, autostart_nodes=True):
    return start_python("-m", "fovea_ros.nodes.lifecycle_manager_node", "--ros-args",
                        "-p", f"node_names:=[{','.join(names)}]", "-p", f"autostart_nodes:={str(autostart_nodes).lower()}",
                        "-p", "check_period_s:=0.5", "-p", "diagnostics_period:=0.2", "-p", "wait_for_nodes_s:=60.0")


def manage(services, command):
    return services.call(ManageNodes, f"{MANAGER}/manage_nodes", ManageNodes.Request(command=command), timeout=90)


def cloud(sec):
    points = np.zeros(500, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    points["x"], points["y"], points["z"] = np.random.default_rng(sec).uniform(2, 20, size=(3, 500))
    msg = array_to_pointcloud2(points)
    msg.header.stamp.sec, msg.header.frame_id = sec, "lidar"
    return msg


def test_bring_up_in_order_then_pause_resume_reset_and_shutdown(peer, start_python, services):
    for name in ("voxel_a", "voxel_b"):
        start_voxel(start_python, name)
    start_manager(start_python, ["voxel_a", "voxel_b"])
    assert peer.wait_for(lambda: services.state("/voxel_b") == "active", 90), "STARTUP never finished"
    assert services.state("/voxel_a") == "active"

    outputs = []
    peer.node.create_subscription(PointCloud2, "/voxel_a/out", outputs.append, qos_profile_sensor_data)
    pub = peer.node.create_publisher(PointCloud2, "/voxel_a/in", qos_profile_sensor_data)
    peer.wait_for_subscribers(pub)
    pub.publish(cloud(1))
    assert peer.wait_for(lambda: len(outputs) == 1, 10), "the managed node does not process"

    reply = manage(services, ManageNodes.Request.PAUSE)
    assert reply.success, reply.message
    assert list(reply.node_names) == ["voxel_a", "voxel_b"] and list(reply.states) == ["inactive", "inactive"]
    assert peer.wait_for(lambda: pub.get_subscription_count() == 0, 10), "a paused node still listens"

    reply = manage(services, ManageNodes.Request.RESUME)
    assert reply.success and list(reply.states) == ["active", "active"]
    reply = manage(services, ManageNodes.Request.RESET)
    assert reply.success and list(reply.states) == ["unconfigured", "unconfigured"]
    reply = manage(services, ManageNodes.Request.RESUME)   # nothing to resume from unconfigured: says so
    assert not reply.success and "voxel_a is unconfigured: cannot RESUME" in reply.message
    reply = manage(services, ManageNodes.Request.STARTUP)
    assert reply.success and list(reply.states) == ["active", "active"]
    reply = manage(services, ManageNodes.Request.SHUTDOWN)
    assert reply.success and list(reply.states) == ["finalized", "finalized"]


def test_a_node_that_cannot_configure_stops_the_bring_up_with_its_reason(peer, start_python, services):
    diagnostics = []
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    start_voxel(start_python, "voxel_a")
    start_voxel(start_python, "voxel_bad", "min_range:=50.0", "max_range:=10.0")
    last = start_voxel(start_python, "voxel_c")
    start_manager(start_python, ["voxel_a", "voxel_bad", "voxel_c"])

    def manager_error():
        status = latest_status(diagnostics, "fovea/lifecycle_manager")
        return status is not None and level(status) == 2 and "voxel_bad" in status.message
    assert peer.wait_for(manager_error, 90), latest_status(diagnostics, "fovea/lifecycle_manager")
    message = latest_status(diagnostics, "fovea/lifecycle_manager").message
    assert "configure failed" in message and "'max_range'" in message and "greater than min_range" in message
    # in order: the node before it is up, the one after it was never touched
    assert services.state("/voxel_a") == "active"
    assert services.state("/voxel_bad") == "unconfigured"
    assert services.state("/voxel_c") == "unconfigured"

    # fixed (ros2 param set while unconfigured), the same STARTUP brings the rest up
    assert services.set_double("/voxel_bad", "max_range", 120.0).successful
    reply = manage(services, ManageNodes.Request.STARTUP)
    assert reply.success, reply.message
    assert list(reply.states) == ["active", "active", "active"]

    # a managed node dies: the manager's state check reports it
    last.kill()
    assert peer.wait_for(lambda: (s := latest_status(diagnostics, "fovea/lifecycle_manager")) is not None
                         and "voxel_c is unreachable" in s.message and level(s) == 2, 30), \
        latest_status(diagnostics, "fovea/lifecycle_manager")

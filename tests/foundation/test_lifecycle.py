"""Fovea nodes are managed nodes: driven through the standard lifecycle services (what `ros2 lifecycle set`
calls) and `SetParameters` (what `ros2 param set` calls), with real rclpy in another process."""
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from fovea_ros.conversions import array_to_pointcloud2, pointcloud2_to_array

pytestmark = pytest.mark.ros
NODE = "/voxel_filter"


def cloud(sec: int) -> PointCloud2:
    points = np.zeros(2000, [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    rng = np.random.default_rng(sec)
    points["x"], points["y"], points["z"] = rng.uniform(2, 20, size=(3, 2000))
    msg = array_to_pointcloud2(points)
    msg.header.stamp.sec = sec
    msg.header.frame_id = "lidar"
    return msg


class Managed:
    """Calls a node's lifecycle and parameter services from the test's peer node."""

    def __init__(self, peer, name: str = NODE):
        self.peer = peer
        self.change = peer.node.create_client(ChangeState, f"{name}/change_state")
        self.get = peer.node.create_client(GetState, f"{name}/get_state")
        self.set = peer.node.create_client(SetParameters, f"{name}/set_parameters")
        for client in (self.change, self.get, self.set):
            assert client.wait_for_service(timeout_sec=20), f"{client.srv_name} never appeared"

    def _call(self, client, request, attempts: int = 3):
        # a service found by wait_for_service may not be matched with our response reader yet (DDS discovery
        # is per endpoint): on a loaded machine the first response can be lost, so idempotent calls retry
        for _ in range(attempts):
            future = client.call_async(request)
            if self.peer.wait_for(future.done, 15):
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"{client.srv_name} did not answer {attempts} calls")

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        goal = {Transition.TRANSITION_CONFIGURE: "inactive", Transition.TRANSITION_ACTIVATE: "active",
                Transition.TRANSITION_DEACTIVATE: "inactive", Transition.TRANSITION_CLEANUP: "unconfigured",
                Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized"}[transition_id]
        future = self.change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        if self.peer.wait_for(future.done, 30):
            return future.result().success
        self.change.remove_pending_request(future)  # the answer was lost, not necessarily the transition
        return self.state() == goal

    def set_param(self, name: str, value):
        if isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        result = self._call(self.set, SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
        return result.results[0]


@pytest.fixture
def io(peer):
    outputs, diagnostics = [], []
    peer.node.create_subscription(PointCloud2, "/lidar/points_filtered", outputs.append, qos_profile_sensor_data)
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    pub = peer.node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    return pub, outputs, diagnostics


def my_status(diagnostics):
    mine = [s for d in diagnostics for s in d.status if s.name == "fovea/voxel_filter"]
    return mine[-1] if mine else None


def test_lifecycle_transitions_open_and_close_the_node_io(peer, start_python, io):
    pub, outputs, diagnostics = io
    start_python("-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", "-p", "autostart:=false",
                 "-p", "diagnostics_period:=0.2")
    node = Managed(peer)
    assert node.state() == "unconfigured"
    assert peer.wait_for(lambda: my_status(diagnostics) is not None, 10), "no /diagnostics while unconfigured"
    assert pub.get_subscription_count() == 0

    assert node.transition(Transition.TRANSITION_CONFIGURE)
    assert node.state() == "inactive"
    time.sleep(0.5)
    assert pub.get_subscription_count() == 0, "an inactive node must not listen"
    assert peer.node.count_publishers("/lidar/points_filtered") == 0

    assert node.transition(Transition.TRANSITION_ACTIVATE)
    assert node.state() == "active"
    peer.wait_for_subscribers(pub)
    pub.publish(cloud(10))
    assert peer.wait_for(lambda: len(outputs) == 1, 10)

    assert node.transition(Transition.TRANSITION_DEACTIVATE)
    assert node.state() == "inactive"
    assert peer.wait_for(lambda: pub.get_subscription_count() == 0, 10)
    pub.publish(cloud(11))
    time.sleep(0.5)
    assert len(outputs) == 1, "a deactivated node published"

    assert node.transition(Transition.TRANSITION_ACTIVATE)   # and back: resumes
    peer.wait_for_subscribers(pub)
    pub.publish(cloud(12))
    assert peer.wait_for(lambda: len(outputs) == 2, 10)
    assert outputs[-1].header.stamp.sec == 12

    assert node.transition(Transition.TRANSITION_DEACTIVATE)
    assert node.transition(Transition.TRANSITION_CLEANUP)
    assert node.state() == "unconfigured"
    assert node.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert node.state() == "finalized"


def test_failed_configure_stays_unconfigured_with_the_reason_then_succeeds_once_fixed(peer, start_python, io):
    _, _, diagnostics = io
    start_python("-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", "-p", "autostart:=false",
                 "-p", "diagnostics_period:=0.2", "-p", "min_range:=50.0", "-p", "max_range:=10.0")
    node = Managed(peer)
    assert not node.transition(Transition.TRANSITION_CONFIGURE)
    assert node.state() == "unconfigured"
    assert peer.wait_for(lambda: (s := my_status(diagnostics)) is not None and s.level == s.ERROR, 10)
    status = my_status(diagnostics)
    assert "'max_range'" in status.message and "greater than min_range" in status.message
    # while unconfigured, any parameter may be set (ros2 param set), then configure again
    assert node.set_param("max_range", 120.0).successful
    assert node.transition(Transition.TRANSITION_CONFIGURE)
    assert node.state() == "inactive"


def test_runtime_parameters_are_validated_and_only_dynamic_ones_change_live(peer, start_python, io):
    pub, outputs, _ = io
    start_python("-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", "-p", "voxel_size:=0.1")
    node = Managed(peer)
    assert peer.wait_for(lambda: node.state() == "active", 20)
    peer.wait_for_subscribers(pub)
    pub.publish(cloud(20))
    assert peer.wait_for(lambda: len(outputs) == 1, 10)

    accepted = node.set_param("voxel_size", 5.0)       # dynamic: takes effect on the next cloud
    assert accepted.successful, accepted.reason
    pub.publish(cloud(20 + 1))
    assert peer.wait_for(lambda: len(outputs) == 2, 10)
    assert len(pointcloud2_to_array(outputs[1])) < len(pointcloud2_to_array(outputs[0])) / 4

    refused = node.set_param("voxel_size", -1.0)        # the descriptor's range (rclpy checks it first)
    assert not refused.successful and "voxel_size" in refused.reason and "out of range" in refused.reason
    refused = node.set_param("voxel_size", 200)         # an int for a float: our validation, same range
    assert not refused.successful and "voxel_size" in refused.reason
    refused = node.set_param("max_range", 0.5)          # cross-parameter rule of the node
    assert not refused.successful and "greater than min_range" in refused.reason
    refused = node.set_param("queue_size", 3)           # read at configure: says so
    assert not refused.successful and "cannot change while the node is active" in refused.reason

    pub.publish(cloud(22))                               # still running with the accepted value
    assert peer.wait_for(lambda: len(outputs) == 3, 10)
    assert len(pointcloud2_to_array(outputs[2])) < len(pointcloud2_to_array(outputs[0])) / 4


@pytest.mark.parametrize("extra, name", [(["-p", "voxel_size:=-1.0"], "voxel_size"),
                                         (["-p", "input_topic:=bad topic"], "input_topic"),
                                         (["-p", "voxel_size:=fine"], "voxel_size")])
def test_autostart_with_a_bad_configuration_prints_one_line_and_exits_2(extra, name):
    run = subprocess.run([sys.executable, "-m", "fovea_ros.nodes.voxel_filter_node", "--ros-args", *extra],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2
    assert len(lines) == 1 and f"parameter '{name}'" in lines[0], lines

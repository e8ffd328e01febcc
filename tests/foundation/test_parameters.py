"""Invalid parameters fail a node's configure transition with a message naming the parameter; the node
stays unconfigured (it is a managed node: a lifecycle manager or `ros2 lifecycle set` may try again)."""
import pytest
import rclpy

from fovea_ros.nodes.voxel_filter_node import VoxelFilterNode
from fovea_ros.parameters import Param, ParameterError, load_node_config


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def write_config(tmp_path, body):
    path = tmp_path / "voxel_filter.yaml"
    path.write_text("voxel_filter:\n  ros__parameters:\n" + body)
    return str(path)


def test_config_file_values_become_the_parameters(context, tmp_path):
    node = VoxelFilterNode(context=context, config_path=write_config(tmp_path, "    voxel_size: 0.5\n"))
    try:
        assert node.bring_up() == ""
        assert node.lifecycle_state == "active"
        assert node.params.voxel_size == 0.5
        assert node.get_parameter("voxel_size").value == 0.5
        assert node.describe_parameter("voxel_size").description.startswith("edge of the voxel cube")
    finally:
        node.destroy_node()


def test_launch_overrides_win_over_the_config_file(context, tmp_path):
    node = VoxelFilterNode(context=context, config_path=write_config(tmp_path, "    voxel_size: 0.5\n"),
                           cli_args=["--ros-args", "-p", "voxel_size:=0.7"])
    try:
        assert node.bring_up() == ""
        assert node.params.voxel_size == 0.7
    finally:
        node.destroy_node()


@pytest.mark.parametrize("body, name", [
    ("    voxel_size: -1.0\n", "voxel_size"),                 # below the minimum
    ("    voxel_size: fine\n", "voxel_size"),                 # wrong type
    ("    sensor_qos: fast\n", "sensor_qos"),                 # not one of the choices
    ("    voxle_size: 0.2\n", "voxle_size"),                  # a typo is not silently ignored
    ("    min_range: 50.0\n    max_range: 10.0\n", "max_range"),  # cross-parameter check
])
def test_invalid_config_fails_configure_naming_the_parameter(context, tmp_path, body, name):
    node = VoxelFilterNode(context=context, config_path=write_config(tmp_path, body))
    try:
        reason = node.bring_up()
        assert f"'{name}'" in reason
        assert node.lifecycle_state == "unconfigured"
        status = node.diagnostic_status()
        assert status.level == status.ERROR and f"'{name}'" in status.message
    finally:
        node.destroy_node()


def test_invalid_launch_override_fails_configure_naming_the_parameter(context, tmp_path):
    node = VoxelFilterNode(context=context, config_path=write_config(tmp_path, ""),
                           cli_args=["--ros-args", "-p", "queue_size:=0"])
    try:
        assert "'queue_size'" in node.bring_up()
        assert node.lifecycle_state == "unconfigured"
    finally:
        node.destroy_node()


def test_param_validation_accepts_ints_for_floats_but_not_bools():
    p = Param("gain", 1.0, "a gain", min_value=0.0)
    p.validate(2)
    with pytest.raises(ParameterError, match="'gain'"):
        p.validate(True)


def test_load_node_config_merges_wildcard_and_node_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("/**:\n  ros__parameters:\n    a: 1\n    b: 1\nn:\n  ros__parameters:\n    b: 2\n")
    assert load_node_config(path, "n") == {"a": 1, "b": 2}

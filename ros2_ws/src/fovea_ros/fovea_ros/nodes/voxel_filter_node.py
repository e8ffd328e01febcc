"""Reference node: voxel-grid downsampling of a PointCloud2 topic.

The template every method node follows: parameters from ``config/voxel_filter.yaml`` (validated at
configure; the filter settings change at run time); publisher, subscription and worker created at activate;
sensor-data QoS; message → array in the callback (cheap), bad input counted and dropped there; the method
core runs on the worker thread; array → message with the input's header; diagnostics from the base.

Topics: subscribes ``points_in`` (sensor_msgs/PointCloud2), publishes ``points_out`` (same type).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2

from fovea_core.geometry.voxel_grid import voxel_downsample
from fovea_ros.conversions import array_to_pointcloud2, drop_non_finite_xyz, pointcloud2_to_array
from fovea_ros.node_base import FoveaNode, run_node
from fovea_ros.parameters import Param, ParameterError


class VoxelFilterNode(FoveaNode):
    NAME = "voxel_filter"
    PARAMETERS = (
        Param("input_topic", "points_in", "PointCloud2 to downsample"),
        Param("output_topic", "points_out", "downsampled PointCloud2 (same frame and stamp as the input)"),
        Param("voxel_size", 0.2, "edge of the voxel cube, metres", min_value=1e-3, max_value=100.0, dynamic=True),
        Param("min_range", 0.0, "points closer than this to the sensor are removed, metres", min_value=0.0,
              dynamic=True),
        Param("max_range", 200.0, "points farther than this are removed, metres", min_value=0.0, dynamic=True),
        Param("min_points", 1, "clouds with fewer valid points are dropped", min_value=1, dynamic=True),
    )

    def configure(self) -> None:
        self._check_ranges(self.params.min_range, self.params.max_range)

    def activate(self) -> None:
        self.publisher = self.create_publisher(PointCloud2, self.params.output_topic, self.sensor_qos())
        self.create_subscription(PointCloud2, self.params.input_topic, self.on_cloud, self.sensor_qos())
        self.start_worker(self.process)

    def on_parameter_change(self, name: str, value) -> None:
        if name in ("min_range", "max_range"):
            self._check_ranges(self.params.min_range, self.params.max_range)

    @staticmethod
    def _check_ranges(min_range: float, max_range: float) -> None:
        if max_range <= min_range:
            raise ParameterError("parameter 'max_range': must be greater than min_range")

    def on_cloud(self, msg: PointCloud2) -> None:
        # require_xyz: no x/y/z ("wrong fields"), x/y/z not one float each, bytes in the wrong order: each
        # a drop under its own reason
        points = self.receive(self.params.input_topic, msg, lambda m: pointcloud2_to_array(m, require_xyz=True),
                              "cloud")
        if points is None:
            return
        points, non_finite = drop_non_finite_xyz(points.reshape(-1))
        if non_finite:
            self.drop("non-finite points removed", f"{non_finite} NaN/inf points removed", n=non_finite)
        if len(points) < self.params.min_points:
            self.drop("empty cloud", f"{len(points)} valid points < min_points={self.params.min_points}")
            return
        self.submit((msg.header, points))

    def process(self, item) -> None:
        header, points = item
        filtered = voxel_downsample(points, self.params.voxel_size, min_range=self.params.min_range,
                                    max_range=self.params.max_range)
        self.set_diagnostic("points_in", len(points))
        self.set_diagnostic("points_out", len(filtered))
        self.set_diagnostic("reduction", float(len(filtered)) / max(len(points), 1))
        self.publisher.publish(array_to_pointcloud2(np.ascontiguousarray(filtered), header))


NODE_CLASS = VoxelFilterNode


def main(args=None) -> int:
    return run_node(VoxelFilterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

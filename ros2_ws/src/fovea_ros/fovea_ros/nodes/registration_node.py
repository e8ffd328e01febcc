"""Point cloud registration node (VBReg / SC2 / RANSAC from fovea_core.registration).

Modes (parameter ``mode``):
- ``odometry``: scan-to-local-map ICP (KISS-ICP recipe on small_gicp, ``fovea_core.registration.icp``);
  global registration (``method``, VBReg by default) takes over after a gap, on a large motion or when
  ICP's fitness collapses (``fovea_core.registration.odometry``). Publishes ``nav_msgs/Odometry`` on
  ``odom_topic``, TF ``odom_frame → base_frame``, and per pose the path that produced it on ``path_topic``.
- ``localization``: the pose in a prior map (``map_file`` PLY/PCD, or the latest message on ``map_topic``)
  without an initial pose: global registration against the map on the first scan, on a request
  (std_msgs/Empty on ``relocalize_topic``) and when ICP against the map loses track; ICP in between.
  Publishes the pose in ``map_frame`` on ``pose_topic`` and TF ``map_frame → odom_frame``
  (using ``odom_frame → base_frame`` from /tf when available, identity otherwise).
- always: service ``register_clouds`` (fovea_msgs/srv/RegisterClouds) aligning two clouds of the request.

Scans are taken to be in ``base_frame`` (the lidar mounted at base_link, as in the bag this repo ships).
A result below the confidence thresholds is counted as a failure in /diagnostics and never published as a
pose. Degenerate scans (too few points, NaNs only, a plane...) are dropped with their reason.
"""
from __future__ import annotations

import threading

import numpy as np
from fovea_msgs.srv import RegisterClouds
from nav_msgs.msg import Odometry
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Empty, String
from tf2_msgs.msg import TFMessage

from fovea_core.geometry.transforms import invert_rigid, rigid_transform, translation_quaternion
from fovea_core.io.cloud_files import read_cloud
from fovea_core.model_files import ModelFileError
from fovea_core.registration.features import SELECTIONS
from fovea_core.registration.icp import REGISTRATION_TYPES, IcpConfig
from fovea_core.registration.odometry import LidarOdometry, MapLocalizer, OdometryConfig, PoseErrorTracker
from fovea_core.registration.pipeline import METHODS, DegenerateInputError, Registration, RegistrationConfig
from fovea_core.registration.rigid import apply_transform
from fovea_ros.conversions import MessageLayoutError, array_to_pointcloud2, pointcloud2_to_array, xyz_array
from fovea_ros.node_base import FoveaNode, run_node, stamp_to_ns
from fovea_ros.parameters import Param, ParameterError
from fovea_ros.tf_buffer import TfBuffer, TransformLookupError, matrix_to_transform_stamped, subscribe_tf


def cloud_xyz(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 → (N, 3) float64; raises MessageLayoutError (with its drop reason) on malformed messages."""
    return xyz_array(pointcloud2_to_array(msg, require_xyz=True))


def cloud_xyz_times(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) points and, when the cloud has a per-point time field ``t`` (or ``time``), that time
    normalised to [0, 1] over the sweep (for deskewing); None otherwise."""
    structured = pointcloud2_to_array(msg, require_xyz=True)
    points = xyz_array(structured)
    names = structured.dtype.names or ()
    field = next((name for name in ("t", "time", "timestamp") if name in names), None)
    if field is None:
        return points, None
    times = np.asarray(structured[field], dtype=np.float64).reshape(-1)
    span = float(np.nanmax(times) - np.nanmin(times)) if len(times) else 0.0
    return points, ((times - np.nanmin(times)) / span if span > 0 else np.zeros_like(times))


def xyz_cloud(points: np.ndarray, header) -> PointCloud2:
    structured = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    structured["x"], structured["y"], structured["z"] = points.T
    return array_to_pointcloud2(structured, header)


class RegistrationNode(FoveaNode):
    NAME = "registration"
    PARAMETERS = (
        Param("mode", "odometry", "odometry | localization", choices=("odometry", "localization")),
        Param("input_topic", "points_in", "PointCloud2 scans to register"),
        Param("method", "vbreg", "registration method", choices=METHODS),
        Param("backend", "onnxruntime", "network runtime for vbreg", choices=("torch", "onnxruntime", "tensorrt")),
        Param("model_dir", "", "folder with vbreg.pt / vbreg.json / vbreg.onnx; empty: models/registration"),
        Param("voxel_size", 0.5, "downsampling voxel before FPFH, metres", min_value=1e-3, max_value=10.0),
        Param("inlier_threshold", 1.2, "τ: correspondence inlier distance, metres", min_value=1e-3, max_value=20.0),
        Param("max_correspondences", 300, "cap on the FPFH matches the network scores", min_value=10, max_value=20000),
        Param("prefilter_top_k", 150, "vbreg: score only this many of the matches, the most length-compatible "
              "(0 = all); the network's cost grows with the square", min_value=0, max_value=20000),
        Param("correspondence_selection", "random", "beyond the cap: 'ratio' keeps the most distinctive matches "
              "(nearest / second-nearest descriptor distance), 'random' a uniform subset", choices=SELECTIONS),
        Param("fpfh_max_neighbors", 100, "FPFH histogram neighbours per point (fewer = faster, less robust)",
              min_value=5, max_value=1000),
        Param("network_threads", 1, "onnxruntime intra-op threads; 0 = one per core", min_value=0, max_value=64),
        Param("network_iterations", 6, "vbreg: score with the first N of the network's trained iterations (an "
              "ONNX file holds a fixed N: python -m fovea_core.registration.export --iterations N)",
              min_value=1, max_value=64),
        Param("min_points", 50, "scans with fewer points after downsampling are rejected", min_value=3),
        Param("min_inlier_count", 10, "success threshold: inlier correspondences", min_value=3),
        Param("min_inlier_ratio", 0.0, "success threshold: inliers / correspondences", min_value=0.0, max_value=1.0),
        Param("min_fitness", 0.05, "success threshold: aligned overlap fraction", min_value=0.0, max_value=1.0),
        Param("icp", False, "polish with Open3D point-to-point ICP"),
        Param("odom_frame", "odom", "odometry frame"),
        Param("base_frame", "base_link", "robot frame (the scans' frame)"),
        Param("map_frame", "map", "map frame (localization)"),
        Param("odom_topic", "odom", "nav_msgs/Odometry output (odometry mode)"),
        Param("pose_topic", "pose", "nav_msgs/Odometry in the map frame (localization mode)"),
        Param("threads", 1, "threads for every library call (small_gicp, faiss, k-d trees, Open3D, BLAS)",
              min_value=1, max_value=64),
        Param("icp_voxel_size", 1.0, "odometry: ICP map voxel, metres (KISS-ICP: max_range / 100)",
              min_value=0.05, max_value=10.0),
        Param("icp_registration", "VGICP", "odometry: small_gicp registration type", choices=REGISTRATION_TYPES),
        Param("min_range", 1.0, "odometry: drop returns closer than this, metres", min_value=0.0),
        Param("max_range", 100.0, "odometry: drop returns farther than this, metres", min_value=1.0),
        Param("max_correspondence", 1.5, "odometry: cap on ICP's adaptive correspondence distance, metres",
              min_value=0.05, max_value=20.0),
        Param("deskew", False, "odometry: deskew with the cloud's per-point time field 't' (constant velocity); "
              "off for clouds already motion-compensated"),
        Param("max_gap_s", 0.5, "odometry: a longer scan-to-scan period switches to global registration",
              min_value=0.0),
        Param("max_correction", 2.0, "odometry: ICP moving this far from the prediction (metres at max_range) "
              "switches to global registration", min_value=0.0),
        Param("min_icp_fitness", 0.5, "odometry: ICP fitness below this switches to global registration",
              min_value=0.0, max_value=1.0),
        Param("relocalize_topic", "relocalize", "localization: a std_msgs/Empty here makes the next scan "
              "relocalize by global registration against the map"),
        Param("path_topic", "odom_path", "std_msgs/String per odometry pose: '<stamp ns> <path> <reason>' "
              "(path: start | icp | global)"),
        Param("map_file", "", "PLY/PCD map cloud for localization"),
        Param("map_topic", "", "PointCloud2 map for localization (used when map_file is empty)"),
        Param("publish_tf", True, "broadcast the TF of the mode"),
        Param("publish_aligned", False, "publish the aligned scan (debug) on aligned_points"),
        Param("ground_truth_topic", "", "nav_msgs/Odometry ground truth (e.g. from a bag): when set, the pose "
              "error at matching stamps is reported in /diagnostics"),
    )

    def configure(self) -> None:
        p = self.params
        if p.mode == "localization" and not (p.map_file or p.map_topic):
            raise ParameterError("parameter 'map_file': localization needs map_file or map_topic")
        config = RegistrationConfig(
            method=p.method, voxel_size=p.voxel_size, inlier_threshold=p.inlier_threshold,
            max_correspondences=p.max_correspondences, correspondence_selection=p.correspondence_selection,
            prefilter_top_k=p.prefilter_top_k,
            fpfh_max_neighbors=p.fpfh_max_neighbors, network_threads=p.network_threads,
            network_iterations=p.network_iterations,
            min_points=p.min_points, backend=p.backend, threads=p.threads,
            icp=p.icp, min_inlier_count=p.min_inlier_count, min_inlier_ratio=p.min_inlier_ratio,
            min_fitness=p.min_fitness, **({"model_dir": p.model_dir} if p.model_dir else {}),
        )
        self.registration = Registration(config)
        if p.method == "vbreg":
            try:  # load the model once at configure: a missing model is a start-up error, not a per-scan one
                self.registration.scorer  # noqa: B018
            except ModelFileError:
                raise  # one line already, naming the parameter and the file
            except (FileNotFoundError, OSError, ValueError) as exc:
                raise ParameterError(f"parameter 'model_dir': cannot load the VBReg model: {exc}") from exc
        self._lock = threading.Lock()  # the service and the worker share the registration object
        self._truth_lock = threading.Lock()  # separate: ground truth must not wait for a registration
        self.odometry_config = OdometryConfig(
            icp=IcpConfig(voxel_size=p.icp_voxel_size, registration_type=p.icp_registration, min_range=p.min_range,
                          max_range=p.max_range, max_correspondence=p.max_correspondence, deskew=p.deskew,
                          threads=p.threads),
            max_gap_s=p.max_gap_s, max_correction=p.max_correction, min_fitness=p.min_icp_fitness)
        self.localizer = None
        if p.mode == "localization":
            self.tf_buffer = TfBuffer()
            if p.map_file:
                self._set_map(self._read_map_file(p.map_file))
        self.set_diagnostic("mode", p.mode)
        self.set_diagnostic("method", p.method)

    def activate(self) -> None:
        p = self.params
        # a fresh trajectory on every activation (a paused node resumes from where it is, not where it was)
        self.odometry = LidarOdometry(self.odometry_config, self.registration)
        self.successes = 0
        self.failures = 0
        self.ground_truth: dict[int, np.ndarray] = {}
        self.pose_errors = PoseErrorTracker(relative_to_first=p.mode == "odometry")
        self.tf_publisher = self.create_publisher(TFMessage, "/tf", 100)
        self.aligned_publisher = (self.create_publisher(PointCloud2, "aligned_points", self.sensor_qos())
                                  if p.publish_aligned else None)
        if p.mode == "odometry":
            self.pose_publisher = self.create_publisher(Odometry, p.odom_topic, 10)
            self.path_publisher = self.create_publisher(String, p.path_topic, 10)
        else:
            self.pose_publisher = self.create_publisher(Odometry, p.pose_topic, 10)
            subscribe_tf(self, self.tf_buffer)
            if not p.map_file:
                self.create_subscription(PointCloud2, p.map_topic, self.on_map, 1)
            self.create_subscription(Empty, p.relocalize_topic, self.on_relocalize, 10)
        if p.ground_truth_topic:
            self.create_subscription(Odometry, p.ground_truth_topic, self.on_ground_truth, 50)
        self.create_subscription(PointCloud2, p.input_topic, self.on_cloud, self.sensor_qos())
        self.create_service(RegisterClouds, "register_clouds", self.on_register_clouds)
        self.start_worker(self.process)

    def cleanup(self) -> None:
        self.registration = None
        self.localizer = None

    # ---- inputs ------------------------------------------------------------------------------------
    def _read_map_file(self, path: str) -> np.ndarray:
        try:
            cloud = read_cloud(path)
        except (OSError, ValueError) as exc:
            raise ParameterError(f"parameter 'map_file': cannot read {path}: {exc}") from exc
        return np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)

    def _set_map(self, points: np.ndarray) -> None:
        try:
            with self._lock:
                self.localizer = MapLocalizer(points, self.registration, self.odometry_config)
            self.set_diagnostic("map_points", len(self.localizer.map_described.points))
        except DegenerateInputError as exc:
            raise ParameterError(f"parameter 'map_file': unusable map: {exc}") from exc

    def on_map(self, msg: PointCloud2) -> None:
        try:
            localizer = MapLocalizer(cloud_xyz(msg), self.registration, self.odometry_config)
        except (MessageLayoutError, ValueError) as exc:  # DegenerateInputError is a ValueError
            self.drop("unusable map", str(exc))
            return
        with self._lock:
            self.localizer = localizer
        self.set_diagnostic("map_points", len(localizer.map_described.points))

    def on_relocalize(self, _msg: Empty) -> None:
        if self.localizer is not None:
            self.localizer.request_relocalization("requested")

    def on_ground_truth(self, msg: Odometry) -> None:
        position, orientation = msg.pose.pose.position, msg.pose.pose.orientation
        pose = rigid_transform((position.x, position.y, position.z),
                               (orientation.x, orientation.y, orientation.z, orientation.w))
        with self._truth_lock:
            self.ground_truth[stamp_to_ns(msg.header.stamp)] = pose
            while len(self.ground_truth) > 1000:
                self.ground_truth.pop(next(iter(self.ground_truth)))

    def _report_pose_error(self, stamp_ns: int, pose: np.ndarray) -> None:
        with self._truth_lock:
            truth = self.ground_truth.get(stamp_ns)
        if truth is None:
            return
        translation_error, rotation_error = self.pose_errors.add(pose, truth)
        self.set_diagnostic("pose_error_translation_m", translation_error)
        self.set_diagnostic("pose_error_rotation_deg", rotation_error)
        self.set_diagnostic("pose_error_translation_max_m", self.pose_errors.max_translation_m)
        self.set_diagnostic("pose_error_rotation_max_deg", self.pose_errors.max_rotation_deg)

    def on_cloud(self, msg: PointCloud2) -> None:
        converted = self.receive(self.params.input_topic, msg, cloud_xyz_times, "cloud")
        if converted is not None:
            self.submit((msg.header, *converted))

    # ---- work --------------------------------------------------------------------------------------
    def process(self, item) -> None:
        header, points, relative_times = item
        if self.params.mode == "odometry":
            self._odometry_step(header, points, relative_times)
        else:
            self._localization_step(header, points)

    def _report_step(self, step, counts: dict, global_message: str) -> None:
        self.set_diagnostic("last_path", step.path)
        self.set_diagnostic("last_path_reason", step.reason)
        self.set_diagnostic("icp_fitness", float(step.fitness))
        for path, count in counts.items():
            self.set_diagnostic(f"path_{path}", count)
        if step.path == "global":
            self.get_logger().info(f"{global_message} ({step.reason})")

    def _report(self, result) -> bool:
        self.set_diagnostic("inlier_ratio", float(result.inlier_ratio))
        self.set_diagnostic("inlier_count", result.inlier_count)
        self.set_diagnostic("fitness", float(result.fitness))
        self.set_diagnostic("last_result", result.message)
        if result.success:
            self.successes += 1
        else:
            self.failures += 1
            self.drop("registration below confidence thresholds", result.message)
        self.set_diagnostic("registrations_ok", self.successes)
        self.set_diagnostic("registrations_failed", self.failures)
        return result.success

    def _odometry_step(self, header, points: np.ndarray, relative_times) -> None:
        try:
            with self._lock:
                step = self.odometry.step(points, stamp_to_ns(header.stamp), relative_times)
        except DegenerateInputError as exc:
            self.drop("degenerate scan", str(exc))
            self.set_diagnostic("last_result", f"degenerate scan: {exc}")
            return
        self._report_step(step, self.odometry.counts, "odometry: global registration took over")
        if step.pose is None:
            self.drop("tracking lost", step.reason)
            return
        self.path_publisher.publish(String(data=f"{stamp_to_ns(header.stamp)} {step.path} {step.reason}".strip()))
        self._publish_pose(header, self.params.odom_frame, step.pose, points)

    def _localization_step(self, header, points: np.ndarray) -> None:
        if self.localizer is None:
            self.drop("no map yet", f"waiting for {self.params.map_topic}")
            return
        try:
            with self._lock:
                step = self.localizer.step(points, stamp_to_ns(header.stamp))
        except DegenerateInputError as exc:
            self.drop("degenerate scan", str(exc))
            self.set_diagnostic("last_result", f"degenerate scan: {exc}")
            return
        self._report_step(step, self.localizer.counts, "localization: relocalized")
        if step.pose is None:
            self.drop("tracking lost", step.reason)
            return
        self._publish_pose(header, self.params.map_frame, step.pose, points)

    # ---- outputs -----------------------------------------------------------------------------------
    def _publish_pose(self, header, frame: str, pose: np.ndarray, scan) -> None:
        p = self.params
        msg = Odometry()
        msg.header.stamp = header.stamp
        msg.header.frame_id = frame
        msg.child_frame_id = p.base_frame
        translation, quaternion = translation_quaternion(pose)
        position, orientation = msg.pose.pose.position, msg.pose.pose.orientation
        position.x, position.y, position.z = map(float, translation)
        orientation.x, orientation.y, orientation.z, orientation.w = map(float, quaternion)
        self.pose_publisher.publish(msg)
        stamp_ns = stamp_to_ns(header.stamp)
        if self.params.ground_truth_topic:
            self._report_pose_error(stamp_ns, pose)
        if p.publish_tf:
            if p.mode == "odometry":
                tf = matrix_to_transform_stamped(pose, p.odom_frame, p.base_frame, stamp_ns)
            else:
                try:
                    odom_base = self.tf_buffer.lookup_matrix(p.odom_frame, p.base_frame, stamp_ns)
                    self.set_diagnostic("odom_source", "tf")
                except TransformLookupError:
                    odom_base = np.eye(4)
                    self.set_diagnostic("odom_source", f"identity ({p.odom_frame}→{p.base_frame} not in /tf)")
                tf = matrix_to_transform_stamped(pose @ invert_rigid(odom_base), p.map_frame, p.odom_frame, stamp_ns)
            self.tf_publisher.publish(TFMessage(transforms=[tf]))
        if self.aligned_publisher is not None:
            aligned_header = type(header)(stamp=header.stamp, frame_id=frame)
            points = scan if isinstance(scan, np.ndarray) else scan.points
            self.aligned_publisher.publish(xyz_cloud(apply_transform(pose, points), aligned_header))

    # ---- service -----------------------------------------------------------------------------------
    def on_register_clouds(self, request, response):
        method = request.method or self.params.method
        if method not in METHODS:
            response.success, response.message = False, f"unknown method {method!r}; one of {list(METHODS)}"
            return response
        try:
            source, target = cloud_xyz(request.source), cloud_xyz(request.target)
            with self._lock, self.timed():
                result = self.registration.register(source, target, method=method)
        except (MessageLayoutError, ValueError) as exc:  # includes DegenerateInputError
            self.drop("service request rejected", str(exc))
            response.success, response.message = False, f"rejected: {exc}"
            return response
        self._report(result)
        response.success = bool(result.success)
        response.message = result.message if not result.success else (
            f"ok: {method}, {result.inlier_count}/{result.num_correspondences} inliers, "
            f"{result.timings['total'] * 1e3:.0f} ms")
        if result.success:
            translation, quaternion = translation_quaternion(result.transform)
            t, q = response.transform.translation, response.transform.rotation
            t.x, t.y, t.z = map(float, translation)
            q.x, q.y, q.z, q.w = map(float, quaternion)
        response.fitness = float(result.fitness)
        response.inlier_count = int(result.inlier_count)
        response.inlier_ratio = float(result.inlier_ratio)
        return response


NODE_CLASS = RegistrationNode


def main(args=None) -> int:
    return run_node(RegistrationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

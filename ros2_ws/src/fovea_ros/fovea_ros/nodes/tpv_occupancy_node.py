"""TPV occupancy: camera-only 3D semantic occupancy (TPVFormer) from a surround camera rig.

Inputs (sensor-data QoS by default): ``image_topics`` (sensor_msgs/Image, rgb8 or bgr8) with their
``camera_info_topics`` (sensor_msgs/CameraInfo), synchronised by approximate time together with the lidar
cloud when ``lidar_topic`` is set; extrinsics camera optical frame -> ``base_frame`` from TF
(``/tf``, ``/tf_static``), else from ``fallback_extrinsics``. Until every camera has a CameraInfo and an
extrinsic the node refuses to run, counts the camera set as dropped ("calibration unknown" /
"extrinsics unknown") and says what is missing in /diagnostics.

Outputs, stamped with the camera set's stamp, in ``base_frame``:
``occupancy_topic`` PointCloud2 of occupied voxel centres (x, y, z, label, confidence);
``markers_topic`` MarkerArray, one CUBE_LIST per class (class colours);
``labelled_points_topic`` the lidar cloud (its own frame and fields) plus ``label`` and ``confidence``
(label 0 and confidence 0 for returns outside the grid, which the model cannot see).
Service ``query_service`` (fovea_msgs/srv/QueryPoints): label and probability of the voxel holding each
query point (points in any TF frame; ``t`` is ignored: the model has no time axis); label -1 outside range.
"""
from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from fovea_core.geometry.transforms import transform_points
from fovea_core.paths import resolve_data_path
from fovea_core.tpv.inference import TPVInference
from fovea_core.tpv.rigs import describe_rig
from fovea_core.tpv.scenes import CLASS_COLORS, CLASS_NAMES
from fovea_ros.conversions import (MessageLayoutError, UnsupportedEncodingError, array_to_pointcloud2,
                                   camera_info_to_calibration, image_to_array, pointcloud2_to_array, xyz_array)
from fovea_ros.node_base import FoveaNode, run_node, stamp_to_ns
from fovea_ros.parameters import Param, ParameterError
from fovea_ros.sync import ApproximateTimeSync, subscribe_synchronized
from fovea_ros.tf_buffer import TfBuffer, TransformLookupError, subscribe_tf

NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


class TpvOccupancyNode(FoveaNode):
    NAME = "tpv_occupancy"
    PARAMETERS = (
        Param("image_topics", [f"/{c.lower()}/image_raw" for c in NUSCENES_CAMERAS], "camera images, model order"),
        Param("camera_info_topics", [f"/{c.lower()}/camera_info" for c in NUSCENES_CAMERAS],
              "CameraInfo per image topic, same order"),
        Param("lidar_topic", "", "PointCloud2 to label per point; empty disables"),
        Param("base_frame", "base_link", "frame of the occupancy grid and the outputs"),
        Param("fallback_extrinsics", [0.0], "row-major 4x4 camera-optical -> base_frame transforms, 16 numbers "
              "per camera in image_topics order, used when TF has none; [0.0] = no fallback"),
        Param("backend", "onnxruntime", "inference backend", choices=("onnxruntime", "torch", "tensorrt")),
        Param("model_path", "models/tpv/tpv_cpu.onnx", "ONNX model (onnxruntime / tensorrt)"),
        Param("checkpoint_path", "models/tpv/tpv_cpu.pt", "state dict (torch backend)"),
        Param("x_range", [-25.0, 25.0], "grid extent along x, metres (must match the model)"),
        Param("y_range", [-25.0, 25.0], "grid extent along y, metres (must match the model)"),
        Param("z_range", [-0.4, 6.0], "grid extent along z, metres (must match the model)"),
        Param("plane_resolution", [25, 25, 4], "TPV plane cells along x, y, z (must match the model)"),
        Param("classes", list(CLASS_NAMES), "class names, index 0 = empty (must match the model)"),
        Param("score_threshold", 0.5, "voxels whose label probability is below this are not published",
              min_value=0.0, max_value=1.0, dynamic=True),
        Param("sync_slop", 0.1, "approximate-time window for one camera set, seconds", min_value=0.0, max_value=5.0),
        Param("sync_queue_size", 10, "messages per input the synchronizer keeps", min_value=1, max_value=1000),
        Param("occupancy_topic", "tpv/occupancy", "PointCloud2 of occupied voxel centres"),
        Param("markers_topic", "tpv/occupancy_markers", "MarkerArray of the occupancy"),
        Param("labelled_points_topic", "tpv/labelled_points", "lidar cloud with label/confidence fields"),
        Param("query_service", "tpv/query_points", "fovea_msgs/srv/QueryPoints service name"),
    )

    def configure(self) -> None:
        p = self.params
        n = len(p.image_topics)
        if len(p.camera_info_topics) != n:
            raise ParameterError(f"parameter 'camera_info_topics': {len(p.camera_info_topics)} topics for {n} images")
        fallback = [float(v) for v in p.fallback_extrinsics]
        if fallback != [0.0] and len(fallback) != 16 * n:
            raise ParameterError(f"parameter 'fallback_extrinsics': need 16 numbers per camera ({16 * n}), "
                                 f"got {len(fallback)}")
        self.fallback = np.asarray(fallback).reshape(n, 4, 4) if fallback != [0.0] else None
        self.model = TPVInference.load(p.backend, model_path=str(resolve_data_path(p.model_path)),
                                       checkpoint_path=str(resolve_data_path(p.checkpoint_path)),
                                       model_parameter="model_path", checkpoint_parameter="checkpoint_path")
        self._check_model_matches_parameters(n)
        self.calibrations: dict[int, object] = {}
        self.tf = TfBuffer()
        self._latest = None  # (stamp ns, Prediction) for the query service
        self._latest_lock = threading.Lock()
        self._rig = None  # the rig last announced: the model runs whatever CameraInfo + TF describe

    def activate(self) -> None:
        p = self.params
        self._tf_subs = subscribe_tf(self, self.tf)
        for i, topic in enumerate(p.camera_info_topics):
            self.create_subscription(CameraInfo, topic, lambda msg, i=i: self.on_camera_info(i, msg), self.sensor_qos())
        inputs = [(Image, t) for t in p.image_topics] + ([(PointCloud2, p.lidar_topic)] if p.lidar_topic else [])
        self.sync = ApproximateTimeSync(len(inputs), p.sync_queue_size, p.sync_slop, self.on_set)
        self._sync_subs = subscribe_synchronized(self, inputs, self.sync, self.sensor_qos())
        self.occupancy_pub = self.create_publisher(PointCloud2, p.occupancy_topic, 2)
        self.markers_pub = self.create_publisher(MarkerArray, p.markers_topic, 2)
        self.points_pub = self.create_publisher(PointCloud2, p.labelled_points_topic, 2) if p.lidar_topic else None
        self._service = self._create_query_service()
        self.set_diagnostic("state", "waiting for camera sets")
        self.start_worker(self.process)

    def cleanup(self) -> None:
        self.model = None
        self._latest = None

    # ---------------------------------------------------------------- set-up checks
    def _check_model_matches_parameters(self, num_cameras: int) -> None:
        cfg, p = self.model.cfg, self.params
        for name, want in (("x_range", cfg.x_range), ("y_range", cfg.y_range), ("z_range", cfg.z_range)):
            if not np.allclose(getattr(p, name), want):
                raise ParameterError(f"parameter '{name}': {list(getattr(p, name))} but the model was trained "
                                     f"for {list(want)}")
        if list(p.plane_resolution) != [cfg.plane_x, cfg.plane_y, cfg.plane_z]:
            raise ParameterError(f"parameter 'plane_resolution': {list(p.plane_resolution)} but the model has "
                                 f"{[cfg.plane_x, cfg.plane_y, cfg.plane_z]}")
        if len(p.classes) != cfg.num_classes:
            raise ParameterError(f"parameter 'classes': {len(p.classes)} names for a model of {cfg.num_classes} classes")
        if self.model.num_cameras is not None and self.model.num_cameras != num_cameras:
            raise ParameterError(f"parameter 'image_topics': {num_cameras} cameras but the model takes "
                                 f"{self.model.num_cameras}")

    def _create_query_service(self):
        try:
            from fovea_msgs.srv import QueryPoints
        except ImportError:  # interfaces not built: the node still publishes, without the service
            self.get_logger().warning("fovea_msgs is not built: the query service is not offered")
            return None
        return self.create_service(QueryPoints, self.params.query_service, self.on_query)

    # ---------------------------------------------------------------- callbacks (executor thread, cheap)
    def on_camera_info(self, index: int, msg: CameraInfo) -> None:
        try:
            self.calibrations[index] = camera_info_to_calibration(msg)
        except ValueError as exc:
            self.drop("invalid CameraInfo", f"{self.params.camera_info_topics[index]}: {exc}")

    def _extrinsic(self, index: int, frame_id: str, stamp_ns: int) -> np.ndarray | None:
        try:
            return self.tf.lookup_matrix(self.params.base_frame, frame_id, stamp_ns)
        except TransformLookupError:
            try:  # a static rig: the latest transform is as good as one at the stamp
                return self.tf.lookup_matrix(self.params.base_frame, frame_id, None)
            except TransformLookupError:
                return None if self.fallback is None else self.fallback[index]

    def on_set(self, *msgs) -> None:
        p = self.params
        images_msgs = msgs[:len(p.image_topics)]
        lidar_msg = msgs[len(p.image_topics)] if p.lidar_topic else None
        self.count_input("camera_set")
        stamp = images_msgs[0].header.stamp
        if not self.accept_stamp("camera_set", stamp):
            return
        missing = [p.camera_info_topics[i] for i in range(len(images_msgs)) if i not in self.calibrations]
        if missing:
            self.set_diagnostic("state", f"refusing to run: no CameraInfo yet on {', '.join(missing)}")
            self.drop("calibration unknown", f"no CameraInfo on {', '.join(missing)}")
            return
        stamp_ns = stamp_to_ns(stamp)
        images, Ks, extrinsics = [], [], []
        for i, msg in enumerate(images_msgs):
            calib = self.calibrations[i]
            if (msg.width, msg.height) != (calib.width, calib.height):
                self.set_diagnostic("state", f"image size mismatch on {p.image_topics[i]}")
                self.drop("image size mismatch", f"{p.image_topics[i]} is {msg.width}x{msg.height}, its CameraInfo "
                          f"says {calib.width}x{calib.height}")
                return
            frame = msg.header.frame_id or calib.frame_id
            T = self._extrinsic(i, frame, stamp_ns)
            if T is None:
                self.set_diagnostic("state", f"refusing to run: no transform {p.base_frame} <- {frame!r} "
                                             "in TF and no fallback_extrinsics")
                self.drop("extrinsics unknown", f"{p.base_frame} <- {frame!r}")
                return
            try:
                pixels = image_to_array(msg)
            except (MessageLayoutError, UnsupportedEncodingError, ValueError) as exc:
                self.drop("malformed image", f"{p.image_topics[i]}: {exc}")
                return
            if msg.encoding not in ("rgb8", "bgr8"):
                self.drop("unsupported encoding", f"{p.image_topics[i]}: {msg.encoding} (need rgb8 or bgr8)")
                return
            images.append(np.ascontiguousarray(pixels[..., ::-1] if msg.encoding == "bgr8" else pixels))
            Ks.append(calib.K)
            extrinsics.append(T)
        self._announce_rig([msg.header.frame_id or self.calibrations[i].frame_id for i, msg in enumerate(images_msgs)],
                           Ks, extrinsics, [(m.width, m.height) for m in images_msgs])
        lidar = None
        if lidar_msg is not None:
            try:
                cloud = pointcloud2_to_array(lidar_msg, copy=True, require_xyz=True).reshape(-1)
                T = self.tf.lookup_matrix(p.base_frame, lidar_msg.header.frame_id, None) \
                    if lidar_msg.header.frame_id != p.base_frame else np.eye(4)
            except (MessageLayoutError, ValueError) as exc:  # no / bad x, y, z have reasons of their own
                self.drop(getattr(exc, "reason", None) or "malformed cloud", f"{p.lidar_topic}: {exc}")
                return
            except TransformLookupError:
                self.drop("extrinsics unknown", f"{p.base_frame} <- {lidar_msg.header.frame_id!r} (lidar)")
                return
            xyz = xyz_array(cloud)
            lidar = (lidar_msg.header, cloud, transform_points(T, xyz).astype(np.float32))
        self.submit((images_msgs[0].header, images, Ks, extrinsics, lidar))

    def _announce_rig(self, frames, Ks, extrinsics, sizes) -> None:
        """Log (and put on /diagnostics) the rig the model runs, whenever CameraInfo or TF change it."""
        key = (tuple(frames), tuple(sizes), np.round(np.stack(Ks), 2).tobytes(), np.round(np.stack(extrinsics), 3).tobytes())
        if key == self._rig:
            return
        self._rig = key
        text = describe_rig(frames, Ks, extrinsics, sizes)
        self.get_logger().info(f"running on the rig from CameraInfo + TF: {text}")
        self.set_diagnostic("rig", text)

    # ---------------------------------------------------------------- worker thread
    def process(self, item) -> None:
        header, images, Ks, extrinsics, lidar = item
        points = None if lidar is None else np.nan_to_num(lidar[2], nan=1e6)
        pred = self.model.predict(images, Ks, extrinsics, points)
        with self._latest_lock:
            self._latest = (stamp_to_ns(header.stamp), pred)
        out_header = type(header)(stamp=header.stamp, frame_id=self.params.base_frame)
        keep = (pred.voxel_labels > 0) & (pred.voxel_confidence >= self.params.score_threshold)
        centres = self.model.voxel_centres()[keep]
        cloud = np.zeros(len(centres), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u2"),
                                              ("confidence", "<f4")])
        cloud["x"], cloud["y"], cloud["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
        cloud["label"] = pred.voxel_labels[keep]
        cloud["confidence"] = pred.voxel_confidence[keep]
        self.occupancy_pub.publish(array_to_pointcloud2(cloud, out_header))
        self.markers_pub.publish(self._markers(cloud, out_header))
        if lidar is not None:
            lidar_header, raw, _ = lidar
            names = [n for n in raw.dtype.names if n not in ("label", "confidence")]
            labelled = np.zeros(len(raw), dtype=[(n, raw.dtype[n]) for n in names] + [("label", "<u2"),
                                                                                       ("confidence", "<f4")])
            for n in names:
                labelled[n] = raw[n]
            labelled["label"] = pred.point_labels
            labelled["confidence"] = pred.point_confidence
            self.points_pub.publish(array_to_pointcloud2(labelled, lidar_header))
        self.set_diagnostic("occupied_voxels", int(keep.sum()))
        self.set_diagnostic("state", "running")

    def _markers(self, cloud: np.ndarray, header) -> MarkerArray:
        size = self.model.cfg.voxel_size
        markers = MarkerArray()
        for c in range(1, len(CLASS_NAMES)):
            m = Marker(header=header, ns=CLASS_NAMES[c], id=c, type=Marker.CUBE_LIST, action=Marker.ADD)
            m.scale.x, m.scale.y, m.scale.z = (float(s) for s in size)
            m.pose.orientation.w = 1.0
            r, g, b = (float(v) for v in CLASS_COLORS[c])
            m.color = ColorRGBA(r=r, g=g, b=b, a=0.8)
            sel = cloud[cloud["label"] == c]
            m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in zip(sel["x"], sel["y"], sel["z"])]
            markers.markers.append(m)
        return markers

    # ---------------------------------------------------------------- service
    def on_query(self, request, response):
        n = len(request.x)
        if not (len(request.y) == n and len(request.z) == n and len(request.t) in (0, n)):
            response.success, response.message = False, "x, y, z (and t when given) must have the same length"
            return response
        with self._latest_lock:
            latest = self._latest
        if latest is None:
            response.success, response.message = False, "no occupancy yet (waiting for a calibrated camera set)"
            return response
        pts = np.stack([np.asarray(request.x), np.asarray(request.y), np.asarray(request.z)], 1).astype(np.float64)
        frame = request.header.frame_id or self.params.base_frame
        if frame != self.params.base_frame:
            try:
                T = self.tf.lookup_matrix(self.params.base_frame, frame, stamp_to_ns(request.header.stamp) or None)
            except TransformLookupError as exc:
                response.success, response.message = False, f"cannot transform {frame} -> {self.params.base_frame}: {exc}"
                return response
            pts = transform_points(T, pts)
        labels, conf = self.model.lookup(latest[1], pts)
        response.success = True
        response.message = f"occupancy of stamp {latest[0]} ns; t is ignored (no time axis)"
        response.label = labels.astype(np.int32).tolist()
        response.probability = conf.astype(np.float32).tolist()
        return response


NODE_CLASS = TpvOccupancyNode


def main(args=None) -> int:
    return run_node(TpvOccupancyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

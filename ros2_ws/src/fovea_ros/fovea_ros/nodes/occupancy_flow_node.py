"""Occupancy flow (ImplicitO): occupancy and reverse flow at any (x, y, t) a planner asks for.

Inputs: ``input_topic`` (sensor_msgs/PointCloud2, sensor-data QoS) and TF: ``world_frame`` <- ``base_frame``
at every sweep stamp (odometry) to motion-compensate the last ``sweeps`` sweeps into the latest one's
base_link (``fovea_core.occflow.history``), and the cloud's frame -> ``base_frame``. A sweep waits up to
``tf_timeout`` for its transforms (they often arrive just after it), then is dropped ("missing TF"); a
missing sweep in the history (dropped, or the node just started) is masked, not filled.
Map: ``map_file`` (an Argoverse 2 ``log_map_archive_*.json``, coordinates in ``map_frame``), rasterised
around the ego per sweep (TF ``map_frame`` <- ``base_frame``); empty = map-less (the map channels are
masked, which the model was trained for).

The encoder runs once per sweep (worker thread, ``threads`` for ONNX Runtime / torch and for numpy's BLAS
and OpenMP pools); the service runs only the decoder on the latest features.

Service ``query_service`` (fovea_msgs/srv/QueryPoints), time and frame semantics:
- points are in ``header.frame_id`` (any TF frame; empty = ``base_frame``) at time ``header.stamp`` (zero =
  the latest sweep's stamp); they are moved through ``world_frame`` into base_link at the latest sweep;
- ``t`` is seconds after ``header.stamp``, so the model is asked at tau = (header.stamp - sweep stamp) + t;
  tau must lie in [0, horizon] (else STATUS_OUTSIDE_HORIZON);
- per point: ``class_probability`` (vehicle, pedestrian, cyclist: the ``classes`` parameter),
  ``probability`` = P(occupied by any class) = 1 - prod(1 - p_c), ``label`` = most probable class
  (-1 where the status is not OK), ``flow_x``/``flow_y`` = velocity of that class's occupant in m/s in
  ``header.frame_id`` (-reverse flow / flow_dt: the model's reverse flow points to where the occupant was
  flow_dt earlier), ``status`` per point (NaN, outside the grid, outside the horizon).
- whole-request failures (success false, message says why): unequal array lengths, more than
  ``max_query_points``, an unknown frame, no sweep processed yet.

Previews, stamped with the sweep's stamp, in ``base_frame``: one nav_msgs/OccupancyGrid per
``preview_horizons`` entry on ``<occupancy_topic>_<ms>ms`` (0-100 = P(any class) x 100, at
``preview_resolution``), and ``flow_markers_topic`` (visualization_msgs/MarkerArray: an arrow per occupied
preview cell from where its occupant was flow_dt earlier to where it is, one namespace per horizon). They
are decoder queries at the preview cells' centres, made every ``preview_every``-th sweep and only for
horizons whose grid topic (or the markers topic) has a subscriber: a planner that only calls the service
pays for the encoder alone.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np
from geometry_msgs.msg import Point
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from fovea_core.occflow.config import CLASS_NAMES
from fovea_core.occflow.history import SweepHistory, move_points
from fovea_core.threads import limited_threads
from fovea_core.paths import resolve_data_path
from fovea_ros.conversions import drop_non_finite_xyz, pointcloud2_to_array
from fovea_ros.node_base import FoveaNode, run_node, stamp_to_ns
from fovea_ros.parameters import Param, ParameterError
from fovea_ros.tf_buffer import TfBuffer, TransformLookupError, subscribe_tf

PREVIEW_COLOURS = ((0.1, 0.6, 1.0), (1.0, 0.6, 0.1), (0.9, 0.1, 0.5), (0.3, 0.9, 0.3))


class OccupancyFlowNode(FoveaNode):
    NAME = "occupancy_flow"
    PARAMETERS = (
        Param("input_topic", "/lidar/points", "PointCloud2 sweeps (any frame with a TF path to base_frame)"),
        Param("base_frame", "base_link", "frame of the BEV grid (the latest sweep's)"),
        Param("world_frame", "odom", "fixed frame for ego-motion compensation of the sweep history"),
        Param("map_frame", "map", "frame of map_file's coordinates"),
        Param("map_file", "", "Argoverse 2 vector map JSON; empty = map-less"),
        Param("backend", "onnxruntime", "inference backend", choices=("onnxruntime", "torch", "tensorrt")),
        Param("encoder_path", "models/occflow/implicito_encoder.onnx", "ONNX encoder (onnxruntime / tensorrt)"),
        Param("decoder_path", "models/occflow/implicito_decoder.onnx", "ONNX decoder (onnxruntime / tensorrt)"),
        Param("checkpoint_path", "models/occflow/implicito.pt", "state dict (torch backend)"),
        Param("threads", 1, "CPU threads for inference and the per-sweep numpy work", min_value=1, max_value=64),
        Param("classes", list(CLASS_NAMES), "class names, model order (must match the model)"),
        Param("query_service", "occupancy_flow/query_points", "fovea_msgs/srv/QueryPoints service name"),
        Param("max_query_points", 200000, "larger requests are refused", min_value=1, dynamic=True),
        Param("occupancy_topic", "occupancy_flow/occupancy", "OccupancyGrid previews: <topic>_<ms>ms per horizon"),
        Param("flow_markers_topic", "occupancy_flow/flow_markers", "MarkerArray of reverse-flow arrows"),
        Param("preview_horizons", [1.0, 2.0, 3.0], "seconds after the sweep; one OccupancyGrid each; [] = none"),
        Param("preview_resolution", 0.8, "cell size of the previews, metres (a multiple of the model's)",
              min_value=0.05, max_value=10.0),
        Param("preview_every", 1, "previews every n-th sweep (queries are always served); horizons without a "
              "subscriber are skipped", min_value=1, dynamic=True),
        Param("marker_threshold", 0.5, "previews cells with P(occupied) above this get a flow arrow",
              min_value=0.0, max_value=1.0, dynamic=True),
        Param("max_markers", 400, "flow arrows per horizon at most (the most probable cells)", min_value=0,
              dynamic=True),
        Param("tf_timeout", 0.3, "seconds a sweep waits for its TF (transforms arrive on their own topic, often "
              "just after the sweep) before it is dropped as 'missing TF'", min_value=0.0, max_value=10.0, dynamic=True),
        Param("max_sweep_gap", 0.25, "seconds; an older sweep than (sweeps-1) periods + this is not history",
              min_value=0.0, max_value=5.0),
    )

    # ---------------------------------------------------------------- lifecycle
    def configure(self) -> None:
        from fovea_core.occflow.inference import OccFlowInference

        p = self.params
        self.model = OccFlowInference.load(p.backend, str(resolve_data_path(p.encoder_path)),
                                           str(resolve_data_path(p.decoder_path)),
                                           str(resolve_data_path(p.checkpoint_path)), threads=p.threads)
        cfg = self.model.cfg
        if len(p.classes) != cfg.num_classes:
            raise ParameterError(f"parameter 'classes': {len(p.classes)} names for a model of {cfg.num_classes} classes")
        for h in p.preview_horizons:
            if not 0.0 <= h <= cfg.horizon:
                raise ParameterError(f"parameter 'preview_horizons': {h} s is outside the model's 0-{cfg.horizon:g} s")
        stride = p.preview_resolution / cfg.resolution
        if abs(stride - round(stride)) > 1e-6 or round(stride) < 1:
            raise ParameterError(f"parameter 'preview_resolution': {p.preview_resolution} m is not a multiple of "
                                 f"the model's {cfg.resolution} m cells")
        self.vmap = self.map_raster = None
        if p.map_file:
            from fovea_core.occflow.vector_map import MapRasteriser, read_av2_map

            path = resolve_data_path(p.map_file)
            try:
                self.vmap = read_av2_map(path)
            except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
                raise ParameterError(f"parameter 'map_file': cannot read {path}: {type(exc).__name__}: {exc}") from exc
            self.map_raster = MapRasteriser(self.vmap, cfg.resolution)
        self.tf = TfBuffer(cache_duration_s=max(10.0, 4 * cfg.sweeps * cfg.sweep_period))
        self.history = SweepHistory(cfg, p.max_sweep_gap)
        self._latest = None   # (stamp ns, maps, T_base_world)
        stride = int(round(p.preview_resolution / cfg.resolution))
        ny, nx = cfg.ny // stride, cfg.nx // stride   # preview cells: stride x stride model cells, at their centre
        centres = self.model.grid.cell_centres()[:ny * stride, :nx * stride]
        self._preview_cells = centres.reshape(ny, stride, nx, stride, 2).mean((1, 3)).reshape(-1, 2)
        self._preview_shape = (ny, nx)
        self._latest_lock = threading.Lock()
        self._sweeps_done = 0
        self._answered = self._rejected = 0
        self.set_diagnostic("state", "waiting for sweeps")
        self.set_diagnostic("map", "none (map-less)" if self.vmap is None else f"{len(self.vmap.lanes)} lanes")

    def activate(self) -> None:
        from fovea_msgs.srv import QueryPoints

        p = self.params
        self._tf_subs = subscribe_tf(self, self.tf)
        self.grid_pubs = {h: self.create_publisher(OccupancyGrid, f"{p.occupancy_topic}_{int(round(h * 1000))}ms", 2)
                          for h in p.preview_horizons}
        self.markers_pub = self.create_publisher(MarkerArray, p.flow_markers_topic, 2)
        self.create_service(QueryPoints, p.query_service, self.on_query)
        self.create_subscription(PointCloud2, p.input_topic, self.on_cloud, self.sensor_qos())
        self._waiting_for_tf: collections.deque = collections.deque()  # (deadline, header, points)
        self.create_timer(0.02, self._retry_waiting)
        self.start_worker(self.process)

    def cleanup(self) -> None:
        self.model = None
        self._latest = None
        self.history.clear()

    # ---------------------------------------------------------------- sweeps (executor thread, cheap)
    def on_cloud(self, msg: PointCloud2) -> None:
        p = self.params
        points = self.receive(p.input_topic, msg, lambda m: pointcloud2_to_array(m, require_xyz=True), "cloud")
        if points is None:
            return
        points, non_finite = drop_non_finite_xyz(points.reshape(-1))
        if non_finite:
            self.drop("non-finite points removed", f"{non_finite} NaN/inf points removed", n=non_finite)
        if len(points) == 0:
            self.drop("empty cloud", "no valid points")
            return
        self._waiting_for_tf.append((time.monotonic() + p.tf_timeout, msg.header, points))
        self._retry_waiting()

    def _retry_waiting(self) -> None:
        """Submit the waiting sweeps whose transforms have arrived (oldest first, as tf2's message filter
        does); drop those past ``tf_timeout`` as 'missing TF'."""
        while self._waiting_for_tf:
            deadline, header, points = self._waiting_for_tf[0]
            try:
                item = self._with_transforms(header, points)
            except TransformLookupError as exc:
                if time.monotonic() < deadline:
                    return
                self._waiting_for_tf.popleft()
                self.set_diagnostic("state", f"missing TF: {exc}")
                self.drop("missing TF", str(exc))
                continue
            self._waiting_for_tf.popleft()
            self.submit(item)

    def _with_transforms(self, header, points):
        """The sweep's transforms (TF lookups only: the points are moved on the worker)."""
        p = self.params
        stamp = stamp_to_ns(header.stamp)
        T_world_base = self.tf.lookup_matrix(p.world_frame, p.base_frame, stamp)
        T_base_cloud = None if header.frame_id in ("", p.base_frame) else \
            self.tf.lookup_matrix(p.base_frame, header.frame_id, stamp)
        T_map_base = self.tf.lookup_matrix(p.map_frame, p.base_frame, stamp) if self.vmap is not None else None
        return header, points, T_base_cloud, T_world_base, T_map_base

    # ---------------------------------------------------------------- worker: encoder once per sweep
    def process(self, item) -> None:
        with limited_threads(self.params.threads):
            self._process(*item)

    def _process(self, header, points, T_base_cloud, T_world_base, T_map_base) -> None:
        p = self.params
        stamp = stamp_to_ns(header.stamp)
        xyz = np.stack([points["x"], points["y"], points["z"]], 1).astype(np.float32)
        slots = self.history.add(stamp, xyz if T_base_cloud is None else move_points(xyz, T_base_cloud), T_world_base)
        raster = None if self.map_raster is None else self.map_raster.around(T_map_base, self.model.grid)
        maps = self.model.encode(slots, raster)
        with self._latest_lock:
            self._latest = (stamp, maps, np.linalg.inv(T_world_base))
        self._sweeps_done += 1
        self.set_diagnostic("history_sweeps", sum(s is not None for s in slots))
        self.set_diagnostic("state", "running")
        if p.preview_horizons and (self._sweeps_done - 1) % p.preview_every == 0:
            self._publish_previews(header, maps)

    def _publish_previews(self, header, maps) -> None:
        cfg, p = self.model.cfg, self.params
        (ny, nx), block = self._preview_shape, self._preview_cells
        out_header = type(header)(stamp=header.stamp, frame_id=p.base_frame)
        want_markers = self.markers_pub.get_subscription_count() > 0
        markers = MarkerArray()
        for i, h in enumerate(p.preview_horizons):
            if not (want_markers or self.grid_pubs[h].get_subscription_count() > 0):
                continue   # nobody looks at this horizon: no decoder work for it
            occ, flow = self.model.query(maps, np.concatenate([block, np.full((len(block), 1), h)], 1))
            any_occ = 1.0 - np.prod(1.0 - occ, axis=1)
            grid = OccupancyGrid(header=out_header)
            grid.info.map_load_time = header.stamp
            grid.info.resolution = float(p.preview_resolution)
            grid.info.width, grid.info.height = nx, ny
            grid.info.origin.position.x, grid.info.origin.position.y = float(cfg.x_range[0]), float(cfg.y_range[0])
            grid.info.origin.orientation.w = 1.0
            grid.data = np.clip(np.rint(any_occ * 100), 0, 100).astype(np.int8).tolist()
            self.grid_pubs[h].publish(grid)
            if want_markers:
                markers.markers.append(self._arrows(out_header, i, h, block, occ, flow, any_occ))
        if want_markers:
            self.markers_pub.publish(markers)

    def _arrows(self, header, index, horizon, cells, occ, flow, any_occ) -> Marker:
        p = self.params
        m = Marker(header=header, ns=f"flow_{int(round(horizon * 1000))}ms", id=index, type=Marker.LINE_LIST,
                   action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = 0.15
        r, g, b = PREVIEW_COLOURS[index % len(PREVIEW_COLOURS)]
        m.color = ColorRGBA(r=r, g=g, b=b, a=0.9)
        pick = np.nonzero(any_occ > p.marker_threshold)[0]
        pick = pick[np.argsort(-any_occ[pick])][:p.max_markers]
        cls = np.argmax(occ[pick], 1)
        for idx, c in zip(pick, cls):
            x, y = cells[idx]
            dx, dy = flow[idx, c]
            # a line from where the occupant was flow_dt earlier to where it is now
            m.points += [Point(x=float(x + dx), y=float(y + dy), z=0.2), Point(x=float(x), y=float(y), z=0.2)]
        return m

    # ---------------------------------------------------------------- service: decoder only
    def on_query(self, request, response):
        p = self.params
        n = len(request.x)
        if not (len(request.y) == n and len(request.z) == n and len(request.t) in (0, n)):
            response.success, response.message = False, "x, y, z (and t when given) must have the same length"
            self.drop("bad query", response.message)
            return response
        if n > p.max_query_points:
            response.success = False
            response.message = f"{n} points is more than max_query_points={p.max_query_points}"
            self.drop("bad query", response.message)
            return response
        with self._latest_lock:
            latest = self._latest
        if latest is None or self.model is None:
            response.success, response.message = False, "no sweep processed yet"
            return response
        sweep_stamp, maps, T_base_world = latest
        cfg = self.model.cfg
        frame = request.header.frame_id or p.base_frame
        req_stamp = stamp_to_ns(request.header.stamp) or sweep_stamp
        try:
            if frame == p.base_frame and req_stamp == sweep_stamp:
                T = np.eye(4)
            else:
                T = T_base_world @ self.tf.lookup_matrix(p.world_frame, frame, req_stamp)
        except TransformLookupError as exc:
            response.success = False
            response.message = f"cannot transform {frame!r} -> {p.world_frame!r} at {req_stamp} ns: {exc}"
            self.drop("bad query", response.message)
            return response
        xyz = np.stack([np.asarray(request.x, np.float64), np.asarray(request.y, np.float64),
                        np.asarray(request.z, np.float64)], 1)
        t = np.asarray(request.t, np.float64) if len(request.t) else np.zeros(n)
        tau = (req_stamp - sweep_stamp) / 1e9 + t
        status = np.zeros(n, np.uint8)
        finite = np.isfinite(xyz).all(1) & np.isfinite(t)
        status[~finite] = 1
        local = move_points(np.where(finite[:, None], xyz, 0.0), T)
        inside = self.model.grid.contains(local[:, :2])
        status[finite & ~inside] = 2
        in_time = (tau >= -1e-6) & (tau <= cfg.horizon + 1e-6)
        status[finite & inside & ~in_time] = 3
        ok = status == 0
        C = cfg.num_classes
        class_p = np.zeros((n, C), np.float32)
        flow = np.zeros((n, C, 2), np.float32)
        if ok.any():
            occ_ok, flow_ok = self.model.query(maps, np.concatenate([local[ok, :2], np.clip(tau[ok], 0, cfg.horizon)[:, None]], 1))
            class_p[ok], flow[ok] = occ_ok, flow_ok
        label = np.where(ok, np.argmax(class_p, 1), -1).astype(np.int32)
        best_flow = flow[np.arange(n), np.maximum(label, 0)]                   # (n, 2) base_link, metres
        velocity_base = -best_flow / cfg.flow_dt
        R = T[:2, :2].T                                                         # base_link -> request frame
        velocity = (velocity_base[:, :1] * R[:, 0] + velocity_base[:, 1:] * R[:, 1]) * ok[:, None]
        response.success = True
        response.message = (f"sweep {sweep_stamp} ns; {int(ok.sum())}/{n} points answered "
                            f"({int((status == 1).sum())} not finite, {int((status == 2).sum())} outside the grid, "
                            f"{int((status == 3).sum())} outside 0-{cfg.horizon:g} s)")
        response.label = label.tolist()
        response.probability = np.where(ok, 1.0 - np.prod(1.0 - class_p, 1), 0.0).astype(np.float32).tolist()
        response.flow_x = velocity[:, 0].astype(np.float32).tolist()
        response.flow_y = velocity[:, 1].astype(np.float32).tolist()
        response.status = status.tolist()
        response.class_probability = class_p.reshape(-1).tolist()
        self._answered += int(ok.sum())
        self._rejected += int((~ok).sum())
        self.set_diagnostic("query_points_answered", self._answered)
        self.set_diagnostic("query_points_with_bad_status", self._rejected)
        return response


NODE_CLASS = OccupancyFlowNode


def main(args=None) -> int:
    return run_node(OccupancyFlowNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Event/frame stream anomaly node (after Feng et al., AVAD): learns what in-sync event and frame streams look
like and flags desync, frozen, dropped or spoofed data.

Topics
  subscribes  ``events_topic``  event_camera_msgs/EventPacket (evt3, mono, libcaer, libcaer_cmp), sensor-data QoS
              ``frames_topic``  sensor_msgs/Image (mono8, mono16, rgb8, bgr8), sensor-data QoS
  publishes   ``score_topic``   fovea_msgs/StreamAnomaly, one per scored frame step, stamped with the frame that
                                ends the step; while no frames arrive, one per events-only step
              ``/diagnostics``  OK / WARN / ERROR following the detector's state, plus the node's own books

In the callbacks: packets decoded (``fovea_core.events``; lost packets from ``seq`` gaps, malformed packets and
unsupported encodings dropped with their reason), event times mapped onto the frames' clock (ROS time) with
the offset of the first packet (so a later jump of the event clock shows instead of being absorbed), images
converted and checked (encoding, size); events batched (with each frame, or every 20 ms of event time) and
queued in arrival order with the frames for the worker, which runs the streaming detector (``fovea_core.events.anomaly.detector``). If the worker falls behind, the oldest queued
item is dropped and counted, and the detector starts over (a gap it caused must not look like a fault).
"""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from event_camera_msgs.msg import EventPacket
from fovea_msgs.msg import StreamAnomaly
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fovea_core.events.anomaly.bundle import load_models
from fovea_core.threads import set_process_threads
from fovea_core.events.anomaly.detector import StreamAnomalyDetector
from fovea_core.events.anomaly.streams import intensity_u8
from fovea_core.events.arrays import concat_events
from fovea_core.events.packets import PacketStreamDecoder, RawPacket
from fovea_core.paths import resolve_data_path
from fovea_ros.conversions import image_to_array
from fovea_ros.node_base import FoveaNode, run_node, stamp_to_ns
from fovea_ros.parameters import Param, ParameterError

EVENT_BATCH_NS = 20_000_000  # events to the worker at least this often (of event time) between frames
STATE_CODES = {"STARTING": StreamAnomaly.STARTING, "OK": StreamAnomaly.OK, "WARN": StreamAnomaly.WARN,
               "ERROR": StreamAnomaly.ERROR}
DIAGNOSTIC_LEVELS = {"STARTING": DiagnosticStatus.OK, "OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN,
                     "ERROR": DiagnosticStatus.ERROR}


class EventAnomalyNode(FoveaNode):
    NAME = "event_anomaly"
    PARAMETERS = (
        Param("events_topic", "/event_camera/events", "event_camera_msgs/EventPacket input"),
        Param("frames_topic", "/camera/image_raw", "sensor_msgs/Image input (the frame camera)"),
        Param("score_topic", "~/score", "fovea_msgs/StreamAnomaly output"),
        Param("model_path", "models/anomaly/anomaly.pt", "anomaly model file (weights_only torch file)"),
        Param("method", "classical", "sync features feeding the score (config/event_anomaly.yaml says why)",
              choices=("classical", "learned", "rule")),
        Param("threshold_scale", 1.0, "multiplies the calibrated threshold (site tuning; 1 = as calibrated)",
              min_value=0.1, max_value=100.0, dynamic=True),
        Param("error_ratio", 3.0, "window score this many thresholds or more is ERROR", min_value=1.0,
              dynamic=True),
        Param("stream_timeout", 1.0, "seconds one stream may be silent while the other runs before ERROR",
              min_value=0.05, max_value=60.0),
        Param("backend", "onnxruntime", "AR model runtime for full 50-step windows (torch before the window fills)",
              choices=("onnxruntime", "torch")),
        Param("onnx_dir", "models/anomaly/onnx", "exported AR models (backend onnxruntime)"),
        Param("threads", 1, "CPU threads for the networks", min_value=1, max_value=64),
    )

    def configure(self) -> None:
        set_process_threads(self.params.threads)
        self.models = load_models(resolve_data_path(self.params.model_path), "model_path")
        if self.params.method not in self.models.meta.thresholds:
            raise ParameterError(f"parameter 'method': the model file has no threshold for '{self.params.method}'")
        self.window_runners = {}
        if self.params.backend == "onnxruntime":
            from fovea_core.events.anomaly.scoring import onnx_window_runner

            onnx_dir = resolve_data_path(self.params.onnx_dir)
            for name in {self.params.method} - {"rule"}:
                path = onnx_dir / f"ar_{name}.onnx"
                if not path.is_file():
                    raise ParameterError(f"parameter 'onnx_dir': no {path.name} in {onnx_dir}")
                self.window_runners[name] = onnx_window_runner(path, self.params.threads, self.models.ar[name],
                                                                 "onnx_dir")
        self.set_diagnostic("model", f"{resolve_data_path(self.params.model_path).name} ({self.params.method}, "
                                     f"calibrated on {self.models.meta.calibration})")

    def activate(self) -> None:
        self.decoder = PacketStreamDecoder()
        self.detector = None  # built at the first packet or frame, once the sensor size is known
        self._size = None
        self._clock_offset = None  # ROS time - sensor time, from the first packet
        self._generation = 0
        self._worker_generation = -1
        self._last_item = -1
        self._stream_state = "STARTING"
        self._last_event_ros = 0
        self._pending_events: list[np.ndarray] = []
        self._pending_since = 0
        self._frame_id = ""
        self._streams_seen = {"events": 0, "frames": 0}
        self.score_pub = self.create_publisher(StreamAnomaly, self.params.score_topic, 10)
        self.create_subscription(EventPacket, self.params.events_topic, self.on_packet, self.sensor_qos(depth=200))
        self.create_subscription(Image, self.params.frames_topic, self.on_frame, self.sensor_qos(depth=20))
        self._items = 0
        self._last_packet_wall = time.monotonic()
        # a quiet event stream must not keep its last events back: flush a batch nobody completes
        self.create_timer(EVENT_BATCH_NS / 1e9, self._flush_if_quiet)
        self.start_worker(self.process)

    def cleanup(self) -> None:
        self.models = None

    # ---- executor thread ------------------------------------------------------------------------------
    def _submit(self, kind: str, *payload) -> None:
        self._items += 1
        self.submit((self._generation, self._items, kind, payload))

    def _restart(self, why: str) -> None:
        self.get_logger().warning(f"streams start over: {why}")
        self._pending_events = []
        self._generation += 1
        self._clock_offset = None
        # a fresh decoder (seq, clock and evt3 state start over) that keeps the books of every packet so far
        books = self.decoder.stats
        self.decoder = PacketStreamDecoder()
        self.decoder.stats = books

    def on_packet(self, msg: EventPacket) -> None:
        topic = self.params.events_topic
        self.count_input(topic)
        packet = RawPacket(msg.events.tobytes() if hasattr(msg.events, "tobytes") else bytes(msg.events),
                           msg.encoding, int(msg.width), int(msg.height), int(msg.seq), int(msg.time_base),
                           bool(msg.is_bigendian), stamp_to_ns(msg.header.stamp), msg.header.frame_id)
        out = self.decoder.decode(packet)
        self.set_diagnostic("lost_packets_seq", self.decoder.stats.lost_packets)
        self.set_diagnostic("out_of_frame_events", self.decoder.stats.out_of_frame_events)
        if out.lost_before:
            self.drop("lost packets (seq gap)", f"{out.lost_before} before seq {out.seq}", n=out.lost_before)
        if out.rejected:
            self.drop(f"malformed packet: {out.rejected}", f"seq {out.seq}")
            if out.rejected == "time before previous packet" and self._clock_offset is not None:
                back = (self._last_event_ros - (packet.stamp_ns)) / 1e9
                if back > self.params.time_jump_reset:
                    self._restart(f"event time jumped back {back:.1f} s")
            return
        if len(out.events) == 0:
            return
        if self._size not in (None, (packet.width, packet.height)):
            self._restart(f"sensor size changed to {packet.width}x{packet.height}")
        self._size = (packet.width, packet.height)
        if self._clock_offset is None:
            self._clock_offset = packet.stamp_ns - int(out.events["t"][0])
        events = out.events.copy()
        events["t"] += self._clock_offset
        self._last_event_ros = int(events["t"][-1])
        self._streams_seen["events"] += 1
        # packets come at up to 1 kHz: they go to the worker in batches (with each frame, or every
        # EVENT_BATCH_NS of event time without one), so the queue holds frames' worth of work, not packets
        self._pending_events.append(events)
        self._last_packet_wall = time.monotonic()
        if self._last_event_ros - self._pending_since >= EVENT_BATCH_NS:
            self._flush_events()

    def _flush_if_quiet(self) -> None:
        if self._pending_events and time.monotonic() - self._last_packet_wall > EVENT_BATCH_NS / 1e9:
            self._flush_events()

    def _flush_events(self) -> None:
        if self._pending_events:
            self._submit("events", concat_events(self._pending_events))
            self._pending_events = []
        self._pending_since = self._last_event_ros

    def on_frame(self, msg: Image) -> None:
        image = self.receive(self.params.frames_topic, msg,
                             lambda m: intensity_u8(image_to_array(m, copy=True), m.encoding), "image")
        if image is None:
            return
        if self._size is not None and image.shape != (self._size[1], self._size[0]):
            # the frames must see the event camera's view: one sensor (DAVIS) or a calibrated pair at one size
            self.drop("image size differs from the event sensor",
                      f"{image.shape[1]}x{image.shape[0]} vs {self._size[0]}x{self._size[1]}")
            return
        self._frame_id = msg.header.frame_id
        self._streams_seen["frames"] += 1
        self._flush_events()  # the events that arrived before the frame go first
        self._submit("frame", stamp_to_ns(msg.header.stamp), image, msg.header.frame_id)

    # ---- worker thread ----------------------------------------------------------------------------------
    def process(self, item) -> None:
        generation, number, kind, payload = item
        fresh = generation != self._worker_generation or self.detector is None
        if not fresh and number != self._last_item + 1:  # items superseded in the bounded queue: start over
            self.drop("detector restarted: worker behind", f"{number - self._last_item - 1} queued item(s) lost")
            fresh = True
        self._last_item = number
        if fresh:
            size = self._size if self._size is not None else (payload[1].shape[1], payload[1].shape[0])
            self.detector = StreamAnomalyDetector(self.models, size[0], size[1], self.params.method,
                                                  self.params.error_ratio, int(self.params.stream_timeout * 1e9),
                                                  self.params.threshold_scale, self.window_runners)
            self._worker_generation = generation
        if kind == "events":
            results = self.detector.push_events(payload[0])
        else:
            results = self.detector.push_frame(payload[0], payload[1])
        for result in results:
            self._publish(result)
        self.set_diagnostic("streams", "both" if all(self._streams_seen.values()) else
                            "events only" if self._streams_seen["events"] else "frames only")

    def on_parameter_change(self, name: str, value) -> None:
        detector = getattr(self, "detector", None)
        if detector is not None and name in ("threshold_scale", "error_ratio"):
            setattr(detector, name, float(value))

    def _publish(self, result) -> None:
        state = result.state
        msg = StreamAnomaly(header=Header(frame_id=self._frame_id), score=float(result.score),
                            threshold=float(result.threshold), state=STATE_CODES[state],
                            suspected_fault=result.suspected_fault, offset_ms=float(result.offset_ms),
                            method=result.method, events_in_step=int(result.events_in_step))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(result.stamp_ns), 1_000_000_000)
        self.score_pub.publish(msg)
        self._stream_state = state
        self.set_diagnostic("anomaly_state", state)
        self.set_diagnostic("anomaly_score", float(result.score))
        self.set_diagnostic("anomaly_threshold", float(result.threshold))
        self.set_diagnostic("suspected_fault", msg.suspected_fault or "none")
        self.set_diagnostic("offset_ms", float(result.offset_ms))
        self.set_diagnostic("scored_steps", self.latency.total)

    def diagnostic_status(self) -> DiagnosticStatus:
        """The base's books, at the level of the streams' state when that is worse."""
        status = super().diagnostic_status()
        stream_state = getattr(self, "_stream_state", "STARTING")
        level = DIAGNOSTIC_LEVELS[stream_state]
        if self.lifecycle_state == "active" and level > status.level:
            status.level = level
            status.message = f"streams {stream_state}: {self._diag_values.get('suspected_fault', 'unknown')}"
        return status


NODE_CLASS = EventAnomalyNode


def main(args=None) -> int:
    return run_node(EventAnomalyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

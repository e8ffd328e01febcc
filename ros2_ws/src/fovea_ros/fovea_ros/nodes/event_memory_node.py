"""HMNet event-memory node: dense semantic segmentation and depth from an event camera, one 5 ms step at a time.

Topics
  subscribes  ``input_topic``  event_camera_msgs/EventPacket (evt3, mono, libcaer or libcaer_cmp), sensor-data QoS
              ``image_topic``  sensor_msgs/Image, optional (counted only; reserved for fusion)
  publishes   ``labels_topic``  sensor_msgs/Image mono8, class id per pixel (model resolution)
              ``overlay_topic`` sensor_msgs/Image rgb8, class colours over the window's events
              ``depth_topic``   sensor_msgs/Image 32FC1, metres
  every output is stamped with the end of the processed window (ROS time, from the packets' stamps).

In the callback: packet -> events (``fovea_core.events`` decoders; lost packets from ``seq`` gaps, malformed
packets dropped with their reason), events scaled to the model grid, cut into 5 ms windows. The worker runs
one HMNet step per window (only the memory levels due at that step). The worker queue is bounded
(``queue_size`` windows): under a burst the oldest windows are skipped, and the skipped windows and their
events are reported in /diagnostics.

Stream accounting (``fovea_core.events.packets``): packets lost upstream (seq gaps the stamps leave room
for) are drops "lost packets (seq gap)"; seq jumps are reported (``seq_jumps``), not counted as loss; a
sensor restart (seq or time_base going back) is reported (``sensor_restarts``) and starts the stream afresh:
windowing and the model's memories reset, as for a new recording. Events the model grid cannot hold are
counted (``events_outside_model_grid``).

Backends: ``torch`` (the state dict), ``onnxruntime`` (CPU) or ``tensorrt`` (GPU) run the exported step
graphs in ``onnx_dir`` through ``fovea_core.backends``; TensorRT builds one engine per step graph into the
engine cache (``$FOVEA_ENGINE_CACHE``; prebuild with ``fovea build-engine``), reused while the ONNX file,
TensorRT, the GPU and the precision stay the same.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
from event_camera_msgs.msg import EventPacket
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fovea_core.events.hmnet.streaming import StreamingHMNet
from fovea_core.events.hmnet.train import load_model
from fovea_core.events.packets import PacketStreamDecoder, RawPacket
from fovea_core.events.windows import EventWindower
from fovea_core.paths import resolve_data_path
from fovea_core.telemetry import LatencyWindow
from fovea_ros.conversions import array_to_image
from fovea_ros.node_base import FoveaNode, run_node, stamp_to_ns
from fovea_ros.parameters import Param, ParameterError

PALETTE = np.array([[40, 40, 40], [230, 80, 60], [60, 160, 230], [240, 200, 50], [120, 220, 120],
                    [200, 120, 220], [250, 250, 250], [90, 90, 200]], dtype=np.uint8)


class EventMemoryNode(FoveaNode):
    NAME = "event_memory"
    PARAMETERS = (
        Param("input_topic", "/event_camera/events", "event_camera_msgs/EventPacket input"),
        Param("image_topic", "", "optional sensor_msgs/Image (counted; reserved for fusion); empty = none"),
        Param("labels_topic", "~/segmentation", "mono8 class ids"),
        Param("overlay_topic", "~/segmentation_overlay", "rgb8 class colours over the window's events"),
        Param("depth_topic", "~/depth", "32FC1 depth in metres"),
        Param("model_path", "models/hmnet/hmnet.pt", "HMNet state dict (.pt, loaded with weights_only=True)"),
        Param("backend", "torch", "inference backend for the step graphs",
              choices=("torch", "onnxruntime", "tensorrt")),
        Param("onnx_dir", "models/hmnet/onnx", "folder with the exported step graphs (onnxruntime, tensorrt)"),
        Param("precision", "fp32", "tensorrt engine precision", choices=("fp32", "fp16")),
        Param("threads", 1, "CPU threads for inference", min_value=1, max_value=64),
        Param("max_events_per_window", 500000, "newest events kept per 5 ms window under bursts", min_value=1),
        Param("max_gap_windows", 200, "empty windows stepped through before jumping over a silence", min_value=0),
    )

    def configure(self) -> None:
        p = self.params
        if p.precision != "fp32" and p.backend != "tensorrt":
            raise ParameterError(f"parameter 'precision': {p.precision} needs backend tensorrt (the other backends "
                                 "run the model's own fp32)")
        model_path = resolve_data_path(p.model_path)
        import torch

        torch.set_num_threads(p.threads)
        model, meta = load_model(model_path, "model_path")  # once, at configure; a bad file is one line
        self.cfg = model.cfg
        if p.backend == "torch":
            self.stream = StreamingHMNet.from_torch(model)
        else:
            options = {"precision": p.precision} if p.backend == "tensorrt" else {}
            self.stream = StreamingHMNet.from_onnx(self.cfg, resolve_data_path(p.onnx_dir), threads=p.threads,
                                                   backend=p.backend, parameter="onnx_dir", **options)
        self.set_diagnostic("model", f"{meta.get('variant', 'hmnet')} {model_path.name} ({self.params.backend})")
        self.get_logger().info(f"HMNet {self.cfg.width}x{self.cfg.height}, levels every {self.cfg.rates} steps of "
                               f"{self.cfg.window_ns / 1e6:g} ms, backend {self.params.backend}")

    def activate(self) -> None:
        # a fresh stream on every activation: memories and the decoder's clock start over
        self.stream.reset()
        self.decoder = PacketStreamDecoder()
        self.windower = EventWindower(self.cfg.window_ns, self.params.max_gap_windows,
                                      self.params.max_events_per_window)
        self.step_latency = LatencyWindow()
        self._events_in = deque()  # (monotonic time, count) for the event rate
        self._last_window = None
        self._skipped_windows = 0
        self._skipped_events = 0
        self._outside_grid = 0
        self._generation = 0  # bumped at each sensor restart; the worker resets the model's memories on it
        self._worker_generation = 0
        self._frame_id = ""
        qos = self.sensor_qos()
        self.labels_pub = self.create_publisher(Image, self.params.labels_topic, qos)
        self.overlay_pub = self.create_publisher(Image, self.params.overlay_topic, qos)
        self.depth_pub = self.create_publisher(Image, self.params.depth_topic, qos)
        # event packets come at hundreds of Hz: a deeper reader history rides out a slow callback
        self.create_subscription(EventPacket, self.params.input_topic, self.on_packet, self.sensor_qos(depth=200))
        if self.params.image_topic:
            self.create_subscription(Image, self.params.image_topic,
                                     lambda msg: self.count_input(self.params.image_topic), qos)
        self.start_worker(self.process)

    def cleanup(self) -> None:
        self.stream = None

    # ---- executor thread: cheap conversion, bookkeeping ------------------------------------------
    def on_packet(self, msg: EventPacket) -> None:
        topic = self.params.input_topic
        self.count_input(topic)
        packet = RawPacket(msg.events.tobytes() if hasattr(msg.events, "tobytes") else bytes(msg.events),
                           msg.encoding, int(msg.width), int(msg.height), int(msg.seq), int(msg.time_base),
                           bool(msg.is_bigendian), stamp_to_ns(msg.header.stamp), msg.header.frame_id)
        out = self.decoder.decode(packet)
        stats = self.decoder.stats
        # stream health is known here, whether or not a window completes
        self.set_diagnostic("lost_packets_seq", stats.lost_packets)
        self.set_diagnostic("rejected_packets", sum(stats.rejected.values()))
        self.set_diagnostic("seq_jumps", stats.seq_jumps)
        self.set_diagnostic("out_of_frame_events", stats.out_of_frame_events)
        self.set_diagnostic("sensor_restarts", sum(stats.restarts.values()))
        if out.restart:
            self.get_logger().warning(f"{topic}: sensor restart ({out.restart} at seq {out.seq}); windows and the "
                                      "model's memories start afresh")
            self.windower = EventWindower(self.cfg.window_ns, self.params.max_gap_windows,
                                          self.params.max_events_per_window)
            self._generation += 1
        if out.seq_jump:
            self.get_logger().warning(f"{topic}: seq jumped by {out.seq_jump} at seq {out.seq} with no time for the "
                                      "packets in between: not counted as lost")
        if out.lost_before:
            self.drop("lost packets (seq gap)", f"{out.lost_before} before seq {out.seq}", n=out.lost_before)
        if out.rejected:
            self.drop(f"malformed packet: {out.rejected}", f"seq {out.seq}")
            return
        if len(out.events) == 0:
            return
        self._frame_id = msg.header.frame_id
        now = time.monotonic()
        self._events_in.append((now, len(out.events)))
        events = self._to_model_grid(out.events, packet.width, packet.height)
        for window in self.windower.push(events, packet.stamp_ns):
            self.submit((self._generation, window))

    def _to_model_grid(self, events: np.ndarray, width: int, height: int) -> np.ndarray:
        """Scale sensor coordinates onto the model's input grid (the model is trained at its own size); events
        the grid's fast-memory cells cannot hold (a width not divisible by the cell size) are counted."""
        if (width, height) != (self.cfg.width, self.cfg.height):
            scaled = events.copy()
            scaled["x"] = (events["x"].astype(np.int64) * self.cfg.width) // width  # width, height > 0: checked
            scaled["y"] = (events["y"].astype(np.int64) * self.cfg.height) // height  # by the packet decoder
            events = scaled
        stride = self.cfg.strides[0]
        outside = int(np.count_nonzero((events["x"] >= self.cfg.width // stride * stride)
                                       | (events["y"] >= self.cfg.height // stride * stride)))
        if outside:
            self._outside_grid += outside
            self.set_diagnostic("events_outside_model_grid", self._outside_grid)
        return events

    # ---- worker thread: one HMNet step per window ------------------------------------------------
    def process(self, item) -> None:
        generation, window = item
        if generation != self._worker_generation:  # a sensor restart: a new recording as far as memory goes
            self._worker_generation, self._last_window = generation, None
            self.stream.reset()
        windows, events = window.skipped_since(self._last_window)  # superseded in the bounded queue
        self._skipped_windows += windows
        self._skipped_events += events
        self._last_window = window
        start = time.perf_counter()
        pred = self.stream.feed(window.events, window.end_ns)
        self.step_latency.add(time.perf_counter() - start)
        header = Header(frame_id=self._frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(int(window.stamp_ns), 1_000_000_000)
        self.labels_pub.publish(array_to_image(pred.labels, "mono8", header))
        self.depth_pub.publish(array_to_image(pred.depth.astype(np.float32), "32FC1", header))
        self.overlay_pub.publish(array_to_image(self._overlay(pred.labels, window.events), "rgb8", header))
        self._update_diagnostics(pred)

    def _overlay(self, labels: np.ndarray, events: np.ndarray) -> np.ndarray:
        h, w = labels.shape
        base = np.full((h, w, 3), 128, np.uint8)
        inside = (events["x"] < w) & (events["y"] < h)
        ev = events[inside]
        base[ev["y"], ev["x"]] = np.where((ev["p"] > 0)[:, None], 255, 0).astype(np.uint8)
        colours = PALETTE[labels % len(PALETTE)]
        return ((base.astype(np.uint16) + colours) // 2).astype(np.uint8)

    def _update_diagnostics(self, pred) -> None:
        now = time.monotonic()
        while self._events_in and now - self._events_in[0][0] > 5.0:
            self._events_in.popleft()
        span = max(now - self._events_in[0][0], 1e-3) if len(self._events_in) > 1 else 1.0
        p50, p99 = self.step_latency.percentile(50), self.step_latency.percentile(99)
        self.set_diagnostic("event_rate_hz", float(sum(n for _, n in self._events_in) / span))
        self.set_diagnostic("step_latency_p50_ms", float(p50 * 1e3))
        self.set_diagnostic("step_latency_p99_ms", float(p99 * 1e3))
        self.set_diagnostic("steps", self.stream.step_index)
        self.set_diagnostic("levels_run_last_step", "".join("1" if r else "0" for r in pred.levels_run))
        self.set_diagnostic("skipped_windows_backlog", self._skipped_windows)
        self.set_diagnostic("skipped_events_backlog", self._skipped_events)
        self.set_diagnostic("skipped_windows_silence", self.windower.skipped_gap_windows)
        self.set_diagnostic("events_over_window_cap", self.windower.events_over_cap)
        self.set_diagnostic("last_window_end_ns", pred.window_end_ns)


NODE_CLASS = EventMemoryNode


def main(args=None) -> int:
    return run_node(EventMemoryNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

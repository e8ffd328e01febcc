"""``fovea viz``: the suite's topics in Foxglove, through the foxglove-sdk WebSocket server.

Open Foxglove, "Open connection" -> Foxglove WebSocket -> ``ws://HOST:PORT`` (default ws://127.0.0.1:8765)
and import the layout ``viz/fovea_suite.foxglove.json``. Each ROS topic becomes a Foxglove channel of the
same name with message encoding ``cdr`` and its ``ros2msg`` schema (the full ``.msg`` definition with its
dependencies, as rosbag2 writes into MCAP), so Foxglove decodes every standard and Fovea type itself.
Topics are discovered as their publishers appear (``--discover-period``); a message is serialised only
while a Foxglove client is subscribed to its channel. Default topics: the suite's (``SUITE_TOPICS``);
``--all`` bridges every topic in the graph.
"""
from __future__ import annotations

import argparse
import sys
import threading

SUITE_TOPICS = (
    "/diagnostics", "/fovea/health", "/tf", "/tf_static",
    "/lidar/points", "/lidar/points_filtered", "/registration/odom", "/ground_truth/odom",
    "/cam_front/image_raw", "/lidar_top/points", "/tpv/occupancy", "/tpv/occupancy_markers", "/tpv/labelled_points",
    "/event_camera/events", "/camera/image_raw", "/event_memory/segmentation_overlay", "/event_memory/segmentation",
    "/event_memory/depth", "/event_anomaly/score",
    "/occupancy_flow/occupancy_1000ms", "/occupancy_flow/occupancy_2000ms", "/occupancy_flow/occupancy_3000ms",
    "/occupancy_flow/flow_markers",
)


class Schemas:
    """The ``ros2msg`` definition of a type: Jazzy types and compat folders from the bag typestore, anything
    else (fovea_msgs) from its installed Python class, as the recorder does."""

    def __init__(self) -> None:
        from fovea_ros.bag.typestore import build_typestore, compat_types

        self._store = build_typestore(compat_types())

    def definition(self, msgtype: str) -> str | None:
        from fovea_ros.bag.typestore import types_from_python_class

        if msgtype not in self._store.fielddefs:
            described = types_from_python_class(msgtype)
            self._store.register({k: v for k, v in described.items() if k not in self._store.fielddefs})
        if msgtype not in self._store.fielddefs:
            return None
        return self._store.generate_msgdef(msgtype, ros_version=2)[0]


class Bridge:
    """Subscribes ROS topics and logs each message, CDR-serialised, on a Foxglove channel."""

    def __init__(self, node, topics: list[str] | None, depth: int = 10) -> None:
        self.node, self.topics, self.depth = node, topics, depth
        self.schemas = Schemas()
        self.channels: dict[str, object] = {}
        self.skipped: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def discover(self) -> None:
        from fovea_ros.bag.qos import subscription_profile
        from fovea_ros.bag.typestore import import_message_class

        wanted = self.topics if self.topics is not None else [t for t, _ in self.node.get_topic_names_and_types()]
        for topic in wanted:
            if topic in self.channels or topic in self.skipped:
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            msgtype = publishers[0].topic_type
            msg_class = import_message_class(msgtype)
            definition = self.schemas.definition(msgtype) if msg_class is not None else None
            if definition is None:
                self.skipped[topic] = f"no message definition for {msgtype}"
                self.node.get_logger().warning(f"not bridging {topic}: {self.skipped[topic]}")
                continue
            self.channels[topic] = self._channel(topic, msgtype, definition)
            self.counts[topic] = 0
            profile = subscription_profile([p.qos_profile for p in publishers if p.topic_type == msgtype], self.depth)
            self.node.create_subscription(msg_class, topic, lambda msg, t=topic: self.forward(t, msg), profile)
            self.node.get_logger().info(f"bridging {topic} ({msgtype})")

    @staticmethod
    def _channel(topic: str, msgtype: str, definition: str):
        import foxglove

        schema = foxglove.Schema(name=msgtype, encoding="ros2msg", data=definition.encode())
        return foxglove.Channel(topic, schema=schema, message_encoding="cdr")

    def forward(self, topic: str, msg) -> None:
        from rclpy.serialization import serialize_message

        channel = self.channels[topic]
        if not channel.has_sinks():  # nobody looks at it: do not pay for serialising
            return
        stamp = getattr(getattr(msg, "header", None), "stamp", None)
        log_time = stamp.sec * 1_000_000_000 + stamp.nanosec if stamp is not None and stamp.sec else None
        channel.log(serialize_message(msg), log_time=log_time)
        with self._lock:
            self.counts[topic] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea viz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--topics", nargs="+", help="topics to bridge (default: the suite's)")
    parser.add_argument("--all", action="store_true", help="bridge every topic in the graph")
    parser.add_argument("--discover-period", type=float, default=2.0, help="seconds between topic discoveries")
    args = parser.parse_args(argv)
    try:
        import foxglove
    except ImportError:
        print("fovea viz: the foxglove-sdk package is not installed (pip install foxglove-sdk)", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("fovea_viz")
    bridge = Bridge(node, None if args.all else list(args.topics or SUITE_TOPICS))
    try:
        server = foxglove.start_server(name="fovea", host=args.host, port=args.port)
    except Exception as exc:  # port taken, address not available: one line
        print(f"fovea viz: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        return 2
    print(f"fovea viz: Foxglove WebSocket server on ws://{args.host}:{server.port}", flush=True)
    bridge.discover()
    node.create_timer(args.discover_period, bridge.discover)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        server.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A stand-alone subscriber for the bag-tool tests (run as a child process).

Subscribes to ``--topic NAME=pkg/msg/Type`` (serialized bytes, so nothing is decoded on the way), prints READY
once its subscriptions exist, and exits after ``--expect`` messages (not counting /clock) and a short linger, or
after ``--timeout`` seconds. It prints JSON: one record per message with topic, monotonic receive time, the
first 8 bytes after the CDR header read as a stamp (a Header's stamp, or a Clock's time) and the SHA-256 of the
bytes. It deliberately uses nothing from fovea_ros, so it checks the tools from outside.
"""
import argparse
import hashlib
import importlib
import json
import struct
import sys
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def leading_stamp_ns(data: bytes) -> int:
    sec, nanosec = struct.unpack_from("<iI" if data[1] & 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--await-publishers", nargs="*", default=[], metavar="TOPIC",
                        help="print MATCHED once these topics' subscriptions have matched a publisher")
    parser.add_argument("--linger", type=float, default=0.3, help="keep listening this long after --expect")
    parser.add_argument("--reliability", choices=["reliable", "best_effort"], default="reliable")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("fovea_test_probe")
    received = []
    subscriptions = {}
    reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
    qos = QoSProfile(depth=1000, reliability=reliability[args.reliability], durability=DurabilityPolicy.VOLATILE)
    for spec in args.topic:
        topic, msgtype = spec.split("=")
        package, _, name = msgtype.split("/")
        msg_class = getattr(importlib.import_module(f"{package}.msg"), name)

        def on_message(data: bytes, topic: str = topic) -> None:
            received.append({"topic": topic, "received_ns": time.monotonic_ns(), "stamp_ns": leading_stamp_ns(data),
                             "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

        subscriptions[topic] = node.create_subscription(msg_class, topic, on_message, qos, raw=True)
    print("READY", flush=True)
    # A publisher that sees this subscription may publish before this side has matched it, and a volatile
    # reader drops what it gets from a writer it has not matched yet. So say when this side has matched too.
    deadline = time.monotonic() + args.timeout
    while args.await_publishers and time.monotonic() < deadline:
        if all(subscriptions[t].get_publisher_count() >= 1 for t in args.await_publishers):
            print("MATCHED", flush=True)
            break
        rclpy.spin_once(node, timeout_sec=0.01)
    deadline = time.monotonic() + args.timeout
    def counted() -> int:  # /clock ticks are extra: their number depends on timing
        return sum(1 for r in received if r["topic"] != "/clock")

    while counted() < args.expect and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    linger_until = time.monotonic() + args.linger
    while time.monotonic() < linger_until:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    json.dump({"messages": received}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fovea record OUT --topics ...``: record topics to a self-describing MCAP bag, counting what is lost.

Subscriptions take serialized bytes (``raw=True``), so nothing is decoded or re-encoded. Each topic's type comes
from its publishers in the ROS graph; topics that appear late are subscribed when they appear. The message
definitions go into the MCAP (Jazzy types, compat ``.msg`` folders, or the installed Python classes).

Losses are counted where they can be seen, and only there:

- ``dropped_writer_queue_full``: received but not written, because the bounded queue to the writer thread was
  full (the disk or the writer could not keep up);
- ``lost_in_middleware``: samples the DDS reader knows it missed (the ``message_lost`` event: sequence-number
  gaps from a writer, e.g. best-effort under load);
- ``missing_vs_expected``: the caller's expected count minus what arrived;
- ``missing_vs_replay``: what a Fovea replay reports having published (see
  :data:`fovea_ros.bag.replay.PUBLISHED_COUNTS_TOPIC`) minus what arrived; it counts as a loss only when this
  recorder had subscribed before that replay began (``replay_window_complete``).

Header stamps cannot reveal drops (they are not sequence numbers); they are reported for first/last/ordering.
On stop, messages the middleware already delivered are still taken and written (for at most
:data:`DRAIN_LIMIT_S`). A JSON summary is written next to the bag's metadata as ``record_summary.json``.
"""
from __future__ import annotations

import argparse
import json
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rosbags.rosbag2 import StoragePlugin, Writer

from fovea_ros.bag.qos import RELIABILITY_CHOICES, subscription_profile, to_bag_qos
from fovea_ros.bag.replay import COUNTS_QOS, PUBLISHED_COUNTS_TOPIC, absolute_topic, sigterm_as_interrupt
from fovea_ros.bag.ros_context import PrivateNode
from fovea_ros.bag.typestore import build_typestore, compat_types, import_message_class, types_from_python_class

SUMMARY_FILE = "record_summary.json"
DRAIN_LIMIT_S = 0.5  # after a stop, keep taking already-delivered messages for at most this long
HEADER_TYPE = "std_msgs/msg/Header"


@dataclass
class RecordOptions:
    topics: Sequence[str]
    duration_s: float | None = None        # stop after this long (from start())
    max_messages: int | None = None        # stop after this many messages, all topics together
    reliability: str | None = None         # None: match the publishers (reliable only if all are)
    queue_size: int = 1000                 # messages buffered between the executor and the writer thread
    depth: int = 100                       # subscription history depth
    expected_counts: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("name at least one topic to record")
        if self.reliability is not None and self.reliability not in RELIABILITY_CHOICES:
            raise ValueError(f"reliability must be one of {sorted(RELIABILITY_CHOICES)}, got {self.reliability!r}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError("duration must be > 0")
        if self.max_messages is not None and self.max_messages < 1:
            raise ValueError("max messages must be >= 1")
        if self.queue_size < 1 or self.depth < 1:
            raise ValueError("queue size and depth must be >= 1")


@dataclass
class TopicRecord:
    type: str
    subscribed_ns: int                     # wall clock when the subscription was created
    received: int = 0
    written: int = 0
    dropped_writer_queue_full: int = 0
    lost_in_middleware: int = 0
    first_log_ns: int | None = None
    last_log_ns: int | None = None
    first_header_stamp_ns: int | None = None
    last_header_stamp_ns: int | None = None
    header_stamps_out_of_order: int = 0
    expected: int | None = None
    missing_vs_expected: int | None = None
    replay_published: int | None = None
    missing_vs_replay: int | None = None
    replay_window_complete: bool | None = None


@dataclass
class RecordSummary:
    bag: str
    storage: str = "mcap"
    started_ns: int = 0
    stopped_ns: int = 0
    stop_reason: str = ""
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    not_recorded: dict[str, str] = field(default_factory=dict)  # requested topic -> why

    @property
    def total_written(self) -> int:
        return sum(t.written for t in self.topics.values())

    @property
    def total_dropped(self) -> int:
        return sum(t.dropped_writer_queue_full + t.lost_in_middleware for t in self.topics.values())

    def to_json(self) -> dict:
        return {**asdict(self), "duration_s": (self.stopped_ns - self.started_ns) * 1e-9,
                "total_written": self.total_written, "total_dropped": self.total_dropped}

    def format(self) -> str:
        lines = [f"recorded {self.total_written} messages to {self.bag} ({self.stop_reason})"]
        for name, t in sorted(self.topics.items()):
            extra = ""
            if t.missing_vs_expected is not None:
                extra += f", missing vs expected {t.missing_vs_expected}"
            if t.missing_vs_replay is not None:
                extra += f", missing vs replay {t.missing_vs_replay}"
            lines.append(f"  {name:<40} {t.written:>8} written, {t.dropped_writer_queue_full} dropped (queue full),"
                         f" {t.lost_in_middleware} lost in middleware{extra}")
        lines += [f"  {name:<40} not recorded: {why}" for name, why in sorted(self.not_recorded.items())]
        return "\n".join(lines)


def header_stamp_ns(data: bytes) -> int | None:
    """The stamp of a CDR message whose first field is a std_msgs/Header (encapsulation byte picks endianness)."""
    if len(data) < 12:
        return None
    sec, nanosec = struct.unpack_from("<iI" if data[1] & 1 else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


class BagRecorder:
    """Records topics into an MCAP bag via a private rclpy node.

    ``start()`` begins (subscriptions appear as publishers are discovered), ``wait_until_subscribed()`` tells
    when every topic has a subscription, ``stop()`` flushes, closes the bag, writes the JSON summary and returns
    it. Recording also ends by itself after ``duration_s`` or ``max_messages``; ``wait()`` blocks until then.
    ``on_done`` is called with the summary once the bag is closed.
    """

    def __init__(self, out_path: str | Path, options: RecordOptions, *,
                 compat_dirs: Sequence[str | Path] | None = None,
                 on_done: Callable[[RecordSummary], None] | None = None,
                 node_name: str = "fovea_record") -> None:
        self.out_path = Path(out_path)
        self.options = options
        self._compat_dirs = compat_dirs
        self._on_done = on_done
        self._node_name = node_name
        self._ros: PrivateNode | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._typestore = None
        self._writer: Writer | None = None
        self._writer_lock = threading.Lock()  # add_connection (executor thread) vs write (writer thread)
        self._connections: dict[str, object] = {}
        self._header_topics: set[str] = set()
        self._queue: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self._records: dict[str, TopicRecord] = {}
        self._subscriptions: dict[str, object] = {}
        self._not_recorded: dict[str, str] = {}
        self._replay_reports: dict[str, dict] = {}   # replay player id -> its latest published-counts report
        self._accepted = 0
        self._stop = threading.Event()              # ends recording (any reason)
        self._closed = False                        # set after the final drain: nothing is taken any more
        self._callbacks = 0
        self._stop_reason = ""
        self._started_ns = 0
        self._threads: list[threading.Thread] = []
        self._summary: RecordSummary | None = None
        self._finish_lock = threading.Lock()

    # --- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._ros is not None:
            return
        self._typestore = build_typestore(compat_types(self._compat_dirs))
        self._writer = Writer(self.out_path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._ros = PrivateNode(self._node_name)
        node = self._ros.node
        from std_msgs.msg import String
        node.create_subscription(String, PUBLISHED_COUNTS_TOPIC, self._on_replay_report, COUNTS_QOS)
        self._executor = SingleThreadedExecutor(context=self._ros.context)
        self._executor.add_node(node)
        self._started_ns = time.time_ns()
        self._threads = [threading.Thread(target=self._spin, name="fovea-record-spin", daemon=True),
                         threading.Thread(target=self._write_loop, name="fovea-record-writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> BagRecorder:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def wait_until_subscribed(self, timeout_s: float = 10.0) -> bool:
        """True once every requested topic has a subscription that has matched a publisher (or was found
        unrecordable). Matching is checked on this side because a publisher may see the subscription, and
        publish, before the subscription has matched it; a volatile reader drops such early data."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(t in self._not_recorded
                   or (t in self._subscriptions and self._subscriptions[t].get_publisher_count() >= 1)
                   for t in self.options.topics):
                return True
            time.sleep(0.02)
        return False

    def received(self, topic: str) -> int:
        record = self._records.get(topic)
        return record.received if record else 0

    def wait_for_replay_done(self, timeout_s: float = 10.0) -> bool:
        """True once a replay reported being done and every topic it published has arrived in full."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [r for r in self._replay_reports.values() if r.get("done")]
            if done and all(self.received(topic) >= count
                            for report in done for topic, count in report["counts"].items()
                            if topic in self.options.topics):
                return True
            time.sleep(0.02)
        return False

    def wait(self, timeout_s: float | None = None) -> RecordSummary | None:
        """Block until recording ends by itself (duration, message limit); then finish and return the summary."""
        if not self._stop.wait(timeout_s):
            return None
        return self.stop()

    def stop(self) -> RecordSummary:
        """Stop, flush the queue into the bag, close it, write the JSON summary (idempotent)."""
        with self._finish_lock:
            if self._summary is not None:
                return self._summary
            if not self._stop_reason:
                self._stop_reason = "stopped"
            self._stop.set()
            for thread in self._threads:
                thread.join()
            with self._writer_lock:
                if self._writer is not None:
                    self._writer.close()
            if self._executor is not None:
                self._executor.shutdown()
            if self._ros is not None:
                self._ros.close()
            self._summary = self._build_summary()
            if self.out_path.is_dir():
                (self.out_path / SUMMARY_FILE).write_text(json.dumps(self._summary.to_json(), indent=2) + "\n")
        if self._on_done is not None:
            self._on_done(self._summary)
        return self._summary

    # --- executor thread ----------------------------------------------------------------------------------
    def _spin(self) -> None:
        next_discovery = 0.0
        duration_ns = None if self.options.duration_s is None else self.options.duration_s * 1e9
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_discovery:  # topics that appear late are picked up within 0.1 s
                    self._discover()
                    next_discovery = now + 0.1
                if duration_ns is not None and time.time_ns() - self._started_ns >= duration_ns:
                    self._end("duration reached")
                self._executor.spin_once(timeout_sec=0.02)
            self._drain()
        finally:
            self._closed = True

    def _drain(self) -> None:
        """Take what the middleware already holds: it arrived before the stop (and was acknowledged to its
        publisher), so dropping it would be a silent loss. Bounded, since a live stream never runs dry."""
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while time.monotonic() < deadline:
            before = self._callbacks
            self._executor.spin_once(timeout_sec=0.01)
            if self._callbacks == before:
                return

    def _end(self, reason: str) -> None:
        if not self._stop_reason:
            self._stop_reason = reason
        self._stop.set()

    def _discover(self) -> None:
        node = self._ros.node
        for topic in self.options.topics:
            if topic in self._subscriptions or topic in self._not_recorded:
                continue
            publishers = node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            msgtype = publishers[0].topic_type
            if len({p.topic_type for p in publishers}) > 1:
                node.get_logger().warning(f"{topic} has publishers of several types; recording {msgtype}")
            self._subscribe(topic, msgtype, [p.qos_profile for p in publishers if p.topic_type == msgtype])

    def _subscribe(self, topic: str, msgtype: str, offered: list) -> None:
        node = self._ros.node
        msg_class = import_message_class(msgtype)
        if msg_class is None:
            self._not_recorded[topic] = f"type {msgtype} has no importable Python message package"
            return
        if msgtype not in self._typestore.fielddefs:  # not a Jazzy type, not in a compat folder: ask the class
            described = types_from_python_class(msgtype)
            self._typestore.register({k: v for k, v in described.items() if k not in self._typestore.fielddefs})
        if msgtype not in self._typestore.fielddefs:
            self._not_recorded[topic] = f"no message definition found for {msgtype}"
            return
        with self._writer_lock:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore,
                offered_qos_profiles=[to_bag_qos(p) for p in offered])
        fields = self._typestore.fielddefs[msgtype][1]
        if fields and fields[0][1][1] == HEADER_TYPE:
            self._header_topics.add(topic)
        self._records[topic] = TopicRecord(type=msgtype, subscribed_ns=time.time_ns())
        profile = subscription_profile(offered, self.options.depth, self.options.reliability)
        record = self._records[topic]

        def on_lost(status, record=record) -> None:
            record.lost_in_middleware = int(status.total_count)

        self._subscriptions[topic] = node.create_subscription(
            msg_class, topic, lambda data, topic=topic: self._on_message(topic, data), profile, raw=True,
            event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))

    def _on_message(self, topic: str, data: bytes) -> None:
        log_ns = time.time_ns()
        self._callbacks += 1
        if self._closed:
            return
        limit = self.options.max_messages
        if limit is not None and self._accepted >= limit:
            return
        record = self._records[topic]
        record.received += 1
        try:
            self._queue.put_nowait((topic, log_ns, data))
        except queue.Full:
            record.dropped_writer_queue_full += 1
            return
        self._accepted += 1
        if limit is not None and self._accepted >= limit:
            self._end("message limit reached")

    def _on_replay_report(self, msg) -> None:
        self._callbacks += 1
        try:
            report = json.loads(msg.data)
            self._replay_reports[str(report["player"])] = report
        except (ValueError, KeyError, TypeError):
            self._ros.node.get_logger().warning(f"ignoring malformed replay report on {PUBLISHED_COUNTS_TOPIC}")

    # --- writer thread ------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            try:
                topic, log_ns, data = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closed:  # the executor thread has drained and will enqueue nothing more
                    return
                continue
            with self._writer_lock:
                self._writer.write(self._connections[topic], log_ns, data)
            record = self._records[topic]
            record.written += 1
            if record.first_log_ns is None:
                record.first_log_ns = log_ns
            record.last_log_ns = log_ns
            if topic in self._header_topics and (stamp := header_stamp_ns(data)) is not None:
                if record.last_header_stamp_ns is not None and stamp < record.last_header_stamp_ns:
                    record.header_stamps_out_of_order += 1
                if record.first_header_stamp_ns is None:
                    record.first_header_stamp_ns = stamp
                record.last_header_stamp_ns = stamp

    # --- summary ------------------------------------------------------------------------------------------
    def _build_summary(self) -> RecordSummary:
        expected = dict(self.options.expected_counts or {})
        not_recorded = dict(self._not_recorded)
        for topic in self.options.topics:
            if topic not in self._records and topic not in not_recorded:
                not_recorded[topic] = "no publisher was discovered"
        for topic, record in self._records.items():
            if topic in expected:
                record.expected = int(expected[topic])
                record.missing_vs_expected = record.expected - record.received
            reports = [r for r in self._replay_reports.values() if topic in r.get("counts", {})]
            if reports:
                record.replay_published = sum(int(r["counts"][topic]) for r in reports)
                record.missing_vs_replay = record.replay_published - record.received
                record.replay_window_complete = all(
                    r.get("started_ns", 0) >= record.subscribed_ns for r in reports)
        for topic, count in expected.items():
            if topic not in self._records:
                not_recorded.setdefault(topic, "no publisher was discovered")
        return RecordSummary(bag=str(self.out_path), started_ns=self._started_ns, stopped_ns=time.time_ns(),
                             stop_reason=self._stop_reason, topics=dict(self._records), not_recorded=not_recorded)


# --- command line --------------------------------------------------------------------------------------------
def _parse_expected(text: str) -> tuple[str, int]:
    topic, sep, count = text.rpartition("=")
    if not sep or not topic or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected count must look like TOPIC=N, got {text!r}")
    return absolute_topic(topic), int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fovea record", description="Record topics to a self-describing MCAP bag "
                                     "(raw CDR), counting drops; writes record_summary.json into the bag folder.")
    parser.add_argument("out", help="bag directory to create (must not exist)")
    parser.add_argument("--topics", nargs="+", required=True, metavar="TOPIC")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after this many seconds")
    parser.add_argument("--max-messages", type=int, metavar="N", help="stop after N messages (all topics)")
    parser.add_argument("--qos", choices=sorted(RELIABILITY_CHOICES),
                        help="subscription reliability (default: match the publishers)")
    parser.add_argument("--queue-size", type=int, default=1000, help="writer queue length in messages")
    parser.add_argument("--expect", type=_parse_expected, action="append", default=[], metavar="TOPIC=N",
                        help="report received vs N expected messages on TOPIC (repeatable)")
    parser.add_argument("--compat-msgs", action="append", metavar="DIR",
                        help="extra folder of <pkg>/msg/<Type>.msg definitions (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if Path(args.out).exists():
        print(f"fovea record: {args.out} exists already; not overwriting", file=sys.stderr)
        return 2
    try:
        options = RecordOptions(topics=[absolute_topic(t) for t in args.topics], duration_s=args.duration,
                                max_messages=args.max_messages, reliability=args.qos, queue_size=args.queue_size,
                                expected_counts=dict(args.expect) or None)
    except ValueError as err:
        print(f"fovea record: {err}", file=sys.stderr)
        return 2
    compat = None
    if args.compat_msgs:
        from fovea_ros.bag.typestore import default_compat_dirs
        compat = [*args.compat_msgs, *default_compat_dirs()]
    recorder = BagRecorder(args.out, options, compat_dirs=compat)
    with sigterm_as_interrupt():
        try:
            recorder.start()
            while recorder.wait(0.2) is None:
                pass
        except KeyboardInterrupt:
            recorder._end("interrupted")
        summary = recorder.stop()
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fovea replay BAG``: publish a bag's messages with their recorded timing.

Raw CDR goes straight to ``Publisher.publish(bytes)``; the message class is only needed to create the
publisher, so a topic whose type has no importable Python package is reported and skipped. Timing follows a
monotonic schedule (message i is due at ``t0 + (log_time_i - log_time_0) / rate``), so sleeping errors do not
accumulate over a long bag.

While playing, the player also publishes how many messages it has sent per topic on
:data:`PUBLISHED_COUNTS_TOPIC` (JSON in a ``std_msgs/String``, transient-local), so a recorder can tell
messages that never arrived from messages that were never sent.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from fovea_ros.bag.qos import RELIABILITY_CHOICES, replay_profile
from fovea_ros.bag.reader import BagReader, BagTopic
from fovea_ros.bag.ros_context import PrivateNode
from fovea_ros.bag.typestore import import_message_class

PUBLISHED_COUNTS_TOPIC = "/fovea/replay/published_counts"
COUNTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
DEFAULT_CLOCK_HZ = 40.0  # the same default as ``ros2 bag play --clock``
MIN_DEPTH, MAX_DEPTH = 10, 1000


@dataclass
class ReplayOptions:
    rate: float = 1.0
    loop: bool = False
    topics: Sequence[str] | None = None         # None: every topic in the bag
    clock_hz: float | None = None               # publish /clock at this wall-clock rate; None: no /clock
    start_offset_s: float = 0.0                 # skip this much of the bag's beginning
    delay_s: float = 0.0                        # wait this long after the publishers exist
    reliability: str | None = None              # override: "reliable" | "best_effort"; None keeps the recorded
    remaps: Mapping[str, str] = field(default_factory=dict)
    burst_seconds: float = 1.0                  # history depth holds this much of a topic's average rate
    wait_for_subscribers: int = 0               # before publishing, wait for this many subscribers per topic
    wait_for_nodes: Sequence[str] = ()          # ... and for these nodes' subscriptions (node names) on each
    wait_timeout_s: float = 10.0
    ack_timeout_s: float = 5.0                  # at the end, wait this long for subscribers to acknowledge
    best_effort_linger_s: float = 0.3           # at the end, keep best-effort publishers alive this long
    record_timing: bool = False                 # keep per-message schedule and publish times (ReplaySummary)

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.clock_hz is not None and not self.clock_hz > 0:
            raise ValueError(f"clock rate must be > 0 Hz, got {self.clock_hz}")
        if self.reliability is not None and self.reliability not in RELIABILITY_CHOICES:
            raise ValueError(f"reliability must be one of {sorted(RELIABILITY_CHOICES)}, got {self.reliability!r}")
        if self.start_offset_s < 0 or self.delay_s < 0:
            raise ValueError("start offset and delay must be >= 0")


@dataclass
class ReplaySummary:
    published: dict[str, int]                   # output topic -> messages published
    skipped: dict[str, str]                     # bag topic -> why it was not replayed
    loops: int = 0                              # complete passes over the bag
    clock_messages: int = 0
    elapsed_s: float = 0.0
    stopped_early: bool = False
    unacknowledged: list[str] = field(default_factory=list)  # reliable topics not fully acknowledged at the end
    # with ReplayOptions.record_timing: (topic, log time, monotonic due time, monotonic publish time), all ns
    timing: list[tuple[str, int, int, int]] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"replayed {sum(self.published.values())} messages in {self.elapsed_s:.2f} s"
                 f" ({self.loops} complete pass{'es' if self.loops != 1 else ''}"
                 f"{', stopped early' if self.stopped_early else ''})"]
        lines += [f"  {topic:<40} {count:>8} published" for topic, count in sorted(self.published.items())]
        lines += [f"  {topic:<40} skipped: {why}" for topic, why in sorted(self.skipped.items())]
        if self.clock_messages:
            lines.append(f"  {'/clock':<40} {self.clock_messages:>8} published")
        if self.unacknowledged:
            lines.append(f"  not acknowledged by every subscriber in time: {', '.join(self.unacknowledged)}")
        return "\n".join(lines)


def history_depth(topic: BagTopic, duration_ns: int, options: ReplayOptions) -> int:
    """About ``burst_seconds`` of the topic's average recorded rate, scaled by the replay rate."""
    if duration_ns <= 0 or topic.message_count <= 1:
        return MIN_DEPTH
    average_hz = topic.message_count / (duration_ns * 1e-9)
    wanted = math.ceil(average_hz * options.burst_seconds * options.rate)
    return max(MIN_DEPTH, min(MAX_DEPTH, wanted))


class BagPlayer:
    """Publishes a bag through a private rclpy node.

    ``play()`` publishes everything (all passes when looping) and returns a :class:`ReplaySummary`;
    ``start()`` does the same on a thread, ``stop()`` ends it early, ``wait()`` joins it. ``on_done`` is called
    with the summary when playing ends, however it ends.
    """

    def __init__(self, bag_path: str | Path, options: ReplayOptions | None = None, *,
                 on_done: Callable[[ReplaySummary], None] | None = None,
                 node_name: str = "fovea_replay") -> None:
        self.bag_path = Path(bag_path)
        self.options = options or ReplayOptions()
        self._on_done = on_done
        self._node_name = node_name
        self._ros: PrivateNode | None = None
        self._publishers: dict[str, object] = {}   # bag topic -> rclpy publisher
        self._out_names: dict[str, str] = {}       # bag topic -> published topic name
        self._skipped: dict[str, str] = {}
        self._best_effort_topics: set[str] = set()
        self._clock_pub = None
        self._counts_pub = None
        self._clock_cls = None
        self._counts_cls = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._summary: ReplaySummary | None = None
        self._bag_start_ns = 0
        self._bag_duration_ns = 0
        self._started_ns = 0  # wall clock when publishing began, for recorders judging their coverage
        # tells this player's reports apart from other players' (several may run in one domain)
        self._player_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    # --- life cycle ---------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the node and one publisher per replayable topic (idempotent)."""
        if self._ros is not None:
            return
        with BagReader(self.bag_path) as bag:
            bag_topics = bag.topics
            self._bag_start_ns, self._bag_duration_ns = bag.start_ns, bag.duration_ns
        wanted = None if self.options.topics is None else set(self.options.topics)
        if wanted is not None:
            for missing in sorted(wanted - {t.name for t in bag_topics}):
                self._skipped[missing] = "not in the bag"
        self._ros = PrivateNode(self._node_name)
        node = self._ros.node
        for topic in bag_topics:
            if wanted is not None and topic.name not in wanted:
                continue
            if topic.serialization_format != "cdr":
                self._skipped[topic.name] = f"serialization {topic.serialization_format!r} is not CDR"
                continue
            msg_class = import_message_class(topic.msgtype)
            if msg_class is None:
                self._skipped[topic.name] = f"type {topic.msgtype} has no importable Python message package"
                continue
            out_name = self.options.remaps.get(topic.name, topic.name)
            profile = replay_profile(topic.name, topic.offered_qos,
                                     history_depth(topic, self._bag_duration_ns, self.options),
                                     self.options.reliability)
            self._publishers[topic.name] = node.create_publisher(msg_class, out_name, profile)
            if profile.reliability == ReliabilityPolicy.BEST_EFFORT:
                self._best_effort_topics.add(topic.name)
            self._out_names[topic.name] = out_name
        for topic, why in sorted(self._skipped.items()):
            node.get_logger().warning(f"not replaying {topic}: {why}")
        from std_msgs.msg import String
        self._counts_cls = String
        self._counts_pub = node.create_publisher(String, PUBLISHED_COUNTS_TOPIC, COUNTS_QOS)
        if self.options.clock_hz is not None:
            from rosgraph_msgs.msg import Clock
            self._clock_cls = Clock
            self._clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))

    def close(self) -> None:
        # the playing thread must be out of every publisher before the node goes (it would die in publish())
        self.stop(timeout_s=30.0)
        if self._ros is not None:
            self._ros.close()
            self._ros = None

    def __enter__(self) -> BagPlayer:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def replayable_topics(self) -> dict[str, str]:
        """Bag topic -> published name, for the topics that have a publisher."""
        return dict(self._out_names)

    @property
    def skipped(self) -> dict[str, str]:
        return dict(self._skipped)

    def start(self) -> None:
        """Play on a background thread."""
        self.open()
        self._thread = threading.Thread(target=self.play, name="fovea-replay", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> ReplaySummary | None:
        self._stop.set()
        return self.wait(timeout_s)

    def request_stop(self) -> None:
        """Ask the playing thread to stop after the current message (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout_s: float | None = None) -> ReplaySummary | None:
        """Join the background thread; the summary, or None if it is still playing."""
        if self._thread is not None:
            try:
                self._thread.join(timeout_s)
            except RuntimeError:  # interrupted inside Thread.start(): it is starting, give it that moment
                time.sleep(0.1)
                self._thread.join(timeout_s)
            if self._thread.is_alive():
                return None
        return self._summary

    # --- playing ------------------------------------------------------------------------------------------
    def play(self) -> ReplaySummary:
        """Publish the bag (every pass when looping) and return what was published."""
        self.open()
        summary = ReplaySummary(published={name: 0 for name in self._out_names.values()},
                                skipped=dict(self._skipped))
        started = time.monotonic()
        counts_final = False
        try:
            if self._publishers:
                self._wait_for_subscribers()
                if self.options.delay_s and self._stop.wait(self.options.delay_s):
                    summary.stopped_early = True
                self._started_ns = time.time_ns()
                self._publish_counts(summary, done=False)
                while not self._stop.is_set():
                    before = sum(summary.published.values())
                    if not self._play_once(summary):
                        break
                    summary.loops += 1
                    if sum(summary.published.values()) == before:  # nothing after the start offset: no busy loop
                        break
                    self._publish_counts(summary, done=False)
                    if not self.options.loop:
                        break
                summary.stopped_early = summary.stopped_early or self._stop.is_set()
                # The counts are final now; say so before waiting for acknowledgements, so a recorder that has
                # everything can stop (which also ends the wait: a reader that leaves acknowledges nothing more).
                self._publish_counts(summary, done=True)
                counts_final = True
                summary.unacknowledged = self._wait_for_acks(0.5 if summary.stopped_early
                                                             else self.options.ack_timeout_s)
                if self._best_effort_topics and not summary.stopped_early:
                    # nothing acknowledges best-effort data; the last samples can still be in flight when the
                    # publisher goes away (seen: the last of 50 1.6 MB clouds lost over shared memory)
                    time.sleep(self.options.best_effort_linger_s)
        finally:
            summary.elapsed_s = time.monotonic() - started
            if not counts_final:
                self._publish_counts(summary, done=True)
            self._summary = summary
            if self._on_done is not None:
                self._on_done(summary)
        return summary

    def _wait_for_subscribers(self) -> None:
        """Until every topic has ``wait_for_subscribers`` matched readers and a subscription of each node in
        ``wait_for_nodes``. Matched counts say a reader is connected, not whose it is; with the node names the
        replay cannot start while, say, a probe and a recorder are matched but the node under test is not."""
        nodes = set(self.options.wait_for_nodes)
        needed = max(self.options.wait_for_subscribers, len(nodes))
        if needed <= 0:
            return
        deadline = time.monotonic() + self.options.wait_timeout_s
        publishers = dict(self._publishers)
        if self._clock_pub is not None and not nodes:
            publishers["/clock"] = self._clock_pub
        graph = self._ros.node

        def node_missing(topic: str) -> bool:
            if not nodes:
                return False
            present = {info.node_name for info in graph.get_subscriptions_info_by_topic(self._out_names[topic])}
            return not nodes <= present

        while not self._stop.is_set():
            waiting = [t for t, pub in publishers.items()
                       if pub.get_subscription_count() < needed or (t != "/clock" and node_missing(t))]
            if not waiting:
                return
            if time.monotonic() > deadline:
                self._ros.node.get_logger().warning(
                    f"gave up waiting for {needed} subscriber(s) on {', '.join(waiting)}; publishing anyway")
                return
            self._stop.wait(0.02)

    def _wait_for_acks(self, timeout_s: float) -> list[str]:
        """Reliable data still unacknowledged is lost when the publisher goes away (the last large messages,
        typically); wait for it, like ``ros2 bag play --wait-for-all-acked``. Returns the topics still pending.
        With Fast DDS's default heartbeat period (3 s) a subscriber that stays alive acknowledges late even when
        the data arrived at once, so this wait can last up to that long."""
        deadline = time.monotonic() + timeout_s
        pending = []
        for topic, publisher in self._publishers.items():
            left = max(0.0, deadline - time.monotonic())
            if not publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                pending.append(self._out_names[topic])
        return pending

    def _play_once(self, summary: ReplaySummary) -> bool:
        """One pass over the bag; False when stopped before its end."""
        rate = self.options.rate
        first_ns = self._bag_start_ns + int(self.options.start_offset_s * 1e9)
        clock_period_ns = int(1e9 / self.options.clock_hz) if self._clock_pub is not None else None
        t0 = next_tick = 0  # set once the bag is open, so opening it does not eat into the schedule
        last_log_ns = first_ns

        def sleep_until(due_ns: int) -> bool:
            remaining = (due_ns - time.monotonic_ns()) * 1e-9
            return remaining <= 0 or not self._stop.wait(remaining)

        def tick_clock_until(due_ns: int) -> bool:
            nonlocal next_tick
            while clock_period_ns is not None and next_tick <= due_ns:
                if not sleep_until(next_tick):
                    return False
                self._publish_clock(first_ns + int((next_tick - t0) * rate), summary)
                next_tick += clock_period_ns
            return True

        with BagReader(self.bag_path) as bag:
            t0 = next_tick = time.monotonic_ns()
            for message in bag.messages(list(self._publishers), start_ns=first_ns):
                due = t0 + int((message.log_time_ns - first_ns) / rate)
                if not (tick_clock_until(due) and sleep_until(due)):
                    return False
                self._publishers[message.topic].publish(message.data)
                out_name = self._out_names[message.topic]
                summary.published[out_name] += 1
                last_log_ns = message.log_time_ns
                if self.options.record_timing:
                    summary.timing.append((out_name, message.log_time_ns, due, time.monotonic_ns()))
        if self._clock_pub is not None:  # leave /clock at the last message's time
            self._publish_clock(last_log_ns, summary)
        return True

    def _publish_clock(self, bag_time_ns: int, summary: ReplaySummary) -> None:
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(bag_time_ns, 1_000_000_000)
        self._clock_pub.publish(msg)
        summary.clock_messages += 1

    def _publish_counts(self, summary: ReplaySummary, done: bool) -> None:
        if self._counts_pub is None:
            return
        report = {"player": self._player_id, "bag": str(self.bag_path), "done": done,
                  "started_ns": self._started_ns, "counts": summary.published}
        self._counts_pub.publish(self._counts_cls(data=json.dumps(report, sort_keys=True)))


# --- command line --------------------------------------------------------------------------------------------
def _parse_remap(text: str) -> tuple[str, str]:
    old, sep, new = text.partition(":=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"remap must look like OLD:=NEW, got {text!r}")
    return absolute_topic(old), absolute_topic(new)


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM (what supervisors and launch send after SIGINT) stops cleanly like Ctrl-C.
    The previous handler comes back afterwards; off the main thread (no signals there) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def absolute_topic(name: str) -> str:
    """Bags store fully qualified names; accept ``image`` for ``/image`` on the command line."""
    return name if name.startswith("/") else "/" + name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fovea replay", description="Publish a rosbag2 (sqlite3 or MCAP) with its "
                                     "recorded timing; raw CDR, no decoding.")
    parser.add_argument("bag", help="rosbag2 directory, or a .mcap/.db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over at the end until interrupted")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="replay only these topics")
    parser.add_argument("--clock", nargs="?", type=float, const=DEFAULT_CLOCK_HZ, default=None, metavar="HZ",
                        help=f"publish /clock with the bag time (default {DEFAULT_CLOCK_HZ:g} Hz)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="start this many seconds into the bag")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S",
                        help="wait this many seconds after creating the publishers")
    parser.add_argument("--qos-reliability", choices=sorted(RELIABILITY_CHOICES),
                        help="override the recorded reliability of every topic")
    parser.add_argument("--remap", type=_parse_remap, action="append", default=[], metavar="OLD:=NEW",
                        help="publish topic OLD as NEW (repeatable)")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="wait (up to --wait-timeout) until every topic has N subscribers")
    parser.add_argument("--wait-for-node", action="append", default=[], metavar="NAME",
                        help="wait (up to --wait-timeout) until node NAME subscribes to every topic (repeatable)")
    parser.add_argument("--wait-timeout", type=float, default=10.0, metavar="S")
    return parser


@contextmanager
def stop_on_signals(player: BagPlayer):
    """Within the block, Ctrl-C and SIGTERM ask ``player`` to stop (it finishes its current message, says
    what it published and closes); a second one raises KeyboardInterrupt to stop waiting for that.

    A stop request, not an exception at whatever line the main thread is on: an exception raised in the
    middle of starting the playing thread or of closing the node used to leave a thread publishing
    through a destroyed node (a traceback after Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = []

    def request_stop(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        player.request_stop()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """Ctrl-C (or SIGTERM) stops the replay cleanly: the summary of what was published, exit code 0; a second
    Ctrl-C while it finishes exits at once (code 130), also without a traceback."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        topics = None if args.topics is None else [absolute_topic(t) for t in args.topics]
        options = ReplayOptions(rate=args.rate, loop=args.loop, topics=topics, clock_hz=args.clock,
                                start_offset_s=args.start_offset, delay_s=args.delay,
                                reliability=args.qos_reliability, remaps=dict(args.remap),
                                wait_for_subscribers=args.wait_for_subscribers, wait_for_nodes=args.wait_for_node,
                                wait_timeout_s=args.wait_timeout)
    except ValueError as err:
        print(f"fovea replay: {err}", file=sys.stderr)
        return 2
    player = BagPlayer(args.bag, options)
    summary = None
    try:
        with stop_on_signals(player):
            player.open()
            if not player.replayable_topics:
                print("fovea replay: no topic of this bag can be replayed:\n"
                      + "\n".join(f"  {t}: {why}" for t, why in sorted(player.skipped.items())), file=sys.stderr)
                player.close()
                return 1
            if not player.stop_requested:
                player.start()
                while (summary := player.wait(0.2)) is None:
                    pass
            player.close()
    except KeyboardInterrupt:  # the second Ctrl-C: do not wait for the replay to finish
        print("fovea replay: interrupted", file=sys.stderr)
        return 130
    print(summary.format() if summary is not None else "fovea replay: stopped before publishing")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``fovea info BAG``: storage, time range and, per topic, type, message count, frequency and serialization.

Counts and the time range come from the bag's metadata; per-topic frequencies need each topic's first and last
log time, so the messages are scanned once (``--no-scan`` skips that and leaves frequencies out). The scan also
reads the ``encoding`` of every event packet (evt3, mono, libcaer, ...), shown per event topic.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rosbags.rosbag2 import ReaderError

from fovea_ros.bag.reader import BagReader

# event_camera_msgs/EventPacket and its earlier name carry the payload's encoding per message
EVENT_PACKET_TYPES = ("event_camera_msgs/msg/EventPacket", "event_array_msgs/msg/EventArray")


@dataclass
class TopicInfo:
    name: str
    type: str
    count: int
    serialization: str
    first_ns: int | None = None
    last_ns: int | None = None
    frequency_hz: float | None = None   # (count - 1) / (last - first); None with fewer than two messages
    encodings: list[str] | None = None  # event packet topics: every encoding seen (scan only)


@dataclass
class BagInfo:
    path: str
    storage: str
    version: int | None
    message_count: int
    start_ns: int
    end_ns: int
    duration_s: float
    topics: list[TopicInfo]

    def to_json(self) -> dict:
        return asdict(self)


def bag_info(path: str | Path, scan: bool = True) -> BagInfo:
    with BagReader(path) as bag:
        topics = {t.name: TopicInfo(t.name, t.msgtype, t.message_count, t.serialization_format)
                  for t in bag.topics}
        if scan:
            seen: dict[str, int] = {}
            for message in bag.messages():
                info = topics[message.topic]
                if info.first_ns is None:
                    info.first_ns = message.log_time_ns
                info.last_ns = message.log_time_ns
                seen[message.topic] = seen.get(message.topic, 0) + 1
                if message.msgtype in EVENT_PACKET_TYPES and bag.can_decode(EVENT_PACKET_TYPES[0]):
                    # the earlier name has the identical definition, so one type decodes both
                    encoding = bag.typestore.deserialize_cdr(message.data, EVENT_PACKET_TYPES[0]).encoding
                    info.encodings = info.encodings or []
                    if encoding not in info.encodings:
                        info.encodings.append(encoding)
            for info in topics.values():
                info.count = seen.get(info.name, 0)  # the scan is the truth if metadata disagrees
                if info.count >= 2 and info.last_ns > info.first_ns:
                    info.frequency_hz = (info.count - 1) / ((info.last_ns - info.first_ns) * 1e-9)
        return BagInfo(path=str(path), storage=bag.storage_identifier, version=bag.version,
                       message_count=sum(t.count for t in topics.values()) if scan else bag.message_count,
                       start_ns=bag.start_ns, end_ns=bag.end_ns, duration_s=bag.duration_ns * 1e-9,
                       topics=sorted(topics.values(), key=lambda t: t.name))


def _stamp(ns: int) -> str:
    utc = datetime.fromtimestamp(ns * 1e-9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{utc} UTC ({ns // 1_000_000_000}.{ns % 1_000_000_000:09d})"


def format_info(info: BagInfo) -> str:
    version = f" (rosbag2 version {info.version})" if info.version is not None else ""
    lines = [f"Bag:       {info.path}",
             f"Storage:   {info.storage}{version}",
             f"Duration:  {info.duration_s:.3f} s",
             f"Start:     {_stamp(info.start_ns)}",
             f"End:       {_stamp(info.end_ns)}",
             f"Messages:  {info.message_count}",
             "Topics:"]
    width = max((len(t.name) for t in info.topics), default=10)
    for t in info.topics:
        freq = f"{t.frequency_hz:9.2f} Hz" if t.frequency_hz is not None else f"{'-':>9}   "
        encoding = f"  encoding: {', '.join(t.encodings)}" if t.encodings else ""
        lines.append(f"  {t.name:<{width}}  {t.type:<40} {t.count:>8} msgs  {freq}  {t.serialization}{encoding}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea info", description="Summarise a bag: storage, time range and, per "
                                     "topic, type, message count, frequency and serialization.")
    parser.add_argument("bag", help="rosbag2 directory, or a .mcap/.db3 file")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--no-scan", action="store_true", help="metadata only: no per-topic frequency")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        info = bag_info(args.bag, scan=not args.no_scan)
    except (OSError, ValueError, ReaderError) as err:
        print(f"fovea info: cannot read {args.bag}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(info.to_json(), indent=2) if args.json else format_info(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())

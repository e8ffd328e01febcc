"""Reading and writing event bags with ``rosbags`` (pure Python, no ROS installation needed).

Types are registered from the definitions stored in the bag when it has them (rosbag2 version >= 8), else
from the interface packages under ``compat_msgs/`` (the same definitions as upstream). ``event_array_msgs/
EventArray`` - the earlier name of ``event_camera_msgs/EventPacket`` found in older bags - has the identical
definition and is decoded the same way; ``dvs_msgs/EventArray`` is converted per event (see ``legacy``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from fovea_core.events.arrays import TRIGGER_DTYPE, concat_events
from fovea_core.events.legacy import LEGACY_DEFINITIONS, events_from_dvs_array
from fovea_core.events.packets import DecodedPacket, PacketStreamDecoder, RawPacket, StreamStats
from fovea_core.paths import resolve_data_path

PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
OLD_PACKET_TYPE = "event_array_msgs/msg/EventArray"
DVS_TYPE = "dvs_msgs/msg/EventArray"
IMAGE_TYPE = "sensor_msgs/msg/Image"
IMU_TYPE = "sensor_msgs/msg/Imu"
PACKET_TYPES = (PACKET_TYPE, OLD_PACKET_TYPE)
EVENT_TYPES = PACKET_TYPES + (DVS_TYPE,)


def compat_definitions(root: Path | None = None) -> dict[str, str]:
    """{'pkg/msg/Name': definition text} for every .msg under compat_msgs/."""
    root = Path(root) if root else resolve_data_path("compat_msgs")
    return {f"{p.parent.parent.name}/msg/{p.stem}": p.read_text() for p in sorted(root.glob("*/msg/*.msg"))}


def make_typestore(reader: Reader | None = None):
    """A Jazzy typestore plus event types: bag-stored definitions first, compat_msgs and legacy ones as fallback."""
    store = get_typestore(Stores.ROS2_JAZZY)
    definitions = {**LEGACY_DEFINITIONS, **compat_definitions()}
    if PACKET_TYPE in definitions:
        definitions.setdefault(OLD_PACKET_TYPE, definitions[PACKET_TYPE])
    if reader is not None:
        for conn in reader.connections:
            if conn.msgdef and conn.msgdef.data and conn.msgdef.format.name == "MSG":
                store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
    for name, text in definitions.items():
        if name not in store.types:
            store.register(get_types_from_msg(text, name))
    return store


def packet_from_msg(msg) -> RawPacket:
    stamp = msg.header.stamp
    return RawPacket(bytes(msg.events), msg.encoding, int(msg.width), int(msg.height), int(msg.seq),
                     int(msg.time_base), bool(msg.is_bigendian), stamp.sec * 1_000_000_000 + stamp.nanosec,
                     msg.header.frame_id)


def iter_event_messages(bag: str | Path, topic: str | None = None) -> Iterator[tuple[str, str, int, object]]:
    """(topic, msgtype, bag time ns, deserialised message) for every event message in the bag."""
    with Reader(bag) as reader:
        store = make_typestore(reader)
        conns = [c for c in reader.connections if c.msgtype in EVENT_TYPES and (topic is None or c.topic == topic)]
        for conn, bag_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, bag_ns, store.deserialize_cdr(raw, conn.msgtype)


def read_packets(bag: str | Path, topic: str | None = None) -> Iterator[RawPacket]:
    for _, msgtype, _, msg in iter_event_messages(bag, topic):
        if msgtype in PACKET_TYPES:
            yield packet_from_msg(msg)


def read_events(bag: str | Path, topic: str | None = None) -> tuple[np.ndarray, np.ndarray, StreamStats]:
    """All events (and trigger edges) of one event topic, decoded; stats count lost and rejected packets."""
    decoder = PacketStreamDecoder()
    chunks, triggers = [], []
    for _, msgtype, _, msg in iter_event_messages(bag, topic):
        if msgtype == DVS_TYPE:
            chunks.append(events_from_dvs_array(msg))
            decoder.stats.packets += 1
            decoder.stats.events += len(chunks[-1])
            continue
        out: DecodedPacket = decoder.decode(packet_from_msg(msg))
        chunks.append(out.events)
        triggers.append(out.triggers)
    trig = np.concatenate(triggers) if triggers else np.empty(0, TRIGGER_DTYPE)
    return concat_events(chunks), trig, decoder.stats


class BagWriter:
    """Writes EventPacket, Image and Imu messages into a rosbag2 (version 8: definitions stored in the bag),
    sqlite3 by default or ``storage="mcap"``."""

    def __init__(self, path: str | Path, storage: str = "sqlite3") -> None:
        self.store = make_typestore()
        plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got '{storage}'")
        self._writer = Writer(path, version=8, storage_plugin=plugins[storage])
        self._connections: dict[str, object] = {}

    def __enter__(self):
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def _connection(self, topic: str, msgtype: str):
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        return self._connections[topic]

    def _header(self, stamp_ns: int, frame_id: str):
        Time = self.store.types["builtin_interfaces/msg/Time"]
        Header = self.store.types["std_msgs/msg/Header"]
        return Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                      frame_id=frame_id)

    def write_packet(self, topic: str, packet: RawPacket, bag_time_ns: int | None = None) -> None:
        """``bag_time_ns``: receive time recorded in the bag (default: the header stamp)."""
        cls = self.store.types[PACKET_TYPE]
        msg = cls(header=self._header(packet.stamp_ns, packet.frame_id), height=packet.height, width=packet.width,
                  seq=packet.seq, time_base=packet.time_base, encoding=packet.encoding,
                  is_bigendian=packet.is_bigendian, events=np.frombuffer(packet.events, np.uint8).copy())
        self._writer.write(self._connection(topic, PACKET_TYPE), packet.stamp_ns if bag_time_ns is None else bag_time_ns,
                           self.store.serialize_cdr(msg, PACKET_TYPE))

    def write_image(self, topic: str, image: np.ndarray, stamp_ns: int, frame_id: str, encoding: str) -> None:
        """mono8 / mono16 / 32FC1 / rgb8 image from a numpy array (row-major, little-endian)."""
        cls = self.store.types[IMAGE_TYPE]
        image = np.ascontiguousarray(image)
        h, w = image.shape[:2]
        msg = cls(header=self._header(stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                  step=image.strides[0], data=np.frombuffer(image.tobytes(), np.uint8).copy())
        self._writer.write(self._connection(topic, IMAGE_TYPE), stamp_ns, self.store.serialize_cdr(msg, IMAGE_TYPE))

    def write_imu(self, topic: str, stamp_ns: int, frame_id: str, angular_velocity, linear_acceleration) -> None:
        """sensor_msgs/Imu without orientation (covariance[0] = -1, REP 145); rad/s and m/s^2."""
        cls = self.store.types[IMU_TYPE]
        Vector3 = self.store.types["geometry_msgs/msg/Vector3"]
        Quaternion = self.store.types["geometry_msgs/msg/Quaternion"]
        no_orientation = np.zeros(9)
        no_orientation[0] = -1.0
        msg = cls(header=self._header(stamp_ns, frame_id), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                  orientation_covariance=no_orientation, angular_velocity=Vector3(*map(float, angular_velocity)),
                  angular_velocity_covariance=np.zeros(9), linear_acceleration=Vector3(*map(float, linear_acceleration)),
                  linear_acceleration_covariance=np.zeros(9))
        self._writer.write(self._connection(topic, IMU_TYPE), stamp_ns, self.store.serialize_cdr(msg, IMU_TYPE))

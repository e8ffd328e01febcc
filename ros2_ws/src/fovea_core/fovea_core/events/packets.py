"""Message-free view of an ``event_camera_msgs/EventPacket`` and a stream decoder with drop accounting.

The ROS glue (or :mod:`fovea_core.events.bagio`) copies message fields into :class:`RawPacket`; the
:class:`PacketStreamDecoder` turns a stream of them into event arrays, counting packets lost upstream (gaps in
``seq``) and rejecting malformed packets with a reason (empty, coordinates outside width x height, time going
backwards inside the packet or against the previous packet, unknown evt3 words, unsupported encoding).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fovea_core.events.arrays import TRIGGER_DTYPE, empty_events, malformation
from fovea_core.events.decode_evt3 import Evt3Decoder, Evt3Encoder
from fovea_core.events.decode_libcaer import decode_libcaer, decode_libcaer_cmp, encode_libcaer, encode_libcaer_cmp
from fovea_core.events.decode_mono import decode_mono, encode_mono

SUPPORTED_ENCODINGS = ("evt3", "mono", "libcaer", "libcaer_cmp")


@dataclass
class RawPacket:
    """The fields of an EventPacket, header stamp in ns."""

    events: bytes
    encoding: str
    width: int
    height: int
    seq: int = 0
    time_base: int = 0
    is_bigendian: bool = False
    stamp_ns: int = 0
    frame_id: str = ""


@dataclass
class DecodedPacket:
    events: np.ndarray
    triggers: np.ndarray
    seq: int
    stamp_ns: int
    lost_before: int = 0  # packets missing in seq between the previous packet and this one
    rejected: str | None = None  # reason the packet's events were discarded


@dataclass
class StreamStats:
    packets: int = 0
    events: int = 0
    triggers: int = 0
    lost_packets: int = 0  # seq gaps
    seq_resets: int = 0
    rejected: Counter = field(default_factory=Counter)


class PacketStreamDecoder:
    """Decodes the packets of one topic in arrival order."""

    def __init__(self) -> None:
        self._evt3 = Evt3Decoder()
        self._last_seq: int | None = None
        self._last_time: int | None = None
        self.stats = StreamStats()

    def _track_seq(self, seq: int) -> int:
        lost = 0
        if self._last_seq is not None:
            if seq > self._last_seq:
                lost = seq - self._last_seq - 1
            else:  # a driver restart starts counting again; not a loss we can size
                self.stats.seq_resets += 1
        self._last_seq = seq
        self.stats.lost_packets += lost
        return lost

    def decode(self, packet: RawPacket) -> DecodedPacket:
        self.stats.packets += 1
        lost = self._track_seq(packet.seq)
        triggers = np.empty(0, TRIGGER_DTYPE)
        reason = None
        if packet.encoding == "evt3":
            events, triggers, unknown = self._evt3.decode(bytes(packet.events), packet.is_bigendian)
            if unknown:
                reason = "unknown evt3 word code"
        elif packet.encoding == "mono":
            events = decode_mono(bytes(packet.events), packet.time_base, packet.is_bigendian)
        elif packet.encoding == "libcaer":
            events = decode_libcaer(bytes(packet.events), packet.time_base)
        elif packet.encoding == "libcaer_cmp":
            events = decode_libcaer_cmp(bytes(packet.events), packet.time_base, packet.width, packet.height)
        else:
            events, reason = empty_events(), f"unsupported encoding '{packet.encoding}'"
        if reason is None and len(events) == 0 and len(triggers):
            pass  # a packet with only trigger edges is fine
        elif reason is None:
            reason = malformation(events, packet.width, packet.height)
        if reason is None and self._last_time is not None and len(events) and events["t"][0] < self._last_time:
            reason = "time before previous packet"
        if reason is not None:
            self.stats.rejected[reason] += 1
            return DecodedPacket(empty_events(), triggers[:0], packet.seq, packet.stamp_ns, lost, reason)
        if len(events):
            self._last_time = int(events["t"][-1])
        self.stats.events += len(events)
        self.stats.triggers += len(triggers)
        return DecodedPacket(events, triggers, packet.seq, packet.stamp_ns, lost, None)


class PacketStreamEncoder:
    """Encodes event chunks into consecutive RawPackets (seq counting up from 0)."""

    def __init__(self, encoding: str, width: int, height: int, frame_id: str = "event_camera_optical") -> None:
        if encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(f"encoding must be one of {SUPPORTED_ENCODINGS}, got '{encoding}'")
        self.encoding, self.width, self.height, self.frame_id = encoding, width, height, frame_id
        self._evt3 = Evt3Encoder()
        self._seq = 0

    def encode(self, events: np.ndarray, stamp_ns: int) -> RawPacket:
        if self.encoding == "evt3":
            payload, time_base = self._evt3.encode(events), 0
        elif self.encoding == "libcaer":
            time_base = int(events["t"][0]) if len(events) else 0
            payload = encode_libcaer(events, time_base)
        elif self.encoding == "libcaer_cmp":
            payload, time_base = encode_libcaer_cmp(events)
        else:
            payload, time_base = encode_mono(events)
        packet = RawPacket(payload, self.encoding, self.width, self.height, self._seq, time_base, False, stamp_ns,
                           self.frame_id)
        self._seq += 1
        return packet

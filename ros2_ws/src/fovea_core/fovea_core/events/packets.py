"""Message-free view of an ``event_camera_msgs/EventPacket`` and a stream decoder with drop accounting.

The ROS glue (or :mod:`fovea_core.events.bagio`) copies message fields into :class:`RawPacket`; the
:class:`PacketStreamDecoder` turns a stream of them into event arrays and accounts for every packet:

* **rejected** (with a reason; the packet's events are discarded, the decoder's state - the evt3 clock,
  the time of the last accepted event - stays as it was before the packet): unsupported encoding, a
  width or height of 0 (coordinates cannot be checked), a payload that is not a whole number of the
  encoding's words (cut short), a ``time_base`` beyond int64 nanoseconds, unknown evt3 words, no events, coordinates outside width x height, time
  not sorted inside the packet or before the previous packet's, the previous packet again (same seq and
  header stamp). A seq that stays the same with new stamps is a sender that does not number its packets:
  no gap accounting then.
* **lost upstream** (``lost_before``, ``stats.lost_packets``): a forward gap in ``seq``, counted only when
  time leaves room for the missing packets. With ``dt`` the time since the previous packet (header
  stamps; sensor time when the stamps are 0) and ``period`` the median time between consecutive packets
  so far, a gap of ``g`` packets is a loss when ``g <= 2 * dt / period + 8``. A larger gap is a **seq
  jump** (``stats.seq_jumps``): the sender skipped numbers, nothing was lost. Before a period is known (the
  first packets of a stream), gaps up to ``UNSIZED_GAP_LIMIT`` count as loss, larger ones as jumps.
* **sensor restart** (``restart`` on the packet, ``stats.restarts`` by kind): ``seq`` going back (the
  driver counts from 0 again: ``seq reset``), or ``time_base`` going back while ``seq`` counts on
  (``time_base jump``: the sensor clock started over; encodings that leave ``time_base`` 0, like evt3,
  cannot show this). The decoder starts afresh (clock state, last time, period) and nothing is counted
  lost: what happened between the two runs cannot be sized. Consumers reset their own time state too.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

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
    restart: str | None = None  # "seq reset" / "time_base jump": the sensor started over before this packet
    seq_jump: int = 0  # numbers skipped in seq that time says were never sent (not counted as lost)


@dataclass
class StreamStats:
    packets: int = 0
    events: int = 0
    triggers: int = 0
    lost_packets: int = 0  # seq gaps time leaves room for
    seq_jumps: int = 0  # seq gaps that are not losses (module docstring)
    out_of_frame_events: int = 0  # libcaer_cmp events outside width x height, skipped as libcaer skips them
    restarts: Counter = field(default_factory=Counter)  # kind -> sensor restarts
    rejected: Counter = field(default_factory=Counter)

    @property
    def seq_resets(self) -> int:
        return self.restarts["seq reset"]


# bytes per word of each encoding: a payload of another length was cut short or is not that encoding
WORD_BYTES = {"evt3": 2, "mono": 8, "libcaer": 8, "libcaer_cmp": 2}
UNSIZED_GAP_LIMIT = 256
# time_base is a uint64 in the message; event times are int64 ns: beyond this a packet's times cannot be held
MAX_TIME_BASE = 2**63 - 2**33
_PERIOD_SAMPLES = 64


class PacketStreamDecoder:
    """Decodes the packets of one topic in arrival order (accounting rules: module docstring)."""

    def __init__(self) -> None:
        self.stats = StreamStats()
        self._start_over()

    def _start_over(self) -> None:
        self._evt3 = Evt3Decoder()
        self._last_seq: int | None = None
        self._last_time: int | None = None  # sensor time of the last accepted event
        self._last_stamp: int | None = None  # header stamp of the previous packet
        self._last_time_base: int | None = None
        self._periods: list[int] = []  # recent times between packets of consecutive seq

    # ---- seq accounting --------------------------------------------------------------------------
    def _elapsed(self, packet: RawPacket, first_event_t: int | None) -> int | None:
        if packet.stamp_ns and self._last_stamp:
            return packet.stamp_ns - self._last_stamp
        if first_event_t is not None and self._last_time is not None:
            return first_event_t - self._last_time
        return None

    def _restart_kind(self, packet: RawPacket) -> str | None:
        if self._last_seq is None:
            return None
        if packet.seq < self._last_seq:
            return "seq reset"
        if packet.time_base and self._last_time_base and packet.time_base < self._last_time_base:
            return "time_base jump"
        return None

    def _gap(self, packet: RawPacket, elapsed: int | None) -> tuple[int, int]:
        """(lost, skipped numbers) between the previous packet and this one."""
        if self._last_seq is None or packet.seq <= self._last_seq:
            return 0, 0
        gap = packet.seq - self._last_seq - 1
        if gap == 0:
            if elapsed is not None and elapsed > 0:
                self._periods = (self._periods + [elapsed])[-_PERIOD_SAMPLES:]
            return 0, 0
        if self._periods and elapsed is not None:
            room = 2 * max(elapsed, 0) / max(float(np.median(self._periods)), 1.0) + 8
        else:
            room = UNSIZED_GAP_LIMIT
        return (gap, 0) if gap <= room else (0, gap)

    def decode(self, packet: RawPacket) -> DecodedPacket:
        self.stats.packets += 1
        restart = self._restart_kind(packet)
        if restart is not None:
            self.stats.restarts[restart] += 1
            self._start_over()
        if (self._last_seq is not None and packet.seq == self._last_seq and packet.stamp_ns
                and packet.stamp_ns == self._last_stamp):
            return self._reject(packet, "duplicate packet (same seq and stamp)", 0, None, 0)
        evt3_state = replace(self._evt3.state)  # a rejected packet must not move the clock
        events, triggers, reason = self._decode_payload(packet)
        elapsed = self._elapsed(packet, int(events["t"][0]) if reason is None and len(events) else None)
        lost, skipped = self._gap(packet, elapsed)
        self._last_seq, self._last_stamp = packet.seq, packet.stamp_ns or self._last_stamp
        self._last_time_base = packet.time_base or self._last_time_base
        self.stats.lost_packets += lost
        self.stats.seq_jumps += int(skipped > 0)
        if reason is not None:
            self._evt3.state = evt3_state
            return self._reject(packet, reason, lost, restart, skipped)
        if len(events):
            self._last_time = int(events["t"][-1])
        self.stats.events += len(events)
        self.stats.triggers += len(triggers)
        return DecodedPacket(events, triggers, packet.seq, packet.stamp_ns, lost, None, restart, skipped)

    def _reject(self, packet: RawPacket, reason: str, lost: int, restart: str | None, skipped: int) -> DecodedPacket:
        self.stats.rejected[reason] += 1
        return DecodedPacket(empty_events(), np.empty(0, TRIGGER_DTYPE), packet.seq, packet.stamp_ns, lost, reason,
                             restart, skipped)

    def _decode_payload(self, packet: RawPacket) -> tuple[np.ndarray, np.ndarray, str | None]:
        """(events, triggers, rejection reason or None); may move the evt3 clock (the caller restores it)."""
        triggers = np.empty(0, TRIGGER_DTYPE)
        if packet.encoding not in WORD_BYTES:
            return empty_events(), triggers, f"unsupported encoding '{packet.encoding}'"
        if packet.width <= 0 or packet.height <= 0:
            return empty_events(), triggers, "sensor size 0 (width or height)"
        if len(packet.events) % WORD_BYTES[packet.encoding]:
            return empty_events(), triggers, "payload not whole words (cut short?)"
        if not 0 <= packet.time_base <= MAX_TIME_BASE:
            return empty_events(), triggers, "time_base out of range"
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
            events, out_of_frame = decode_libcaer_cmp(bytes(packet.events), packet.time_base, packet.width,
                                                      packet.height)
            self.stats.out_of_frame_events += out_of_frame
        if reason is None and len(events) == 0 and len(triggers):
            pass  # a packet with only trigger edges is fine
        elif reason is None:
            reason = malformation(events, packet.width, packet.height)
        if reason is None and self._last_time is not None and len(events) and events["t"][0] < self._last_time:
            reason = "time before previous packet"
        return events, triggers, reason


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

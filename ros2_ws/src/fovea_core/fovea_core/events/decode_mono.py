"""The ``mono`` encoding of ``event_camera_msgs/EventPacket`` (deprecated upstream, still found in bags).

Each event is one 64-bit word (byte order from ``is_bigendian``):

=======  ==========================================
bits     meaning
=======  ==========================================
63       polarity (1 = ON, 0 = OFF)
48-62    y (15 bits)
32-47    x (16 bits)
0-31     dt [ns], unsigned; event time = time_base + dt
=======  ==========================================

Because dt has 32 bits, one packet spans at most 2**32 ns (4.29 s) after its ``time_base``; the encoder
refuses longer packets rather than letting dt wrap.
"""
from __future__ import annotations

import numpy as np

from fovea_core.events.arrays import EVENT_DTYPE

MAX_DT_NS = (1 << 32) - 1


def decode_mono(buf: bytes, time_base: int, is_bigendian: bool = False) -> np.ndarray:
    words = np.frombuffer(buf, dtype=">u8" if is_bigendian else "<u8", count=len(buf) // 8)
    events = np.empty(len(words), dtype=EVENT_DTYPE)
    events["p"] = (words >> np.uint64(63)).astype(np.int8)
    events["y"] = ((words >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    events["x"] = ((words >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
    events["t"] = np.int64(time_base) + (words & np.uint64(MAX_DT_NS)).astype(np.int64)
    return events


def encode_mono(events: np.ndarray, time_base: int | None = None) -> tuple[bytes, int]:
    """Encode events into mono words; returns (bytes, time_base). ``time_base`` defaults to the first time."""
    if time_base is None:
        time_base = int(events["t"][0]) if len(events) else 0
    dt = events["t"].astype(np.int64) - np.int64(time_base)
    if len(dt) and (dt.min() < 0 or dt.max() > MAX_DT_NS):
        raise ValueError("mono packet must span less than 2**32 ns after its time_base")
    if len(events) and (int(events["y"].max()) > 0x7FFF):
        raise ValueError("mono y has 15 bits")
    words = ((events["p"].astype(np.uint64) & np.uint64(1)) << np.uint64(63)) \
        | (events["y"].astype(np.uint64) << np.uint64(48)) \
        | (events["x"].astype(np.uint64) << np.uint64(32)) \
        | dt.astype(np.uint64)
    return words.astype("<u8").tobytes(), int(time_base)

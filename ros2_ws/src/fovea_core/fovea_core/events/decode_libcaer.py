"""The ``libcaer`` and ``libcaer_cmp`` encodings of ``event_camera_msgs/EventPacket`` (iniVation DAVIS /
DVXplorer through the ROS 2 ``libcaer_driver``), vectorised with numpy.

Written from the public description of the formats in ``event_camera_codecs`` (Apache-2.0): the time
semantics below are the ones that codec's tests check, so the golden checksums of its bags agree.

``libcaer`` (uncompressed): libcaer's own polarity events copied byte for byte, 8 bytes each, little-endian:

=======  =====  ====================================================
word     bits   meaning
=======  =====  ====================================================
data     0      valid mark (not checked by the reference decoder)
data     1      polarity (1 = ON)
data     2-16   y (15 bits)
data     17-31  x (15 bits)
time     0-31   signed 32-bit microsecond counter (31 bits used, wraps)
=======  =====  ====================================================

event time [ns] = ``time_base`` + 1000 * counter, plus 2**31 us for each time the counter runs backwards
*within* the packet (the driver puts the wraps before the packet into ``time_base``: its host start time
plus the high bits of the elapsed sensor time). Each packet stands alone.

``libcaer_cmp`` (compressed, EVT 3.0-like 16-bit words, code in bits 12-15, payload in bits 0-11):

===========  ====  ===========================================================================
word         code  payload
===========  ====  ===========================================================================
TIME_HIGH    0     bits 12-23 of the microsecond offset from ``time_base``
TIME_LOW     1     bits 0-11 of the offset
ADDR_X       2     x (bits 0-10); the column of the following events
ADDR_Y       3     y (bits 0-10), polarity (bit 11); one event at (current x, y)
VECT_BASE_Y  4     base row (bits 0-10), polarity (bit 11) for the next VECT_8
VECT_8       5     8 validity bits: events at rows base+i for each set bit i; base advances by 8
VECT_12      6     defined, not produced by the driver; the reference decoder ignores it, so do we
===========  ====  ===========================================================================

event time [ns] = ``time_base`` + 1000 * ((TIME_HIGH << 12) | TIME_LOW); the time words reset to 0 at the start
of every packet (a packet spans at most 2**24 us). The driver starts every packet with an ADDR_X, so this
decoder keeps no column across packets (words before the first ADDR_X use column 0). Events outside
width x height are skipped, as the reference decoder skips them, and counted (the caller reports them).
"""
from __future__ import annotations

import numpy as np

from fovea_core.events.arrays import EVENT_DTYPE

NS_PER_US = 1000
_COUNTER_WRAP_NS = (1 << 31) * NS_PER_US

CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_ADDR_Y, CMP_VECT_BASE_Y, CMP_VECT_8, CMP_VECT_12 = range(7)


def decode_libcaer(buf: bytes, time_base: int) -> np.ndarray:
    """Events of one ``libcaer`` packet (absolute ns, as the reference decoder gives them)."""
    words = np.frombuffer(buf, dtype="<u4", count=(len(buf) // 8) * 2).reshape(-1, 2)
    data = words[:, 0]
    counter = words[:, 1].view("<i4").astype(np.int64)
    wraps = np.concatenate(([0], np.cumsum(np.diff(counter) < 0)))
    events = np.empty(len(words), dtype=EVENT_DTYPE)
    events["t"] = np.int64(time_base) + wraps * _COUNTER_WRAP_NS + counter * NS_PER_US
    events["x"] = (data >> 17) & 0x7FFF
    events["y"] = (data >> 2) & 0x7FFF
    events["p"] = (data >> 1) & 1
    return events


def encode_libcaer(events: np.ndarray, time_base: int) -> bytes:
    """The inverse of :func:`decode_libcaer` for events within 2**31 us after ``time_base`` (tests, tools)."""
    offset_us = (events["t"].astype(np.int64) - np.int64(time_base)) // NS_PER_US
    if len(offset_us) and (offset_us.min() < 0 or offset_us.max() >= 1 << 31):
        raise ValueError("libcaer packet must lie within 2**31 us after its time_base")
    words = np.empty((len(events), 2), dtype="<u4")
    words[:, 0] = (events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2) \
        | ((events["p"].astype(np.uint32) & 1) << 1) | 1
    words[:, 1] = offset_us.astype(np.uint32)
    return words.tobytes()


def _forward_fill(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For every position, the value at the last marked position at or before it (0 before any)."""
    last = np.cumsum(mask) - 1
    out = np.zeros(mask.shape[0], dtype=np.int64)
    seen = last >= 0
    out[seen] = values[last[seen]]
    return out


def decode_libcaer_cmp(buf: bytes, time_base: int, width: int, height: int) -> tuple[np.ndarray, int]:
    """(events of one ``libcaer_cmp`` packet, how many were skipped for lying outside ``width`` x ``height``)."""
    raw = np.frombuffer(buf, dtype="<u2", count=len(buf) // 2).astype(np.int64)
    codes, payload = raw >> 12, raw & 0xFFF
    is_high, is_low, is_x = codes == CMP_TIME_HIGH, codes == CMP_TIME_LOW, codes == CMP_ADDR_X
    offset_us = (_forward_fill(is_high, payload[is_high] << 12) | _forward_fill(is_low, payload[is_low]))
    x_at = _forward_fill(is_x, payload[is_x] & 0x7FF)

    # VECT_8 rows: base row of the last VECT_BASE_Y plus 8 for every VECT_8 since that base.
    is_base, is_vec = codes == CMP_VECT_BASE_Y, codes == CMP_VECT_8
    base_index = _forward_fill(is_base, np.flatnonzero(is_base))
    has_base = np.cumsum(is_base) > 0
    vec_before = np.cumsum(is_vec) - is_vec
    base_row = np.where(has_base, (payload[base_index] & 0x7FF) + 8 * (vec_before - vec_before[base_index]),
                        8 * vec_before)
    base_pol = np.where(has_base, (payload[base_index] >> 11) & 1, 0)

    single = np.flatnonzero(codes == CMP_ADDR_Y)
    vec = np.flatnonzero(is_vec)
    row, bit = np.nonzero(((payload[vec, None] & 0xFF) >> np.arange(8)) & 1)
    word_idx = np.concatenate((single, vec[row]))
    ys = np.concatenate((payload[single] & 0x7FF, base_row[vec[row]] + bit))
    ps = np.concatenate(((payload[single] >> 11) & 1, base_pol[vec[row]]))
    order = np.argsort(word_idx * 8 + np.concatenate((np.zeros(len(single), np.int64), bit)), kind="stable")
    word_idx, ys, ps = word_idx[order], ys[order], ps[order]
    xs = x_at[word_idx]
    inside = (xs < width) & (ys < height)
    events = np.empty(int(inside.sum()), dtype=EVENT_DTYPE)
    events["t"] = np.int64(time_base) + offset_us[word_idx[inside]] * NS_PER_US
    events["x"], events["y"], events["p"] = xs[inside], ys[inside], ps[inside]
    return events, int(len(inside) - len(events))


def encode_libcaer_cmp(events: np.ndarray) -> tuple[bytes, int]:
    """Encode time-sorted events as one ``libcaer_cmp`` packet; returns (bytes, time_base).

    One time word when the time changes, an ADDR_X when the column changes, then one ADDR_Y per event (the
    driver's row vectors are an optimisation the decoder handles; this encoder does not need them).
    """
    if len(events) == 0:
        return b"", 0
    time_base = int(events["t"][0])
    offset = (events["t"].astype(np.int64) - time_base) // NS_PER_US
    if np.any(np.diff(offset) < 0) or offset[-1] >= 1 << 24:
        raise ValueError("libcaer_cmp packet needs sorted events within 2**24 us")
    x = events["x"].astype(np.int64)
    high, low = offset >> 12, offset & 0xFFF
    prev = lambda a, first: np.concatenate(([first], a[:-1]))  # noqa: E731 - value before each event
    new_high = high != prev(high, 0)
    new_low = (low != prev(low, 0)) | new_high
    new_x = x != prev(x, -1)
    n_words = 1 + new_high + new_low + new_x
    end = np.cumsum(n_words)
    out = np.empty(int(end[-1]), dtype="<u2")
    y_pos = end - 1
    out[y_pos] = (CMP_ADDR_Y << 12) | ((events["p"].astype(np.int64) & 1) << 11) | (events["y"] & 0x7FF)
    x_pos = y_pos[new_x] - 1
    out[x_pos] = (CMP_ADDR_X << 12) | (x[new_x] & 0x7FF)
    low_pos = y_pos[new_low] - 1 - new_x[new_low]
    out[low_pos] = (CMP_TIME_LOW << 12) | low[new_low]
    high_pos = low_pos[new_high[new_low]] - 1
    out[high_pos] = (CMP_TIME_HIGH << 12) | (high[new_high] & 0xFFF)
    return out.tobytes(), time_base

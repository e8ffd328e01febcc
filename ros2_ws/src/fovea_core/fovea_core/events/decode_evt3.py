"""Prophesee EVT 3.0 codec (the ``evt3`` encoding of ``event_camera_msgs/EventPacket``), vectorised with numpy.

EVT 3.0 is a stream of little-endian 16-bit words; the top 4 bits name the word type and the decoder keeps a
state (time, row, vector base) that carries over from one packet to the next:

==========  ====  ==========================================================================
word        code  payload (12 bits)
==========  ====  ==========================================================================
ADDR_Y      0     y (bits 0-10), system type (bit 11); sets the row of the following events
ADDR_X      2     x (bits 0-10), polarity (bit 11); one event at (x, current row, current time)
VECT_BASE_X 3     x (bits 0-10), polarity (bit 11); base column for the following vector words
VECT_12     4     12 validity bits: events at base+i for each set bit i; base advances by 12
VECT_8      5     8 validity bits (bits 0-7); base advances by 8
TIME_LOW    6     low 12 bits of the 24-bit microsecond time
TIME_HIGH   8     high 12 bits of the 24-bit microsecond time
EXT_TRIGGER 10    edge (bit 0), trigger id (bits 8-11)
padding     7, 9, 14, 15 (CONTINUED_4, padding, OTHERS, CONTINUED_12): carry no CD events, skipped
==========  ====  ==========================================================================

Time semantics (the same as the event_camera_codecs reference decoder, so checksums agree):

* event time [ns] = 1000 * ((rollovers << 24) | (TIME_HIGH << 12) | TIME_LOW); ``time_base`` is not used.
* the 24-bit microsecond counter wraps every 2**24 us (16.8 s); a wrap is recognised when a TIME_HIGH is
  smaller than the previous one by more than 10 (smaller steps are sensor jitter, not a wrap).
* nothing is emitted until the stream has seen a TIME_HIGH followed by a TIME_LOW; words before that point
  only update the clock.
* the wraps before the first word seen are unknowable: decoded time starts within [0, 2**24 us) and counts
  wraps from there (a stream recorded after 16.8 s of sensor uptime decodes 16.8 s earlier per wrap missed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fovea_core.events.arrays import EVENT_DTYPE, TRIGGER_DTYPE

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH = 0, 2, 3, 4, 5, 6, 7, 8
PADDING, EXT_TRIGGER, OTHERS, CONTINUED_12 = 9, 10, 14, 15
_KNOWN_CODES = np.zeros(16, dtype=bool)
_KNOWN_CODES[[ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING,
              EXT_TRIGGER, OTHERS, CONTINUED_12]] = True
# A TIME_HIGH that goes back by at most this much is jitter, not a wrap of the 24-bit counter.
_WRAP_HYSTERESIS = 10
NS_PER_US = 1000
_BRIDGE_STEP = 2048  # TIME_HIGH units (4096 us each): half the 12-bit period


def word(code: int, payload: int) -> int:
    """One EVT 3.0 word; handy for building packets by hand."""
    return ((code & 0xF) << 12) | (payload & 0xFFF)


def _forward_fill(mask: np.ndarray, values: np.ndarray, initial: int) -> np.ndarray:
    """For every position, the value of the last marked position at or before it (``initial`` before any)."""
    last = np.cumsum(mask) - 1
    filled = np.full(mask.shape[0], initial, dtype=np.int64)
    seen = last >= 0
    filled[seen] = values[last[seen]]
    return filled


@dataclass
class Evt3State:
    """Decoder state carried across packets."""

    time_high: int = 0  # (rollovers << 24) | (TIME_HIGH << 12), in microseconds
    time_low: int = 0
    y: int = 0
    base_x: int = 0
    polarity: int = 0
    seen_high: bool = False
    time_valid: bool = False


class Evt3Decoder:
    """Stateful decoder of one evt3 stream (one topic); call :meth:`decode` for each packet in order."""

    def __init__(self) -> None:
        self.state = Evt3State()

    def _advance_clock(self, codes: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Microsecond (high, low) time in effect at each word; updates the carried clock state."""
        s = self.state
        is_high = codes == TIME_HIGH
        highs = payload[is_high].astype(np.int64)
        previous = np.concatenate(([(s.time_high >> 12) & 0xFFF], highs[:-1]))
        wrapped = (highs < previous) & (previous - highs > _WRAP_HYSTERESIS)
        if not s.seen_high and len(highs):
            wrapped[0] = False  # the first TIME_HIGH of a stream starts the clock, it is not a wrap
        rollovers = (s.time_high >> 24) + np.cumsum(wrapped)
        full_highs = (rollovers << 24) | (highs << 12)
        high_at = _forward_fill(is_high, full_highs, s.time_high)
        is_low = codes == TIME_LOW
        low_at = _forward_fill(is_low, payload[is_low].astype(np.int64), s.time_low)
        if len(codes):
            s.time_high, s.time_low = int(high_at[-1]), int(low_at[-1])
        s.seen_high = s.seen_high or bool(is_high.any())
        return high_at, low_at

    def _clock_start(self, codes: np.ndarray) -> tuple[int, bool]:
        """(index of the first word decoded normally, whether the clock is valid from there on).

        The clock becomes valid at the first TIME_LOW that follows a TIME_HIGH; words up to and including that
        TIME_LOW only move the clock.
        """
        if self.state.time_valid:
            return 0, True
        high_pos = np.flatnonzero(codes == TIME_HIGH)
        if self.state.seen_high:
            first_high = -1
        elif len(high_pos):
            first_high = int(high_pos[0])
        else:
            return len(codes), False
        low_pos = np.flatnonzero(codes == TIME_LOW)
        low_pos = low_pos[low_pos > first_high]
        if len(low_pos) == 0:
            return len(codes), False
        return int(low_pos[0]) + 1, True

    def decode(self, buf: bytes, is_bigendian: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """Decode one packet. Returns (events, trigger events, number of words with unknown codes)."""
        raw = np.frombuffer(buf, dtype=">u2" if is_bigendian else "<u2", count=len(buf) // 2)
        codes = (raw >> 12).astype(np.int64)
        payload = (raw & 0xFFF).astype(np.int64)
        unknown = int(np.count_nonzero(~_KNOWN_CODES[codes]))

        start, valid = self._clock_start(codes)
        if start > 0:
            self._advance_clock(codes[:start], payload[:start])
            codes, payload = codes[start:], payload[start:]
        self.state.time_valid = valid
        if not valid:
            return np.empty(0, EVENT_DTYPE), np.empty(0, TRIGGER_DTYPE), unknown

        s = self.state
        high_at, low_at = self._advance_clock(codes, payload)
        t_ns = (high_at | low_at) * NS_PER_US

        is_y = codes == ADDR_Y
        y_at = _forward_fill(is_y, payload[is_y] & 0x7FF, s.y)

        # Vector words: column = base column of the last VECT_BASE_X + columns consumed by vectors since then.
        is_base = codes == VECT_BASE_X
        advance = np.where(codes == VECT_12, 12, np.where(codes == VECT_8, 8, 0))
        consumed_before = np.cumsum(advance) - advance
        base_index = _forward_fill(is_base, np.flatnonzero(is_base), -1)
        after_base = base_index >= 0
        safe_index = np.where(after_base, base_index, 0)
        base_x_at = np.where(after_base, (payload[safe_index] & 0x7FF) + consumed_before - consumed_before[safe_index],
                             s.base_x + consumed_before)
        pol_at = np.where(after_base, (payload[safe_index] >> 11) & 1, s.polarity)

        single = np.flatnonzero(codes == ADDR_X)
        parts_word, parts_x, parts_p, parts_bit = [single], [payload[single] & 0x7FF], [(payload[single] >> 11) & 1], [
            np.zeros(len(single), np.int64)]
        for code, width, mask in ((VECT_12, 12, 0xFFF), (VECT_8, 8, 0xFF)):
            vec = np.flatnonzero(codes == code)
            bits = ((payload[vec, None] & mask) >> np.arange(width)) & 1
            row, bit = np.nonzero(bits)
            w = vec[row]
            parts_word.append(w)
            parts_x.append(base_x_at[w] + bit)
            parts_p.append(pol_at[w])
            parts_bit.append(bit)
        word_idx = np.concatenate(parts_word)
        order = np.argsort(word_idx * 16 + np.concatenate(parts_bit), kind="stable")
        word_idx = word_idx[order]
        events = np.empty(len(word_idx), dtype=EVENT_DTYPE)
        events["x"] = np.concatenate(parts_x)[order]
        events["y"] = y_at[word_idx]
        events["t"] = t_ns[word_idx]
        events["p"] = np.concatenate(parts_p)[order]

        trig = np.flatnonzero(codes == EXT_TRIGGER)
        triggers = np.empty(len(trig), dtype=TRIGGER_DTYPE)
        triggers["t"] = t_ns[trig]
        triggers["edge"] = payload[trig] & 1
        triggers["id"] = (payload[trig] >> 8) & 0xF

        if len(codes):
            s.y = int(y_at[-1])
            s.base_x = int(base_x_at[-1] + advance[-1])
            s.polarity = int(pol_at[-1])
        return events, triggers, unknown


@dataclass
class Evt3EncoderState:
    high: int = -1  # last emitted (rollovers << 12 | TIME_HIGH), -1 before the first word
    low: int = -1
    y: int = -1


class Evt3Encoder:
    """Stateful evt3 encoder (one ADDR_X word per event, preceded by time / row words when they change).

    Event times are rounded down to microseconds (the resolution of EVT 3.0). Across a long silence the
    encoder inserts extra TIME_HIGH words every 2048 * 4096 us (8.4 s), so a decoder always sees the 24-bit
    counter wrap, however far apart two events are.
    """

    def __init__(self) -> None:
        self.state = Evt3EncoderState()

    def encode(self, events: np.ndarray) -> bytes:
        if len(events) == 0:
            return b""
        t_us = events["t"].astype(np.int64) // NS_PER_US
        if np.any(t_us < 0) or np.any(np.diff(t_us) < 0):
            raise ValueError("evt3 encoding needs non-negative, sorted event times")
        high = t_us >> 12
        low = t_us & 0xFFF
        y = events["y"].astype(np.int64)
        s = self.state
        previous_high = np.concatenate(([s.high], high[:-1]))
        new_high = high != previous_high
        new_low = new_high | (low != np.concatenate(([s.low], low[:-1])))
        new_y = y != np.concatenate(([s.y], y[:-1]))
        # half-period stepping stones before a jump of the high time, so no wrap can be missed
        bridges = np.where(previous_high >= 0, np.maximum(high - previous_high - 1, 0) // _BRIDGE_STEP, 0)
        n_words = 1 + new_high + new_low + new_y + bridges
        end = np.cumsum(n_words)
        out = np.empty(int(end[-1]), dtype="<u2")
        x_pos = end - 1
        out[x_pos] = (ADDR_X << 12) | ((events["p"].astype(np.int64) & 1) << 11) | (events["x"] & 0x7FF)
        y_pos = x_pos[new_y] - 1
        out[y_pos] = (ADDR_Y << 12) | (y[new_y] & 0x7FF)
        low_pos = x_pos[new_low] - 1 - new_y[new_low]
        out[low_pos] = (TIME_LOW << 12) | low[new_low]
        high_pos = low_pos[new_high[new_low]] - 1
        out[high_pos] = (TIME_HIGH << 12) | (high[new_high] & 0xFFF)
        for i in np.flatnonzero(bridges):  # rare: only after silences longer than 8.4 s
            first = end[i] - n_words[i]
            steps = previous_high[i] + _BRIDGE_STEP * np.arange(1, bridges[i] + 1)
            out[first:first + bridges[i]] = (TIME_HIGH << 12) | (steps & 0xFFF)
        s.high, s.low, s.y = int(high[-1]), int(low[-1]), int(y[-1])
        return out.tobytes()

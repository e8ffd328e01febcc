"""Event packet codecs: golden counts on the real recordings, hand-encoded packets, drops with reasons."""

import numpy as np
import pytest

from fovea_core.events.arrays import make_events
from fovea_core.events.bagio import BagWriter, read_events, read_packets
from fovea_core.events.decode_evt3 import (ADDR_X, ADDR_Y, EXT_TRIGGER, TIME_HIGH, TIME_LOW, VECT_8, VECT_12,
                                           VECT_BASE_X, Evt3Decoder, word)
from fovea_core.events.decode_mono import decode_mono, encode_mono
from fovea_core.events.legacy import events_from_dvs_array
from fovea_core.paths import shared_data_dir
from fovea_core.events.packets import PacketStreamDecoder, PacketStreamEncoder, RawPacket

DATA = shared_data_dir() / "events" / "event_camera_codecs_bags"


def words(*ws):
    return np.array(ws, dtype="<u2").tobytes()


# --- golden counts on the real recordings (sums agree with event_camera_codecs' own decoder test) ---------

def test_evt3_trigger_recording_golden_counts():
    events, triggers, stats = read_events(DATA / "evt3_trigger")
    assert stats.packets == 105 and stats.lost_packets == 0 and not stats.rejected
    assert len(events) == 82469
    assert int((events["p"] == 1).sum()) == 41439 and int((events["p"] == 0).sum()) == 41030
    assert int(events["x"].astype(np.int64).sum()) == 42078718
    assert int(events["y"].astype(np.int64).sum()) == 31656267
    assert int(events["t"].sum()) == 1222326831810000
    assert (int(events["t"].min()), int(events["t"].max())) == (14224870000, 15476187000)
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["x"].max() < 1280 and events["y"].max() < 720
    assert len(triggers) == 2 and int(triggers["t"].sum()) == 29096982000
    assert int(triggers["edge"].sum()) == 1 and int(triggers["id"].sum()) == 0


def test_mono_recording_golden_counts():
    # this bag carries the type under its earlier name, event_array_msgs/msg/EventArray
    events, _, stats = read_events(DATA / "mono_cd")
    assert stats.packets == 2 and not stats.rejected
    assert len(events) == 100
    assert int((events["p"] == 1).sum()) == 50
    assert int(events["x"].astype(np.int64).sum()) == 34450
    assert int(events["y"].astype(np.int64).sum()) == 26450
    assert int(events["t"].sum()) == 4950000
    assert (int(events["t"].min()), int(events["t"].max())) == (0, 99000)
    assert np.all(np.diff(events["t"]) >= 0)


# --- evt3 hand-encoded ------------------------------------------------------------------------------------

def test_evt3_single_vector_and_trigger_words():
    buf = words(word(TIME_HIGH, 0x012), word(TIME_LOW, 0x345), word(ADDR_Y, 7), word(ADDR_X, (1 << 11) | 100),
                word(VECT_BASE_X, 200), word(VECT_12, 0b100000000101), word(VECT_8, 0b10000001),
                word(TIME_LOW, 0x346), word(EXT_TRIGGER, (3 << 8) | 1))
    ev, trig, unknown = Evt3Decoder().decode(buf)
    assert unknown == 0
    t0 = ((0x012 << 12) | 0x345) * 1000
    assert ev["x"].tolist() == [100, 200, 202, 211, 212, 219]
    assert ev["p"].tolist() == [1, 0, 0, 0, 0, 0]
    assert ev["y"].tolist() == [7] * 6 and ev["t"].tolist() == [t0] * 6
    assert trig.tolist() == [(t0 + 1000, 1, 3)]


def test_evt3_ignores_events_before_the_clock_is_valid():
    buf = words(word(ADDR_Y, 5), word(ADDR_X, 1), word(TIME_LOW, 4), word(TIME_HIGH, 1), word(ADDR_X, 2),
                word(TIME_LOW, 9), word(ADDR_X, 3))
    ev, _, _ = Evt3Decoder().decode(buf)
    assert ev["x"].tolist() == [3] and ev["t"].tolist() == [((1 << 12) | 9) * 1000]
    assert ev["y"].tolist() == [0]  # the row word came before the clock, so it was not taken


def test_evt3_time_wrap_across_packets_and_state_carry():
    dec = Evt3Decoder()
    a, _, _ = dec.decode(words(word(TIME_HIGH, 0xFFF), word(TIME_LOW, 0xFFE), word(ADDR_Y, 3), word(ADDR_X, 10)))
    # next packet: counter wrapped to 0; row and clock carried over from the previous packet
    b, _, _ = dec.decode(words(word(ADDR_X, 11), word(TIME_HIGH, 0x000), word(TIME_LOW, 0x002), word(ADDR_X, 12)))
    assert a["t"].tolist() == [((0xFFF << 12) | 0xFFE) * 1000]
    assert b["t"].tolist() == [((0xFFF << 12) | 0xFFE) * 1000, ((1 << 24) | 2) * 1000]
    assert b["y"].tolist() == [3, 3]
    # small step back of TIME_HIGH (<= 10) is jitter, not a wrap
    c, _, _ = dec.decode(words(word(TIME_HIGH, 0x005), word(TIME_HIGH, 0x003), word(TIME_LOW, 0), word(ADDR_X, 1)))
    assert c["t"].tolist() == [((1 << 24) | (3 << 12)) * 1000]


def test_evt3_encoder_round_trip_with_wrap():
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 40_000_000, 500)) * 1000  # 40 s in us -> two wraps of the 24-bit counter
    ev = make_events(rng.integers(0, 640, 500), rng.integers(0, 480, 500), t, rng.integers(0, 2, 500))
    enc = PacketStreamEncoder("evt3", 640, 480)
    dec = PacketStreamDecoder()
    out = [dec.decode(enc.encode(chunk, 0)).events for chunk in np.array_split(ev, 7)]
    back = np.concatenate(out)
    assert np.array_equal(back, ev)


# --- mono hand-encoded ------------------------------------------------------------------------------------

def test_mono_hand_encoded_words():
    w = np.array([(1 << 63) | (479 << 48) | (639 << 32) | 7, (0 << 63) | (2 << 48) | (3 << 32) | 0xFFFFFFFF],
                 dtype=np.uint64)
    ev = decode_mono(w.astype("<u8").tobytes(), time_base=1_000_000_000)
    assert ev.tolist() == [(639, 479, 1_000_000_007, 1), (3, 2, 1_000_000_000 + 0xFFFFFFFF, 0)]
    ev_be = decode_mono(w.astype(">u8").tobytes(), time_base=1_000_000_000, is_bigendian=True)
    assert np.array_equal(ev, ev_be)


def test_mono_round_trip_and_dt_limit():
    ev = make_events([1, 2], [3, 4], [10, 20], [0, 1])
    buf, base = encode_mono(ev)
    assert base == 10 and np.array_equal(decode_mono(buf, base), ev)
    with pytest.raises(ValueError):
        encode_mono(make_events([1, 2], [3, 4], [0, 1 << 32], [0, 1]))


# --- stream: seq gaps and malformed packets ---------------------------------------------------------------

def _mono_packet(events, seq, width=64, height=48):
    buf, base = encode_mono(events, time_base=0)
    return RawPacket(buf, "mono", width, height, seq, base)


def test_seq_gaps_counted_as_lost_packets():
    dec = PacketStreamDecoder()
    lost = [dec.decode(_mono_packet(make_events([1], [1], [s * 10], [1]), s)).lost_before for s in (0, 1, 4, 5, 9)]
    assert lost == [0, 0, 2, 0, 3] and dec.stats.lost_packets == 5


@pytest.mark.parametrize("packet, reason", [
    (_mono_packet(make_events([64], [0], [5], [1]), 0), "x out of range"),
    (_mono_packet(make_events([0], [48], [5], [1]), 0), "y out of range"),
    (_mono_packet(make_events([1, 2], [1, 1], [9, 5], [1, 0]), 0), "time not sorted"),
    (RawPacket(b"", "mono", 64, 48, 0), "empty"),
    (RawPacket(words(word(TIME_HIGH, 1), word(TIME_LOW, 1), word(12, 0), word(ADDR_X, 1)), "evt3", 64, 48, 0),
     "unknown evt3 word code"),
    (RawPacket(b"\x00" * 8, "aer_raw", 64, 48, 0), "unsupported encoding 'aer_raw'"),
])
def test_malformed_packets_dropped_with_reason(packet, reason):
    dec = PacketStreamDecoder()
    out = dec.decode(packet)
    assert out.rejected == reason and len(out.events) == 0
    assert dec.stats.rejected[reason] == 1 and dec.stats.events == 0


def test_packet_older_than_previous_is_dropped():
    dec = PacketStreamDecoder()
    dec.decode(_mono_packet(make_events([1], [1], [100], [1]), 0))
    out = dec.decode(_mono_packet(make_events([1], [1], [50], [1]), 1))
    assert out.rejected == "time before previous packet"


# --- bags ---------------------------------------------------------------------------------------------------

def test_bag_round_trip_both_encodings(tmp_path):
    rng = np.random.default_rng(1)
    ev = make_events(rng.integers(0, 32, 300), rng.integers(0, 24, 300), np.sort(rng.integers(0, 10**8, 300)) // 1000 * 1000,
                     rng.integers(0, 2, 300))
    for encoding in ("evt3", "mono"):
        enc = PacketStreamEncoder(encoding, 32, 24)
        with BagWriter(tmp_path / encoding) as bag:
            for i, chunk in enumerate(np.array_split(ev, 5)):
                bag.write_packet("/events", enc.encode(chunk, int(chunk["t"][-1])))
            bag.write_image("/image", np.zeros((24, 32), np.uint8), 0, "cam", "mono8")
        back, _, stats = read_events(tmp_path / encoding)
        assert np.array_equal(back, ev) and stats.packets == 5
        assert [p.seq for p in read_packets(tmp_path / encoding)] == [0, 1, 2, 3, 4]


def test_dvs_event_array_conversion():
    class T:
        def __init__(self, sec, nanosec):
            self.sec, self.nanosec = sec, nanosec

    class E:
        def __init__(self, x, y, sec, ns, pol):
            self.x, self.y, self.ts, self.polarity = x, y, T(sec, ns), pol

    class A:
        events = [E(1, 2, 3, 4, True), E(5, 6, 7, 8, False)]

    ev = events_from_dvs_array(A())
    assert ev.tolist() == [(1, 2, 3_000_000_004, 1), (5, 6, 7_000_000_008, 0)]


# --- property: encode -> decode is the identity (evt3 at its microsecond resolution) ------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 2047), st.integers(0, 40_000_000), st.integers(0, 1)),
                max_size=60),
       st.integers(1, 5), st.sampled_from(["evt3", "mono"]))
def test_encode_decode_round_trip_property(rows, chunks, encoding):
    rows = sorted(rows, key=lambda r: r[2])
    ev = make_events([r[0] for r in rows], [r[1] for r in rows], [r[2] * 1000 for r in rows], [r[3] for r in rows])
    enc, dec = PacketStreamEncoder(encoding, 2048, 2048), PacketStreamDecoder()
    if encoding == "mono":  # one packet must stay within 2**32 ns of its time base
        parts = np.split(ev, np.flatnonzero(np.diff(ev["t"] // 4_000_000_000)) + 1) if len(ev) else [ev]
    else:
        parts = np.array_split(ev, chunks)
    back = [dec.decode(enc.encode(p, 0)) for p in parts]
    expected = ev.copy()
    if encoding == "evt3" and len(ev):
        # EVT 3.0 carries 24 bits of microseconds: a stream read from its start knows wraps only from then on
        expected["t"] -= (int(ev["t"][0]) // 1000 >> 24 << 24) * 1000
    assert np.array_equal(np.concatenate([b.events for b in back]) if back else ev, expected)
    assert all(b.rejected in (None, "empty") for b in back)
    assert dec.stats.lost_packets == 0

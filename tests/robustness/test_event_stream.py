"""The event packet stream under bad input: rejected packets leave the decoder untouched, sensor restarts are
restarts (not losses), seq jumps that time cannot explain are not losses, and generated garbage never raises."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fovea_core.events.arrays import make_events
from fovea_core.events.packets import PacketStreamDecoder, PacketStreamEncoder, RawPacket

PERIOD_NS = 5_000_000  # a packet every 5 ms, stamped with its first event's time, as the drivers do
W, H = 64, 48


def stream(encoding: str, n: int = 12, seed: int = 0, t0: int = 1_000_000_000) -> list[RawPacket]:
    """``n`` packets of 40 random events each, one per 5 ms, seq 0..n-1, header stamps = first event time."""
    rng = np.random.default_rng(seed)
    encoder = PacketStreamEncoder(encoding, W, H)
    packets = []
    for i in range(n):
        t = np.sort(rng.integers(0, PERIOD_NS // 1000, 40)) * 1000 + t0 + i * PERIOD_NS
        events = make_events(rng.integers(0, W, 40), rng.integers(0, H, 40), t, rng.integers(0, 2, 40))
        packets.append(encoder.encode(events, int(t[0])))
    return packets


def decode_all(packets):
    decoder = PacketStreamDecoder()
    return decoder, [decoder.decode(p) for p in packets]


def events_of(decoded):
    return np.concatenate([d.events for d in decoded if d.rejected is None])


def like(packet: RawPacket, **changes) -> RawPacket:
    return RawPacket(**{**packet.__dict__, **changes})


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
@pytest.mark.parametrize("field", ["width", "height"])
def test_a_packet_without_sensor_size_is_rejected_with_a_reason(encoding, field):
    packets = stream(encoding, 3)
    packets[1] = like(packets[1], **{field: 0})
    decoder, out = decode_all(packets)
    assert out[1].rejected == "sensor size 0 (width or height)" and len(out[1].events) == 0
    assert decoder.stats.rejected == {"sensor size 0 (width or height)": 1}
    assert decoder.stats.events == 80 and decoder.stats.lost_packets == 0


@pytest.mark.parametrize("garbage", ["random", "unknown_words", "cut_short"])
def test_a_rejected_evt3_packet_leaves_the_clock_where_it_was(garbage):
    packets = stream("evt3")
    _, reference = decode_all(packets)
    rng = np.random.default_rng(7)
    if garbage == "random":
        payload = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    elif garbage == "unknown_words":  # a big TIME_HIGH jump, then a word of unknown code 12
        payload = np.array([0x8FFF, 0x6FFF, 0x2001, 0xC000], "<u2").tobytes()
    else:
        payload = packets[5].events[:-1]
    bad = like(packets[5], events=payload, seq=5)
    with_bad = packets[:5] + [bad] + [like(p, seq=p.seq + 1) for p in packets[5:]]
    decoder, out = decode_all(with_bad)
    assert out[5].rejected is not None and len(out[5].events) == 0
    np.testing.assert_array_equal(events_of(out), events_of(reference))  # not one event moved in time
    assert decoder.stats.lost_packets == 0 and sum(decoder.stats.rejected.values()) == 1


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_a_driver_restart_is_reported_as_a_restart_not_as_loss(encoding):
    first = stream(encoding, 6, seed=1)
    second = stream(encoding, 6, seed=2, t0=1_000_000)  # seq from 0 again, sensor clock from ~0 again
    decoder, out = decode_all(first + second)
    assert [d.restart for d in out] == [None] * 6 + ["seq reset"] + [None] * 5
    assert decoder.stats.restarts == {"seq reset": 1} and decoder.stats.seq_resets == 1
    assert decoder.stats.lost_packets == 0 and not decoder.stats.rejected  # the second run is decoded, not
    assert decoder.stats.events == 12 * 40                                 # refused as "time before previous"


def test_a_time_base_going_back_while_seq_counts_on_is_a_restart():
    first = stream("mono", 4, seed=1)
    second = [like(p, seq=p.seq + 4) for p in stream("mono", 4, seed=2, t0=2_000_000)]
    decoder, out = decode_all(first + second)
    assert out[4].restart == "time_base jump" and decoder.stats.restarts == {"time_base jump": 1}
    assert decoder.stats.lost_packets == 0 and not decoder.stats.rejected


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_a_seq_jump_that_time_cannot_explain_is_not_counted_as_loss(encoding):
    packets = stream(encoding, 12)
    jumped = packets[:6] + [like(p, seq=p.seq + 1000) for p in packets[6:]]
    decoder, out = decode_all(jumped)
    assert out[6].lost_before == 0 and out[6].seq_jump == 1000
    assert decoder.stats.lost_packets == 0 and decoder.stats.seq_jumps == 1 and decoder.stats.events == 12 * 40


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_a_gap_that_time_leaves_room_for_is_counted_as_loss(encoding):
    packets = stream(encoding, 40)
    kept = packets[:10] + packets[30:]  # 20 packets (100 ms) missing, the stamps say so
    decoder, out = decode_all(kept)
    assert out[10].lost_before == 20 and decoder.stats.lost_packets == 20 and decoder.stats.seq_jumps == 0


def test_before_the_packet_period_is_known_gaps_are_bounded():
    from fovea_core.events.packets import UNSIZED_GAP_LIMIT

    packets = stream("mono", 3)
    decoder, out = decode_all([packets[0], like(packets[1], seq=UNSIZED_GAP_LIMIT + 1)])
    assert out[1].lost_before == UNSIZED_GAP_LIMIT and decoder.stats.seq_jumps == 0
    decoder, out = decode_all([packets[0], like(packets[1], seq=UNSIZED_GAP_LIMIT + 2)])
    assert out[1].lost_before == 0 and decoder.stats.seq_jumps == 1


def test_the_same_packet_twice_is_a_duplicate_and_unnumbered_streams_are_fine():
    packets = stream("mono", 4)
    decoder, out = decode_all(packets[:2] + [packets[1]] + packets[2:])
    assert out[2].rejected == "duplicate packet (same seq and stamp)" and decoder.stats.events == 4 * 40
    decoder, out = decode_all([like(p, seq=0) for p in packets])  # a sender that never numbers its packets
    assert not decoder.stats.rejected and decoder.stats.events == 4 * 40 and decoder.stats.lost_packets == 0


# --------------------------------------------------------------------------------------- generated garbage
@st.composite
def bad_packets(draw):
    """A packet whose fields and payload are drawn at random (sizes, encodings, seq, stamps, time_base)."""
    encoding = draw(st.sampled_from(["evt3", "mono", "libcaer", "libcaer_cmp", "evt2", ""]))
    return RawPacket(events=draw(st.binary(max_size=600)), encoding=encoding,
                     width=draw(st.sampled_from([0, 1, W, 2048, 65535])),
                     height=draw(st.sampled_from([0, 1, H, 2048, 65535])),
                     seq=draw(st.integers(0, 2**64 - 1)),
                     time_base=draw(st.one_of(st.integers(0, 2**40), st.integers(0, 2**64 - 1))),
                     is_bigendian=draw(st.booleans()), stamp_ns=draw(st.integers(0, 2**62)))


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 11), bad_packets()), max_size=6), st.sampled_from(["evt3", "mono"]))
def test_garbage_between_valid_packets_never_raises_and_every_packet_is_accounted_for(inserts, encoding):
    good = stream(encoding)
    order = [(i, None) for i in range(len(good))] + sorted(inserts, key=lambda x: x[0])
    order.sort(key=lambda x: (x[0], x[1] is None))  # garbage lands before the valid packet of its slot
    decoder = PacketStreamDecoder()
    out = [decoder.decode(good[i] if bad is None else bad) for i, bad in order]
    stats = decoder.stats
    assert stats.packets == len(order)
    assert sum(1 for d in out if d.rejected is None) + sum(stats.rejected.values()) == len(order)
    assert stats.events == sum(len(d.events) for d in out)
    for d in out:
        if d.rejected is None and len(d.events):
            assert np.all(np.diff(d.events["t"]) >= 0)

"""libcaer / libcaer_cmp codecs: golden checksums on the real DAVIS-driver bag (across a 32-bit us wrap),
hand-built packets word by word from the format description, round trips, and the stream decoder's handling."""

import numpy as np

from fovea_core.events.arrays import make_events
from fovea_core.events.bagio import BagWriter, read_events, read_packets
from fovea_core.events.decode_libcaer import (CMP_ADDR_X, CMP_ADDR_Y, CMP_TIME_HIGH, CMP_TIME_LOW, CMP_VECT_8,
                                              CMP_VECT_12, CMP_VECT_BASE_Y, decode_libcaer, decode_libcaer_cmp,
                                              encode_libcaer, encode_libcaer_cmp)
from fovea_core.events.packets import PacketStreamDecoder, PacketStreamEncoder, RawPacket
from fovea_core.paths import shared_data_dir

BAG = shared_data_dir() / "events" / "event_camera_codecs_bags" / "libcaer_rollover"


def cmp_words(*pairs):
    return np.array([(code << 12) | payload for code, payload in pairs], dtype="<u2").tobytes()


def test_libcaer_rollover_bag_golden_checksums():
    # reference sums from event_camera_codecs' decoder test (PROVENANCE.md); t wraps modulo 2**64
    events, _, stats = read_events(BAG)
    assert stats.packets == 201 and stats.lost_packets == 0 and not stats.rejected
    assert int(events["t"].astype(np.uint64).sum(dtype=np.uint64)) == 15762826572202229126
    assert int(events["x"].astype(np.int64).sum()) == 111651612
    assert int(events["y"].astype(np.int64).sum()) == 82801007
    assert int(events["p"].astype(np.int64).sum()) == 181908
    assert np.all(np.diff(events["t"]) >= 0)  # monotonic across the sensor counter's wrap
    assert events["x"].max() < 640 and events["y"].max() < 480


def test_libcaer_first_packet_times_match_the_reference():
    first = next(iter(read_packets(BAG)))
    ev = decode_libcaer(first.events, first.time_base)
    # first and last event of the first packet, as the reference codec's summarize() reports them
    assert int(ev["t"][0]) == 1702309120762236018 and int(ev["t"][-1]) == 1702309120772213018
    assert int((ev["p"] == 0).sum()) == 741 and int((ev["p"] == 1).sum()) == 872


def test_libcaer_wrap_inside_a_packet_adds_2_pow_31_us():
    data = (np.array([5, 6], np.uint32) << 17) | (np.array([7, 8], np.uint32) << 2) | 0b11
    counter = np.array([(1 << 31) - 10, 4], np.uint32)  # the counter runs over between the two events
    buf = np.stack([data, counter], 1).astype("<u4").tobytes()
    ev = decode_libcaer(buf, 1_000_000)
    assert list(ev["x"]) == [5, 6] and list(ev["y"]) == [7, 8] and list(ev["p"]) == [1, 1]
    assert int(ev["t"][0]) == 1_000_000 + ((1 << 31) - 10) * 1000
    assert int(ev["t"][1]) == 1_000_000 + ((1 << 31) + 4) * 1000


def test_libcaer_round_trip():
    rng = np.random.default_rng(3)
    n = 500
    t = 10**18 + np.sort(rng.integers(0, 3_000_000, n)) * 1000
    ev = make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t, rng.integers(0, 2, n))
    back = decode_libcaer(encode_libcaer(ev, 10**18), 10**18)
    assert np.array_equal(back, ev)


def test_libcaer_cmp_hand_built_words():
    buf = cmp_words((CMP_ADDR_X, 300), (CMP_ADDR_Y, (1 << 11) | 17),          # (300, 17) ON at t = 0
                    (CMP_TIME_LOW, 5), (CMP_VECT_BASE_Y, 40), (CMP_VECT_8, 0b10000101),  # rows 40, 42, 47 OFF
                    (CMP_VECT_8, 0b1),                                         # base advanced by 8: row 48
                    (CMP_TIME_HIGH, 2), (CMP_TIME_LOW, 1), (CMP_ADDR_X, 12),
                    (CMP_ADDR_Y, 3), (CMP_VECT_12, 0xFFF),                     # VECT_12 ignored, as upstream
                    (CMP_ADDR_Y, 999))                                         # y >= height: skipped
    ev, out_of_frame = decode_libcaer_cmp(buf, 7_000, 346, 260)
    assert out_of_frame == 1
    assert list(ev["x"]) == [300, 300, 300, 300, 300, 12]
    assert list(ev["y"]) == [17, 40, 42, 47, 48, 3]
    assert list(ev["p"]) == [1, 0, 0, 0, 0, 0]
    assert list(ev["t"]) == [7_000, 7_000 + 5_000, 7_000 + 5_000, 7_000 + 5_000, 7_000 + 5_000,
                             7_000 + ((2 << 12) | 1) * 1000]


def test_libcaer_cmp_encodes_the_real_bag_losslessly():
    # every real packet re-encoded compressed decodes to the same events (times kept to the microsecond)
    for packet in list(read_packets(BAG))[:40]:
        ev = decode_libcaer(packet.events, packet.time_base)
        payload, time_base = encode_libcaer_cmp(ev)
        back, out_of_frame = decode_libcaer_cmp(payload, time_base, packet.width, packet.height)
        assert np.array_equal(back, ev) and out_of_frame == 0
        assert len(payload) < len(packet.events)  # it is a compression


def test_stream_decoder_bag_round_trip_for_both_libcaer_encodings(tmp_path):
    rng = np.random.default_rng(0)
    chunks = []
    for k in range(5):
        t = 1_700_000_000_000_000_000 + k * 10_000_000 + np.sort(rng.integers(0, 10_000, 200)) * 1000
        chunks.append(make_events(rng.integers(0, 346, 200), rng.integers(0, 260, 200), t, rng.integers(0, 2, 200)))
    for encoding in ("libcaer", "libcaer_cmp"):
        encoder = PacketStreamEncoder(encoding, 346, 260)
        bag = tmp_path / encoding
        with BagWriter(bag) as writer:
            for chunk in chunks:
                writer.write_packet("/events", encoder.encode(chunk, int(chunk["t"][0])))
        events, _, stats = read_events(bag)
        assert stats.packets == 5 and not stats.rejected
        assert np.array_equal(events, np.concatenate(chunks))


def test_unsupported_encoding_keeps_its_own_reason():
    out = PacketStreamDecoder().decode(RawPacket(b"\x00" * 16, "libcaer_v9", 346, 260))
    assert out.rejected == "unsupported encoding 'libcaer_v9'" and len(out.events) == 0


def test_stream_decoder_counts_libcaer_cmp_events_outside_the_sensor():
    # the compressed format skips such events (as libcaer does) instead of rejecting the packet: they are counted
    from fovea_core.events.packets import PacketStreamDecoder, RawPacket
    buf = cmp_words((CMP_ADDR_X, 10), (CMP_ADDR_Y, 5), (CMP_ADDR_Y, 300), (CMP_ADDR_X, 400), (CMP_ADDR_Y, 6))
    decoder = PacketStreamDecoder()
    out = decoder.decode(RawPacket(buf, "libcaer_cmp", 346, 260, 0, 1_000, False, 1_000, "cam"))
    assert out.rejected is None and len(out.events) == 1
    assert decoder.stats.out_of_frame_events == 2 and decoder.stats.events == 1

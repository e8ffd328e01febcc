"""AEDAT4 import of the real DAVIS346 recording: decoded content against the golden numbers of its PROVENANCE
file, and the round trip AEDAT4 -> rosbag2 (libcaer EventPacket + Image + Imu) -> decoded again."""

import numpy as np
import pytest

from fovea_core.events.aedat4 import main as import_main, read_aedat4
from fovea_core.events.anomaly.streams import read_bag_streams
from fovea_core.paths import shared_data_dir
from fovea_ros.bag import info

AEDAT = shared_data_dir() / "events" / "davis346_emlb" / "emlb_demo-01.aedat4"


@pytest.fixture(scope="module")
def recording():
    return read_aedat4(AEDAT)


def test_decoded_recording_matches_its_provenance(recording):
    ev = recording.events
    assert (recording.width, recording.height) == (346, 260)
    assert len(ev) == 319_512
    assert int(ev["t"][0]) == 1643243628737093 * 1000 and int(ev["t"][-1]) == 1643243629248083 * 1000
    assert np.all(np.diff(ev["t"]) >= 0)
    assert int(ev["x"].max()) == 345 and int(ev["y"].max()) == 259
    assert (ev["p"] == 1).mean() == pytest.approx(0.522, abs=5e-4)
    assert len(recording.frames) == 13 and len(recording.imu) == 510 and recording.trigger_count == 52
    stamps = recording.frame_stamps
    assert np.allclose(np.diff(stamps), 40e6, atol=0.2e6)  # 25 Hz
    for f in recording.frames:
        assert f.image.shape == (260, 346) and f.image.dtype == np.uint8
        assert f.exposure_end_ns - f.exposure_begin_ns == 20_000_000
        assert ev["t"][0] <= f.stamp_ns <= ev["t"][-1]  # one clock for events and frames


@pytest.mark.parametrize("encoding", ["libcaer_cmp", "libcaer"])
def test_import_round_trip(tmp_path, recording, encoding, capsys):
    out = tmp_path / "davis"
    assert import_main(["aedat4", str(AEDAT), str(out), "--encoding", encoding]) == 0
    assert "319512 events" in capsys.readouterr().out
    streams, stats = read_bag_streams(out, "/event_camera/events", "/camera/image_raw")
    assert stats.packets == 512 and not stats.rejected and stats.lost_packets == 0
    assert np.array_equal(streams.events, recording.events)  # every event, to the microsecond
    assert np.array_equal(streams.frames.stamps, recording.frame_stamps)
    assert np.array_equal(streams.frames.images, np.stack([f.image for f in recording.frames]))
    report = info.bag_info(out)
    topics = {t.name: t for t in report.topics}
    assert report.storage == "mcap"
    assert topics["/event_camera/events"].encodings == [encoding]
    assert topics["/camera/image_raw"].count == 13 and topics["/imu"].count == 510
    assert topics["/camera/image_raw"].encodings is None


def test_import_refuses_an_existing_output(tmp_path, capsys):
    assert import_main(["aedat4", str(AEDAT), str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err

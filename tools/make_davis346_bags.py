"""Build bags/davis346_emlb (the real DAVIS346 clip as the driver would publish it) and bags/davis346_emlb_offset
(the same clip with the frame stream delayed by 50 ms from its 6th frame on) from the AEDAT4 file in
../shared/data/events/davis346_emlb (MIT, see the bags' NOTICE.md).

    python tools/make_davis346_bags.py [--out bags]

Frames whose stamp is closer than the detector's event horizon (76 ms) to the last event are left out: the
node scores a frame step once events that far past its frame have arrived, and the clip's events end 10 ms
after its last frame, so those frames could never be scored and the demo's books (one score per frame) would
not balance.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from fovea_core.events.aedat4 import read_aedat4, write_recording_bag
from fovea_core.events.anomaly.faults import offset
from fovea_core.events.anomaly.features import FeatureConfig
from fovea_core.events.anomaly.streams import EventFrameStreams, FrameStream
from fovea_core.paths import shared_data_dir

NOTICE = """# {name}

Made by `tools/make_davis346_bags.py` from `../shared/data/events/davis346_emlb/emlb_demo-01.aedat4`: a real
DAVIS346 recording (camera DAVIS346_00000391) from the E-MLB event denoising benchmark, repository
github.com/KugaMaxx/cuke-emlb (commit 8e17d9d), `data/demo/samples/demo-01.aedat4`, MIT license:

{license}
Attribution: S. Ding et al., "E-MLB: Multilevel benchmark for event-based camera denoising", IEEE Transactions
on Multimedia 26, 2023.

Content (rosbag2, MCAP): `/event_camera/events` event_camera_msgs/EventPacket, encoding `libcaer_cmp` (as
libcaer_driver publishes a DAVIS), one packet per 10 ms, {events} events; `/camera/image_raw` sensor_msgs/Image
mono8 346x260, {frames} APS frames at 25 Hz stamped at mid-exposure; `/imu` sensor_msgs/Imu, {imu} samples.
{fault}"""


def streams_of(rec) -> EventFrameStreams:
    return EventFrameStreams(rec.events, FrameStream(rec.frame_stamps, np.stack([f.image for f in rec.frames])),
                             rec.width, rec.height)


def write(rec, streams: EventFrameStreams, out: Path, fault_text: str) -> None:
    last_event = int(streams.events["t"][-1])
    keep = streams.frames.stamps + FeatureConfig().horizon_ns <= last_event
    by_stamp = {f.stamp_ns: f for f in rec.frames}
    frames = []
    for stamp, image in zip(streams.frames.stamps[keep], streams.frames.images[keep]):
        source = by_stamp.get(int(stamp)) or min(rec.frames, key=lambda f: abs(f.stamp_ns - int(stamp)))
        frames.append(type(source)(int(stamp), source.exposure_begin_ns, source.exposure_end_ns, image))
    faulty = type(rec)(rec.width, rec.height, streams.events, frames, rec.imu, rec.trigger_count)
    if out.exists():
        shutil.rmtree(out)
    # 10 ms packets (libcaer_driver's event_message_time_threshold set to 0.01): a 1 kHz packet stream is
    # more than a Python subscriber on a shared 2-core machine takes without losing packets at the reader
    summary = write_recording_bag(faulty, out, "libcaer_cmp", packet_ns=10_000_000)
    license_text = (shared_data_dir() / "events" / "davis346_emlb" / "LICENSE.cuke-emlb.MIT").read_text()
    (out / "NOTICE.md").write_text(NOTICE.format(name=out.name, license=license_text, events=summary.events,
                                                 frames=summary.frames, imu=summary.imu, fault=fault_text))
    print(f"{out}: {summary.packets} packets, {summary.frames} frames, {summary.imu} IMU samples")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bags"))
    args = parser.parse_args(argv)
    rec = read_aedat4(shared_data_dir() / "events" / "davis346_emlb" / "emlb_demo-01.aedat4")
    clean = streams_of(rec)
    write(rec, clean, args.out / "davis346_emlb", "No fault: the recording as it is (the last frames without 76 ms "
          "of events after them left out).\n")
    onset = int(clean.frames.stamps[5])
    faulty, fault = offset(clean, onset, clean.end_ns + 1, 50.0)
    write(rec, faulty, args.out / "davis346_emlb_offset",
          f"Injected fault (fovea_core.events.anomaly.faults.offset): from the 6th frame on (t = {onset} ns) every "
          "frame is stamped 50 ms late against the events, as a camera clock offset would do; frames that would "
          "overtake a delayed one are dropped.\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

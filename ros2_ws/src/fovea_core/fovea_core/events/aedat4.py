"""AEDAT 4.0 recordings (iniVation DV: DAVIS, DVXplorer) read with the ``aedat`` package, and
``fovea import aedat4 FILE OUT_BAG``: events, APS frames and IMU to a rosbag2 (MCAP) the suite replays.

Time: AEDAT4 stamps are microseconds since the Unix epoch on the camera's clock; everything here is int64 ns on
that clock (x 1000), so events, frames and IMU samples keep their relative timing exactly.

What the bag holds, the way ``libcaer_driver`` publishes a live camera:

* ``/event_camera/events`` ``event_camera_msgs/EventPacket`` (``libcaer_cmp`` by default, or ``libcaer``), one packet per ``packet_ns`` of sensor time, header stamp = time of its first event, recorded at
  the time of its last event (when a driver would have sent it).
* ``/camera/image_raw`` ``sensor_msgs/Image`` mono8, stamped at the middle of the exposure (libcaer's frame
  timestamp), recorded at the exposure end.
* ``/imu`` ``sensor_msgs/Imu``: gyro deg/s -> rad/s, accelerometer g -> m/s^2 (as the driver converts them),
  no orientation.

Trigger edges are counted but not written: no standard message carries them next to libcaer packets.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fovea_core.events.arrays import EVENT_DTYPE

NS_PER_US = 1000
GRAVITY = 9.81


@dataclass
class FrameRecord:
    stamp_ns: int  # middle of the exposure
    exposure_begin_ns: int
    exposure_end_ns: int
    image: np.ndarray  # (H, W) uint8


@dataclass
class Aedat4Recording:
    width: int
    height: int
    events: np.ndarray  # EVENT_DTYPE, t in ns
    frames: list[FrameRecord]
    imu: np.ndarray  # structured: t ns, gyro (3,) rad/s, accel (3,) m/s^2
    trigger_count: int

    @property
    def frame_stamps(self) -> np.ndarray:
        return np.array([f.stamp_ns for f in self.frames], dtype=np.int64)


IMU_DTYPE = np.dtype([("t", "<i8"), ("gyro", "<f8", 3), ("accel", "<f8", 3)])


def read_aedat4(path: str | Path) -> Aedat4Recording:
    """Decode every stream of an AEDAT4 file (events, frames, IMU; triggers counted)."""
    import aedat  # the decoder made for AEDAT4 (LZ4 / zstd packets, flatbuffers), Rust underneath

    decoder = aedat.Decoder(str(path))
    streams = decoder.id_to_stream()
    size = next(((s["width"], s["height"]) for s in streams.values() if s["type"] == "events"), None)
    if size is None:
        raise ValueError(f"{path}: no event stream in this AEDAT4 file")
    chunks, frames, imus, triggers = [], [], [], 0
    for packet in decoder:
        if "events" in packet:
            raw = packet["events"]
            ev = np.empty(len(raw), dtype=EVENT_DTYPE)
            ev["t"] = raw["t"].astype(np.int64) * NS_PER_US
            ev["x"], ev["y"], ev["p"] = raw["x"], raw["y"], raw["on"]
            chunks.append(ev)
        elif "frame" in packet:
            f = packet["frame"]
            pixels = np.asarray(f["pixels"])
            if pixels.ndim == 3:  # colour sensor: keep luminance only
                pixels = pixels[..., :3].mean(axis=2).astype(np.uint8)
            begin, end = int(f["exposure_begin_t"]) * NS_PER_US, int(f["exposure_end_t"]) * NS_PER_US
            if end <= begin:  # no exposure information: the frame time stands for the whole frame
                begin = end = int(f["t"]) * NS_PER_US
            frames.append(FrameRecord((begin + end) // 2, begin, end, np.ascontiguousarray(pixels, dtype=np.uint8)))
        elif "imus" in packet:
            raw = packet["imus"]
            rec = np.empty(len(raw), dtype=IMU_DTYPE)
            rec["t"] = raw["t"].astype(np.int64) * NS_PER_US
            rec["gyro"] = np.deg2rad(np.stack([raw[f"gyroscope_{a}"] for a in "xyz"], 1).astype(np.float64))
            rec["accel"] = np.stack([raw[f"accelerometer_{a}"] for a in "xyz"], 1).astype(np.float64) * GRAVITY
            imus.append(rec)
        elif "triggers" in packet:
            triggers += len(packet["triggers"])
    events = np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)
    imu = np.concatenate(imus) if imus else np.empty(0, IMU_DTYPE)
    return Aedat4Recording(int(size[0]), int(size[1]), events, sorted(frames, key=lambda f: f.stamp_ns), imu,
                           triggers)


@dataclass
class ImportSummary:
    packets: int
    events: int
    frames: int
    imu: int
    triggers_not_written: int


def write_recording_bag(rec: Aedat4Recording, out: str | Path, encoding: str = "libcaer_cmp",
                        packet_ns: int = 1_000_000, storage: str = "mcap", event_topic: str = "/event_camera/events",
                        image_topic: str = "/camera/image_raw", imu_topic: str = "/imu",
                        frame_id: str = "camera_optical", imu_frame_id: str = "imu") -> ImportSummary:
    """Write the recording as a rosbag2 with messages in recorded (send-time) order."""
    from fovea_core.events.bagio import BagWriter
    from fovea_core.events.packets import PacketStreamEncoder

    encoder = PacketStreamEncoder(encoding, rec.width, rec.height, frame_id)
    messages: list[tuple[int, int, object]] = []  # (record time, order, writer call)
    t = rec.events["t"]
    if len(t):
        edges = np.arange(t[0] - t[0] % packet_ns, t[-1] + packet_ns, packet_ns)
        bounds = np.searchsorted(t, edges)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                chunk = rec.events[a:b]
                messages.append((int(chunk["t"][-1]), 0, ("packet", chunk)))
    for f in rec.frames:
        messages.append((f.exposure_end_ns, 1, ("image", f)))
    for s in rec.imu:
        messages.append((int(s["t"]), 2, ("imu", s)))
    messages.sort(key=lambda m: (m[0], m[1]))
    counts = {"packet": 0, "image": 0, "imu": 0}
    with BagWriter(out, storage=storage) as bag:
        for record_ns, _, (kind, item) in messages:
            if kind == "packet":
                bag.write_packet(event_topic, encoder.encode(item, int(item["t"][0])), bag_time_ns=record_ns)
            elif kind == "image":
                bag.write_image(image_topic, item.image, item.stamp_ns, frame_id, "mono8")
            else:
                bag.write_imu(imu_topic, int(item["t"]), imu_frame_id, item["gyro"], item["accel"])
            counts[kind] += 1
    return ImportSummary(counts["packet"], len(rec.events), counts["image"], counts["imu"], rec.trigger_count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fovea import", description="Convert a recording into a rosbag2 the "
                                     "suite replays. Formats: aedat4 (iniVation DV: events, APS frames, IMU).")
    parser.add_argument("format", choices=("aedat4",))
    parser.add_argument("file", help="input recording")
    parser.add_argument("out_bag", help="output rosbag2 directory (must not exist)")
    parser.add_argument("--encoding", default="libcaer_cmp", choices=("libcaer_cmp", "libcaer"),
                        help="EventPacket encoding (default: libcaer_cmp, libcaer_driver's default; both keep the camera clock, evt3 would not)")
    parser.add_argument("--packet-ms", type=float, default=1.0, help="sensor time per event packet (default 1 ms)")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if Path(args.out_bag).exists():
        print(f"fovea import: {args.out_bag} exists; choose a new folder", file=sys.stderr)
        return 1
    try:
        rec = read_aedat4(args.file)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"fovea import: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    summary = write_recording_bag(rec, args.out_bag, args.encoding, int(args.packet_ms * 1e6), args.storage)
    print(f"wrote {args.out_bag}: {summary.packets} event packets ({summary.events} events, {args.encoding}), "
          f"{summary.frames} frames, {summary.imu} IMU samples; {summary.triggers_not_written} trigger edges "
          "not written (no message type for them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The two streams the anomaly detector watches: events (x, y, t, p) and intensity frames, on one clock (ns).

Frames are stamped at the middle of their exposure (libcaer's frame timestamp; the simulator does the same).
Everything is plain arrays, so fault injection, features and the node's buffers share one representation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fovea_core.events.arrays import empty_events


@dataclass
class FrameStream:
    stamps: np.ndarray  # (N,) int64 ns, increasing
    images: np.ndarray  # (N, H, W) uint8

    def __len__(self) -> int:
        return len(self.stamps)

    def select(self, keep: np.ndarray) -> "FrameStream":
        return FrameStream(self.stamps[keep], self.images[keep])

    @classmethod
    def empty(cls, height: int, width: int) -> "FrameStream":
        return cls(np.empty(0, np.int64), np.empty((0, height, width), np.uint8))


@dataclass
class EventFrameStreams:
    events: np.ndarray  # EVENT_DTYPE, time-sorted
    frames: FrameStream
    width: int
    height: int

    def with_(self, **changes) -> "EventFrameStreams":
        return replace(self, **changes)

    @property
    def start_ns(self) -> int:
        starts = [int(self.events["t"][0])] if len(self.events) else []
        starts += [int(self.frames.stamps[0])] if len(self.frames) else []
        return min(starts) if starts else 0

    @property
    def end_ns(self) -> int:
        ends = [int(self.events["t"][-1])] if len(self.events) else []
        ends += [int(self.frames.stamps[-1])] if len(self.frames) else []
        return max(ends) if ends else 0

    def flipped(self, horizontal: bool = True) -> "EventFrameStreams":
        """Mirror both streams (a consistent, still normal, view of the same scene)."""
        ev = self.events.copy()
        if horizontal:
            ev["x"] = self.width - 1 - ev["x"]
            images = self.frames.images[:, :, ::-1]
        else:
            ev["y"] = self.height - 1 - ev["y"]
            images = self.frames.images[:, ::-1, :]
        return self.with_(events=ev, frames=FrameStream(self.frames.stamps.copy(), np.ascontiguousarray(images)))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "EventFrameStreams":
        ev = self.events
        keep = (ev["x"] >= x0) & (ev["x"] < x0 + width) & (ev["y"] >= y0) & (ev["y"] < y0 + height)
        ev = ev[keep].copy()
        ev["x"] -= x0
        ev["y"] -= y0
        images = np.ascontiguousarray(self.frames.images[:, y0:y0 + height, x0:x0 + width])
        return EventFrameStreams(ev, FrameStream(self.frames.stamps.copy(), images), width, height)


INTENSITY_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "rgb8", "bgr8")


class ImageEncodingError(ValueError):
    """An image that is no intensity frame (its ``reason`` is the node's drop reason)."""

    reason = "wrong image encoding"


def intensity_u8(image: np.ndarray, encoding: str) -> np.ndarray:
    """uint8 intensity (H, W) of an image array in one of ``INTENSITY_ENCODINGS`` (mono16: top 8 bits, colour:
    luma). ValueError naming the encoding for anything else (depth, float, Bayer, YUV images are no
    intensity frames for this detector)."""
    if encoding not in INTENSITY_ENCODINGS:
        raise ImageEncodingError(f"wrong image encoding '{encoding}' (needs one of {', '.join(INTENSITY_ENCODINGS)})")
    if encoding in ("mono16", "16UC1"):
        return (np.asarray(image, np.uint16) >> 8).astype(np.uint8)
    if encoding in ("rgb8", "bgr8"):
        rgb = np.asarray(image, np.float32)[..., ::-1] if encoding == "bgr8" else np.asarray(image, np.float32)
        return np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image, dtype=np.uint8)


def image_from_fields(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """:func:`intensity_u8` of an Image given by its fields (bags read with rosbags; the node uses the glue's
    conversion and then :func:`intensity_u8`)."""
    buf = np.frombuffer(data.tobytes() if isinstance(data, np.ndarray) else bytes(data), np.uint8)
    channels, itemsize = {"mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2), "rgb8": (3, 1),
                          "bgr8": (3, 1)}.get(encoding, (1, 1))
    if encoding not in INTENSITY_ENCODINGS:
        raise ImageEncodingError(f"wrong image encoding '{encoding}' (needs one of {', '.join(INTENSITY_ENCODINGS)})")
    if step < width * channels * itemsize or len(buf) != height * step:
        raise ValueError(f"image of {len(buf)} bytes does not match {height} rows of step {step}")
    rows = buf.reshape(height, step)[:, :width * channels * itemsize]
    if itemsize == 2:
        array = rows.view(">u2" if is_bigendian else "<u2").reshape(height, width)
    else:
        array = rows.reshape(height, width, channels) if channels == 3 else rows.reshape(height, width)
    return intensity_u8(array, encoding)


def read_bag_streams(bag: str | Path, events_topic: str, frames_topic: str):
    """(EventFrameStreams, event StreamStats) from a rosbag2 with an event packet topic and an image topic."""
    from rosbags.rosbag2 import Reader

    from fovea_core.events.bagio import DVS_TYPE, IMAGE_TYPE, PACKET_TYPES, make_typestore, packet_from_msg
    from fovea_core.events.legacy import events_from_dvs_array
    from fovea_core.events.packets import PacketStreamDecoder

    decoder = PacketStreamDecoder()
    chunks, stamps, images = [], [], []
    size = (0, 0)
    with Reader(bag) as reader:
        store = make_typestore(reader)
        conns = [c for c in reader.connections if c.topic in (events_topic, frames_topic)]
        missing = {events_topic, frames_topic} - {c.topic for c in conns}
        if missing:
            raise ValueError(f"{bag}: no topic {', '.join(sorted(missing))}")
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.msgtype == IMAGE_TYPE:
                images.append(image_from_fields(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                                                bool(msg.is_bigendian)))
                stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
            elif conn.msgtype in PACKET_TYPES:
                packet = packet_from_msg(msg)
                size = (packet.width, packet.height)
                chunks.append(decoder.decode(packet).events)
            elif conn.msgtype == DVS_TYPE:
                size = (int(msg.width), int(msg.height))
                chunks.append(events_from_dvs_array(msg))
            else:
                raise ValueError(f"{bag}: topic {conn.topic} has type {conn.msgtype}, not events or images")
    events = np.concatenate([c for c in chunks if len(c)]) if any(len(c) for c in chunks) else empty_events()
    if images:
        frames = FrameStream(np.array(stamps, np.int64), np.stack(images))
        size = size if size != (0, 0) else (images[0].shape[1], images[0].shape[0])
    else:
        frames = FrameStream.empty(size[1], size[0])
    order = np.argsort(frames.stamps, kind="stable")
    return EventFrameStreams(events, frames.select(order), int(size[0]), int(size[1])), decoder.stats

"""Event + frame streams written as a bag the nodes replay: libcaer event packets and mono8 frames, stamped on
a ROS clock (sensor time + ``ROS_T0``). Used by the anomaly node tests and the suite's health test (one
generator for both), with the desync interval both inject (``ONSET``..``END``, sensor time)."""
import numpy as np
from anomaly_helpers import MS

from fovea_core.events.bagio import BagWriter
from fovea_core.events.packets import PacketStreamEncoder

ROS_T0 = 1_700_000_000 * 1_000_000_000
ONSET, END = 1_600 * MS, 2_600 * MS


def write_streams_bag(streams, path, packet_ns=10 * MS):
    """Events as libcaer packets of ``packet_ns`` (10 ms: 100 Hz), each recorded at its last event; frames as
    mono8 images recorded 10 ms after their stamp (a camera driver's transfer)."""
    encoder = PacketStreamEncoder("libcaer", streams.width, streams.height)
    ev = streams.events.copy()
    ev["t"] += ROS_T0
    messages = []
    edges = np.arange(ev["t"][0], ev["t"][-1] + packet_ns, packet_ns)
    bounds = np.searchsorted(ev["t"], edges)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            messages.append((int(ev["t"][b - 1]), "packet", ev[a:b]))
    for stamp, image in zip(streams.frames.stamps, streams.frames.images):
        messages.append((ROS_T0 + int(stamp) + 10 * MS, "frame", (ROS_T0 + int(stamp), image)))
    with BagWriter(path) as bag:
        for record_ns, kind, item in sorted(messages, key=lambda m: m[0]):
            if kind == "packet":
                bag.write_packet("/event_camera/events", encoder.encode(item, int(item["t"][0])), record_ns)
            else:
                bag.write_image("/camera/image_raw", item[1], item[0], "camera_optical", "mono8")

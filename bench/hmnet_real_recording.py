"""What the event-memory node produces on the real evt3 recording (event_camera_codecs test bag, 1280 x 720
Prophesee sensor): starts the node (real rclpy, its own process), publishes the recording's packets at their
recorded pace, collects the segmentation overlay and depth images it publishes, and writes a picture plus
counts. Run after ``source env.sh``:

    python bench/hmnet_real_recording.py --picture models/hmnet/real_recording.png

The model was trained on simulated 64 x 48 scenes only; on this recording its classes have no meaning - the
picture shows that the node runs end to end on real data, at which rate, and what it outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bag", type=Path, default=REPO.parent / "shared/data/events/event_camera_codecs_bags/evt3_trigger")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results", help="folder for the JSON and the picture")
    ap.add_argument("--picture", type=Path, default=None,
                    help="picture path (default <out>/hmnet_real_recording.png; the committed one is "
                         "models/hmnet/real_recording.png)")
    args = ap.parse_args(argv)
    args.picture = args.picture or args.out / "hmnet_real_recording.png"
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 99))

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from event_camera_msgs.msg import EventPacket
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from fovea_core.events.bagio import read_events, read_packets
    from fovea_core.events.representations import event_histogram
    from fovea_ros.conversions import image_to_array

    packets = list(read_packets(args.bag))
    events, _, _ = read_events(args.bag)
    rclpy.init()
    node = rclpy.create_node("real_recording_peer")
    got = {"overlay": [], "depth": [], "diag": []}
    qos = QoSProfile(depth=500)
    node.create_subscription(Image, "/event_memory/segmentation_overlay", got["overlay"].append, qos)
    node.create_subscription(Image, "/event_memory/depth", got["depth"].append, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 10)
    pub = node.create_publisher(EventPacket, "/event_camera/events", qos)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    proc = subprocess.Popen([sys.executable, "-m", "fovea_ros.nodes.event_memory_node", "--ros-args", "-p",
                             "sensor_qos:=reliable", "-p", "queue_size:=100", "-p", "diagnostics_period:=0.5"],
                            cwd=REPO, env={**os.environ, "FOVEA_ROOT": str(REPO)})
    try:
        deadline = time.monotonic() + 90
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit("the event_memory node exited at start (see its output above)")
            time.sleep(0.1)
        time.sleep(1.0)
        t_first = packets[0].stamp_ns
        start = time.monotonic()
        for p in packets:  # recorded pace
            while time.monotonic() - start < (p.stamp_ns - t_first) * 1e-9:
                time.sleep(0.001)
            msg = EventPacket(height=p.height, width=p.width, seq=p.seq, time_base=p.time_base, encoding=p.encoding,
                              is_bigendian=p.is_bigendian, events=bytes(p.events))
            msg.header.frame_id = p.frame_id
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(p.stamp_ns, 1_000_000_000)
            pub.publish(msg)
        expected_windows = int((events["t"][-1] // 5_000_000) - (events["t"][0] // 5_000_000))
        deadline = time.monotonic() + 120
        while len(got["overlay"]) < expected_windows and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        proc.send_signal(2)
        proc.wait(10)
    diag = [s for d in got["diag"] for s in d.status if s.name == "fovea/event_memory"]
    values = {kv.key: kv.value for kv in diag[-1].values} if diag else {}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overlays = got["overlay"]
    picks = np.linspace(len(overlays) // 5, len(overlays) - 1, 4).astype(int) if overlays else []
    fig, axes = plt.subplots(len(picks), 3, figsize=(12, 2.6 * len(picks)))
    offset = packets[0].stamp_ns - int(read_events_first_time(packets))
    for row, i in zip(np.atleast_2d(axes), picks):
        m = overlays[i]
        stamp = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
        end = stamp - offset
        # 8 x 8 pixel blocks so single events stay visible at figure size: ON white, OFF black
        h = event_histogram(events, 1280, 720, 1, end - 5_000_000, end)[0].reshape(2, 90, 8, 160, 8).sum((2, 4))
        ev_img = np.full((90, 160, 3), 0.5)
        ev_img[h[1] > h[0]] = (1.0, 1.0, 1.0)
        ev_img[h[0] > h[1]] = (0.0, 0.0, 0.0)
        depth_msg = next((d for d in got["depth"] if d.header.stamp == m.header.stamp), None)
        panels = [(ev_img, f"events (8x8 blocks), window ending {(end) / 1e9:.3f} s (sensor)", None),
                  (image_to_array(m), "node: segmentation overlay (64x48)", None)]
        if depth_msg is not None:
            panels.append((image_to_array(depth_msg), "node: depth [m] (64x48)", "viridis"))
        for ax, (img, title, cmap) in zip(row, panels):
            ax.imshow(img, cmap=cmap)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.picture, dpi=90)
    result = {"bag": str(args.bag), "packets_sent": len(packets), "events": int(len(events)),
              "windows_expected": expected_windows, "overlay_images_received": len(overlays),
              "depth_images_received": len(got["depth"]), "node_diagnostics": values, "picture": str(args.picture)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hmnet_real_recording.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    ex.shutdown()
    spinner.join(5)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def read_events_first_time(packets) -> int:
    """Sensor time of the first event (what the node pairs with the first packet's stamp)."""
    from fovea_core.events.packets import PacketStreamDecoder

    dec = PacketStreamDecoder()
    for p in packets:
        ev = dec.decode(p).events
        if len(ev):
            return int(ev["t"][0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

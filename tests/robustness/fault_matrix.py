"""The fault cases of issue 13, thrown at each node in this process, tallied as the closing note's table.

    python tests/robustness/fault_matrix.py [--json OUT]

Each case is one bad input (or one bad model file) delivered through the node's own subscription callback
(or configure). It is counted as

* **crash**: an exception escapes the callback (the executor would end the node) or configure fails with
  something other than one line naming the parameter and the file (a traceback for the user);
* **silent loss**: the input is neither handed to the worker nor counted under any drop reason, or the node
  counted something false (a loss that never happened, a clock that jumped);
* **internal error**: the base's guard caught an exception nobody expected (counted, the node lives on);
* **handled**: counted under a reason of its own (or, for model files, the one clear line).

It runs against whatever Fovea is importable, so the same cases measure an older checkout too
(``PYTHONPATH=<old>/ros2_ws/src/fovea_core:<old>/ros2_ws/src/fovea_ros:$PYTHONPATH``); nodes of the older,
non-lifecycle base are built and fed the same way (the adapter below).
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402

from corrupt_models import ONNX_CASES, TORCH_CASES, make_corrupt  # noqa: E402

REPO = HERE.parents[1]
MODELS = REPO / "models"


# ------------------------------------------------------------------------------------------------ adapter
class Subject:
    """A node of either base in its own context, its worker replaced by a recorder."""

    def __init__(self, node_class, overrides: dict | None = None) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
        self.error: BaseException | str | None = None
        self.node = None
        try:
            self.node = node_class(context=self.context, parameter_overrides=params)
            if hasattr(self.node, "bring_up"):
                self.error = self.node.bring_up() or None
        except Exception as exc:  # the old base configured in the constructor
            self.error = exc
        self.submitted = 0
        if self.node is not None and self.error is None:
            self.node.submit = self._capture

    def _capture(self, item) -> bool:
        self.submitted += 1
        return True

    def feed(self, topic: str, msg) -> BaseException | None:
        subs = [s for s in self.node.subscriptions if s.topic_name in (topic, "/" + topic.lstrip("/"))]
        callback = subs[0].callback
        required = [q for q in inspect.signature(callback).parameters.values() if q.default is inspect.Parameter.empty]
        try:
            if len(required) >= 2:  # the lifecycle base's wrapper takes the MessageInfo too
                callback(msg, {"publication_sequence_number": None})
            else:
                callback(msg)
        except Exception as exc:
            return exc
        return None

    def drops(self) -> Counter:
        return Counter(self.node.drops.by_reason())

    def close(self) -> None:
        if self.node is not None:
            try:
                self.node.destroy_node()
            except Exception:
                pass
        self.context.try_shutdown()


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, Counter] = {}
        self.details: list[dict] = []

    def add(self, node: str, case: str, outcome: str, note: str = "") -> None:
        self.rows.setdefault(node, Counter())[outcome] += 1
        self.details.append({"node": node, "case": case, "outcome": outcome, "note": note})


def judge_input(subject: Subject, feed, *, per_item=("non-finite points removed",), expect_submit=None) -> tuple[str, str]:
    before_d, before_s = subject.drops(), subject.submitted
    exc = feed()
    if exc is not None:
        return "crash", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    new = subject.drops() - before_d
    internal = [r for r in new if r.startswith("internal error")]
    whole = {r: n for r, n in new.items() if r not in per_item}
    if internal:
        return "internal error", ", ".join(internal)
    if subject.submitted > before_s and expect_submit is not False:
        return "handled", "processed"
    if whole:
        return "handled", ", ".join(sorted(whole))
    return "silent loss", "neither processed nor counted"


# ------------------------------------------------------------------------------------------------ inputs
def cloud(sec: int, n: int = 2000, seed: int = 0) -> PointCloud2:
    from fovea_ros.conversions import array_to_pointcloud2

    rng = np.random.default_rng(seed)
    points = np.zeros(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    points["x"], points["y"], points["z"] = rng.uniform(-30, 30, (3, n))
    msg = array_to_pointcloud2(points)
    msg.header.frame_id, msg.header.stamp.sec = "base_link", sec
    return msg


def x_count_2(sec: int) -> PointCloud2:
    """x of count 2 with room for both values (the layout consistent); written by hand: older encoders choke."""
    values = np.random.default_rng(sec).uniform(-30, 30, (500, 4)).astype("<f4")
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=2),
              PointField(name="y", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="z", offset=12, datatype=PointField.FLOAT32, count=1)]
    msg = PointCloud2(height=1, width=500, fields=fields, is_bigendian=False, point_step=16, row_step=16 * 500,
                      data=values.tobytes(), is_dense=True)
    msg.header.frame_id, msg.header.stamp.sec = "base_link", sec
    return msg


def bad_cloud_cases(sec0: int) -> list[tuple[str, PointCloud2, bool]]:
    """(case, message, whether a correct node would process it)."""
    cases = []

    def add(name, change, ok=False):
        msg = cloud(sec0 + len(cases))
        change(msg)
        cases.append((name, msg, ok))

    wide = x_count_2(sec0 + len(cases))  # room for both values: the layout itself is consistent
    cases.append(("x count 2", wide, False))
    add("y UINT8", lambda m: setattr(m.fields[1], "datatype", PointField.UINT8))
    add("big-endian bytes flagged little-endian", lambda m: setattr(m, "is_bigendian", True))
    add("no x/y/z fields", lambda m: setattr(m, "fields", [PointField(name="a", offset=0, datatype=7, count=1)]))
    add("data cut short", lambda m: setattr(m, "data", bytes(m.data)[:-7]))
    add("datatype 0", lambda m: setattr(m.fields[2], "datatype", 0))
    add("duplicate field name", lambda m: setattr(m.fields[3], "name", "x"))
    add("fields overlap", lambda m: setattr(m.fields[1], "offset", 2))
    add("row_step too small", lambda m: setattr(m, "row_step", m.row_step - 1))
    add("huge width", lambda m: setattr(m, "width", 2**31))
    add("empty cloud", lambda m: (setattr(m, "width", 0), setattr(m, "row_step", 0), setattr(m, "data", b"")))
    nan = cloud(sec0 + len(cases), n=50)
    values = np.frombuffer(bytes(nan.data), "<f4").copy()
    values[:] = np.nan
    nan.data = values.tobytes()
    cases.append(("all NaN", nan, False))
    cases.append(("stamp 3 s older", cloud(sec0 + len(cases) - 4), False))
    return cases


def run_cloud_node(tally: Tally, name: str, node_class, topic: str, overrides: dict) -> None:
    subject = Subject(node_class, overrides)
    if subject.error is not None:
        tally.add(name, "start", "crash", str(subject.error))
        return
    try:
        for case, msg, _ in bad_cloud_cases(1000):
            outcome, note = judge_input(subject, lambda: subject.feed(topic, msg))
            if case == "big-endian bytes flagged little-endian" and note == "processed":
                outcome, note = "silent loss", "garbage coordinates processed as metres"
            if case == "y UINT8" and note == "processed":
                outcome, note = "silent loss", "a byte read as metres"
            tally.add(name, case, outcome, note)
    finally:
        subject.close()


def run_tpv(tally: Tally) -> None:
    from tf2_msgs.msg import TFMessage
    from geometry_msgs.msg import TransformStamped

    from fovea_ros.conversions import array_to_image
    from fovea_ros.nodes.tpv_occupancy_node import TpvOccupancyNode

    cams = ["/cam_front", "/cam_front_right", "/cam_front_left", "/cam_back", "/cam_back_left", "/cam_back_right"]
    subject = Subject(TpvOccupancyNode, {"sync_queue_size": 2})
    if subject.error is not None:
        tally.add("tpv_occupancy", "start", "crash", str(subject.error))
        return

    def info(frame):
        msg = CameraInfo(width=16, height=12, k=[20.0, 0, 8, 0, 20.0, 6, 0, 0, 1], d=[0.0] * 5)
        msg.header.frame_id = frame
        return msg

    def image(sec, cam, change=None):
        msg = array_to_image(np.full((12, 16, 3), 90, np.uint8), "rgb8")
        msg.header.stamp.sec, msg.header.frame_id = sec, f"{cam[1:]}_optical"
        if change:
            change(msg)
        return msg

    def send_set(sec, *, skip=(), late=(), lidar=None, image_change=None):
        errors = []
        for cam in cams:
            if cam in skip:
                continue
            msg = image(sec + (1 if cam in late else 0), cam, image_change if cam == "/cam_front" else None)
            errors.append(subject.feed(f"{cam}/image_raw", msg))
        if "lidar" not in skip:
            lidar = lidar or cloud(sec)
            lidar.header.stamp.sec, lidar.header.stamp.nanosec, lidar.header.frame_id = sec, 0, "base_link"
            errors.append(subject.feed("/lidar_top/points", lidar))
        return next((e for e in errors if e is not None), None)

    try:
        for cam in cams:
            subject.feed(f"{cam}/camera_info", info(f"{cam[1:]}_optical"))
        sec = [2000]

        def next_sec():
            sec[0] += 3
            return sec[0]

        for case, msg, _ in bad_cloud_cases(0)[:10]:
            s = next_sec()
            outcome, note = judge_input(subject, lambda: send_set(s, lidar=msg))
            if note == "processed" and case in ("big-endian bytes flagged little-endian", "y UINT8"):
                outcome, note = "silent loss", "garbage coordinates labelled"
            tally.add("tpv_occupancy", f"lidar: {case}", outcome, note)
        for case, change in [("image: unsupported encoding", lambda m: setattr(m, "encoding", "yuv422")),
                             ("image: data cut short", lambda m: setattr(m, "data", bytes(m.data)[:-5])),
                             ("image: size differs from CameraInfo", lambda m: (setattr(m, "width", 8),
                                                                                setattr(m, "step", 24))),
                             ("image: is_bigendian 2", lambda m: setattr(m, "is_bigendian", 2))]:
            s = next_sec()
            outcome, note = judge_input(subject, lambda: send_set(s, image_change=change))
            tally.add("tpv_occupancy", case, outcome, note)
        for case, msg in [("CameraInfo: K all zero", CameraInfo(width=16, height=12)),
                          ("CameraInfo: NaN distortion", CameraInfo(width=16, height=12,
                                                                    k=[20.0, 0, 8, 0, 20.0, 6, 0, 0, 1],
                                                                    d=[math.nan] * 5))]:
            outcome, note = judge_input(subject, lambda: subject.feed("/cam_front/camera_info", msg))
            if outcome == "silent loss" and subject.node.calibrations.get(0) is not None and case.endswith(
                    "distortion"):
                note = "NaN distortion stored as the calibration"
            tally.add("tpv_occupancy", case, outcome, note)
        subject.feed("/cam_front/camera_info", info("cam_front_optical"))
        nan_tf = TransformStamped()
        nan_tf.header.frame_id, nan_tf.child_frame_id = "base_link", "cam_front_optical"
        nan_tf.transform.rotation.x = math.nan
        outcome, note = judge_input(subject, lambda: subject.feed("/tf_static", TFMessage(transforms=[nan_tf])))
        tally.add("tpv_occupancy", "/tf_static with a NaN rotation", outcome, note)
        # incomplete sets: judged once the synchronizer has had to give up on them (queues of 2)
        for case, kwargs in [("sets without one camera", {"skip": ("/cam_back_right",)}),
                             ("sets with one camera 1 s late", {"late": ("/cam_back",)}),
                             ("sets without the lidar", {"skip": ("lidar",)})]:
            before_d, before_s = subject.drops(), subject.submitted
            errors = [send_set(next_sec(), **kwargs) for _ in range(4)]
            new = subject.drops() - before_d
            if any(errors):
                outcome, note = "crash", repr(next(e for e in errors if e))
            elif any(r.startswith("sync") for r in new):
                outcome, note = "handled", ", ".join(sorted(new))
            else:
                outcome, note = "silent loss", "4 sets never formed, nothing counted"
            tally.add("tpv_occupancy", case, outcome, note)
    finally:
        subject.close()


def run_event_memory(tally: Tally) -> None:
    from event_camera_msgs.msg import EventPacket

    from fovea_core.events.arrays import make_events
    from fovea_core.events.packets import PacketStreamEncoder
    from fovea_ros.nodes.event_memory_node import EventMemoryNode

    rng = np.random.default_rng(0)
    t0, period = 1_800_000_000 * 1_000_000_000, 5_000_000

    def packets(encoder, first, count, seq0):
        out = []
        for i in range(count):
            t = (first + i) * period + np.sort(rng.integers(0, period // 1000, 30)) * 1000
            raw = encoder.encode(make_events(rng.integers(0, 64, 30), rng.integers(0, 48, 30), t,
                                             rng.integers(0, 2, 30)), t0 + int(t[0]))
            msg = EventPacket(width=64, height=48, seq=seq0 + i, time_base=raw.time_base, encoding=raw.encoding,
                              events=raw.events)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(raw.stamp_ns, 1_000_000_000)
            out.append(msg)
        return out

    def scenario(case, build, verdict):
        subject = Subject(EventMemoryNode)
        if subject.error is not None:
            tally.add("event_memory", case, "crash", str(subject.error))
            return
        try:
            errors = [subject.feed("/event_camera/events", m) for m in build()]
            if any(errors):
                tally.add("event_memory", case, "crash", repr(next(e for e in errors if e)))
                return
            drops = subject.drops()
            if any(r.startswith("internal error") for r in drops):
                tally.add("event_memory", case, "internal error", ", ".join(drops))
                return
            outcome, note = verdict(subject.node, drops)
            tally.add("event_memory", case, outcome, note)
        finally:
            subject.close()

    def random_bytes():
        enc = PacketStreamEncoder("evt3", 64, 48)
        good = packets(enc, 0, 3, 0)
        bad = EventPacket(width=64, height=48, seq=3, encoding="evt3",
                          events=np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        bad.header = good[-1].header
        return good + [bad] + packets(enc, 3, 3, 4)

    def clock_verdict(node, drops):
        if node.windower.skipped_gap_windows:
            return "silent loss", f"clock moved: {node.windower.skipped_gap_windows} windows skipped as silence"
        return ("handled", ", ".join(drops)) if drops else ("silent loss", "rejected without a count")

    scenario("random evt3 bytes between valid packets", random_bytes, clock_verdict)

    def zero_size():
        enc = PacketStreamEncoder("mono", 64, 48)
        msgs = packets(enc, 0, 3, 0)
        msgs[1].width = 0
        return msgs

    scenario("width 0", zero_size, lambda node, drops: ("handled", ", ".join(drops)) if drops
             else ("silent loss", "events filtered away uncounted"))

    def cut_short():
        enc = PacketStreamEncoder("evt3", 64, 48)
        msgs = packets(enc, 0, 3, 0)
        msgs[1].events = bytes(msgs[1].events)[:-1]
        return msgs

    scenario("payload cut short (odd bytes)", cut_short, lambda node, drops: ("handled", ", ".join(drops)) if drops
             else ("silent loss", "a half word ignored uncounted"))

    def huge_time_base():
        enc = PacketStreamEncoder("mono", 64, 48)
        msgs = packets(enc, 0, 3, 0)
        msgs[1].time_base = 2**64 - 1
        return msgs

    scenario("mono time_base 2**64 - 1", huge_time_base, lambda node, drops: ("handled", ", ".join(drops)) if drops
             else ("silent loss", "nothing counted"))

    def restart():
        first = packets(PacketStreamEncoder("evt3", 64, 48), 0, 5, 0)
        again = packets(PacketStreamEncoder("evt3", 64, 48), 0, 5, 0)
        for m in again:
            m.header.stamp.sec += 10
        return first + again

    def restart_verdict(node, drops):
        rejected = sum(node.decoder.stats.rejected.values())
        if rejected:
            return "silent loss", f"{rejected} packets after the restart rejected as 'time before previous'"
        return "handled", "reported as a sensor restart"

    scenario("driver restart (seq from 0, sensor clock from 0)", restart, restart_verdict)

    def jump():
        enc = PacketStreamEncoder("evt3", 64, 48)
        return packets(enc, 0, 6, 0) + packets(enc, 6, 4, 1006)

    scenario("seq jump +1000 with no time for it", jump,
             lambda node, drops: ("silent loss", f"{node.decoder.stats.lost_packets} packets counted lost that never "
                                                 "existed") if node.decoder.stats.lost_packets else
             ("handled", "seq jump reported, nothing counted lost"))


def run_model_files(tally: Tally) -> None:
    from fovea_ros.nodes.event_memory_node import EventMemoryNode
    from fovea_ros.nodes.registration_node import RegistrationNode
    from fovea_ros.nodes.tpv_occupancy_node import TpvOccupancyNode

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        marker = tmp / "pwned"
        matrix = [("event_memory", EventMemoryNode, "model_path", MODELS / "hmnet" / "hmnet.pt", "state_dict",
                   TORCH_CASES, {}),
                  ("tpv_occupancy", TpvOccupancyNode, "checkpoint_path", MODELS / "tpv" / "tpv_cpu.pt", "model",
                   TORCH_CASES, {"backend": "torch"}),
                  ("tpv_occupancy", TpvOccupancyNode, "model_path", MODELS / "tpv" / "tpv_cpu.onnx", None,
                   ONNX_CASES, {})]
        for node, cls, parameter, good, key, cases, extra in matrix:
            for case in cases:
                path = make_corrupt(case, good, tmp / node / parameter / case / good.name, marker, state_key=key)
                judge_model(tally, node, f"{parameter}: {case}", Subject(cls, {parameter: str(path), **extra}),
                            parameter, path, marker)
        for case in TORCH_CASES:
            folder = tmp / "registration" / case
            folder.mkdir(parents=True)
            (folder / "vbreg.json").write_text((MODELS / "registration" / "vbreg.json").read_text())
            path = make_corrupt(case, MODELS / "registration" / "vbreg.pt", folder / "vbreg.pt", marker)
            judge_model(tally, "registration", f"model_dir/vbreg.pt: {case}",
                        Subject(RegistrationNode, {"backend": "torch", "model_dir": str(folder)}), "model_dir",
                        folder / "vbreg.pt" if case == "missing" else path, marker)


def judge_model(tally, node, case, subject: Subject, parameter, path, marker) -> None:
    try:
        error = subject.error
        text = error if isinstance(error, str) else (str(error) if error is not None else "")
        one_line = ("\n" not in text and f"parameter '{parameter}'" in text and str(path) in text
                    and "weights_only" not in text)
        if marker.exists():
            tally.add(node, case, "crash", "code in the model file ran")
            marker.unlink()
        elif error is None:
            tally.add(node, case, "silent loss", "started with a bad model file")
        elif isinstance(error, str) and one_line:
            tally.add(node, case, "handled", text[:120])
        elif not isinstance(error, str) and type(error).__name__ == "ParameterError" and one_line:
            tally.add(node, case, "handled", text[:120])
        else:
            tally.add(node, case, "crash", f"{type(error).__name__ if not isinstance(error, str) else ''} "
                      f"{text.splitlines()[0][:120] if text else ''} (no one-line error naming parameter and file)")
    finally:
        subject.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from fovea_ros.nodes.registration_node import RegistrationNode
    from fovea_ros.nodes.voxel_filter_node import VoxelFilterNode

    tally = Tally()
    run_cloud_node(tally, "voxel_filter", VoxelFilterNode, "/lidar/points", {"min_points": 1})
    run_cloud_node(tally, "registration", RegistrationNode, "/lidar/points", {"method": "sc2"})
    run_tpv(tally)
    run_event_memory(tally)
    run_model_files(tally)
    print("| node | cases tried | crashes | silent losses | internal errors (guarded) | handled |")
    print("|---|---|---|---|---|---|")
    for node, counts in tally.rows.items():
        print(f"| {node} | {sum(counts.values())} | {counts['crash']} | {counts['silent loss']} | "
              f"{counts['internal error']} | {counts['handled']} |")
    for d in tally.details:
        if d["outcome"] != "handled":
            print(f"  {d['node']}: {d['case']}: {d['outcome']} ({d['note']})")
    if args.json:
        args.json.write_text(json.dumps({"rows": {k: dict(v) for k, v in tally.rows.items()},
                                         "details": tally.details}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

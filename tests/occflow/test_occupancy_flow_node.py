"""The occupancy-flow node in its own process with real messages.

1. bags/av2_7fab2350 (the real Argoverse 2 sweeps, TF odom -> base_link from the log's poses, the log's map)
   replayed at its recorded timing: one OccupancyGrid per horizon per sweep, stamped with the sweep, in
   base_link; flow markers; QueryPoints answers the same for points given in base_link and in odom (through
   TF), rotates the flow into the request's frame, and gives each bad point its status.
2. Whole-request failures (unknown frame, too many points, unequal arrays, nothing processed yet), a sweep
   without TF and a cloud without x/y/z are answered or counted in /diagnostics; the node keeps running.
The node runs the committed model (models/occflow/); the test checks behaviour, not the model's accuracy.
"""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from fovea_msgs.srv import QueryPoints
from nav_msgs.msg import OccupancyGrid
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from fovea_core.geometry.transforms import invert_rigid, transform_points
from fovea_core.occflow.av2_reader import Av2SensorLog
from fovea_core.paths import repo_root
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.conversions import array_to_pointcloud2

pytestmark = pytest.mark.ros
BAG = repo_root() / "bags" / "av2_7fab2350"
SERVICE = "/occupancy_flow/query_points"


def start_node(peer, start_python, *params):
    outputs = {"grid_1s": [], "grid_3s": [], "markers": [], "diagnostics": []}
    peer.node.create_subscription(OccupancyGrid, "/occupancy_flow/occupancy_1000ms", outputs["grid_1s"].append, 10)
    peer.node.create_subscription(OccupancyGrid, "/occupancy_flow/occupancy_3000ms", outputs["grid_3s"].append, 10)
    peer.node.create_subscription(MarkerArray, "/occupancy_flow/flow_markers", outputs["markers"].append, 10)
    peer.node.create_subscription(DiagnosticArray, "/diagnostics", outputs["diagnostics"].append, 10)
    args = ["-p", "diagnostics_period:=0.2"]
    for p in params:
        args += ["-p", p]
    proc = start_python("-m", "fovea_ros.nodes.occupancy_flow_node", "--ros-args", *args)
    client = peer.node.create_client(QueryPoints, SERVICE)
    assert client.wait_for_service(timeout_sec=90), "the service never appeared: " + (
        proc.stdout.read() if proc.poll() is not None else "node still starting")
    return outputs, client, proc


def diagnostic_values(outputs):
    mine = [s for d in outputs["diagnostics"] for s in d.status if s.name == "fovea/occupancy_flow"]
    return {kv.key: kv.value for kv in mine[-1].values} if mine else {}


def call(peer, client, frame, x, y, t, stamp_ns=0, z=None):
    request = QueryPoints.Request(x=list(map(float, x)), y=list(map(float, y)),
                                  z=list(map(float, z if z is not None else np.zeros(len(x)))), t=list(map(float, t)))
    request.header.frame_id = frame
    request.header.stamp.sec, request.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    future = client.call_async(request)
    assert peer.wait_for(future.done, 30), "no answer"
    return future.result()


def test_replayed_real_log_gives_previews_and_answers_queries_in_any_frame(peer, start_python):
    log = Av2SensorLog.open()
    sweep_stamps = log.sweep_stamps
    outputs, client, proc = start_node(peer, start_python, "map_file:=bags/av2_7fab2350/map.json")
    early = call(peer, client, "base_link", [1.0], [0.0], [0.0])
    assert not early.success and "no sweep" in early.message
    with BagPlayer(BAG, ReplayOptions(topics=["/lidar/points", "/tf", "/tf_static"], wait_for_subscribers=1,
                                      wait_timeout_s=30.0)) as player:
        summary = player.play()
    assert summary.published["/lidar/points"] == 2 and not summary.skipped, summary.format()
    assert peer.wait_for(lambda: len(outputs["grid_1s"]) >= 2 and len(outputs["grid_3s"]) >= 2, 90), \
        f"previews missing; diagnostics: {diagnostic_values(outputs)}"
    grids = outputs["grid_1s"][:2]
    assert [g.header.stamp.sec * 10**9 + g.header.stamp.nanosec for g in grids] == sweep_stamps
    g = grids[-1]
    assert g.header.frame_id == "base_link" and (g.info.width, g.info.height) == (100, 100)
    assert g.info.resolution == pytest.approx(0.8) and g.info.origin.position.x == pytest.approx(-40.0)
    cells = np.asarray(g.data)
    assert cells.min() >= 0 and cells.max() <= 100
    assert peer.wait_for(lambda: outputs["markers"], 10)
    assert {m.ns for m in outputs["markers"][-1].markers} == {"flow_1000ms", "flow_2000ms", "flow_3000ms"}
    assert peer.wait_for(lambda: diagnostic_values(outputs).get("history_sweeps") == "2", 10), \
        diagnostic_values(outputs)   # the second sweep ran with the first motion-compensated as history

    # The same points in base_link (at the sweep) and in odom (through the bag's TF at the sweep's stamp).
    latest = sweep_stamps[-1]
    rng = np.random.default_rng(0)
    base_pts = np.concatenate([rng.uniform(-30, 30, (40, 2)), np.zeros((40, 1))], 1)
    t = rng.uniform(0, 3, 40)
    T_odom_base = log.pose(latest)
    odom_pts = transform_points(T_odom_base, base_pts)
    a = call(peer, client, "base_link", base_pts[:, 0], base_pts[:, 1], t)
    b = call(peer, client, "odom", odom_pts[:, 0], odom_pts[:, 1], t, stamp_ns=latest, z=odom_pts[:, 2])
    assert a.success and b.success, (a.message, b.message)
    assert list(a.status) == [0] * 40 and list(b.status) == [0] * 40
    assert np.allclose(a.probability, b.probability, atol=1e-4)
    assert np.allclose(a.class_probability, b.class_probability, atol=1e-4) and len(a.class_probability) == 120
    assert all(0 <= label <= 2 for label in a.label)
    flow_base = np.stack([a.flow_x, a.flow_y], 1)
    flow_odom = np.stack([b.flow_x, b.flow_y], 1)
    assert np.allclose(flow_odom, flow_base @ T_odom_base[:2, :2].T, atol=1e-3)   # velocity rotated into odom
    # t counts from header.stamp: asking 0.1 s after the sweep for t = 0.9 is the model's 1.0 s
    c = call(peer, client, "odom", odom_pts[:3, 0], odom_pts[:3, 1], [0.9] * 3, stamp_ns=latest + 100_000_000,
             z=odom_pts[:3, 2])
    d = call(peer, client, "base_link", base_pts[:3, 0], base_pts[:3, 1], [1.0] * 3)
    assert np.allclose(c.probability, d.probability, atol=2e-3)   # the ego moves ~0.1 m in 0.1 s: nearly equal

    # Bad points get a status each; the others in the same request are answered.
    bad = call(peer, client, "base_link", [1.0, float("nan"), 500.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0],
               [0.5, 0.5, 0.5, 5.0, -1.0])
    assert bad.success and list(bad.status) == [QueryPoints.Response.STATUS_OK, QueryPoints.Response.STATUS_NOT_FINITE,
                                                QueryPoints.Response.STATUS_OUTSIDE_GRID,
                                                QueryPoints.Response.STATUS_OUTSIDE_HORIZON,
                                                QueryPoints.Response.STATUS_OUTSIDE_HORIZON]
    assert list(bad.label)[1:] == [-1] * 4 and list(bad.probability)[1:] == [0.0] * 4
    unknown = call(peer, client, "no_such_frame", [1.0], [0.0], [0.0])
    assert not unknown.success and "no_such_frame" in unknown.message
    uneven = QueryPoints.Request(x=[1.0, 2.0], y=[0.0], z=[0.0, 0.0], t=[0.0, 0.0])
    future = client.call_async(uneven)
    assert peer.wait_for(future.done, 10) and not future.result().success
    assert int(diagnostic_values(outputs).get("processed", "0")) == 2 and proc.poll() is None


def test_missing_tf_bad_clouds_and_oversized_requests_are_diagnosed_not_fatal(peer, start_python):
    outputs, client, proc = start_node(peer, start_python, "max_query_points:=100", "preview_horizons:=[1.0]")
    pub = peer.node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    peer.wait_for_subscribers(pub)
    cloud = np.zeros(50, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    cloud["x"] = np.linspace(-10, 10, 50)

    def publish_until(reason, msg_factory, tries=5):
        for i in range(tries):
            pub.publish(msg_factory(i))
            if peer.wait_for(lambda: int(diagnostic_values(outputs).get(f"drops/{reason}", "0")) >= 1, 3):
                return diagnostic_values(outputs)
        raise AssertionError(f"'{reason}' never counted: {diagnostic_values(outputs)}")

    def with_stamp(msg, i):
        msg.header.frame_id = "base_link"
        msg.header.stamp.sec = 100 + i
        return msg

    values = publish_until("missing TF", lambda i: with_stamp(array_to_pointcloud2(cloud), i))
    assert "missing TF" in values["state"]
    no_xyz = np.zeros(10, dtype=[("intensity", "<f4")])
    publish_until("wrong fields", lambda i: with_stamp(array_to_pointcloud2(no_xyz), 10 + i))
    big = call(peer, client, "base_link", np.zeros(101), np.zeros(101), np.zeros(101))
    assert not big.success and "max_query_points" in big.message
    assert outputs["grid_1s"] == [] and proc.poll() is None, "the node died or published without TF"

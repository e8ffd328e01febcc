"""The planner's spatio-temporal query with real rclpy, against running nodes: the real TPV occupancy node
(the real nuScenes frames replayed into it) answers t <= 0, an occupancy-flow QueryPoints server run by the
test (the service definition the occupancy-flow node serves) answers t > 0; the health of each source comes
from /fovea/health."""
import math

import numpy as np
import pytest

from fovea_core.paths import repo_root
from fovea_msgs.msg import Health, HealthArray
from fovea_msgs.srv import QueryPoints, QuerySpaceTime
from fovea_ros.bag.replay import BagPlayer, ReplayOptions
from fovea_ros.nodes.health_node import health_qos

pytestmark = pytest.mark.ros
BAG = repo_root() / "bags" / "nuscenes_sample"


class FlowServer:
    """occupancy = 0.2 + 0.1 t, flow = (x, -y): values the test can check point by point."""

    def __init__(self, peer):
        self.requests = []
        self.service = peer.node.create_service(QueryPoints, "/occupancy_flow/query_points", self.on_query)

    def on_query(self, request, response):
        self.requests.append(request)
        t = np.asarray(request.t)
        response.success, response.message = True, "test flow server"
        response.probability = (0.2 + 0.1 * t).astype(np.float32).tolist()
        response.flow_x = list(request.x)
        response.flow_y = [-v for v in request.y]
        return response


def replay_until_answered(peer, services, service, bag, options, t, source):
    """Wait for ``source``'s QueryPoints ``service``, replay ``bag`` into it, then ask one point at ``t`` until
    the node has something to answer from."""
    client = peer.node.create_client(QueryPoints, service)
    assert client.wait_for_service(timeout_sec=90), f"{source} never offered its service"
    with BagPlayer(bag, options) as player:
        player.play()

    def ready():
        reply = services.call(QueryPoints, service, QueryPoints.Request(x=[5.0], y=[0.0], z=[0.0], t=[t]), timeout=10)
        return reply.success
    assert peer.wait_for(ready, 60), f"{source} has nothing to answer from after the replay"


def publish_health(pub, flow_level, reason=""):
    msg = HealthArray()
    msg.entries = [Health(name="tpv_occupancy", kind="output", topic="/tpv/occupancy", level=Health.OK),
                   Health(name="occupancy_flow", kind="output", topic="/occupancy_flow/grid", level=flow_level,
                          reasons=[reason] if reason else [])]
    pub.publish(msg)


def test_one_query_routes_past_to_semantic_and_future_to_flow_with_validity_and_health(peer, start_python, services):
    flow = FlowServer(peer)
    health = peer.node.create_publisher(HealthArray, "/fovea/health", health_qos())
    start_python("-m", "fovea_ros.nodes.tpv_occupancy_node", "--ros-args", "-p", "diagnostics_period:=0.5")
    start_python("-m", "fovea_ros.nodes.spacetime_query_node", "--ros-args", "-p", "call_timeout_s:=20.0")
    replay_until_answered(peer, services, "/tpv/query_points", BAG,
                          ReplayOptions(wait_for_subscribers=1, wait_timeout_s=30.0), t=0.0, source="the TPV node")
    publish_health(health, Health.OK)

    # in base_link: a road point now, one 0.2 s ago, far out of range now, two in the future, one past the
    # flow horizon, one too far in the past, one NaN
    x = [5.0, 5.0, 500.0, 10.0, 12.0, 10.0, 5.0, math.nan]
    y = [0.0, 1.0, 0.0, 2.0, -3.0, 0.0, 0.0, 0.0]
    t = [0.0, -0.2, 0.0, 1.0, 2.5, 4.0, -5.0, 0.0]
    request = QuerySpaceTime.Request(x=x, y=y, z=[0.0] * 8, t=t)
    request.header.frame_id = "base_link"
    reply = services.call(QuerySpaceTime, "/fovea/query_space_time", request, timeout=60)
    assert reply.success, reply.message
    S, F, N = QuerySpaceTime.Response.SOURCE_SEMANTIC, QuerySpaceTime.Response.SOURCE_FLOW, QuerySpaceTime.Response.SOURCE_NONE
    assert list(reply.source) == [S, S, S, F, F, N, N, N]
    assert list(reply.valid) == [True, True, False, True, True, False, False, False]
    # semantic answers are the TPV node's own, point by point
    direct = services.call(QueryPoints, "/tpv/query_points",
                           QueryPoints.Request(header=request.header, x=x[:3], y=y[:3], z=[0.0] * 3, t=t[:3]))
    assert list(reply.label[:3]) == list(direct.label) and direct.label[2] == -1
    assert np.allclose(reply.label_probability[:3], direct.probability)
    assert reply.class_names[0] == "empty" and len(reply.class_names) == 9
    # flow answers: only the two future points went to the flow server, with the request's frame
    assert len(flow.requests) == 1 and list(flow.requests[0].t) == [1.0, 2.5]
    assert flow.requests[0].header.frame_id == "base_link"
    assert np.allclose(reply.occupancy[3:5], [0.3, 0.45]) and np.allclose(reply.flow_x[3:5], [10.0, 12.0])
    assert np.allclose(reply.flow_y[3:5], [-2.0, 3.0])
    assert all(math.isnan(v) for v in reply.occupancy[:3]) and reply.label[3] == -1
    sources = {s.name: s for s in reply.sources}
    assert sources["semantic"].answered and sources["semantic"].points == 3
    assert sources["flow"].answered and sources["flow"].points == 2 and sources["flow"].message == "test flow server"
    assert sources["flow"].health.level == Health.OK

    # the flow source's output flagged unreliable: its points are answered but not valid, and the reply says why
    publish_health(health, Health.UNRELIABLE, "input av2_lidar unreliable: no new message for 4.0 s")
    assert peer.wait_for(lambda: services.call(QuerySpaceTime, "/fovea/query_space_time", request, timeout=60)
                         .sources[1].health.level == Health.UNRELIABLE, 10)
    reply = services.call(QuerySpaceTime, "/fovea/query_space_time", request, timeout=60)
    assert list(reply.valid) == [True, True, False, False, False, False, False, False]
    assert reply.sources[1].health.reasons == ["input av2_lidar unreliable: no new message for 4.0 s"]
    assert np.allclose(reply.occupancy[3:5], [0.3, 0.45])

    # the flow source gone: not answered (not offered, or no answer in time while discovery still lists it),
    # the semantic half still is
    peer.node.destroy_service(flow.service)
    reply = services.call(QuerySpaceTime, "/fovea/query_space_time", request, timeout=60)
    assert reply.success and not reply.sources[1].answered
    assert "service /occupancy_flow/query_points" in reply.sources[1].message
    assert list(reply.valid[:2]) == [True, True] and not any(reply.valid[3:])

    bad = QuerySpaceTime.Request(x=[1.0, 2.0], y=[0.0], z=[0.0], t=[0.0])
    reply = services.call(QuerySpaceTime, "/fovea/query_space_time", bad, timeout=30)
    assert not reply.success and "same length" in reply.message and len(reply.valid) == 0


AV2_BAG = repo_root() / "bags" / "av2_7fab2350"


def test_future_points_are_answered_by_the_real_occupancy_flow_node(peer, start_python, services):
    """The flow half against the real occupancy-flow node on the real AV2 sweeps (its model, its map): the
    query's answer for t > 0 is that node's own, point by point, status included; the semantic source is
    not running here, and the reply says so without failing the flow half."""
    start_python("-m", "fovea_ros.nodes.occupancy_flow_node", "--ros-args", "-p", "diagnostics_period:=0.5",
                 "-p", "map_file:=bags/av2_7fab2350/map.json", "-p", "tf_timeout:=2.0")
    start_python("-m", "fovea_ros.nodes.spacetime_query_node", "--ros-args", "-p", "call_timeout_s:=20.0")
    replay_until_answered(peer, services, "/occupancy_flow/query_points", AV2_BAG,
                          ReplayOptions(wait_for_subscribers=1, wait_timeout_s=30.0, wait_for_nodes=["occupancy_flow"]),
                          t=1.0, source="the occupancy-flow node")

    x, y, t = [10.0, 12.0, 15.0, 500.0, 5.0], [0.0, -3.0, 2.0, 0.0, 0.0], [1.0, 2.0, 3.0, 1.0, 0.0]
    request = QuerySpaceTime.Request(x=x, y=y, z=[0.0] * 5, t=t)
    request.header.frame_id = "base_link"
    reply = services.call(QuerySpaceTime, "/fovea/query_space_time", request, timeout=60)
    assert reply.success, reply.message
    F, S = QuerySpaceTime.Response.SOURCE_FLOW, QuerySpaceTime.Response.SOURCE_SEMANTIC
    assert list(reply.source) == [F, F, F, F, S]
    direct = services.call(QueryPoints, "/occupancy_flow/query_points",
                           QueryPoints.Request(header=request.header, x=x[:4], y=y[:4], z=[0.0] * 4, t=t[:4]))
    assert np.allclose(reply.occupancy[:4], direct.probability, equal_nan=True)
    assert np.allclose(reply.flow_x[:4], direct.flow_x, equal_nan=True)
    ok = [s == QueryPoints.Response.STATUS_OK for s in direct.status]
    assert ok[:3] == [True, True, True] and not ok[3], "500 m out is outside the grid"
    assert list(reply.valid[:4]) == ok        # valid = the node's own per-point status (no health node here)
    sources = {s.name: s for s in reply.sources}
    assert sources["flow"].answered and sources["flow"].points == 4 and sources["flow"].health.level == Health.UNKNOWN
    assert not sources["semantic"].answered and "not offered" in sources["semantic"].message
    assert not reply.valid[4]

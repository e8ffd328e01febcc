"""fovea viz with real rclpy and a real Foxglove WebSocket client: ROS topics published by the test come out
as Foxglove channels (cdr + ros2msg schema) and each message arrives intact after a subscribe."""
import asyncio
import json
import socket
import struct

import numpy as np
import pytest
import websockets
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from fovea_msgs.msg import Health, HealthArray
from fovea_ros.conversions import array_to_pointcloud2, pointcloud2_to_array
from fovea_ros.nodes.health_node import health_qos

pytestmark = pytest.mark.ros


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def foxglove_session(port, topics, timeout=150.0):
    """Connect, wait until every topic is advertised, subscribe to them, return (advertised channels, first
    message payload per topic). foxglove-sdk 0.30 has answered a subscription to a channel it had just
    advertised with 'Unknown channel ID' (seen under load, not reproduced at will); the client then connects
    again and gets the server's current advertisements, as the Foxglove app does on reconnect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], max_size=None)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.3)
            continue
        channels, payloads, subscribed, retry = {}, {}, {}, False
        async with ws:
            while len(payloads) < len(topics) and not retry:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - loop.time()))
                if isinstance(message, str):
                    data = json.loads(message)
                    if data.get("op") == "advertise":
                        for channel in data["channels"]:
                            channels[channel["topic"]] = channel
                    retry = data.get("op") == "status" and "Unknown channel" in data.get("message", "")
                    missing = [t for t in topics if t in channels and t not in subscribed]
                    if missing and not retry:
                        subs = [{"id": len(subscribed) + i + 1, "channelId": channels[t]["id"]}
                                for i, t in enumerate(missing)]
                        for t, sub in zip(missing, subs):
                            subscribed[t] = sub["id"]
                        await ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
                elif message[0] == 0x01:  # message data: opcode, subscription id, log time, payload
                    sub_id, = struct.unpack_from("<I", message, 1)
                    topic = next((t for t, i in subscribed.items() if i == sub_id), None)
                    if topic is not None:
                        payloads.setdefault(topic, bytes(message[13:]))
        if not retry:
            return channels, payloads
        await asyncio.sleep(0.5)


def test_topics_become_foxglove_channels_and_messages_arrive_intact(peer, start_python):
    port = free_port()
    start_python("-m", "fovea_ros.cli", "viz", "--port", str(port), "--discover-period", "0.5",
                 "--topics", "/lidar/points_filtered", "/fovea/health")
    points = np.zeros(300, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    points["x"], points["y"], points["z"], points["intensity"] = np.random.default_rng(3).uniform(0, 9, (4, 300))
    cloud = array_to_pointcloud2(points)
    cloud.header.frame_id, cloud.header.stamp.sec = "base_link", 42
    clouds = peer.node.create_publisher(PointCloud2, "/lidar/points_filtered", qos_profile_sensor_data)
    health = peer.node.create_publisher(HealthArray, "/fovea/health", health_qos())
    health_msg = HealthArray(entries=[Health(name="lidar", kind="sensor", topic="/lidar/points",
                                             level=Health.UNRELIABLE, reasons=["no new message for 3.1 s"])])
    health.publish(health_msg)

    async def run():
        session = asyncio.ensure_future(foxglove_session(port, ["/lidar/points_filtered", "/fovea/health"]))
        while not session.done():  # keep publishing the cloud (best effort) until the client has one
            clouds.publish(cloud)
            health.publish(health_msg)
            await asyncio.sleep(0.2)
        return session.result()

    channels, payloads = asyncio.run(asyncio.wait_for(run(), timeout=180))
    channel = channels["/lidar/points_filtered"]
    assert channel["encoding"] == "cdr" and channel["schemaName"] == "sensor_msgs/msg/PointCloud2"
    assert channel["schemaEncoding"] == "ros2msg" and "MSG: sensor_msgs/PointField" in channel["schema"]
    assert channels["/fovea/health"]["schemaName"] == "fovea_msgs/msg/HealthArray"
    assert "MSG: fovea_msgs/Health" in channels["/fovea/health"]["schema"]

    received = deserialize_message(payloads["/lidar/points_filtered"], PointCloud2)
    assert received.header.frame_id == "base_link" and received.header.stamp.sec == 42
    assert np.array_equal(pointcloud2_to_array(received), points)
    got = deserialize_message(payloads["/fovea/health"], HealthArray)
    assert got.entries[0].name == "lidar" and got.entries[0].level == Health.UNRELIABLE
    assert list(got.entries[0].reasons) == ["no new message for 3.1 s"]

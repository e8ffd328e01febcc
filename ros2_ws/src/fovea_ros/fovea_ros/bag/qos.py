"""QoS between bags (rosbags ``Qos`` records) and rclpy (``QoSProfile``).

Replay adapts to what the recorded publishers offered, the way ``ros2 bag play`` does: reliable only when every
recorded publisher was reliable, transient-local only when every one was. The history depth is ours to choose
(recorded depths describe the original publisher, often 0/unknown), so it is sized for bursts.
"""
from __future__ import annotations

from collections.abc import Sequence

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

TF_STATIC = "/tf_static"
RELIABILITY_CHOICES = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


def replay_profile(topic: str, offered: Sequence[Qos], depth: int,
                   reliability_override: str | None = None) -> QoSProfile:
    """The publisher profile for replaying ``topic`` whose recorded publishers offered ``offered``."""
    reliable = all(q.reliability == QosReliability.RELIABLE for q in offered) if offered else True
    transient = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    if topic == TF_STATIC:  # late joiners must still get the static transforms
        reliable, transient = True, True
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    if reliability_override is not None:
        reliability = RELIABILITY_CHOICES[reliability_override]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, depth), reliability=reliability,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


def subscription_profile(offered: Sequence[QoSProfile], depth: int,
                         reliability_override: str | None = None) -> QoSProfile:
    """A subscription that matches every offered publisher profile: reliable only if all publishers are."""
    reliable = bool(offered) and all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    transient = bool(offered) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    if reliability_override is not None:
        reliability = RELIABILITY_CHOICES[reliability_override]
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, depth), reliability=reliability,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


def _to_qos_time(duration: Duration) -> QosTime:
    nanoseconds = duration.nanoseconds
    return QosTime(sec=nanoseconds // 1_000_000_000, nsec=nanoseconds % 1_000_000_000)


def to_bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy profile as the rosbags record stored in bag metadata (enums matched by name)."""
    return Qos(
        history=QosHistory[profile.history.name],
        depth=int(profile.depth),
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=_to_qos_time(profile.deadline),
        lifespan=_to_qos_time(profile.lifespan),
        liveliness=QosLiveliness[LivelinessPolicy(profile.liveliness).name],
        liveliness_lease_duration=_to_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )

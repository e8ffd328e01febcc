"""A TF buffer: stamped transforms from ``/tf`` and ``/tf_static``, looked up between any two frames.

Semantics (both backends; the ``"fovea"`` one is written here, ``"tf2_ros"`` wraps ``tf2_ros.Buffer``,
chosen by ``backend="auto"`` when ``tf2_ros`` is importable; :attr:`TfBuffer.backend` says which runs):

* Every ``TransformStamped`` is an edge ``header.frame_id`` (parent) -> ``child_frame_id`` (child) and
  holds ``T_parent_child``: it maps child coordinates into the parent frame. Each child has one parent
  at a time, so the frames form a forest.
* ``lookup_transform(target, source, stamp_ns)`` returns ``T_target_source`` (``header.frame_id =
  target``, ``child_frame_id = source``), as tf2 does: it maps points from ``source`` into ``target``.
  It walks from both frames up to their closest common ancestor; edges above that ancestor are never
  evaluated, so their data does not matter.
* Dynamic edges are sampled at ``stamp_ns``: exact samples are returned as stored, between two samples
  the translation is interpolated linearly and the rotation by slerp (shortest arc). If the two
  bracketing samples name different parents, the earlier sample is used as is. Asking before the
  first or after the last sample of an edge raises :class:`ExtrapolationError` (into the past / future,
  by how many seconds); nothing is extrapolated.
* ``stamp_ns=None`` (or 0, tf2's "latest") means the latest time at which every dynamic edge on the path
  has data: the minimum over those edges of their newest stamp. The returned stamp says which time
  that was (0 when the path is all static).
* Static edges (``set_transform_static``, ``/tf_static``) are valid at every time; a newer static message
  for the same child replaces the old one. Publishing one child both as static and dynamic is a
  configuration error; the fovea backend then uses the static edge, tf2_ros has its own rule.
* Each dynamic edge keeps samples no older than ``cache_duration_s`` (default 10 s) before its newest
  sample; a sample older than that on arrival is rejected and counted in ``rejected_old``. Samples
  with empty or equal frame names, non-finite numbers or a zero quaternion are rejected and counted in
  ``rejected_invalid`` (not raised: the subscription callback must survive one bad message), on both
  backends (checked here before tf2_ros sees them). ``rejections`` counts them by reason
  (:data:`REJECTION_REASONS`); :func:`subscribe_tf` also counts each as a node drop
  ``rejected transform: <reason>``, so a bad ``/tf_static`` is visible on /diagnostics.
  Quaternions are normalised on use.
* Errors are ``LookupError`` subclasses: :class:`FrameNotFoundError` (a frame never seen),
  :class:`NoPathError` (frames in different trees), :class:`ExtrapolationError`.
* Stamps are int64 nanoseconds (``sec * 1e9 + nanosec``), the core's time unit.

The transform math (quaternions, slerp, composition) is :mod:`fovea_core.geometry.transforms`.
:func:`subscribe_tf` wires a buffer to ``/tf`` and ``/tf_static`` on an rclpy node.
"""
from __future__ import annotations

import bisect
import importlib.util
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped

from fovea_core.geometry.transforms import (
    compose,
    interpolate_rigid,
    invert_rigid,
    rigid_transform,
    translation_quaternion,
)

NS_PER_S = 1_000_000_000
_MAX_TREE_DEPTH = 1000  # deeper than any real robot; stops a parent cycle from looping forever
REJECTION_REASONS = ("empty frame name", "parent equals child", "non-finite values", "zero quaternion",
                     "older than the cache")


def transform_problem(msg: TransformStamped) -> str | None:
    """Why a transform cannot be stored (one of :data:`REJECTION_REASONS` but the last), or None."""
    parent, child = msg.header.frame_id, msg.child_frame_id
    if not parent or not child:
        return "empty frame name"
    if parent == child:
        return "parent equals child"
    t, r = msg.transform.translation, msg.transform.rotation
    values = np.array([t.x, t.y, t.z, r.x, r.y, r.z, r.w], dtype=float)
    if not np.all(np.isfinite(values)):
        return "non-finite values"
    if np.linalg.norm(values[3:]) < 1e-6:
        return "zero quaternion"
    return None


class TransformLookupError(LookupError):
    """A transform cannot be looked up."""


class FrameNotFoundError(TransformLookupError):
    """A frame that no transform has named, as parent or child."""


class NoPathError(TransformLookupError):
    """The two frames are in different trees (no common ancestor)."""


class ExtrapolationError(TransformLookupError):
    """The requested stamp is outside an edge's samples.

    ``direction`` is ``"past"`` or ``"future"`` and ``by_ns`` how far outside (None from the tf2_ros
    backend, whose exception carries only a message).
    """

    def __init__(self, message: str, direction: str | None = None, by_ns: int | None = None):
        super().__init__(message)
        self.direction = direction
        self.by_ns = by_ns


def tf2_ros_available() -> bool:
    """True when ``tf2_ros`` can be imported (a robot with a system ROS 2)."""
    return importlib.util.find_spec("tf2_ros") is not None


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` to int nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def matrix_to_transform_stamped(matrix: np.ndarray, parent: str, child: str, stamp_ns: int) -> TransformStamped:
    """``TransformStamped`` carrying the 4x4 ``T_parent_child``."""
    msg = TransformStamped()
    msg.header.frame_id = parent
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), NS_PER_S)
    msg.child_frame_id = child
    translation, quaternion = translation_quaternion(matrix)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, translation)
    (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
     msg.transform.rotation.w) = map(float, quaternion)
    return msg


def transform_stamped_to_matrix(msg: TransformStamped) -> np.ndarray:
    """4x4 ``T_parent_child`` of a ``TransformStamped``."""
    t, r = msg.transform.translation, msg.transform.rotation
    return rigid_transform((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


def _seconds(ns: int) -> str:
    return f"{ns / NS_PER_S:.9f}".rstrip("0").rstrip(".") + " s"


@dataclass
class _EdgeHistory:
    """Time-sorted samples of one child frame's dynamic edge."""

    stamps: list[int] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quaternions: list[np.ndarray] = field(default_factory=list)

    def insert(self, stamp: int, parent: str, translation: np.ndarray, quaternion: np.ndarray) -> None:
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:  # same stamp again: newest message wins
            self.parents[i], self.translations[i], self.quaternions[i] = parent, translation, quaternion
            return
        for column, value in ((self.stamps, stamp), (self.parents, parent),
                              (self.translations, translation), (self.quaternions, quaternion)):
            column.insert(i, value)

    def prune_before(self, oldest_kept: int) -> None:
        cut = bisect.bisect_left(self.stamps, oldest_kept)
        if cut:
            for column in (self.stamps, self.parents, self.translations, self.quaternions):
                del column[:cut]

    def parent_at(self, stamp: int) -> str:
        """Parent of the sample at or before ``stamp`` (the first sample's when earlier than all)."""
        return self.parents[max(bisect.bisect_right(self.stamps, stamp) - 1, 0)]


class _FoveaTfBuffer:
    def __init__(self, cache_duration_ns: int):
        self.cache_duration_ns = cache_duration_ns
        self.static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)
        self.dynamic: dict[str, _EdgeHistory] = {}

    # ------------------------------------------------------------------------------------------ inserting
    def set_transform(self, msg: TransformStamped, is_static: bool) -> str | None:
        """Store a checked transform; the reason when it is rejected as too old, else None."""
        parent, child = msg.header.frame_id, msg.child_frame_id
        t, r = msg.transform.translation, msg.transform.rotation
        if is_static:
            self.static[child] = (parent, transform_stamped_to_matrix(msg))
            return None
        stamp = stamp_to_ns(msg.header.stamp)
        history = self.dynamic.setdefault(child, _EdgeHistory())
        newest = max(stamp, history.stamps[-1]) if history.stamps else stamp
        if stamp < newest - self.cache_duration_ns:
            return "older than the cache"
        history.insert(stamp, parent, np.array([t.x, t.y, t.z], float), np.array([r.x, r.y, r.z, r.w], float))
        history.prune_before(newest - self.cache_duration_ns)
        return None

    # ------------------------------------------------------------------------------------------- querying
    def known_frames(self) -> set[str]:
        frames = set(self.static) | set(self.dynamic)
        frames |= {parent for parent, _ in self.static.values()}
        for history in self.dynamic.values():
            frames.update(history.parents)
        return frames

    def _parent(self, frame: str, stamp: int | None) -> str | None:
        if frame in self.static:
            return self.static[frame][0]
        history = self.dynamic.get(frame)
        if history is None or not history.stamps:
            return None
        return history.parents[-1] if stamp is None else history.parent_at(stamp)

    def _ancestry(self, frame: str, stamp: int | None) -> list[str]:
        chain = [frame]
        while (parent := self._parent(chain[-1], stamp)) is not None:
            chain.append(parent)
            if len(chain) > _MAX_TREE_DEPTH:
                raise TransformLookupError(f"frame tree above {frame!r} is deeper than {_MAX_TREE_DEPTH} (a cycle?)")
        return chain

    def _path(self, target: str, source: str, stamp: int | None) -> tuple[list[str], list[str]]:
        """Frames from ``source`` and from ``target`` up to (excluding) their closest common ancestor."""
        source_chain = self._ancestry(source, stamp)
        target_chain = self._ancestry(target, stamp)
        in_target = {frame: i for i, frame in enumerate(target_chain)}
        for i, frame in enumerate(source_chain):
            if frame in in_target:
                return source_chain[:i], target_chain[: in_target[frame]]
        raise NoPathError(
            f"no path between {target!r} and {source!r}: {source!r} belongs to the tree rooted at "
            f"{source_chain[-1]!r} and {target!r} to the tree rooted at {target_chain[-1]!r}"
        )

    def _edge(self, child: str, stamp: int, target: str, source: str) -> np.ndarray:
        """``T_parent_child`` at ``stamp``."""
        if child in self.static:
            return self.static[child][1]
        history = self.dynamic[child]
        stamps = history.stamps
        context = (f"when looking up the transform from {source!r} to {target!r} "
                   f"(edge {history.parent_at(stamp)!r} -> {child!r})")
        if stamp < stamps[0]:
            by = stamps[0] - stamp
            raise ExtrapolationError(
                f"lookup would require extrapolation {_seconds(by)} into the past: requested "
                f"{_seconds(stamp)}, earliest data {_seconds(stamps[0])} {context}", "past", by)
        if stamp > stamps[-1]:
            by = stamp - stamps[-1]
            raise ExtrapolationError(
                f"lookup would require extrapolation {_seconds(by)} into the future: requested "
                f"{_seconds(stamp)}, latest data {_seconds(stamps[-1])} {context}", "future", by)
        i = bisect.bisect_left(stamps, stamp)
        if stamps[i] == stamp:
            return rigid_transform(history.translations[i], history.quaternions[i])
        before, after = i - 1, i
        if history.parents[before] != history.parents[after]:
            return rigid_transform(history.translations[before], history.quaternions[before])
        fraction = (stamp - stamps[before]) / (stamps[after] - stamps[before])
        return interpolate_rigid(history.translations[before], history.quaternions[before],
                                 history.translations[after], history.quaternions[after], fraction)

    def lookup(self, target: str, source: str, stamp: int | None) -> tuple[np.ndarray, int]:
        if target == source:
            return np.eye(4), stamp or 0
        known = self.known_frames()
        for frame in (target, source):
            if frame not in known:
                listed = ", ".join(sorted(known)[:20]) or "none yet"
                raise FrameNotFoundError(f"frame {frame!r} does not exist (known frames: {listed})")
        if stamp is None:
            # Latest common time: walk the path with the newest parents, then take the oldest newest sample.
            source_edges, target_edges = self._path(target, source, None)
            dynamic = [self.dynamic[f].stamps[-1] for f in source_edges + target_edges if f not in self.static]
            stamp = min(dynamic) if dynamic else 0
        source_edges, target_edges = self._path(target, source, stamp)
        T_common_source = compose(*[self._edge(f, stamp, target, source) for f in reversed(source_edges)])
        T_common_target = compose(*[self._edge(f, stamp, target, source) for f in reversed(target_edges)])
        return invert_rigid(T_common_target) @ T_common_source, stamp


class _Tf2RosBuffer:
    """Delegates to ``tf2_ros.Buffer``; translates its exceptions into this module's."""

    def __init__(self, cache_duration_ns: int):
        import tf2_ros  # only on this path: the package is absent off-robot
        from rclpy.duration import Duration

        self._tf2_ros = tf2_ros
        self._buffer = tf2_ros.Buffer(cache_time=Duration(nanoseconds=cache_duration_ns))

    def set_transform(self, msg: TransformStamped, is_static: bool) -> str | None:
        # invalid data is checked before this; tf2 logs samples older than its cache instead of reporting
        # them, so "older than the cache" is never counted on this backend
        if is_static:
            self._buffer.set_transform_static(msg, "fovea")
        else:
            self._buffer.set_transform(msg, "fovea")
        return None

    def known_frames(self) -> set[str]:
        import yaml  # all_frames_as_yaml is the public way tf2_ros lists frames

        frames = yaml.safe_load(self._buffer.all_frames_as_yaml()) or {}
        return set(frames) | {info["parent"] for info in frames.values()}

    def lookup(self, target: str, source: str, stamp: int | None) -> tuple[np.ndarray, int]:
        from rclpy.time import Time

        tf2 = self._tf2_ros
        try:
            msg = self._buffer.lookup_transform(target, source, Time(nanoseconds=stamp or 0))
        except tf2.LookupException as error:
            raise FrameNotFoundError(str(error)) from error
        except tf2.ConnectivityException as error:
            raise NoPathError(str(error)) from error
        except tf2.ExtrapolationException as error:
            raise ExtrapolationError(str(error)) from error
        except tf2.TransformException as error:
            raise TransformLookupError(str(error)) from error
        return transform_stamped_to_matrix(msg), stamp_to_ns(msg.header.stamp)


class TfBuffer:
    """Transforms by frame and stamp (semantics in the module docstring); thread-safe."""

    def __init__(self, cache_duration_s: float = 10.0, *, backend: str = "auto"):
        if cache_duration_s <= 0:
            raise ValueError(f"cache_duration_s must be positive, got {cache_duration_s}")
        if backend == "auto":
            backend = "tf2_ros" if tf2_ros_available() else "fovea"
        if backend not in ("fovea", "tf2_ros"):
            raise ValueError(f"backend must be 'fovea', 'tf2_ros' or 'auto', got {backend!r}")
        self.backend = backend
        self.cache_duration_ns = int(round(cache_duration_s * NS_PER_S))
        self._impl = _Tf2RosBuffer(self.cache_duration_ns) if backend == "tf2_ros" else _FoveaTfBuffer(
            self.cache_duration_ns)
        self._lock = threading.Lock()
        self.rejections: Counter[str] = Counter()  # reason -> transforms rejected
        self.last_rejection = ""  # "<reason>: <parent> -> <child>" of the latest one

    @property
    def rejected_old(self) -> int:
        """Dynamic samples rejected for being older than the cache on arrival."""
        return self.rejections["older than the cache"]

    @property
    def rejected_invalid(self) -> int:
        """Samples rejected for empty/equal frame names, non-finite values or a zero quaternion."""
        return sum(n for reason, n in self.rejections.items() if reason != "older than the cache")

    def _add(self, msg: TransformStamped, is_static: bool) -> str | None:
        """Store ``msg``; the rejection reason, or None when it was stored."""
        with self._lock:
            reason = transform_problem(msg) or self._impl.set_transform(msg, is_static)
            if reason is not None:
                self.rejections[reason] += 1
                self.last_rejection = f"{reason}: {msg.header.frame_id!r} -> {msg.child_frame_id!r}"
        return reason

    def set_transform(self, msg: TransformStamped) -> bool:
        """Add a dynamic sample; False when it was rejected (older than the cache, or invalid)."""
        return self._add(msg, is_static=False) is None

    def set_transform_static(self, msg: TransformStamped) -> bool:
        """Add (or replace) a static edge, valid at all times; False when it was rejected as invalid."""
        return self._add(msg, is_static=True) is None

    def add_tf_message(self, msg: Any, is_static: bool = False,
                       on_reject: Callable[[str, str], Any] | None = None) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage``; returns how many were accepted.

        ``on_reject(reason, detail)`` is called for each rejected transform."""
        accepted = 0
        for transform in msg.transforms:
            reason = self._add(transform, is_static)
            if reason is None:
                accepted += 1
            elif on_reject is not None:
                on_reject(reason, f"{'/tf_static' if is_static else '/tf'}: {transform.header.frame_id!r} -> "
                                  f"{transform.child_frame_id!r}")
        return accepted

    def known_frames(self) -> set[str]:
        with self._lock:
            return self._impl.known_frames()

    def lookup_matrix(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """4x4 ``T_target_source`` at ``stamp_ns`` (None or 0: the latest common time)."""
        return self.lookup_matrix_and_stamp(target_frame, source_frame, stamp_ns)[0]

    def lookup_matrix_and_stamp(self, target_frame: str, source_frame: str,
                                stamp_ns: int | None = None) -> tuple[np.ndarray, int]:
        """``(T_target_source, stamp used)``; the stamp differs from the request only for "latest"."""
        with self._lock:
            return self._impl.lookup(target_frame, source_frame, stamp_ns or None)

    def lookup_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> TransformStamped:
        """``T_target_source`` as a TransformStamped (``header.frame_id = target_frame``)."""
        matrix, stamp = self.lookup_matrix_and_stamp(target_frame, source_frame, stamp_ns)
        return matrix_to_transform_stamped(matrix, target_frame, source_frame, stamp)

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup_matrix_and_stamp(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True


def subscribe_tf(node: Any, buffer: TfBuffer, tf_topic: str = "/tf", tf_static_topic: str = "/tf_static") -> list[Any]:
    """Subscribe ``buffer`` to ``/tf`` and ``/tf_static`` on an rclpy node; returns the two subscriptions.

    QoS follows tf2_ros' listener: reliable with depth 100 for ``/tf``; reliable, transient-local with
    depth 100 for ``/tf_static``, so static transforms published before the node started still arrive.
    When the node has ``drop`` (a Fovea node), each rejected transform is counted there as
    ``rejected transform: <reason>``.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage  # imported here: the module stays usable where tf2_msgs is absent

    dynamic_qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
    static_qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
    drop = getattr(node, "drop", None)
    on_reject = (lambda reason, detail: drop(f"rejected transform: {reason}", detail)) if callable(drop) else None
    return [
        node.create_subscription(TFMessage, tf_topic, lambda msg: buffer.add_tf_message(msg, False, on_reject),
                                 dynamic_qos),
        node.create_subscription(TFMessage, tf_static_topic, lambda msg: buffer.add_tf_message(msg, True, on_reject),
                                 static_qos),
    ]

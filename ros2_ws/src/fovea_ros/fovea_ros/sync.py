"""Approximate-time synchronisation of N message streams, with the policy of message_filters' Python
``ApproximateTimeSynchronizer`` (the one a Python node on a robot gets), and counted drops.

Policy (both backends; ``slop`` in seconds is held as ``int(slop * 1e9)`` nanoseconds, as rclpy's
``Duration(seconds=slop)`` does):

1. A message's stamp is ``header.stamp`` in nanoseconds. A message without ``header.stamp`` is dropped
   (reason ``"headerless"``) unless ``allow_headerless=True``, in which case it is stamped with the
   current time (``now_ns()``; the message_filters backend uses the ROS clock).
2. Each input has its own queue keyed by stamp. A message whose stamp is already queued on that input
   replaces the queued one (reason ``"duplicate_stamp"`` for the replaced message). When a queue holds
   more than ``queue_size`` messages, the one with the *oldest stamp* is removed (reason
   ``"queue_overflow"``); that may be the message that just arrived, if it is older than all others.
3. Only the message that just arrived can complete a set. For every other input, the candidates are its
   queued messages within ``slop`` of the new stamp (``|delta| <= slop``), nearest first (ties keep
   arrival order). If some input has no candidate, nothing happens.
4. Combinations are tried in lexicographic order over the inputs (input 0's nearest candidate first,
   the last input varying fastest); the first whose stamps span strictly less than ``slop``
   (``max - min < slop``) is emitted: ``callback(msg_0, ..., msg_{N-1})`` in input order. Exactly the
   emitted messages leave their queues; older unmatched messages stay until they overflow. So
   out-of-order arrivals can still match, and with ``slop = 0`` nothing is ever emitted (the span must
   be < 0) - both as in message_filters.

Note this is *not* the C++ ``message_filters::sync_policies::ApproximateTime`` algorithm (which looks
for the set with the smallest span over all queues and drops everything older than its pivot).

Backends: ``backend="auto"`` uses the ``message_filters`` package when it can be imported and this
module's own implementation (``"fovea"``) otherwise; :attr:`ApproximateTimeSync.backend` says which one
runs. Both are fed through :meth:`ApproximateTimeSync.add`, call ``callback`` outside the internal
lock, and report :attr:`ApproximateTimeSync.dropped` (reason -> count) and ``emitted`` (sets emitted),
so the node base can publish drops in its diagnostics. ``callback`` must not call ``add`` on the same
synchronizer.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import threading
import time
from collections import Counter
from typing import Any, Callable, Sequence

BACKENDS = ("fovea", "message_filters")
DROP_REASONS = ("headerless", "duplicate_stamp", "queue_overflow")


def message_filters_available() -> bool:
    """True when the ``message_filters`` Python package can be imported (robots with a system ROS 2)."""
    return importlib.util.find_spec("message_filters") is not None


def stamp_nanoseconds(msg: Any) -> int | None:
    """``msg.header.stamp`` as int nanoseconds, or None when the message has no header stamp."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    if hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        return int(stamp.nanoseconds)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ApproximateTimeSync:
    """Synchronizer for ``num_inputs`` streams; feed it with ``add(index, msg)`` (policy: module docstring)."""

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., Any], *,
                 allow_headerless: bool = False, backend: str = "auto",
                 now_ns: Callable[[], int] = time.time_ns):
        if num_inputs < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if backend == "auto":
            backend = "message_filters" if message_filters_available() else "fovea"
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {backend!r}")
        self.backend = backend
        self.num_inputs = int(num_inputs)
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self.slop_ns = int(slop * 1_000_000_000)
        self.allow_headerless = bool(allow_headerless)
        self.emitted = 0
        self._callback = callback
        self._now_ns = now_ns
        self._drops: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready: list[tuple] = []  # sets found under the lock, handed to the callback after it
        if backend == "message_filters":
            self._impl = _MessageFiltersPolicy(self)
        else:
            self._impl = _FoveaPolicy(self)

    @property
    def dropped(self) -> dict[str, int]:
        """Messages dropped so far, by reason (every reason in ``DROP_REASONS`` present, maybe 0)."""
        with self._lock:
            return {reason: self._drops[reason] for reason in DROP_REASONS}

    def queue_lengths(self) -> list[int]:
        """How many messages wait in each input's queue."""
        with self._lock:
            return self._impl.queue_lengths()

    def add(self, index: int, msg: Any) -> None:
        """Offer ``msg`` on input ``index``; calls the callback if this message completes a set."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} outside 0..{self.num_inputs - 1}")
        stamp = stamp_nanoseconds(msg)
        with self._lock:
            if stamp is None and not self.allow_headerless:
                self._drops["headerless"] += 1
                return
            self._impl.add(index, msg, stamp)
            ready, self._ready = self._ready, []
            self.emitted += len(ready)
        for messages in ready:
            self._callback(*messages)


class _FoveaPolicy:
    """This module's implementation of the policy; state guarded by the owner's lock."""

    def __init__(self, owner: ApproximateTimeSync):
        self._owner = owner
        # stamp -> message per input; dicts keep first-arrival order, which breaks ties between candidates.
        self._queues: list[dict[int, Any]] = [{} for _ in range(owner.num_inputs)]

    def queue_lengths(self) -> list[int]:
        return [len(queue) for queue in self._queues]

    def add(self, index: int, msg: Any, stamp: int | None) -> None:
        owner = self._owner
        if stamp is None:
            stamp = int(owner._now_ns())
        queue = self._queues[index]
        if stamp in queue:
            owner._drops["duplicate_stamp"] += 1
        queue[stamp] = msg
        while len(queue) > owner.queue_size:
            del queue[min(queue)]
            owner._drops["queue_overflow"] += 1
        if stamp not in queue:  # the new message was the oldest and overflowed at once
            return
        candidates: list[list[int]] = []
        for other, other_queue in enumerate(self._queues):
            if other == index:
                candidates.append([stamp])
                continue
            near = [s for s in other_queue if abs(s - stamp) <= owner.slop_ns]
            if not near:
                return
            near.sort(key=lambda s: abs(s - stamp))  # stable: equal distances keep arrival order
            candidates.append(near)
        chosen = _first_set_within(candidates, owner.slop_ns)
        if chosen is None:
            return
        owner._ready.append(tuple(q.pop(s) for q, s in zip(self._queues, chosen)))


def _first_set_within(candidates: list[list[int]], slop_ns: int) -> list[int] | None:
    """First combination, in lexicographic candidate order, whose stamps span strictly less than slop.

    Depth-first with pruning: once a prefix spans >= slop every extension does too, so skipping it
    does not change which combination comes first.
    """
    if slop_ns <= 0:  # even a single stamp spans 0, which is not < 0
        return None
    chosen: list[int] = []

    def search(depth: int, low: float, high: float) -> bool:
        if depth == len(candidates):
            return True
        for s in candidates[depth]:
            new_low, new_high = min(low, s), max(high, s)
            if new_high - new_low >= slop_ns:
                continue
            chosen.append(s)
            if search(depth + 1, new_low, new_high):
                return True
            chosen.pop()
        return False

    # Start with an empty span (low > high) so the first chosen stamp sets both ends.
    return chosen if search(0, math.inf, -math.inf) else None


class _MessageFiltersPolicy:
    """Delegates to ``message_filters.ApproximateTimeSynchronizer`` and counts its drops from outside.

    message_filters keeps one ``{stamp_ns: msg}`` dict per input in ``queues``; an add changes only the
    input's own dict (insert, overflow) and, on emission, removes one message from every dict, so the
    overflow count is what is missing from that dict's length after the call.
    """

    def __init__(self, owner: ApproximateTimeSync):
        import message_filters  # only on this path: the package is absent off-robot

        self._owner = owner
        self._inputs = [message_filters.SimpleFilter() for _ in range(owner.num_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(
            self._inputs, owner.queue_size, owner.slop, allow_headerless=owner.allow_headerless
        )
        self._sync.registerCallback(lambda *messages: owner._ready.append(messages))

    def queue_lengths(self) -> list[int]:
        return [len(queue) for queue in self._sync.queues]

    def add(self, index: int, msg: Any, stamp: int | None) -> None:
        owner = self._owner
        queue = self._sync.queues[index]
        before = len(queue)
        duplicate = stamp is not None and stamp in queue
        emitted_before = len(owner._ready)
        self._inputs[index].signalMessage(msg)
        emitted = len(owner._ready) - emitted_before
        owner._drops["duplicate_stamp"] += int(duplicate)
        owner._drops["queue_overflow"] += before + (0 if duplicate else 1) - emitted - len(queue)


def subscribe_synchronized(node: Any, inputs: Sequence[tuple[type, str]], sync: ApproximateTimeSync,
                           qos_profile: Any) -> list[Any]:
    """Create one rclpy subscription per ``(message type, topic)`` feeding ``sync.add(i, msg)``.

    ``qos_profile`` is an ``rclpy.qos.QoSProfile`` (the node base passes sensor-data QoS by default).
    Returns the subscriptions; keep them alive as long as the synchronizer is used.
    """
    if len(inputs) != sync.num_inputs:
        raise ValueError(f"{len(inputs)} topics given for a synchronizer of {sync.num_inputs} inputs")
    return [
        node.create_subscription(msg_type, topic, functools.partial(sync.add, index), qos_profile)
        for index, (msg_type, topic) in enumerate(inputs)
    ]

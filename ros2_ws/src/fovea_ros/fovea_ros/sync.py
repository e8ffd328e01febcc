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

Why a message was dropped (:attr:`ApproximateTimeSync.drop_causes` and the ``on_drop`` callback): a message
that leaves its queue unmatched (``queue_overflow`` above) is classified by the other inputs' queues at
that moment, the first rule that applies to some input (inputs in order) names it:

* ``missing member <input>``: that input had nothing queued within ``slop`` of the message or newer (it
  stopped publishing, lost this message, or runs slower; if its messages come late in wall time, a longer
  queue would have caught them);
* ``outside slop <input>``: that input has newer queued messages, but none within ``slop`` (the detail says
  how far the nearest was: a clock offset, or a slop too tight);
* ``queue overflow``: every input had a candidate within ``slop``, yet no set spanned less than ``slop``.

The classification is of the moment: an input whose stamps run ahead (a clock offset) pushes messages out
of short queues before the others publish theirs, which then reads "missing member"; the details carry the
times, and the input with the offset shows up as ``outside slop`` with its distance.

``<input>`` is the input's name from ``input_names`` (topics, when :func:`subscribe_synchronized` wires
it), else ``input <i>``. Duplicates and headerless messages are reported as ``duplicate stamp`` and
``headerless``. ``on_drop(reason, count, detail)`` is called outside the lock for every drop, so a node
can count each under its reason on /diagnostics; :func:`subscribe_synchronized` connects it to the
node's ``drop`` and publishes the messages still waiting (``sync_waiting``) with ``set_diagnostic``.

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
CAUSES = ("missing member", "outside slop", "queue overflow")


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
                 now_ns: Callable[[], int] = time.time_ns, input_names: Sequence[str] | None = None,
                 on_drop: Callable[[str, int, str], Any] | None = None):
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
        self.input_names = list(input_names) if input_names is not None else [f"input {i}" for i in
                                                                               range(num_inputs)]
        if len(self.input_names) != num_inputs:
            raise ValueError(f"{len(self.input_names)} input names for {num_inputs} inputs")
        self.on_drop = on_drop
        self._callback = callback
        self._now_ns = now_ns
        self._drops: Counter[str] = Counter()
        self._causes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready: list[tuple] = []  # sets found under the lock, handed to the callback after it
        self._dropped_now: list[tuple[str, str]] = []  # (reason, detail) found under the lock, reported after it
        if backend == "message_filters":
            self._impl = _MessageFiltersPolicy(self)
        else:
            self._impl = _FoveaPolicy(self)

    @property
    def dropped(self) -> dict[str, int]:
        """Messages dropped so far, by reason (every reason in ``DROP_REASONS`` present, maybe 0)."""
        with self._lock:
            return {reason: self._drops[reason] for reason in DROP_REASONS}

    @property
    def drop_causes(self) -> dict[str, int]:
        """Drops by the reason reported to ``on_drop`` (``missing member <input>``, ... see the module doc)."""
        with self._lock:
            return dict(self._causes)

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
                self._report("headerless", f"{self.input_names[index]}: message has no header stamp")
            else:
                self._impl.add(index, msg, stamp)
            ready, self._ready = self._ready, []
            dropped, self._dropped_now = self._dropped_now, []
            self.emitted += len(ready)
        if self.on_drop is not None:
            for reason, detail in dropped:
                self.on_drop(reason, 1, detail)
        for messages in ready:
            self._callback(*messages)

    # ---- drop bookkeeping (called by the policies under the lock) -----------------------------------
    def _report(self, reason: str, detail: str) -> None:
        self._causes[reason] += 1
        self._dropped_now.append((reason, detail))

    def _duplicate(self, index: int, stamp: int) -> None:
        self._drops["duplicate_stamp"] += 1
        self._report("duplicate stamp", f"{self.input_names[index]}: a newer message with stamp {stamp} ns "
                                        "replaced the queued one")

    def _evicted(self, index: int, stamp: int, queues: Sequence[Sequence[int]]) -> None:
        """Count a message that left input ``index``'s queue unmatched; ``queues``: every input's stamps."""
        self._drops["queue_overflow"] += 1
        self._report(*classify_unmatched(index, stamp, queues, self.slop_ns, self.input_names))


def classify_unmatched(index: int, stamp: int, queues: Sequence[Sequence[int]], slop_ns: int,
                       names: Sequence[str]) -> tuple[str, str]:
    """(reason, detail) for a message at ``stamp`` dropped unmatched from input ``index`` (module docstring)."""
    what = f"{names[index]} at {stamp / 1e9:.3f} s"
    others = [(other, stamps) for other, stamps in enumerate(queues) if other != index]
    for other, stamps in others:
        if not any(s >= stamp - slop_ns for s in stamps):  # nothing near or newer: that input fell silent
            return f"missing member {names[other]}", (f"{what}: nothing queued on {names[other]}" if not stamps else
                                                      f"{what}: nothing on {names[other]} since "
                                                      f"{max(stamps) / 1e9:.3f} s")
    for other, stamps in others:
        nearest = min(abs(s - stamp) for s in stamps)
        if nearest > slop_ns:
            return (f"outside slop {names[other]}",
                    f"{what}: nearest on {names[other]} {nearest / 1e6:.1f} ms away, slop {slop_ns / 1e6:g} ms")
    return "queue overflow", f"{what}: candidates on every input, but no set within slop"


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
            owner._duplicate(index, stamp)
        queue[stamp] = msg
        while len(queue) > owner.queue_size:
            oldest = min(queue)
            del queue[oldest]
            owner._evicted(index, oldest, self._queues)
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
        # message_filters inserts, then drops the oldest stamps beyond queue_size, then matches: the
        # messages it will drop, and the other queues they are judged against, are known beforehand.
        snapshot = [list(q) for q in self._sync.queues]
        will_hold = sorted(set(snapshot[index]) | ({stamp} if stamp is not None else set()))
        evicted = will_hold[:max(len(will_hold) - owner.queue_size, 0)]
        snapshot[index] = will_hold[len(evicted):]
        emitted_before = len(owner._ready)
        self._inputs[index].signalMessage(msg)
        emitted = len(owner._ready) - emitted_before
        if duplicate:
            owner._duplicate(index, stamp)
        overflowed = before + (0 if duplicate else 1) - emitted - len(queue)
        for i in range(overflowed):
            if i < len(evicted):
                owner._evicted(index, evicted[i], snapshot)
            else:  # not predicted (a headerless message stamped inside message_filters): counted all the same
                owner._drops["queue_overflow"] += 1
                owner._report("queue overflow", f"{owner.input_names[index]}: dropped from a full queue")


def subscribe_synchronized(node: Any, inputs: Sequence[tuple[type, str]], sync: ApproximateTimeSync,
                           qos_profile: Any) -> list[Any]:
    """Create one rclpy subscription per ``(message type, topic)`` feeding ``sync.add(i, msg)``.

    ``qos_profile`` is an ``rclpy.qos.QoSProfile`` (the node base passes sensor-data QoS by default).
    The inputs are named by their topics; when the node has ``drop`` (a Fovea node), every message the
    synchronizer drops is counted there as ``sync: <reason>``, each message is counted as an input on its
    topic (``count_input``) and ``sync_waiting`` (messages queued, not yet in a set) is kept current with
    ``set_diagnostic``, so lost camera sets show on /diagnostics.
    Returns the subscriptions; keep them alive as long as the synchronizer is used.
    """
    if len(inputs) != sync.num_inputs:
        raise ValueError(f"{len(inputs)} topics given for a synchronizer of {sync.num_inputs} inputs")
    if all(name == f"input {i}" for i, name in enumerate(sync.input_names)):
        sync.input_names = [topic for _, topic in inputs]
    drop = getattr(node, "drop", None)
    if sync.on_drop is None and callable(drop):
        sync.on_drop = lambda reason, count, detail: drop(f"sync: {reason}", detail, n=count)
    set_diagnostic = getattr(node, "set_diagnostic", None)
    count_input = getattr(node, "count_input", None)

    def feed(index: int, msg: Any) -> None:
        if callable(count_input):  # each member is an input on its own topic (books per topic)
            count_input(inputs[index][1])
        sync.add(index, msg)
        if callable(set_diagnostic):
            set_diagnostic("sync_waiting", sum(sync.queue_lengths()))

    return [
        node.create_subscription(msg_type, topic, functools.partial(feed, index), qos_profile)
        for index, (msg_type, topic) in enumerate(inputs)
    ]

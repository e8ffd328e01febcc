"""Messages lost before a node's callback, estimated from the publisher's own numbering.

Every DDS writer numbers its samples (``publication_sequence_number`` in the rclpy ``MessageInfo`` of each
message taken). A subscription that sees numbers 7, 8, 12 from one writer did not get 9, 10 and 11: they
were dropped in the middleware (best-effort transport, or the reader's history overflowing while the
callback was busy - sensor-data QoS keeps 5). The node never saw them, so its own drop counts cannot.

Rules, per topic:

* the numbering is trusted only while the subscription is matched with exactly one publisher (two
  writers interleave their numbers); with none or several the stream is "unattributed" and nothing is
  counted, and the reference restarts when the count changes;
* a number at or below the previous one is a new writer (the publisher restarted): the reference
  restarts, nothing is counted;
* messages lost after the last one taken are invisible until the next one arrives (the end of a replay:
  compare with the replay's own counts, which the demo does);
* an rmw that gives no numbers (0 or None) gives no estimate.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class TopicDelivery:
    taken: int = 0  # messages taken with a usable number
    lost: int = 0  # numbers skipped between messages of one writer
    writer_restarts: int = 0
    unattributed: int = 0  # messages taken while 0 or several publishers were matched
    _last: int | None = None
    _publishers: int | None = None


class DeliveryTracker:
    """Per-topic estimate of messages lost before the callback (rules in the module docstring)."""

    def __init__(self) -> None:
        self._topics: dict[str, TopicDelivery] = {}
        self._lock = threading.Lock()

    def observe(self, topic: str, info: dict | None, publishers: int) -> int:
        """Account for one message taken on ``topic``; returns how many were newly found lost before it."""
        seq = (info or {}).get("publication_sequence_number")
        with self._lock:
            state = self._topics.setdefault(topic, TopicDelivery())
            if publishers != state._publishers:
                state._publishers, state._last = publishers, None
            if publishers != 1:
                state.unattributed += 1
                return 0
            if not seq:
                return 0
            state.taken += 1
            lost = 0
            if state._last is not None:
                if seq > state._last:
                    lost = seq - state._last - 1
                else:
                    state.writer_restarts += 1
            state._last = seq
            state.lost += lost
            return lost

    def lost(self, topic: str) -> int:
        with self._lock:
            state = self._topics.get(topic)
            return state.lost if state else 0

    def snapshot(self) -> dict[str, TopicDelivery]:
        with self._lock:
            return {t: TopicDelivery(s.taken, s.lost, s.writer_restarts, s.unattributed) for t, s in self._topics.items()}

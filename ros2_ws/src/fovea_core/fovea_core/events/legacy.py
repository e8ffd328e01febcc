"""Older per-event array messages (``dvs_msgs/EventArray``, ROS 1 rpg_dvs_ros style, also seen ported to ROS 2).

Each event is a small message (x, y, ts, polarity); converting them costs one Python object per event, which is
acceptable for the small legacy bags this exists for.
"""
from __future__ import annotations

import numpy as np

from fovea_core.events.arrays import make_events

# Definitions as published by rpg_dvs_ros (dvs_msgs), in ROS 2 form; registered when a bag carries them.
DVS_EVENT_MSG = """uint16 x
uint16 y
builtin_interfaces/Time ts
bool polarity
"""
DVS_EVENT_ARRAY_MSG = """std_msgs/Header header
uint32 height
uint32 width
dvs_msgs/Event[] events
"""
LEGACY_DEFINITIONS = {
    "dvs_msgs/msg/Event": DVS_EVENT_MSG,
    "dvs_msgs/msg/EventArray": DVS_EVENT_ARRAY_MSG,
}


def events_from_dvs_array(msg) -> np.ndarray:
    """Structured events from a deserialised dvs_msgs/EventArray (any object with .events of x, y, ts, polarity)."""
    evs = msg.events
    n = len(evs)
    x = np.fromiter((e.x for e in evs), dtype=np.uint16, count=n)
    y = np.fromiter((e.y for e in evs), dtype=np.uint16, count=n)
    t = np.fromiter((e.ts.sec * 1_000_000_000 + e.ts.nanosec for e in evs), dtype=np.int64, count=n)
    p = np.fromiter((1 if e.polarity else 0 for e in evs), dtype=np.int8, count=n)
    return make_events(x, y, t, p)


def dvs_array_fields(events: np.ndarray):
    """(x, y, sec, nanosec, polarity) columns for building dvs_msgs/Event messages from an event array."""
    t = events["t"].astype(np.int64)
    return events["x"], events["y"], t // 1_000_000_000, t % 1_000_000_000, events["p"] > 0

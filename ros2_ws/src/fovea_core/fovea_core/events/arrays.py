"""Structured event arrays used everywhere in the core.

An event is (x, y, t, p): pixel column, pixel row, time in int64 nanoseconds, polarity (1 = ON / brighter,
0 = OFF / darker). External trigger edges from the sensor are kept apart in a second dtype.
"""
from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "i1")])
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("edge", "u1"), ("id", "u1")])


def make_events(x, y, t, p) -> np.ndarray:
    """Pack four equally long 1-D arrays into one structured event array."""
    x = np.asarray(x)
    out = np.empty(x.shape[0], dtype=EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["t"] = t
    out["p"] = p
    return out


def empty_events() -> np.ndarray:
    return np.empty(0, dtype=EVENT_DTYPE)


def concat_events(chunks) -> np.ndarray:
    chunks = [c for c in chunks if len(c)]
    return np.concatenate(chunks) if chunks else empty_events()


def malformation(events: np.ndarray, width: int, height: int) -> str | None:
    """Why a decoded packet cannot be trusted, or None when it is usable.

    A packet is rejected as a whole: out-of-range coordinates or time running backwards mean the bytes were
    damaged or mis-framed, so none of its events can be trusted either.
    """
    if len(events) == 0:
        return "empty"
    if width > 0 and int(events["x"].max()) >= width:
        return "x out of range"
    if height > 0 and int(events["y"].max()) >= height:
        return "y out of range"
    if np.any(np.diff(events["t"]) < 0):
        return "time not sorted"
    return None

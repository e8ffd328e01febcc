"""Event-camera core: event arrays, packet codecs (evt3, mono), bag I/O, representations, simulator, HMNet.

Time inside this package is int64 nanoseconds. No ROS imports: bags are read with ``rosbags``.
"""
from fovea_core.events.arrays import EVENT_DTYPE, TRIGGER_DTYPE, concat_events, empty_events, make_events

__all__ = ["EVENT_DTYPE", "TRIGGER_DTYPE", "concat_events", "empty_events", "make_events"]

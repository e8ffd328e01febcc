"""Cut a live event stream into fixed windows (HMNet's 5 ms steps) and map sensor time to ROS time.

Packets arrive with events in sensor time and a header stamp in ROS time (the stamp of the packet's first
event, as the ROS drivers set it), so ``ros_time = sensor_time + offset`` with the offset taken from the latest
packet. A window [end - window, end) is complete once an event at or after ``end`` has arrived. Windows that
would only bridge a long silence are not produced one by one: after ``max_gap_windows`` empty windows the
stream jumps ahead (counted in ``skipped_gap_windows``). A window holding more than ``max_events_per_window``
events keeps its newest ones (the rest counted in ``events_over_cap``), so a burst cannot grow memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fovea_core.events.arrays import concat_events


@dataclass
class EventWindow:
    index: int  # window number since the stream started (gaps in it are skipped windows)
    end_ns: int  # sensor time of the window end
    stamp_ns: int  # the same instant in ROS time
    events: np.ndarray
    silence_total: int = 0  # windows jumped over in silences before this one (cumulative)
    events_before: int = 0  # events emitted in all earlier windows (cumulative)

    def skipped_since(self, earlier: "EventWindow | None") -> tuple[int, int]:
        """(windows, events) emitted between ``earlier`` and this window that never reached the consumer
        (e.g. discarded from a bounded queue); silences jumped over are not counted."""
        if earlier is None:
            return self.index - self.silence_total, self.events_before
        windows = self.index - earlier.index - 1 - (self.silence_total - earlier.silence_total)
        return windows, self.events_before - earlier.events_before - len(earlier.events)


class EventWindower:
    def __init__(self, window_ns: int = 5_000_000, max_gap_windows: int = 200,
                 max_events_per_window: int = 500_000) -> None:
        self.window_ns, self.max_gap_windows, self.max_events = window_ns, max_gap_windows, max_events_per_window
        self._pending: list[np.ndarray] = []
        self._next_end: int | None = None
        self._index = 0
        self.offset_ns = 0
        self.skipped_gap_windows = 0
        self.events_over_cap = 0
        self._events_emitted = 0

    def push(self, events: np.ndarray, header_stamp_ns: int) -> list[EventWindow]:
        """Add one packet's (time-sorted) events; returns the windows it completed, oldest first."""
        if len(events) == 0:
            return []
        self.offset_ns = int(header_stamp_ns) - int(events["t"][0])
        if self._next_end is None:
            self._next_end = (int(events["t"][0]) // self.window_ns + 1) * self.window_ns
        self._pending.append(events)
        latest = int(events["t"][-1])
        out = []
        if latest < self._next_end:
            return out
        pending = concat_events(self._pending)
        times = pending["t"]
        while latest >= self._next_end:
            cut = int(np.searchsorted(times, self._next_end, side="left"))
            window, pending, times = pending[:cut], pending[cut:], times[cut:]
            if len(window) > self.max_events:
                self.events_over_cap += len(window) - self.max_events
                window = window[-self.max_events:]
            out.append(EventWindow(self._index, self._next_end, self._next_end + self.offset_ns, window,
                                   self.skipped_gap_windows, self._events_emitted))
            self._events_emitted += len(window)
            self._index += 1
            self._next_end += self.window_ns
            if len(pending) and len(out) and not len(window):
                gap = (int(times[0]) - self._next_end) // self.window_ns
                if gap > self.max_gap_windows:  # long silence: jump to the window holding the next event
                    self.skipped_gap_windows += gap
                    self._index += gap
                    self._next_end += gap * self.window_ns
        self._pending = [pending] if len(pending) else []
        return out

"""Fault injection: each function takes clean streams and returns the faulty streams and the ground-truth
interval [start_ns, end_ns) in which the streams lie. Inputs are never modified.

Frame-side faults act on the frame stamps or images, event-side faults on the events; where a fault moves frame
stamps, frames that would arrive out of order behind the moved ones are dropped (a receiver that only accepts
increasing stamps), so every output stream stays time-sorted.

=================  ======  ===================================================================================
fault              stream  what changes in [start, end)
=================  ======  ===================================================================================
offset             frames  stamps + ``offset_ms`` (a constant clock offset, 5-100 ms)
drift              frames  stamps + ``ppm`` * (t - start) (a clock running fast)
frozen             frames  every image repeats the last one before ``start``
frame_stall        frames  no frames at all
event_gap          events  no events (dropped packets)
hot_pixels         events  ``count`` pixels firing at ``rate_hz`` each
event_storm        events  uniform noise events at ``rate`` per pixel and second
flicker            both    events: ON/OFF bursts on a fraction of the pixels at ``freq_hz``; images: gain flicker
replay             frames  the images of an earlier stretch played again (looped camera)
splice             frames  images from another recording
time_jump          events  event times from ``start`` on moved by ``jump_ms`` (the interval is the rest)
blinding           both    images saturate; one burst of ON events at ``start``, then near silence
=================  ======  ===================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fovea_core.events.anomaly.streams import EventFrameStreams, FrameStream
from fovea_core.events.arrays import concat_events, make_events

MS = 1_000_000


@dataclass(frozen=True)
class FaultInterval:
    kind: str
    start_ns: int
    end_ns: int
    severity: str  # human-readable level, e.g. "20 ms"
    stream: str  # "frames", "events" or "both"


def _drop_unordered(frames: FrameStream) -> FrameStream:
    """Keep only frames whose stamp is later than every frame kept before them."""
    keep = np.zeros(len(frames), bool)
    last = None
    for i, stamp in enumerate(frames.stamps):
        if last is None or stamp > last:
            keep[i], last = True, stamp
    return frames.select(keep)


def _duration(start: int, end: int) -> str:
    """A severity label for a duration, to 10 ms (the same nominal fault on sequences of slightly different
    length gets one label)."""
    return f"{int(round((end - start) / 1e7)) * 10} ms"


def _in(t: np.ndarray, start: int, end: int) -> np.ndarray:
    return (t >= start) & (t < end)


def _retimed_frames(s: EventFrameStreams, start: int, end: int, shift: np.ndarray) -> EventFrameStreams:
    stamps = s.frames.stamps.copy()
    inside = _in(stamps, start, end)
    stamps[inside] += shift[inside]
    return s.with_(frames=_drop_unordered(FrameStream(stamps, s.frames.images.copy())))


def offset(s: EventFrameStreams, start: int, end: int, offset_ms: float):
    shift = np.full(len(s.frames), int(offset_ms * MS), np.int64)
    return _retimed_frames(s, start, end, shift), FaultInterval("offset", start, end, f"{offset_ms:g} ms", "frames")


def drift(s: EventFrameStreams, start: int, end: int, ppm: float):
    shift = np.rint((s.frames.stamps - start) * (ppm * 1e-6)).astype(np.int64)
    return _retimed_frames(s, start, end, shift), FaultInterval("drift", start, end, f"{ppm:g} ppm", "frames")


def frozen(s: EventFrameStreams, start: int, end: int):
    images = s.frames.images.copy()
    inside = np.flatnonzero(_in(s.frames.stamps, start, end))
    before = np.flatnonzero(s.frames.stamps < start)
    if len(inside) and len(before):
        images[inside] = images[before[-1]]
    return s.with_(frames=FrameStream(s.frames.stamps.copy(), images)), FaultInterval("frozen", start, end, "-", "frames")


def frame_stall(s: EventFrameStreams, start: int, end: int):
    keep = ~_in(s.frames.stamps, start, end)
    return s.with_(frames=s.frames.select(keep)), FaultInterval("frame_stall", start, end, _duration(start, end),
                                                                "frames")


def event_gap(s: EventFrameStreams, start: int, end: int):
    keep = ~_in(s.events["t"], start, end)
    return s.with_(events=s.events[keep]), FaultInterval("event_gap", start, end, _duration(start, end), "events")


def _merge(events: np.ndarray, extra: np.ndarray) -> np.ndarray:
    out = concat_events([events, extra])
    return out[np.argsort(out["t"], kind="stable")]


def hot_pixels(s: EventFrameStreams, start: int, end: int, count: int, rate_hz: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    pix = rng.choice(s.width * s.height, size=count, replace=False)
    n = rng.poisson(rate_hz * (end - start) * 1e-9, count)
    which = np.repeat(pix, n)
    extra = make_events(which % s.width, which // s.width, rng.integers(start, end, len(which)),
                        rng.integers(0, 2, len(which)))
    return s.with_(events=_merge(s.events, extra)), FaultInterval("hot_pixels", start, end,
                                                                  f"{count} px @ {rate_hz:g} Hz", "events")


def event_storm(s: EventFrameStreams, start: int, end: int, rate: float, seed: int = 0):
    """``rate``: noise events per pixel and second."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * s.width * s.height * (end - start) * 1e-9)
    extra = make_events(rng.integers(0, s.width, n), rng.integers(0, s.height, n), rng.integers(start, end, n),
                        rng.integers(0, 2, n))
    return s.with_(events=_merge(s.events, extra)), FaultInterval("event_storm", start, end, f"{rate:g} ev/px/s", "events")


def flicker(s: EventFrameStreams, start: int, end: int, freq_hz: float, fraction: float = 0.3, depth: float = 0.3,
            seed: int = 0):
    """A light flickering at ``freq_hz``: bursts of ON (rising) then OFF (falling) events on a random
    ``fraction`` of the pixels, and frame gain modulated by ``depth`` at the exposure's phase."""
    rng = np.random.default_rng(seed)
    period = int(1e9 / freq_hz)
    pix = rng.choice(s.width * s.height, size=max(1, int(fraction * s.width * s.height)), replace=False)
    chunks = []
    for t0 in range(start, end, period):
        for polarity, phase in ((1, 0), (0, period // 2)):
            spread = rng.integers(0, max(period // 8, 1), len(pix))
            chunks.append(make_events(pix % s.width, pix // s.width, t0 + phase + spread, np.full(len(pix), polarity)))
    extra = concat_events(chunks)
    extra = extra[extra["t"] < end]
    images = s.frames.images.astype(np.float32)
    inside = _in(s.frames.stamps, start, end)
    gain = 1.0 + depth * np.sin(2 * np.pi * freq_hz * (s.frames.stamps[inside] - start) * 1e-9)
    images[inside] *= gain[:, None, None]
    frames = FrameStream(s.frames.stamps.copy(), np.clip(np.round(images), 0, 255).astype(np.uint8))
    return s.with_(events=_merge(s.events, extra), frames=frames), FaultInterval("flicker", start, end,
                                                                                 f"{freq_hz:g} Hz", "both")


def replay(s: EventFrameStreams, start: int, end: int, lookback_ms: float):
    """The frames in [start, end) show the images of the stretch ``lookback_ms`` earlier, in order (looped)."""
    stamps = s.frames.stamps
    images = s.frames.images.copy()
    inside = np.flatnonzero(_in(stamps, start, end))
    source = np.searchsorted(stamps, stamps[inside] - int(lookback_ms * MS))
    ok = (source >= 0) & (source < len(stamps))
    images[inside[ok]] = s.frames.images[source[ok]]
    return s.with_(frames=FrameStream(stamps.copy(), images)), FaultInterval("replay", start, end,
                                                                             f"{lookback_ms:g} ms back", "frames")


def splice(s: EventFrameStreams, start: int, end: int, other: EventFrameStreams):
    """Frames in [start, end) taken from ``other`` (another recording), frame for frame from its beginning."""
    images = s.frames.images.copy()
    inside = np.flatnonzero(_in(s.frames.stamps, start, end))
    n = min(len(inside), len(other.frames))
    if other.frames.images.shape[1:] != images.shape[1:]:
        raise ValueError("splice: the other recording's frames differ in size")
    images[inside[:n]] = other.frames.images[:n]
    return s.with_(frames=FrameStream(s.frames.stamps.copy(), images)), FaultInterval("splice", start, end,
                                                                                      "other recording", "frames")


def time_jump(s: EventFrameStreams, start: int, jump_ms: float):
    """Event times from ``start`` on jump by ``jump_ms`` (forward: a silence then shifted events; the events'
    clock stays off until the end, which is the ground-truth interval)."""
    ev = s.events.copy()
    later = ev["t"] >= start
    ev["t"][later] += int(jump_ms * MS)
    if jump_ms < 0:  # a clock set back: the receiver sees time running backwards once, then keeps it
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return s.with_(events=ev), FaultInterval("time_jump", start, s.end_ns + abs(int(jump_ms * MS)) + 1,
                                             f"{jump_ms:g} ms", "events")


def blinding(s: EventFrameStreams, start: int, end: int, seed: int = 0):
    """A strong light: frames saturate; the event camera answers with one ON burst on most pixels at the onset
    and is then nearly silent (no contrast left to see)."""
    rng = np.random.default_rng(seed)
    images = s.frames.images.copy()
    inside = _in(s.frames.stamps, start, end)
    images[inside] = np.clip(images[inside].astype(np.int32) * 4 + 200, 0, 255).astype(np.uint8)
    keep = ~_in(s.events["t"], start, end) | (rng.random(len(s.events)) < 0.02)
    pix = rng.choice(s.width * s.height, size=int(0.8 * s.width * s.height), replace=False)
    burst = make_events(pix % s.width, pix // s.width, start + rng.integers(0, 3 * MS, len(pix)), np.ones(len(pix)))
    return (s.with_(events=_merge(s.events[keep], burst), frames=FrameStream(s.frames.stamps.copy(), images)),
            FaultInterval("blinding", start, end, "-", "both"))


# The grid of faults and severities the evaluation runs: (kind, function, keyword arguments per severity).
FRAME_EVENT_FAULTS = {
    "offset": [dict(offset_ms=v) for v in (5, 10, 20, 50, 100)],
    "drift": [dict(ppm=v) for v in (20_000, 100_000)],
    "frozen": [{}],
    "frame_stall": [{}],
    "event_gap": [{}],
    "hot_pixels": [dict(count=20, rate_hz=500.0), dict(count=200, rate_hz=2000.0)],
    "event_storm": [dict(rate=5.0), dict(rate=50.0)],
    "flicker": [dict(freq_hz=100.0)],
    "replay": [dict(lookback_ms=200.0)],
    "splice": [{}],
    "time_jump": [dict(jump_ms=200.0)],
    "blinding": [{}],
}
EVENT_ONLY_FAULTS = ("event_gap", "hot_pixels", "event_storm", "flicker", "time_jump")
INJECTORS = {"offset": offset, "drift": drift, "frozen": frozen, "frame_stall": frame_stall, "event_gap": event_gap,
             "hot_pixels": hot_pixels, "event_storm": event_storm, "flicker": flicker, "replay": replay,
             "splice": splice, "time_jump": time_jump, "blinding": blinding}


def inject(kind: str, s: EventFrameStreams, start: int, end: int, other: EventFrameStreams | None = None, **kwargs):
    """Dispatch by name (time_jump ignores ``end``; splice needs ``other``)."""
    if kind == "time_jump":
        return time_jump(s, start, **kwargs)
    if kind == "splice":
        if other is None:
            raise ValueError("splice needs another recording")
        return splice(s, start, end, other)
    return INJECTORS[kind](s, start, end, **kwargs)

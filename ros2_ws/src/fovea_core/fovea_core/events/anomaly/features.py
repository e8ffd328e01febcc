"""Sync features: per frame step k, how well the event activity around [t_{k-1} + delta, t_k + delta) matches
the frame change between frames k-1 and k, for delta in {-D, ..., +D} x ``offset_step_ns``.

Both extractors start from the same per-step inputs (:class:`StepInputs`):

* per patch of a ``grid`` over the sensor, ON and OFF event counts in the step window shifted by each offset,
  read from :class:`EventCounts`: every event is put in its (polarity, patch) cell and 1 ms bin once, when
  it arrives, into running prefix sums over time, so any window is two lookups and all 2D + 1 shifted
  windows of a step are one gather;
* per patch, the mean positive and negative change of log intensity between the two frames
  (:class:`FramePatches`: log intensity by a 256-entry table, once per frame; patch sums by ``reduceat``).

Windows are exact: the counts of [a, b) are those of the events with a <= t < b, for any edges in ns.

The classical extractor (:func:`classical_distribution`) is AVAD's idea with a hand-made similarity:
normalised cross-correlation across patches between event counts and the log-intensity change at each offset,
turned into a distribution with a softmax of temperature ``temperature``. Polarity is kept apart (ON counts
against the brightening, OFF counts against the darkening, one vector of 2P): on the real DAVIS346 clip that
brought the spread of the argmax offset from 13 ms (unsigned counts against |delta log I|) to 4 ms, at 32 x 24
patches (8 x 6 patches: 18 ms), because static texture produces activity at every offset and only the sign
and place of the change pin the time down. Without a defined correlation (no events,
a frozen or uniform frame) every offset scores 0: the distribution is uniform, which is itself a signal.
The learned extractor lives in :mod:`fovea_core.events.anomaly.sync_net`.

Events-only streams (no frames, e.g. the libcaer bag) have no offsets to compare; their per-step observation is
the distribution of event activity over the patches (:func:`activity_distribution`), on a fixed step clock.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

SUB_BIN_NS = 1_000_000  # bins of the prefix sums (edges inside a bin are resolved from the events kept)
MAX_SPAN_NS = 4_000_000_000  # EventCounts keeps at most this much history (a longer frame step is a stall)


@dataclass(frozen=True)
class FeatureConfig:
    grid: tuple[int, int] = (32, 24)  # patches across x, y
    max_offset_bins: int = 15  # D: offsets -D..D, 2D + 1 = 31 as in AVAD
    offset_step_ns: int = 5_000_000
    temperature: float = 0.1  # classical softmax temperature (NCC units)
    log_eps: float = 0.02  # intensity floor (of 1.0) before the log

    @property
    def num_offsets(self) -> int:
        return 2 * self.max_offset_bins + 1

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def horizon_ns(self) -> int:
        """How far beyond a frame stamp events are needed before that step can be scored."""
        return self.max_offset_bins * self.offset_step_ns + SUB_BIN_NS

    def offsets_ns(self) -> np.ndarray:
        return np.arange(-self.max_offset_bins, self.max_offset_bins + 1, dtype=np.int64) * self.offset_step_ns


@dataclass
class StepInputs:
    counts: np.ndarray  # (num_offsets, 2, P) float32: OFF, ON events per patch in each shifted window
    change: np.ndarray  # (2, P) float32: mean positive / negative delta log intensity per patch
    stamp_ns: int  # frame k's stamp (the step is scored at this time)
    interval_ns: int  # t_k - t_{k-1}
    events_in_step: int  # unshifted window
    # the same counts over windows of the camera's usual length ending at t_k (None: the step's own windows)
    nominal_counts: np.ndarray | None = None

    @property
    def nominal(self) -> np.ndarray:
        return self.counts if self.nominal_counts is None else self.nominal_counts


def patch_of(size: int, patches: int) -> np.ndarray:
    """Patch index along one axis for every possible uint16 coordinate (beyond the sensor: the last patch)."""
    coord = np.arange(1 << 16, dtype=np.int64)
    return np.minimum(coord * patches // max(size, 1), patches - 1)


class _Tail:
    """A growable array that is appended at the end and cut at the front (no copy of the whole per append)."""

    def __init__(self, dtype) -> None:
        self.data = np.zeros(0, dtype)
        self.head = self.size = 0

    def view(self) -> np.ndarray:
        return self.data[self.head:self.head + self.size]

    def append(self, values: np.ndarray) -> None:
        if self.head + self.size + len(values) > len(self.data):
            kept = self.view().copy()
            if self.size + len(values) > len(self.data) // 2:
                self.data = np.zeros(2 * (self.size + len(values)) + 1024, self.data.dtype)
            self.data[:self.size] = kept
            self.head = 0
        self.data[self.head + self.size:self.head + self.size + len(values)] = values
        self.size += len(values)

    def drop_front(self, n: int) -> None:
        n = min(n, self.size)
        self.head += n
        self.size -= n


class EventCounts:
    """Events per (polarity, patch) cell, counted once when they arrive, so that the counts of any window
    [a, b) are cheap: ``N(b) - N(a)`` with ``N(t)`` the events per cell before ``t``.

    ``N(t)`` = a row of running prefix sums over 1 ms bins (the events of the bins before t's bin) plus the
    events of t's own bin that are before t, taken from the kept (time, cell) list of recent events; so edges
    are exact to the nanosecond, and the 2 x (2D + 1) edges of a step cost two gathers and one small bincount.

    Events are pushed in time order (a driver's packets); one older than an event already pushed is counted
    at that newer event's time. History older than ``max_span_ns`` before the newest event is dropped (memory
    stays bounded while a frame stream stalls); a window reaching back further counts only what is kept.
    """

    def __init__(self, width: int, height: int, grid: tuple[int, int], max_span_ns: int = MAX_SPAN_NS) -> None:
        gx, gy = grid
        self.num_patches = gx * gy
        self.num_cells = 2 * self.num_patches
        self._cell_x = patch_of(width, gx).astype(np.int32)
        self._cell_y = (patch_of(height, gy) * gx).astype(np.int32)
        self._max_span_bins = max(1, int(max_span_ns // SUB_BIN_NS))
        self._table = np.zeros((0, self.num_cells), np.int32)
        self._head = 0  # row of the table that is bin self._first_bin
        self._rows = 0  # valid rows from the head: bins first_bin .. first_bin + rows - 1
        self._first_bin: int | None = None
        self._times, self._cells = _Tail(np.int64), _Tail(np.int32)
        self.latest_ns: int | None = None

    # ---- input --------------------------------------------------------------------------------------------
    def cells(self, events: np.ndarray) -> np.ndarray:
        return (self._cell_x[events["x"]] + self._cell_y[events["y"]]
                + self.num_patches * (events["p"] > 0).astype(np.int32))

    def push(self, events: np.ndarray) -> None:
        if len(events) == 0:
            return
        times = np.asarray(events["t"], np.int64)
        if self.latest_ns is not None:
            times = np.maximum(times, self.latest_ns)
        times = np.maximum.accumulate(times)  # out of order: counted at the newest time seen
        cells = self.cells(events)
        bins = times // SUB_BIN_NS
        last_bin = int(bins[-1])
        self.latest_ns = int(times[-1])
        if self._first_bin is not None and last_bin - self._open_bin > self._max_span_bins:
            self._first_bin = None  # a silence longer than the history kept: none of the old rows is needed
        if int(bins[0]) < last_bin - self._max_span_bins:  # beyond the history kept anyway
            keep = bins >= last_bin - self._max_span_bins
            times, cells, bins = times[keep], cells[keep], bins[keep]
        if self._first_bin is None:
            self._first_bin, self._head, self._rows = int(bins[0]), 0, 0
            self._ensure(1)
            self._table[0] = 0
            self._rows = 1
            self._times.drop_front(self._times.size)
            self._cells.drop_front(self._cells.size)
        open_bin = self._open_bin
        n = last_bin - open_bin  # rows to append after the last one
        # cell-major, so that the running sum over time runs along contiguous memory (numpy's cumsum along
        # the first axis of a row-major array is several times slower)
        hist = np.bincount(cells * (n + 1) + (bins - open_bin),
                           minlength=(n + 1) * self.num_cells).reshape(self.num_cells, n + 1)
        self._ensure(self._rows + n)
        last = self._head + self._rows - 1  # the row that includes the open bin's events so far
        np.cumsum(hist, axis=1, out=hist)
        self._table[last:last + n + 1] = self._table[last] + hist.T
        self._rows += n
        self._times.append(times)
        self._cells.append(cells)
        self.trim(self.latest_ns - self._max_span_bins * SUB_BIN_NS)

    @property
    def _open_bin(self) -> int:
        """The newest bin whose events the last row includes (more of them may still come)."""
        return self._first_bin + self._rows - 2

    def _ensure(self, rows: int) -> None:
        if self._head + rows <= len(self._table):
            return
        valid = self._table[self._head:self._head + self._rows]
        # moved to the front and rebased (differences are all that is read; int32 stays far from overflow)
        moved = valid - valid[0] if self._rows else valid
        if rows > len(self._table) // 2:
            self._table = np.zeros((2 * rows + 256, self.num_cells), np.int32)
        self._table[:self._rows] = moved
        self._head = 0

    def trim(self, before_ns: int) -> None:
        """Forget the bins before the one of ``before_ns`` (windows starting earlier count from there)."""
        if self._first_bin is None:
            return
        drop = int(np.clip(int(before_ns) // SUB_BIN_NS - self._first_bin, 0, self._rows - 1))
        self._head += drop
        self._first_bin += drop
        self._rows -= drop
        kept_from = self._first_bin * SUB_BIN_NS
        self._times.drop_front(int(np.searchsorted(self._times.view(), kept_from)))
        self._cells.drop_front(self._cells.size - self._times.size)

    # ---- windows ------------------------------------------------------------------------------------------
    def before(self, t_ns) -> np.ndarray:
        """N(t): events per cell before each time of ``t_ns`` (k,) -> (k, 2P) int64, since the kept history."""
        t_ns = np.asarray(t_ns, np.int64).reshape(-1)
        if self._first_bin is None:
            return np.zeros((len(t_ns), self.num_cells), np.int64)
        bins = t_ns // SUB_BIN_NS
        rows = np.clip(bins - self._first_bin, 0, self._rows - 1)
        out = self._table[self._head + rows].astype(np.int64)
        # the events of each time's own bin that come before it
        times = self._times.view()
        lo = np.searchsorted(times, np.maximum(bins, self._first_bin) * SUB_BIN_NS)
        hi = np.maximum(np.searchsorted(times, t_ns), lo)
        lengths = hi - lo
        total = int(lengths.sum())
        if total:
            which = np.repeat(np.arange(len(t_ns)), lengths)
            index = np.arange(total) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
            out += np.bincount(which * self.num_cells + self._cells.view()[index],
                               minlength=len(t_ns) * self.num_cells).reshape(len(t_ns), self.num_cells)
        return out

    def window(self, t_start, t_end) -> np.ndarray:
        """Events per cell in [t_start, t_end): scalars -> (2P,), arrays of k edges -> (k, 2P); int64."""
        k = np.size(t_start)
        both = self.before(np.concatenate([np.reshape(t_start, -1), np.reshape(t_end, -1)]))
        counts = both[k:] - both[:k]
        return counts[0] if np.ndim(t_start) == 0 else counts

    def total(self, t_start: int, t_end: int) -> int:
        return int(self.window(t_start, t_end).sum())


class FramePatches:
    """Per-patch statistics of frames of one size: log intensity by a table (``log(I / 255 + eps)`` for each
    of the 256 grey values), patch sums as products with the 0/1 matrices of the patches' rows and columns
    (one BLAS call; faster than ``reduceat`` or ``bincount`` over the pixels here)."""

    def __init__(self, width: int, height: int, cfg: "FeatureConfig") -> None:
        gx, gy = cfg.grid
        self.shape, self.grid = (height, width), (gx, gy)
        grey = np.arange(256, dtype=np.float32)
        self.log_table = np.log(grey / 255.0 + cfg.log_eps).astype(np.float32)
        # images and events may differ in resolution: patches are fractions of each one's own size
        self._row_of = np.zeros((gy, height), np.float32)
        self._row_of[patch_of(height, gy)[:height], np.arange(height)] = 1.0
        self._col_of = np.zeros((width, gx), np.float32)
        self._col_of[np.arange(width), patch_of(width, gx)[:width]] = 1.0
        pixels = np.outer(self._row_of.sum(axis=1), self._col_of.sum(axis=0)).ravel()
        self._pixels = np.maximum(pixels, 1.0).astype(np.float32)

    def log_intensity(self, image: np.ndarray) -> np.ndarray:
        return np.take(self.log_table, image)

    def change(self, log_previous: np.ndarray, log_current: np.ndarray) -> np.ndarray:
        """(2, P): per patch, mean of max(d, 0) and of max(-d, 0) for d = log I_k - log I_{k-1}."""
        d = log_current - log_previous
        brighter = (self._row_of @ np.maximum(d, 0.0) @ self._col_of).ravel()
        net = (self._row_of @ d @ self._col_of).ravel()
        # max(-d, 0) = max(d, 0) - d
        return np.stack([brighter, np.maximum(brighter - net, 0.0)]) / self._pixels


class StepExtractor:
    """The per-step inputs of one event + frame stream pair: events go in as they arrive
    (:meth:`push_events`), each frame's log intensity is computed once (:meth:`frame`), a step is two frames,
    taken in stream order (:meth:`step`).

    Each step is measured twice: over [t_{k-1} + delta, t_k + delta), and over windows of the camera's usual
    frame interval ending at t_k (the median of the last ``NOMINAL_HISTORY`` step intervals). The two agree
    while the frame clock runs evenly; when frame k arrives with a stamp that jumped (a clock offset setting
    in), only the second, anchored at frame k, shows at that very step that the frame is late against the
    events, and when the interval is long (a stall), the first covers the whole change. Within 1 ms of the
    usual interval the second is the first."""

    NOMINAL_HISTORY = 20

    def __init__(self, width: int, height: int, cfg: "FeatureConfig", max_span_ns: int = MAX_SPAN_NS) -> None:
        self.cfg, self.width, self.height = cfg, width, height
        self.events = EventCounts(width, height, cfg.grid, max_span_ns)
        self._frames: dict[tuple[int, int], FramePatches] = {}
        self._offsets = cfg.offsets_ns()
        self._intervals: deque = deque(maxlen=self.NOMINAL_HISTORY)

    def push_events(self, events: np.ndarray) -> None:
        self.events.push(events)

    def frame(self, image: np.ndarray) -> tuple[FramePatches, np.ndarray]:
        """What a step needs of one frame (its patch layout, its log intensity)."""
        shape = image.shape[:2]
        patches = self._frames.get(shape)
        if patches is None:
            patches = self._frames[shape] = FramePatches(shape[1], shape[0], self.cfg)
        return patches, patches.log_intensity(image)

    def shifted_counts(self, t_start: int, t_end: int) -> np.ndarray:
        """(num_offsets, 2, P) events per polarity and patch in [t_start + delta, t_end + delta)."""
        counts = self.events.window(t_start + self._offsets, t_end + self._offsets)
        return counts.reshape(len(self._offsets), 2, self.events.num_patches).astype(np.float32)

    def step(self, t_prev: int, frame_prev, t_now: int, frame_now) -> StepInputs:
        """``frame_prev`` / ``frame_now``: results of :meth:`frame`."""
        (patches, log_prev), (patches_now, log_now) = frame_prev, frame_now
        if patches is not patches_now:
            raise ValueError(f"frames of two sizes in one step: {patches.shape} and {patches_now.shape}")
        t_prev, t_now = int(t_prev), int(t_now)
        interval = t_now - t_prev
        nominal = int(np.median(self._intervals)) if self._intervals else interval
        self._intervals.append(interval)
        counts = self.shifted_counts(t_prev, t_now)
        nominal_counts = None if abs(nominal - interval) < SUB_BIN_NS else self.shifted_counts(t_now - nominal, t_now)
        return StepInputs(counts, patches.change(log_prev, log_now).astype(np.float32), t_now, interval,
                          int(counts[self.cfg.max_offset_bins].sum()), nominal_counts)


def ncc_per_offset(inputs: StepInputs, nominal: bool = False) -> np.ndarray:
    """(num_offsets,) normalised cross-correlation across patches of (ON, OFF) counts and (brightening,
    darkening), all offsets in one matrix product (``nominal``: of the nominal-length windows)."""
    counts = inputs.nominal if nominal else inputs.counts
    c = np.concatenate([counts[:, 1], counts[:, 0]], axis=1)  # (O, 2P)
    f = np.concatenate([inputs.change[0], inputs.change[1]])  # (2P,)
    c = c - c.mean(axis=1, keepdims=True)
    f = f - f.mean()
    denom = np.linalg.norm(c, axis=1) * np.linalg.norm(f)
    return np.where(denom > 1e-9, (c @ f) / np.maximum(denom, 1e-12), 0.0).astype(np.float32)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def classical_distribution(inputs: StepInputs, cfg: FeatureConfig, nominal: bool = False) -> np.ndarray:
    return softmax(ncc_per_offset(inputs, nominal), cfg.temperature)


def argmax_lag_bins(inputs: StepInputs, cfg: FeatureConfig) -> int:
    """The rule baseline's measurement: the offset (in bins) of the highest cross-correlation."""
    return int(np.argmax(ncc_per_offset(inputs))) - cfg.max_offset_bins


def activity_distribution(counts: EventCounts, t_start: int, t_end: int, floor: float = 0.5) -> np.ndarray:
    """(P,) share of the window's events per patch of ``counts``' grid, with ``floor`` pseudo-events per patch
    (an empty window is uniform)."""
    cells = counts.window(t_start, t_end)
    per_patch = cells[:counts.num_patches] + cells[counts.num_patches:] + floor
    return (per_patch / per_patch.sum()).astype(np.float32)


def expected_offset_ms(distribution: np.ndarray, cfg: FeatureConfig) -> float:
    """The frame-stream lag the distribution points at (its argmax), in ms: frames stamped ``L`` late match the
    events ``L`` earlier, i.e. an offset of -L; positive = frames late against events."""
    return float(-(int(np.argmax(distribution)) - cfg.max_offset_bins) * cfg.offset_step_ns / 1e6)

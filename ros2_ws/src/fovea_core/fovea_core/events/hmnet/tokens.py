"""Event tokens for Event Sparse Cross Attention (ESCA).

Every event of a window falls into one fast-memory cell (stride x stride pixels). Its token id encodes what the
embedding sees: discretised time within the window, polarity and position inside the cell. A cell keeps its
latest ``max_events_per_cell`` events; id 0 marks an empty slot.
"""
from __future__ import annotations

import numpy as np


def num_token_ids(stride: int, time_bins: int) -> int:
    return 1 + time_bins * 2 * stride * stride


def window_tokens(events: np.ndarray, t_start: int, window_ns: int, width: int, height: int, stride: int,
                  time_bins: int, max_per_cell: int) -> np.ndarray:
    """(cells, max_per_cell) int64 token ids for the events in [t_start, t_start + window_ns)."""
    cw, ch = width // stride, height // stride
    out = np.zeros((ch * cw, max_per_cell), dtype=np.int64)
    t = events["t"]
    ev = events[(t >= t_start) & (t < t_start + window_ns) & (events["x"] < cw * stride) & (events["y"] < ch * stride)]
    if len(ev) == 0:
        return out
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    cell = (y // stride) * cw + x // stride
    local = (y % stride) * stride + x % stride
    tbin = (ev["t"].astype(np.int64) - t_start) * time_bins // window_ns
    ids = 1 + (tbin * 2 + (ev["p"] > 0)) * stride * stride + local
    order = np.lexsort((-ev["t"], cell))  # by cell, newest first
    cell, ids = cell[order], ids[order]
    first = np.searchsorted(cell, cell, side="left")
    rank = np.arange(len(cell)) - first
    keep = rank < max_per_cell
    out[cell[keep], rank[keep]] = ids[keep]
    return out


def sequence_tokens(events: np.ndarray, window_end_ns: np.ndarray, window_ns: int, width: int, height: int,
                    stride: int, time_bins: int, max_per_cell: int) -> np.ndarray:
    """(T, cells, K) tokens for consecutive windows ending at ``window_end_ns``."""
    bounds = np.searchsorted(events["t"], np.concatenate(([window_end_ns[0] - window_ns], window_end_ns)))
    return np.stack([window_tokens(events[bounds[i]:bounds[i + 1]], int(end) - window_ns, window_ns, width, height,
                                   stride, time_bins, max_per_cell) for i, end in enumerate(window_end_ns)])

"""Per-source state held as arrays (one row per source), updated for a whole batch at once.

A batch mixes many sources; events of one source must still be processed in order. ``Groups``
sorts a batch by source (stably) and ``extend`` lays each source's history followed by its new
values into one flat array, so windows, running maxima and suppression look-backs become numpy
slicing instead of Python loops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view


@dataclass
class Groups:
    """A batch's events grouped by source row, arrival order kept inside each group."""

    order: np.ndarray  # event indices sorted by (source row, arrival)
    rows: np.ndarray  # source row of each group
    counts: np.ndarray  # events per group
    starts: np.ndarray  # offset of each group in ``order``
    gid: np.ndarray  # group of each event (in ``order`` position)
    rank: np.ndarray  # rank of each event within its group (in ``order`` position)

    @classmethod
    def of(cls, rows: np.ndarray) -> Groups:
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        uniq, starts, counts = np.unique(srt, return_index=True, return_counts=True)
        gid = np.repeat(np.arange(uniq.size), counts)
        rank = np.arange(srt.size) - starts[gid]
        return cls(order, uniq, counts, starts, gid, rank)


def extend(hist: np.ndarray, groups: Groups, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat array of [each group's history, then its new values] and the position of each new
    value in it. ``hist`` is [groups, H, ...] (history per group); ``values`` is in
    ``groups.order``."""
    h = hist.shape[1]
    seg = h + groups.counts
    seg_start = np.concatenate([[0], np.cumsum(seg)[:-1]])
    ext = np.empty((int(seg.sum()),) + hist.shape[2:], dtype=hist.dtype)
    hpos = (seg_start[:, None] + np.arange(h)).ravel()
    ext[hpos] = hist.reshape((-1,) + hist.shape[2:])
    vpos = seg_start[groups.gid] + h + groups.rank
    ext[vpos] = values
    return ext, vpos


def store_tail(hist: np.ndarray, groups: Groups, ext: np.ndarray, vpos: np.ndarray) -> None:
    """Write back each group's last H rows of ``ext`` as its source's new history."""
    h = hist.shape[1]
    ends = vpos[groups.starts + groups.counts - 1] + 1
    idx = ends[:, None] - h + np.arange(h)
    hist[groups.rows] = ext[idx]


def windows_at(ext: np.ndarray, vpos: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` rows of ``ext`` ending at each position (inclusive): [n, length, ...]."""
    view = sliding_window_view(ext, length, axis=0)  # [L-length+1, ..., length]
    w = view[vpos - length + 1]
    return np.moveaxis(w, -1, 1)


@njit(cache=True)
def normalised_windows(ext: np.ndarray, vpos: np.ndarray, order: np.ndarray, lo: np.ndarray,
                       scale: np.ndarray, length: int) -> np.ndarray:
    """``windows_at(ext, vpos, length)`` put at rows ``order`` of a float32 [n, length, C]
    array, minus ``lo`` and divided by ``scale`` (per output row): one pass instead of a
    gather, a scatter and two in-place passes. Rounds exactly as numpy does with float32
    windows and float64 ranges (float32 value, float64 arithmetic, float32 after each step)."""
    n, c = vpos.size, ext.shape[1]
    out = np.empty((n, length, c), dtype=np.float32)
    for j in range(n):
        dst = order[j]
        first = vpos[j] - length + 1
        for k in range(c):
            low, span = lo[dst, k], scale[dst, k]
            for w in range(length):
                x = np.float64(np.float32(ext[first + w, k]))
                y = np.float64(np.float32(x - low))
                out[dst, w, k] = np.float32(y / span)
    return out


def grouped_cummax_before(init: np.ndarray, groups: Groups, values: np.ndarray) -> np.ndarray:
    """For each event, the max of its source's ``init`` and of the values before it in the batch.

    ``init`` is [groups, ...], ``values`` [n, ...] in ``groups.order``; NaN counts as -inf.
    """
    ext, vpos = extend(init[:, None], groups, values)
    ext = np.where(np.isnan(ext), -np.inf, ext)
    seg_id = np.zeros(ext.shape[0], dtype=np.int64)
    seg_id[vpos[groups.starts] - 1] = 1
    seg_id = np.cumsum(seg_id) - 1
    flat = ext.reshape(ext.shape[0], -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):  # one pass per channel, vectorised over events
        col = flat[:, j]
        srt = np.argsort(col, kind="stable")
        rank = np.empty(col.size, dtype=np.int64)
        rank[srt] = np.arange(col.size)
        key = seg_id * (col.size + 1) + rank
        cm = np.maximum.accumulate(key) - seg_id * (col.size + 1)
        out[:, j] = col[srt[cm]]
    out = out.reshape(ext.shape)
    picked: np.ndarray = out[vpos - 1]  # numpy's stubs type indexing as Any
    return picked


class Growing:
    """A set of per-source arrays that grow (doubling) as new sources appear."""

    def __init__(self, specs: Mapping[str, tuple[tuple[int, ...], type, float]]) -> None:
        self._specs = specs
        self._cap = 0
        self.size = 0
        self.arrays: dict[str, np.ndarray] = {}
        self._resize(16)

    def _resize(self, cap: int) -> None:
        for name, (shape, dtype, fill) in self._specs.items():
            new: np.ndarray = np.full((cap,) + shape, fill, dtype=dtype)
            old = self.arrays.get(name)
            if old is not None:
                new[: self.size] = old[: self.size]
            self.arrays[name] = new
        self._cap = cap

    def add(self, count: int) -> np.ndarray:
        """Reserve rows for ``count`` new sources; returns their row indices."""
        if self.size + count > self._cap:
            cap = self._cap
            while self.size + count > cap:
                cap *= 2
            self._resize(cap)
        rows = np.arange(self.size, self.size + count)
        self.size += count
        return rows

    def truncate(self, size: int) -> None:
        """Forget the rows from ``size`` on (their arrays go back to the fill values, so a row
        reserved later starts clean)."""
        for name, (_, _, fill) in self._specs.items():
            self.arrays[name][size : self.size] = fill
        self.size = min(self.size, size)

    def rows_copy(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """A copy of ``rows`` of every array (``restore_rows`` puts it back)."""
        return {name: arr[rows].copy() for name, arr in self.arrays.items()}

    def restore_rows(self, rows: np.ndarray, saved: dict[str, np.ndarray]) -> None:
        for name, arr in saved.items():
            self.arrays[name][rows] = arr

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            arr: np.ndarray = self.__dict__["arrays"][name]
            return arr
        except KeyError:
            raise AttributeError(name) from None

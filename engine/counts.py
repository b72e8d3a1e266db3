"""An in-memory count table keyed by 64-bit pattern keys (the keys and their hashes:
``engine/keys.py``).

Pattern counts are looked up and incremented tens of keys per event and millions per second, so
the hash works on whole numpy arrays and the table's loops are compiled with numba.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from neurogate.engine.keys import EMPTY, NCOLS

# Highest share of slots in use before the table doubles. 0.7 instead of 0.5: linear probing
# stays short (about 2.2 probes per lookup of a present key) and a key costs ~1.4x fewer bytes.
MAX_LOAD = 0.7
# A table that tracks changes keeps beside its NCOLS counts the part not stored yet, in 32 bits
# (a slot is 45 bytes instead of 57 with the stored part in 64): the deltas of one commit
# interval, far below 2**31 unless a key takes 2**31 events between two flushes. An upper bound
# of the deltas guards it: before an addition could pass DELTA_MAX the deltas widen to 64 bits,
# until the next ``mark_stored``.
DELTA_MAX = int(np.iinfo(np.int32).max)


@njit(cache=True)
def _probe(tkeys: np.ndarray, key: np.uint64) -> np.int64:
    """Slot of ``key``, or of the empty slot where it would go (linear probing)."""
    mask = np.int64(tkeys.size - 1)
    slot = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(mask))
    t = tkeys[slot]
    while t != key and t != EMPTY:  # (not `t in (key, EMPTY)`: numba makes that 3x slower)
        slot = (slot + np.int64(1)) & mask
        t = tkeys[slot]
    return slot


@njit(cache=True)
def _get(tkeys: np.ndarray, tvals: np.ndarray, tused: np.ndarray, keys: np.ndarray,
         out: np.ndarray) -> None:
    for i in range(keys.size):
        slot = _probe(tkeys, keys[i])
        if tkeys[slot] == keys[i]:
            tused[slot] = 1
            for j in range(NCOLS):
                out[i, j] = tvals[slot, j]
        else:
            for j in range(NCOLS):
                out[i, j] = 0


@njit(cache=True)
def _add_rows(tkeys: np.ndarray, tvals: np.ndarray, tdelta: np.ndarray, keys: np.ndarray,
              deltas: np.ndarray, to_counts: bool, to_delta: bool) -> int:
    """counts[keys[i, c]] += deltas[i] for all i, c (if ``to_counts``), and the same to the
    part not stored (if ``to_delta``: a tracking table's changes), inserting new keys; returns
    how many keys were new."""
    new = 0
    m, k = keys.shape
    for i in range(m):
        for c in range(k):
            slot = _probe(tkeys, keys[i, c])
            if tkeys[slot] == EMPTY:
                tkeys[slot] = keys[i, c]
                new += 1
            for j in range(NCOLS):
                if to_counts:
                    tvals[slot, j] += deltas[i, j]
                if to_delta:
                    tdelta[slot, j] += deltas[i, j]
    return new


@njit(cache=True)
def _score_then_add(
    tkeys: np.ndarray, tvals: np.ndarray, tdelta: np.ndarray, tused: np.ndarray,
    keys: np.ndarray, deltas: np.ndarray, out: np.ndarray
) -> int:
    """Event by event: read the counts of its keys, then add its deltas (prequential). The hot
    loop of the engine, so the probes are written out here rather than calling ``_probe``."""
    new = 0
    m, k = keys.shape
    mask = np.int64(tkeys.size - 1)
    track = tdelta.shape[0] > 0
    slots = np.empty(k, dtype=np.int64)
    for i in range(m):
        for c in range(k):  # read every key first: duplicates in one event all read "before"
            key = keys[i, c]
            slot = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(mask))
            t = tkeys[slot]
            while t != key and t != EMPTY:
                slot = (slot + np.int64(1)) & mask
                t = tkeys[slot]
            slots[c] = slot
            for j in range(NCOLS):
                out[i, c, j] = tvals[slot, j] if t == key else 0
        for c in range(k):
            key = keys[i, c]
            slot = slots[c]
            t = tkeys[slot]
            if t != key:  # a new key; another new key of this event may have taken its slot
                while t != key and t != EMPTY:
                    slot = (slot + np.int64(1)) & mask
                    t = tkeys[slot]
                if t == EMPTY:
                    tkeys[slot] = key
                    new += 1
            tused[slot] = 1
            for j in range(NCOLS):
                tvals[slot, j] += deltas[i, j]
                if track:
                    tdelta[slot, j] += deltas[i, j]
    return new


class CountTable:
    """Open-addressing hash table: uint64 key -> int64[NCOLS] counts, loops compiled by numba.

    Linear probing at load factor <= ``MAX_LOAD``; the table doubles before it would pass that.
    Key 0 is reserved for empty slots (mix64 never returns it).

    With ``track_changes`` each slot also holds the part of its counts not stored elsewhere yet
    (``add`` adds to both, ``load`` to the counts only), so ``changes`` yields exactly what a
    store still lacks without a second table, i.e. one hash probe per key on the hot path
    instead of two; ``evict`` then drops keys whose counts are all stored (a store reads them
    back). A byte per slot marks the keys read or counted since the last eviction, which evicts
    the others first (CLOCK).
    """

    def __init__(self, capacity: int = 1 << 18, *, track_changes: bool = False) -> None:
        cap = 1 << max(4, int(capacity - 1).bit_length())
        self._track = track_changes
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._vals = np.zeros((cap, NCOLS), dtype=np.int64)
        self._delta = self._no_delta(cap)
        self._used = np.zeros(cap, dtype=np.uint8)
        self._size = 0
        # an upper bound of |delta| in any slot: the overflow guard's (see DELTA_MAX)
        self._delta_bound = 0

    def _no_delta(self, cap: int) -> np.ndarray:
        """Zero deltas for ``cap`` slots, 32-bit (none at all without tracking)."""
        return np.zeros((cap if self._track else 0, NCOLS), dtype=np.int32)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._vals.nbytes + self._delta.nbytes
                   + self._used.nbytes)

    def _reserve(self, extra: int) -> None:
        need = self._size + extra
        if need <= MAX_LOAD * self._keys.size:
            return
        while need > MAX_LOAD * self._keys.size:
            self._double()

    def _double(self) -> None:
        """Double the table in place: realloc (mremap for big arrays, no copy) and a rehash
        within the arrays. Moving the keys into new arrays instead held a compacted copy of
        them beside the new table (+66 MB at 1.47 million keys, a 45-byte slot)."""
        old = self._keys.size
        # (no other reference to the arrays may exist, which resize checks; new rows are zeros)
        self._keys.resize(2 * old)
        self._vals.resize((2 * old, NCOLS))
        self._used.resize(2 * old)
        if self._track:
            self._delta.resize((2 * old, NCOLS))
        _rehash_doubled(self._keys, self._vals, self._delta, self._used, old)

    def _guard(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        """Widen the deltas to 64 bits before adding ``deltas`` (one row per row of ``keys``
        [m, k]) could overflow them: a key gains at most k times the column's sum of |deltas|.
        The bound only grows between flushes; past DELTA_MAX it is first measured again."""
        if not self._track or self._delta.dtype == np.int64 or not deltas.size:
            return
        width = keys.shape[1] if keys.ndim == 2 else 1
        gain = width * int(np.abs(deltas).sum(axis=0).max())
        if self._delta_bound + gain > DELTA_MAX and self._delta.size:
            self._delta_bound = max(int(self._delta.max()), -int(self._delta.min()))
        self._delta_bound += gain
        if self._delta_bound > DELTA_MAX:
            self._delta = self._delta.astype(np.int64)

    def _rebuild(self, cap: int) -> None:
        """Move every key into new arrays of ``cap`` slots; the old ones go back to the system."""
        occ = self._keys != EMPTY
        keys, vals, used = self._keys[occ], self._vals[occ], self._used[occ]
        delta = self._delta[occ] if self._track else self._delta
        dtype = self._delta.dtype
        self._keys = self._vals = self._delta = self._used = None  # type: ignore[assignment]
        self._keys = np.zeros(cap, dtype=np.uint64)  # (the old arrays were freed first)
        self._vals = np.zeros((cap, NCOLS), dtype=np.int64)
        self._delta = self._no_delta(cap).astype(dtype, copy=False)
        self._used = np.zeros(cap, dtype=np.uint8)
        self._size = _add_rows(self._keys, self._vals, self._delta, keys[:, None], vals,
                               True, False)
        slots = _slots(self._keys, keys)
        self._used[slots] = used
        if self._track:
            self._delta[slots] = delta
        del keys, vals, used, delta, slots
        release_free_memory()

    def shrink(self) -> bool:
        """Halve the table while its keys would fill at most half of ``MAX_LOAD`` after it
        (so it does not grow back at once): after a burst of keys is evicted, its memory goes
        back to the system. Returns whether it shrank."""
        cap = self._keys.size
        while cap > 16 and self._size <= MAX_LOAD * cap / 4:
            cap //= 2
        if cap == self._keys.size:
            return False
        self._rebuild(cap)
        return True

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Counts [len(keys), NCOLS] for the given keys; absent keys read as zeros."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        out = np.empty((keys.size, NCOLS), dtype=np.int64)
        _get(self._keys, self._vals, self._used, keys, out)
        return out

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which keys have a slot (even if their counts are zero)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        return _contains(self._keys, keys)

    def add(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        """counts[key] += delta for every row (duplicate keys accumulate)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        deltas = np.ascontiguousarray(deltas, dtype=np.int64).reshape(keys.size, NCOLS)
        self._add(keys[:, None], deltas, to_counts=True, to_delta=self._track)

    def load(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Add counts read from a store: like ``add``, but already stored (not a change)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        counts = np.ascontiguousarray(counts, dtype=np.int64).reshape(keys.size, NCOLS)
        self._add(keys[:, None], counts, to_counts=True, to_delta=False)

    def _add(self, keys: np.ndarray, deltas: np.ndarray, *, to_counts: bool,
             to_delta: bool) -> None:
        _check_nonzero(keys)
        if to_delta:
            self._guard(keys, deltas)
        self._reserve(keys.size)
        self._size += _add_rows(self._keys, self._vals, self._delta, keys, deltas, to_counts,
                                to_delta)

    def changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, deltas, new) added since the last ``mark_stored``; ``new`` marks the keys
        with nothing stored yet (stored counts have n >= 1: every event adds to n)."""
        self._check_tracking()
        return _changes(self._keys, self._vals, self._delta)

    def mark_stored(self) -> None:
        """Everything counted so far is now stored: ``changes`` starts again from empty (and
        the deltas are 32-bit again)."""
        self._check_tracking()
        if self._delta.dtype == np.int32:
            self._delta.fill(0)
        else:
            self._delta = None  # type: ignore[assignment]  # freed before the new one
            self._delta = self._no_delta(self._keys.size)
        self._delta_bound = 0

    def unstore(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        """Undo part of a ``mark_stored`` whose write failed: those deltas are changes again."""
        self._check_tracking()
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        deltas = np.ascontiguousarray(deltas, dtype=np.int64).reshape(keys.size, NCOLS)
        self._add(keys[:, None], deltas, to_counts=False, to_delta=True)

    def _check_tracking(self) -> None:
        if not self._track:
            raise ValueError("this CountTable was made without track_changes=True")

    def add_rows(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        """counts[keys[i, j]] += deltas[i] for events i (keys [m, k], deltas [m, NCOLS])."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        deltas = np.ascontiguousarray(deltas, dtype=np.int64)
        self._add(keys, deltas, to_counts=True, to_delta=self._track)

    def score_then_add(self, keys: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """For events in order (keys [m, k], one delta row per event [m, NCOLS]): each event's
        counts as they were just before it, then its own deltas added. Returns [m, k, NCOLS]."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        deltas = np.ascontiguousarray(deltas, dtype=np.int64)
        _check_nonzero(keys)
        self._guard(keys, deltas)
        self._reserve(keys.size)
        out = np.empty(keys.shape + (NCOLS,), dtype=np.int64)
        self._size += _score_then_add(self._keys, self._vals, self._delta, self._used, keys,
                                      deltas, out)
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """All (keys, counts) currently held, in slot order."""
        occ = self._keys != EMPTY
        return self._keys[occ], self._vals[occ]

    def evict(self, target: int, pinned: Sequence[np.ndarray] = ()) -> int:
        """Drop keys whose counts are all stored (no change since ``mark_stored``) until at
        most ``target`` remain, those not read or counted since the last eviction first; never
        a key with changes, nor one in ``pinned`` (e.g. keys of a write not yet confirmed).
        Returns how many were dropped: fewer if too few keys may go."""
        self._check_tracking()
        if self._size <= target:
            return 0
        pin = np.zeros(self._keys.size, dtype=np.bool_)
        for keys in pinned:
            keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
            slots = _slots(self._keys, keys)
            pin[slots[self._keys[slots] == keys]] = True
        dropped = _evict(self._keys, self._vals, self._delta, self._used, pin,
                         self._size - target)
        self._size -= dropped
        return dropped

    def clear(self) -> None:
        self._keys[:] = EMPTY
        self._vals[:] = 0
        self._delta = self._no_delta(self._keys.size)
        self._used[:] = 0
        self._size = 0
        self._delta_bound = 0


def release_free_memory() -> None:
    """Hand memory that was freed back to the system (glibc keeps freed heap pages otherwise:
    arrays below its mmap threshold, which rises to 32 MB, live on the heap). No-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _load_libc()


def _check_nonzero(keys: np.ndarray) -> None:
    if (keys == EMPTY).any():
        raise ValueError("pattern key 0 is reserved (it marks empty slots); keys come from mix64")


@njit(cache=True)
def _slots(tkeys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Slot of each key (or of the empty slot where it would go)."""
    out = np.empty(keys.size, dtype=np.int64)
    for i in range(keys.size):
        out[i] = _probe(tkeys, keys[i])
    return out


@njit(cache=True)
def _evict(tkeys: np.ndarray, tvals: np.ndarray, tdelta: np.ndarray, tused: np.ndarray,
           pinned: np.ndarray, want: int) -> int:
    """Empty up to ``want`` slots whose counts are all stored (unused ones first,
    then used ones), clear every used mark, then move the remaining keys of each probe run
    back towards their home slot so that lookups still find them (in place, no new arrays)."""
    mask = np.int64(tkeys.size - 1)
    # A slot empty before the eviction: no key's probe run crosses it (MAX_LOAD < 1: one exists)
    start = np.int64(0)
    while tkeys[start] != EMPTY:
        start += 1
    dropped = 0
    for used in range(2):
        for slot in range(tkeys.size):
            if dropped >= want:
                break
            if (tkeys[slot] != EMPTY and tused[slot] == used and not pinned[slot]
                    and not _differs(tdelta[slot])):
                tkeys[slot] = EMPTY
                for j in range(NCOLS):
                    tvals[slot, j] = 0
                dropped += 1
    tused[:] = 0
    if dropped == 0:
        return 0
    # Re-insert every key in probe order from ``start``: each lands at or before its slot.
    for i in range(1, tkeys.size + 1):
        at = (start + np.int64(i)) & mask
        key = tkeys[at]
        if key == EMPTY:
            continue
        home = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(mask))
        while tkeys[home] != EMPTY and home != at:
            home = (home + np.int64(1)) & mask
        if home != at:
            tkeys[home] = key
            tkeys[at] = EMPTY
            for j in range(NCOLS):
                tvals[home, j] = tvals[at, j]
                tvals[at, j] = 0
                tdelta[home, j] = tdelta[at, j]
                tdelta[at, j] = 0
    return dropped


@njit(cache=True)
def _rehash_doubled(tkeys: np.ndarray, tvals: np.ndarray, tdelta: np.ndarray,
                    tused: np.ndarray, old: int) -> None:
    """Put every key of a table that grew from ``old`` slots to twice that (the upper half
    empty) at its place for the new size; its new home is its old one or that plus ``old``.
    Keys are taken out and put back in the old table's probe order from an empty slot (no
    probe run crosses it), so the slots a key's probe passes are done, or empty: from its old
    home it lands at or before its old slot, or in the upper half, which holds keys done only
    (and cannot fill up to its last slot before the keys of the old runs that wrapped around,
    which come last, like the slots they wrap into)."""
    mask = np.int64(tkeys.size - 1)
    track = tdelta.shape[0] > 0
    start = np.int64(0)
    while tkeys[start] != EMPTY:
        start += 1
    for i in range(1, old + 1):
        at = (start + np.int64(i)) % np.int64(old)
        key = tkeys[at]
        if key == EMPTY:
            continue
        tkeys[at] = EMPTY
        slot = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(mask))
        while tkeys[slot] != EMPTY:
            slot = (slot + np.int64(1)) & mask
        tkeys[slot] = key
        if slot == at:
            continue
        tused[slot] = tused[at]
        tused[at] = 0
        for j in range(NCOLS):
            tvals[slot, j] = tvals[at, j]
            tvals[at, j] = 0
            if track:
                tdelta[slot, j] = tdelta[at, j]
                tdelta[at, j] = 0


@njit(cache=True)
def _contains(tkeys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    out = np.zeros(keys.size, dtype=np.bool_)
    for i in range(keys.size):
        out[i] = tkeys[_probe(tkeys, keys[i])] == keys[i]
    return out


@njit(cache=True)
def _differs(delta: np.ndarray) -> bool:
    """Whether a slot's counts are not all stored (some delta is not zero)."""
    for j in range(NCOLS):  # noqa: SIM110 - numba compiles no generator expressions
        if delta[j] != 0:
            return True
    return False


@njit(cache=True)
def _changes(tkeys: np.ndarray, tvals: np.ndarray, tdelta: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, count deltas, nothing stored yet) of the slots with deltas, in two passes over
    the table (count, then fill)."""
    n = 0
    for slot in range(tkeys.size):
        if tkeys[slot] != EMPTY and _differs(tdelta[slot]):
            n += 1
    keys = np.empty(n, dtype=np.uint64)
    deltas = np.empty((n, NCOLS), dtype=np.int64)
    new = np.empty(n, dtype=np.bool_)
    i = 0
    for slot in range(tkeys.size):
        if tkeys[slot] != EMPTY and _differs(tdelta[slot]):
            keys[i] = tkeys[slot]
            for j in range(NCOLS):
                deltas[i, j] = tdelta[slot, j]
            new[i] = tvals[slot, 0] == tdelta[slot, 0]
            i += 1
    return keys, deltas, new

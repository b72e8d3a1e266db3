"""Late labels: ground truth that arrives after an event was scored (``neurogate.labels``).

A label adds to the n0/n1 counts of every pattern key the labelled event had, exactly as if
the event had carried the label when it was counted; the posterior and the explanation line
read those counts. The event's keys are not recomputable later (they depend on the window
and the encoders at that moment), so a ``LabelMemory`` keeps the keys of the last
``capacity`` scored events, found by ``(source, id)`` or ``(source, ts)``.

Outcomes (a bounded set, for metrics): ``applied`` (first label of the event), ``corrected``
(a different label than before: the old class count moves to the new class), ``duplicate``
(same label again: nothing changes), ``unmatched`` (the event is unknown: too old, never
scored, still warming up, or scored by another process).

``Detector(..., label_memory=N)`` keeps such a memory and offers ``learn_labels``.

Examples
--------
>>> import math
>>> from neurogate.engine.config import EngineConfig
>>> from neurogate.engine.detector import Detector
>>> from neurogate.engine.events import Event
>>> cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
>>> det = Detector(cfg, label_memory=1000)
>>> _ = det.process_many([Event("s", float(t), (math.sin(t / 5),)) for t in range(100)])
>>> dict(det.learn_labels([Label("s", 1, ts=99.0), Label("s", 1, ts=99.0), Label("x", 0)]))
{'applied': 1, 'duplicate': 1, 'unmatched': 1}
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from neurogate.engine.counts import CountTable
from neurogate.engine.events import (
    MAX_SOURCE_LEN,
    BadEvent,
    Event,
    EventBatch,
    _describe,
    _id,
    _label,
    load_message,
    parse_timestamp,
)
from neurogate.engine.keys import NCOLS

__all__ = ["OUTCOMES", "Label", "LabelMemory", "label_from_dict", "labels_from_json",
           "learn_labels"]

OUTCOMES = ("applied", "corrected", "duplicate", "unmatched")


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one earlier event of ``source``, found by ``id`` (preferred) or ``ts``."""

    source: str
    label: int
    id: str | None = None
    ts: float | None = None


def label_from_dict(obj: object, *, default_source: str | None = None) -> Label:
    """Validate ``{"source", "id"|"ts", "label"}`` (the Kafka key may stand in for "source")."""
    if not isinstance(obj, dict):
        raise BadEvent("not_an_object", f"a label must be a JSON object, got {_describe(obj)}")
    source = obj.get("source", default_source)
    if source is None:
        raise BadEvent("missing_field", "missing or null 'source'")
    if type(source) is not str or not 0 < len(source) <= MAX_SOURCE_LEN:
        raise BadEvent("bad_type", f"source must be 1..{MAX_SOURCE_LEN} characters")
    if obj.get("label") is None:
        raise BadEvent("missing_field", "missing or null 'label'")
    label = _label(obj["label"])
    ident = obj.get("id")
    ts = obj.get("ts")
    if ident is None and ts is None:
        raise BadEvent("missing_field", "a label needs the event's 'id' or 'ts'")
    return Label(source, label, None if ident is None else _id(ident),
                 None if ts is None else parse_timestamp(ts))


def labels_from_json(
    raw: bytes | str, *, max_bytes: int = 1_000_000, default_source: str | None = None,
    errors: list[BadEvent] | None = None,
) -> list[Label]:
    """One label object or a JSON array of them; like ``events_from_json``, bad array items go
    to ``errors`` (with ``.index``) when it is given, whole-message problems raise."""
    obj = load_message(raw, max_bytes)
    if type(obj) is list and not obj:
        raise BadEvent("not_an_object", "empty array: expected a label object or a non-empty "
                       "array of them")
    items = obj if type(obj) is list else [obj]
    out: list[Label] = []
    for k, item in enumerate(items):
        try:
            out.append(label_from_dict(item, default_source=default_source))
        except BadEvent as e:
            if errors is None or type(obj) is not list:
                raise
            errors.append(BadEvent(e.reason, f"item {k}: {e.message}", k))
    return out


def _names(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """64-bit names of (source hash, ts bits or id hash) pairs (a splitmix64-style mix).
    Not ``keys.mix64`` twice: its ``np.errstate`` costs ~10 µs a call, which doubled the
    cost per event of small batches (measured 5 -> 10 µs with 5-event batches)."""
    x = first.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= second.view(np.uint64)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return x


def _hashes(items: Iterable[object], n: int) -> np.ndarray:
    return np.fromiter(map(hash, items), dtype=np.int64, count=n)


_SEAL = 1024  # rows: smaller batches gather in a dict-indexed tail until there are this many


class _Chunk:
    """The keys of remembered events (all rows have the same key width), with each event's
    source, ts and id (to check a name's hit) and the names of its rows."""

    __slots__ = ("keys", "labels", "sources", "ts", "ids", "by_ts", "by_id", "_sorted")

    def __init__(self, keys: np.ndarray, labels: np.ndarray, sources: Sequence[str],
                 ts: np.ndarray, ids: Sequence[str | None]) -> None:
        m = len(sources)
        self.keys = keys  # [m, k] uint64
        self.labels = labels  # [m] int8, -1 = no label yet
        self.sources, self.ts, self.ids = sources, ts + 0.0, ids  # -0.0 is 0.0
        src = _hashes(sources, m)
        rows = np.arange(m)
        self.by_ts = (_names(src, self.ts), rows)  # (names, their rows)
        with_id: Sequence[str | None] = ids
        if None in ids:
            rows = np.array([k for k, i in enumerate(ids) if i is not None], dtype=np.int64)
            with_id = [ids[k] for k in rows.tolist()]
        self.by_id = (_names(src[rows], _hashes(with_id, rows.size)), rows)
        self._sorted: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def joined(cls, parts: Sequence[_Chunk]) -> _Chunk:
        """One chunk of the rows of ``parts``, in order (with their labels as they are now)."""
        return cls(np.concatenate([p.keys for p in parts]),
                   np.concatenate([p.labels for p in parts]),
                   [s for p in parts for s in p.sources], np.concatenate([p.ts for p in parts]),
                   [i for p in parts for i in p.ids])

    def lookup(self, names: np.ndarray, by_id: bool) -> np.ndarray:
        """The newest row with each name (-1: none), by binary search in the names (sorted at
        the first lookup). A hit is still to be checked (``holds``): names are hashes."""
        if not self._sorted:  # stable: the newest of equal names comes last
            for n, r in (self.by_ts, self.by_id):
                order = np.argsort(n, kind="stable")
                self._sorted.append((n[order], r[order]))
        sorted_names, rows = self._sorted[1 if by_id else 0]
        j = np.searchsorted(sorted_names, names, side="right") - 1
        hit = j >= 0
        hit[hit] = sorted_names[j[hit]] == names[hit]
        return np.where(hit, rows[np.maximum(j, 0)] if rows.size else -1, -1)

    def holds(self, row: int, label: Label, by_id: bool) -> bool:
        """Whether ``row`` is the labelled event (not another one whose name collides)."""
        same = self.ids[row] == label.id if by_id else self.ts[row] == label.ts
        return bool(same) and self.sources[row] == label.source


class LabelMemory:
    """The pattern keys of up to the last ``capacity`` scored events (whole batches, small
    ones joined by ``_SEAL``, are evicted oldest first; the newest is always kept). Memory:
    8 bytes x keys per event (512 B for one channel with the fixed encoder) plus ~50 B to find
    it.

    Events are found by 64-bit names of ``(source, ts)`` and ``(source, id)``. A batch of at
    least ``_SEAL`` events keeps its names in numpy arrays, sorted at its first lookup and
    binary-searched; smaller batches gather in a tail indexed by a dict until they make one such
    chunk, so lookups cost one search per ``_SEAL`` events or more, however small the batches.
    Nothing per event reaches the cycle collector (a dict of tuples for every event made its
    full collections walk two objects per event). A name's hit is checked against the event's
    source and ts or id, so a collision never applies a label to the wrong event; at worst
    (odds ~ capacity / 2**64) the older of two events with the same name is not found.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._sealed: deque[_Chunk] = deque()  # oldest first
        self._tail: deque[_Chunk] = deque()  # small batches, newer than every sealed chunk
        self._tail_index: tuple[dict[int, tuple[_Chunk, int]], ...] = ({}, {})  # ts, id
        self._tail_rows = 0
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def remember(self, events: Sequence[Event], keys: np.ndarray, labels: np.ndarray) -> None:
        """Keep ``keys`` [m, streams, kinds] of scored ``events`` and the labels they came with."""
        if self.capacity == 0 or not len(events):
            return
        m = len(events)
        batch = EventBatch.from_events(events)
        chunk = _Chunk(keys.reshape(m, -1), np.array(labels, dtype=np.int8), batch.sources,
                       batch.ts, batch.ids)
        if self._tail and self._tail[0].keys.shape[1] != chunk.keys.shape[1]:
            self._seal()  # the key width changed (an encoder took over a level): join apart
        if m >= _SEAL:
            self._seal()
            self._sealed.append(chunk)
        else:
            self._tail.append(chunk)
            for index, (names, rows) in zip(self._tail_index, (chunk.by_ts, chunk.by_id),
                                            strict=True):
                index.update(zip(names.tolist(), zip(repeat(chunk), rows.tolist()), strict=True))
            self._tail_rows += m
            if self._tail_rows >= _SEAL:
                self._seal()
        self._rows += m
        while self._rows > self.capacity and len(self._sealed) + len(self._tail) > 1:
            if self._sealed:
                self._rows -= self._sealed.popleft().labels.size
            else:
                self._forget(self._tail.popleft())

    def _seal(self) -> None:
        """Join the tail into one chunk that is searched like a large batch."""
        if self._tail:
            self._sealed.append(_Chunk.joined(self._tail))
            self._tail.clear()
            self._tail_rows = 0
            for index in self._tail_index:
                index.clear()

    def _forget(self, old: _Chunk) -> None:
        """Evict a tail chunk: its rows and the index entries that still point to it."""
        self._rows -= old.labels.size
        self._tail_rows -= old.labels.size
        for index, (names, _) in zip(self._tail_index, (old.by_ts, old.by_id), strict=True):
            for name in names.tolist():
                if index.get(name, (None,))[0] is old:
                    del index[name]

    def find(self, label: Label) -> tuple[_Chunk, int] | None:
        """Where the labelled event's keys are, by id first, then by timestamp."""
        return self.find_many([label])[0]

    def find_many(self, labels: Sequence[Label]) -> list[tuple[_Chunk, int] | None]:
        """``find`` for each label: by id first, then by timestamp; the newest event wins."""
        hits: list[tuple[_Chunk, int] | None] = [None] * len(labels)
        for by_id in (True, False):
            want = [k for k, lab in enumerate(labels)
                    if hits[k] is None and (lab.id if by_id else lab.ts) is not None]
            if not want:
                continue
            wanted = [labels[k] for k in want]
            other = (_hashes((lab.id for lab in wanted), len(want)) if by_id else
                     np.array([lab.ts for lab in wanted], dtype=np.float64) + 0.0)
            names = _names(_hashes((lab.source for lab in wanted), len(want)), other)
            tail = self._tail_index[1 if by_id else 0]
            for k, name in zip(want, names.tolist(), strict=True):
                hit = tail.get(name)
                if hit is not None and hit[0].holds(hit[1], labels[k], by_id):
                    hits[k] = hit
            for chunk in reversed(self._sealed):
                rows = chunk.lookup(names, by_id)
                for j in np.flatnonzero(rows >= 0).tolist():
                    k, row = want[j], int(rows[j])
                    if hits[k] is None and chunk.holds(row, labels[k], by_id):
                        hits[k] = (chunk, row)
        return hits


def learn_labels(cache: CountTable, memory: LabelMemory, labels: Sequence[Label],
                 load: Callable[[np.ndarray], None] | None = None) -> Counter[str]:
    """Add each label to its event's n0/n1 counts in ``cache`` (what scoring reads and, as a
    change, what the next flush writes); returns how many labels had each outcome. ``load``
    first reads keys the cache may have evicted back into it."""
    outcomes: Counter[str] = Counter()
    keys: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    for lab, hit in zip(labels, memory.find_many(labels), strict=True):
        if hit is None:
            outcomes["unmatched"] += 1
            continue
        chunk, row = hit
        old = int(chunk.labels[row])
        if old == lab.label:
            outcomes["duplicate"] += 1
            continue
        d = np.zeros(NCOLS, dtype=np.int64)
        d[1 + lab.label] = 1
        if old >= 0:
            d[1 + old] = -1
        outcomes["corrected" if old >= 0 else "applied"] += 1
        chunk.labels[row] = lab.label
        keys.append(chunk.keys[row])
        deltas.append(np.broadcast_to(d, (chunk.keys.shape[1], NCOLS)))
    if keys:
        flat, flat_deltas = np.concatenate(keys), np.concatenate(deltas)
        if load is not None:
            load(flat)
        cache.add(flat, flat_deltas)
    return outcomes

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
>>> from engine.config import EngineConfig
>>> from engine.detector import Detector
>>> from engine.events import Event
>>> cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
>>> det = Detector(cfg, label_memory=1000)
>>> _ = det.process_many([Event("s", float(t), (math.sin(t / 5),)) for t in range(100)])
>>> dict(det.learn_labels([Label("s", 1, ts=99.0), Label("s", 1, ts=99.0), Label("x", 0)]))
{'applied': 1, 'duplicate': 1, 'unmatched': 1}
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from engine.counts import NCOLS, CountTable
from engine.events import (
    MAX_SOURCE_LEN,
    BadEvent,
    Event,
    _describe,
    _id,
    _label,
    load_message,
    parse_timestamp,
)

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


class _Chunk:
    """The keys of one batch of remembered events (all rows have the same key width)."""

    __slots__ = ("keys", "labels", "names")

    def __init__(self, keys: np.ndarray, labels: np.ndarray, names: list[Any]) -> None:
        self.keys = keys  # [m, k] uint64
        self.labels = labels  # [m] int8, -1 = no label yet
        self.names = names  # index entries pointing into this chunk


class LabelMemory:
    """The pattern keys of up to the last ``capacity`` scored events (whole batches are
    evicted, oldest first; the newest batch is always kept). Memory: 8 bytes x keys per event
    (512 B for one channel with the fixed encoder) plus two index entries per event."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._chunks: deque[_Chunk] = deque()
        self._index: dict[tuple[Any, ...], tuple[_Chunk, int]] = {}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def remember(self, events: Sequence[Event], keys: np.ndarray, labels: np.ndarray) -> None:
        """Keep ``keys`` [m, streams, kinds] of scored ``events`` and the labels they came with."""
        if self.capacity == 0 or not len(events):
            return
        m = len(events)
        chunk = _Chunk(keys.reshape(m, -1), np.array(labels, dtype=np.int8), [])
        rows = list(zip(repeat(chunk), range(m)))
        # whole-list operations: this runs for every scored event
        names: list[tuple[Any, ...]] = list(zip(repeat("t"), [e.source for e in events],
                                                [e.ts for e in events]))
        index = self._index
        index.update(zip(names, rows, strict=True))
        with_id = [(("i", e.source, e.id), r) for e, r in zip(events, rows, strict=True)
                   if e.id is not None]
        if with_id:
            index.update(with_id)
            names.extend(n for n, _ in with_id)
        chunk.names = names
        self._chunks.append(chunk)
        self._rows += len(events)
        while self._rows > self.capacity and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self._rows -= old.labels.size
            for name in old.names:
                if index.get(name, (None,))[0] is old:
                    del index[name]

    def find(self, label: Label) -> tuple[_Chunk, int] | None:
        """Where the labelled event's keys are, by id first, then by timestamp."""
        if label.id is not None:
            hit = self._index.get(("i", label.source, label.id))
            if hit is not None:
                return hit
        if label.ts is not None:
            return self._index.get(("t", label.source, label.ts))
        return None


def learn_labels(cache: CountTable, memory: LabelMemory, labels: Sequence[Label]) -> Counter[str]:
    """Add each label to its event's n0/n1 counts in ``cache`` (what scoring reads and, as a
    change, what the next flush writes); returns how many labels had each outcome."""
    outcomes: Counter[str] = Counter()
    keys: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    for lab in labels:
        hit = memory.find(lab)
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
        cache.add(flat, flat_deltas)
    return outcomes

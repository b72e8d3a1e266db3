"""The prequential protocol every detector runs under, and the loop that enforces it.

A benchmark is a set of streams (sources). For each stream the harness announces a
``SourceInfo`` (channels, warm-up rows the detector may learn from before its scores count,
optionally a value range given up front), then hands the rows over in order, batch by batch.
A detector scores every row of a batch, then learns from it (``process``). Labels travel
separately as ``Feedback``: the label of row ``i`` comes with ``reveal_at = i + delay`` and may
be used only after row ``reveal_at`` has been scored; the harness never hands over a label
before the batch that contains its row. So no detector can read a row's label before scoring
that row, whatever it does inside ``process``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class SourceInfo:
    """What a detector may know about a stream before its first row."""

    name: str
    channels: int
    warmup: int
    """Rows at the start the detector may learn from; its scores there are not evaluated."""
    value_range: tuple[np.ndarray, np.ndarray] | None = None
    """Per-channel (min, max) given up front (NAB's inputMin/inputMax), or None: the detector
    must take its range from the warm-up rows (the deployable setting)."""
    has_calendar: bool = True
    """False when timestamps are plain row numbers (no time-of-day features)."""


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of one stream: row numbers ``start .. start + len - 1``."""

    source: str
    start: int
    ts: np.ndarray  # float64 [n] epoch seconds (row numbers when has_calendar is False)
    values: np.ndarray  # float64 [n, channels]

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True)
class Feedback:
    """Labels revealed during a batch: row ``rows[k]`` has label ``labels[k]``, usable only
    after row ``reveal_at[k]`` (>= rows[k]) has been scored."""

    rows: np.ndarray  # int64, ascending
    labels: np.ndarray  # int8 0/1
    reveal_at: np.ndarray  # int64, ascending, within the batch

    @staticmethod
    def empty() -> Feedback:
        """No labels."""
        z = np.zeros(0, dtype=np.int64)
        return Feedback(z, np.zeros(0, dtype=np.int8), z)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def upto(self, last_scored: int) -> Feedback:
        """The labels usable once row ``last_scored`` has been scored."""
        k = int(np.searchsorted(self.reveal_at, last_scored, side="right"))
        return Feedback(self.rows[:k], self.labels[:k], self.reveal_at[:k])

    def after(self, last_scored: int) -> Feedback:
        """The labels not yet usable when row ``last_scored`` has been scored."""
        k = int(np.searchsorted(self.reveal_at, last_scored, side="right"))
        return Feedback(self.rows[k:], self.labels[k:], self.reveal_at[k:])


@dataclass
class Output:
    """A detector's answer for one batch, one entry per row."""

    score: np.ndarray  # float64 in [0, 1]: the emitted anomaly score (NAB's anomaly_score)
    flagged: np.ndarray  # bool: an alert at the detector's own operating threshold
    posterior: np.ndarray | None = None  # label log-odds, NaN where undefined (neurogate)
    notes: dict[int, list[str]] = field(default_factory=dict)  # row -> explanation lines
    raw: np.ndarray | None = None  # score before alert suppression (for ranking metrics)


class StreamDetector(Protocol):
    """What the harness needs from a detector: sources announced, then batches in order."""

    name: str

    def begin_source(self, info: SourceInfo) -> None:
        """Register a stream before its first batch."""
        ...

    def process(self, batch: Batch, feedback: Feedback) -> Output:
        """Score every row of ``batch``, then learn from it and from ``feedback``'s labels
        (each only after its ``reveal_at`` row is scored)."""
        ...

    def close(self) -> None:
        """Release resources (stores, worker state)."""
        ...


@dataclass
class StreamRun:
    """A stream's outputs concatenated over its batches, and the time spent in ``process``."""

    score: np.ndarray
    flagged: np.ndarray
    posterior: np.ndarray | None
    notes: dict[int, list[str]]
    seconds: float
    raw: np.ndarray  # = score for detectors that do not suppress repeats


@dataclass(frozen=True)
class Stream:
    """A stream to feed: its description, timestamps, values and labels (-1 = never revealed;
    None = an unlabelled stream)."""

    info: SourceInfo
    ts: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None = None


class _Feed:
    """One stream's way through the harness: the next batch to hand over, outputs so far."""

    def __init__(self, stream: Stream, delay: int, batch_size: int) -> None:
        info = stream.info
        n = len(stream.ts)
        self.values = np.asarray(stream.values, dtype=np.float64).reshape(n, -1)
        if self.values.shape[1] != info.channels:
            raise ValueError(
                f"{info.name}: {self.values.shape[1]} channels, SourceInfo says {info.channels}"
            )
        if delay < 0:
            raise ValueError(f"label delay must be >= 0 rows, got {delay}")
        self.labels = None
        if stream.labels is not None:
            self.labels = np.asarray(stream.labels, dtype=np.int8)
            if self.labels.shape != (n,) or not np.isin(self.labels, (-1, 0, 1)).all():
                raise ValueError(f"{info.name}: labels must be one of -1 (never revealed), 0, "
                                 f"1 per row")
        self.info, self.ts, self.n = info, np.asarray(stream.ts, np.float64), n
        self.delay, self.batch_size = delay, batch_size
        self.start = 0
        self.score, self.raw = np.zeros(n), np.zeros(n)
        self.flags, self.post = np.zeros(n, dtype=bool), np.full(n, np.nan)
        self.has_post = False
        self.notes: dict[int, list[str]] = {}
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        """True once every row has been handed over."""
        return self.start >= self.n

    def step(self, detector: StreamDetector, bar: tqdm | None) -> None:
        """Hand the next batch (and the labels revealed during it) to the detector."""
        start, stop = self.start, min(self.start + self.batch_size, self.n)
        batch = Batch(self.info.name, start, self.ts[start:stop], self.values[start:stop])
        if self.labels is None:
            fb = Feedback.empty()
        else:  # rows whose reveal point (row + delay) falls inside this batch
            lo, hi = max(start - self.delay, 0), max(stop - self.delay, 0)
            known = self.labels[lo:hi] >= 0
            rows = np.arange(lo, hi, dtype=np.int64)[known]
            fb = Feedback(rows, self.labels[lo:hi][known], rows + self.delay)
        t0 = time.perf_counter()
        out = detector.process(batch, fb)
        self.seconds += time.perf_counter() - t0
        self.score[start:stop] = out.score
        self.raw[start:stop] = out.score if out.raw is None else out.raw
        self.flags[start:stop] = out.flagged
        if out.posterior is not None:
            self.post[start:stop] = out.posterior
            self.has_post = True
        self.notes.update({start + k: v for k, v in out.notes.items()})
        self.start = stop
        if bar is not None:
            bar.update(stop - start)

    def result(self, name: str) -> StreamRun:
        """The stream's outputs; checks that every emitted score lies in [0, 1]."""
        if not np.all((self.score >= 0) & (self.score <= 1)):
            raise ValueError(f"{name}: scores must lie in [0, 1] ({self.info.name})")
        return StreamRun(self.score, self.flags, self.post if self.has_post else None,
                         self.notes, self.seconds, self.raw)


def run_streams(
    detector: StreamDetector,
    streams: list[Stream],
    *,
    delay: int = 0,
    batch_size: int = 1000,
    interleave: bool = False,
    bar: tqdm | None = None,
) -> list[StreamRun]:
    """Feed streams through ``detector`` prequentially, one after the other or, with
    ``interleave``, all at once (a batch of each in turn, as concurrent sources arrive in
    production). Labels (if any; -1 = never) are revealed ``delay`` rows after their own row,
    never in a batch before it."""
    feeds = [_Feed(s, delay, batch_size) for s in streams]
    if interleave:
        for s in streams:
            detector.begin_source(s.info)
        while not all(f.done for f in feeds):
            for f in feeds:
                if not f.done:
                    f.step(detector, bar)
    else:
        for s, f in zip(streams, feeds, strict=True):
            detector.begin_source(s.info)
            while not f.done:
                f.step(detector, bar)
    return [f.result(detector.name) for f in feeds]


def run_stream(
    detector: StreamDetector,
    info: SourceInfo,
    ts: np.ndarray,
    values: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    delay: int = 0,
    batch_size: int = 1000,
    bar: tqdm | None = None,
) -> StreamRun:
    """``run_streams`` for a single stream."""
    stream = Stream(info, ts, values, labels)
    return run_streams(detector, [stream], delay=delay, batch_size=batch_size, bar=bar)[0]


class SourceModel(Protocol):
    """One stream's model inside a ``PerSource`` detector: batched score-then-learn."""

    def rows_until_update(self) -> int:
        """Rows that may be scored before the model next wants to learn (1 = row by row)."""
        ...

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] for rows ``x`` [n, channels] (must not change the model)."""
        ...

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Learn from rows that have just been scored (unsupervised)."""
        ...

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Learn the labels of earlier rows (stream row numbers), once revealed."""
        ...


class PerSource:
    """A detector made of one ``SourceModel`` per stream. It owns the score-then-learn order
    and the operating threshold, so the baselines only implement the model methods."""

    def __init__(
        self, name: str, make_model: Callable[[SourceInfo], SourceModel], threshold: float,
        uses_labels: bool = False,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.uses_labels = uses_labels
        self._make = make_model
        self._models: dict[str, SourceModel] = {}

    def begin_source(self, info: SourceInfo) -> None:
        """Create the stream's model."""
        self._models[info.name] = self._make(info)

    def process(self, batch: Batch, feedback: Feedback) -> Output:
        """Chunk by chunk: score, learn, then pass on the labels revealed by the chunk's end."""
        model = self._models[batch.source]
        n = len(batch)
        scores = np.empty(n)
        a = 0
        while a < n:
            b = min(a + model.rows_until_update(), n)
            x, ts = batch.values[a:b], batch.ts[a:b]
            scores[a:b] = model.score(x, ts)
            model.learn(x, ts)
            if self.uses_labels:
                last = batch.start + b - 1
                ready, feedback = feedback.upto(last), feedback.after(last)
                if len(ready):
                    model.learn_labels(ready.rows, ready.labels)
            a = b
        return Output(score=scores, flagged=scores >= self.threshold)

    def close(self) -> None:
        """Drop every model."""
        self._models.clear()

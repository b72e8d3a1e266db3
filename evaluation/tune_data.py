"""The data of ``neurogate tune``: a user's files (or a NAB root) as series, the time-ordered
blocks the search and its out-of-sample checks use, and anomalies injected at known places
when the data has no labels.

**Blocks.** Each series' rows after its evaluation start (``eval_start``: NAB's probation,
15 % of the rows at most 750, and at least every warm-up the search may choose, so every trial
is scored on the same rows) are cut into ``folds + 1`` consecutive blocks of about equal length;
a cut that would split a labelled or injected anomaly moves to the anomaly's start. Blocks
``0 .. folds-1`` are the *search* part; block ``folds`` is the *holdout*, never seen by the
search. Forward chaining: fold ``k`` chooses on blocks ``< k`` and scores on block ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neurogate.evaluation.nab import NabFile, probation_length
from neurogate.evaluation.tune_space import TuneError

if TYPE_CHECKING:
    from neurogate.cli.files import CsvOptions

__all__ = ["Corpus", "Series", "inject", "load_inputs", "nab_series", "spans_of"]

MIN_BLOCK = 20  # rows; a series whose blocks would be shorter is left out (and named)


@dataclass(frozen=True, eq=False)
class Series:
    """One source: timestamps, values [n, channels], its anomaly spans (inclusive rows, from
    labels or injected) and, once planned, its block bounds."""

    name: str
    ts: np.ndarray
    values: np.ndarray
    fields: tuple[str, ...]
    has_calendar: bool
    spans: tuple[tuple[int, int], ...] = ()
    labelled: bool = False  # spans come from the data's labels (or NAB windows)
    warmup: int | None = None  # fixed by the data's protocol (NAB: the probation); None = config
    timestamps: Sequence[str] = ()  # NAB's text timestamps (NAB segments keep them)
    bounds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n(self) -> int:
        """Rows."""
        return int(self.ts.shape[0])

    def labels(self, a: int, b: int) -> np.ndarray:
        """0/1 per row of ``a .. b-1`` (1 inside a span)."""
        y = np.zeros(b - a, dtype=np.int8)
        for s, e in self.spans:
            lo, hi = max(s, a), min(e + 1, b)
            if lo < hi:
                y[lo - a : hi - a] = 1
        return y

    def nab_segment(self, a: int, b: int) -> NabFile:
        """Rows ``a .. b-1`` as a NAB file: ``P`` rows before ``a`` are prepended so that NAB's
        probation of the segment (15 % of its rows, at most 750) is exactly them, and the
        segment's windows are the spans inside it (widened to 2 rows, as NAB divides by
        width - 1). Every block is scored as its own file."""
        length, p = b - a, 0
        while (nxt := probation_length(p + length)) != p:  # nondecreasing, reaches a fixed point
            p = nxt
        if p > a:
            raise ValueError(f"{self.name}: block {a}..{b} too early for a NAB segment")
        lo = a - p
        windows = [(s - lo, min(max(e, s + 1), b - 1) - lo) for s, e in self.spans
                   if a <= s and s + 1 < b]
        stamps = list(self.timestamps[lo:b]) if len(self.timestamps) else [""] * (b - lo)
        return NabFile(self.name, stamps, self.ts[lo:b], self.values[lo:b, 0], windows)


@dataclass(frozen=True)
class Corpus:
    """The series a search runs on, planned into ``folds + 1`` blocks (module docstring)."""

    series: tuple[Series, ...]
    search_blocks: int  # blocks 0 .. search_blocks-1 are searched on
    holdout: bool  # one more block after them, never searched on
    fixed_warmup: bool  # every series' warm-up comes from the data (NAB), not the config
    skipped: tuple[str, ...] = ()

    @property
    def labelled(self) -> bool:
        """Whether every series carries labels."""
        return all(s.labelled for s in self.series)

    @property
    def blocks(self) -> int:
        """Blocks per series: the search part's and the holdout."""
        return self.search_blocks + self.holdout

    def rows(self) -> int:
        """Rows of all series."""
        return sum(s.n for s in self.series)

    def fingerprint(self) -> list[list[object]]:
        """Names, lengths and a value checksum: a resumed study must see the same data."""
        return [[s.name, s.n, round(float(np.nansum(s.values)), 6), len(s.spans)]
                for s in self.series]


def spans_of(labels: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Runs of 1 in a 0/1 array as inclusive (first, last) rows."""
    y = np.r_[0, (np.asarray(labels) > 0).astype(np.int8), 0]
    d = np.diff(y)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return tuple((int(s), int(e)) for s, e in zip(starts, ends, strict=True))


def nab_series(files: Sequence[NabFile]) -> list[Series]:
    """NAB files as series: the windows are the labelled spans, the warm-up is the probation."""
    return [Series(f.name, f.epoch, f.values[:, None], ("value",), True, tuple(f.windows),
                   labelled=True, warmup=f.probation, timestamps=f.timestamps) for f in files]


def load_inputs(paths: Sequence[Path], *, fmt: str | None = None,
                csv: CsvOptions | None = None) -> tuple[list[Series], int]:
    """Series from NAB roots (a directory with ``labels/combined_windows.json``) and from
    CSV/TSV/JSONL files (``neurogate run``'s reader; one series per source, in first-seen
    order); and the number of unreadable records left out. Labels: a 0/1 column (a source is
    labelled when any of its rows has one). ``fmt`` and ``csv`` are ``run``'s input options."""
    from neurogate.cli.files import BadRecord, input_problem, read_events
    from neurogate.evaluation.nab import load_corpus

    out: list[Series] = []
    bad = 0
    for path in paths:
        if path.is_dir():
            try:
                out += nab_series(load_corpus(path))
            except (FileNotFoundError, ValueError) as exc:
                raise TuneError(f"{path}: not a NAB root: {exc}") from None
            continue
        if (problem := input_problem(path)) is not None:
            raise TuneError(problem)
        rows: dict[str, tuple[list[float], list[tuple[float, ...]], list[int], list[bool]]] = {}
        fields: dict[str, tuple[str, ...]] = {}
        try:
            for item in read_events(path, fmt=fmt, csv=csv):
                if isinstance(item, BadRecord):
                    bad += 1
                    continue
                if fields.setdefault(item.source, item.fields) != item.fields:
                    bad += 1  # the engine keeps one field set per source
                    continue
                ts, vals, labels, cal = rows.setdefault(item.source, ([], [], [], []))
                ts.append(item.ts)
                vals.append(item.values)
                labels.append(-1 if item.label is None else int(item.label))
                cal.append(item.has_calendar)
        except (ValueError, OSError) as exc:
            raise TuneError(f"{path}: {exc}") from None
        for source, (ts, vals, labels, cal) in rows.items():
            y = np.asarray(labels, dtype=np.int8)
            has = bool((y >= 0).any())
            out.append(Series(source, np.asarray(ts, dtype=np.float64),
                              np.asarray(vals, dtype=np.float64), fields[source], all(cal),
                              spans_of(y == 1) if has else (), labelled=has))
    if not out:
        raise TuneError("no series in the input")
    return out, bad


def plan(series: Sequence[Series], search_blocks: int, holdout: bool, warmup_max: int
         ) -> Corpus:
    """Block bounds for every series (module docstring; ``neurogate tune --folds K``: K search
    blocks and a holdout); series too short are left out."""
    if search_blocks < 1:
        raise TuneError(f"folds must be >= 1, got {search_blocks}")
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        raise TuneError("two inputs hold a source of the same name; rename one")
    blocks = search_blocks + holdout
    kept, skipped = [], []
    for s in series:
        warm = s.warmup if s.warmup is not None else warmup_max
        start = max(probation_length(s.n), warm)
        if (s.n - start) < blocks * MIN_BLOCK:
            skipped.append(s.name)
            continue
        cuts = np.linspace(start, s.n, blocks + 1).round().astype(np.int64)
        for i in range(1, blocks):
            for a, e in s.spans:  # never split an anomaly: the cut moves to its start
                if a < cuts[i] <= e:
                    cuts[i] = a
        if np.any(np.diff(cuts) < MIN_BLOCK):
            skipped.append(s.name)
            continue
        kept.append(replace(s, bounds=cuts))
    if not kept:
        raise TuneError(f"every series is too short for {blocks} blocks of at least "
                        f"{MIN_BLOCK} rows after its warm-up: {', '.join(skipped)}")
    fixed = [s.warmup is not None for s in kept]
    if any(fixed) and not all(fixed):
        raise TuneError("NAB roots and plain files cannot be tuned together (NAB fixes each "
                        "file's warm-up, the files take it from the configuration)")
    return Corpus(tuple(kept), search_blocks, holdout, all(fixed), tuple(skipped))


def inject(corpus: Corpus, seed: int) -> Corpus:
    """The corpus with anomalies planted into every block (``neurogate.engine.planted``'s
    kinds and strengths: spike, level shift, variance, frozen, trend, reversal, in units of the
    block's robust spread after scaling by the rows before the evaluation start, as the engine
    scales), about one per 400 rows (at most 6) in the second half of every block (``plant``
    places them there); the spans are the planted ones, the data's labels are
    not used."""
    from neurogate.engine.bank import bins_range, robust_bounds
    from neurogate.engine.planted import PER_SERIES, plant

    rng = np.random.default_rng(seed)
    out = []
    for s in corpus.series:
        x = s.values.copy()
        start = int(s.bounds[0])
        lo, hi = robust_bounds(x[None, :start])
        low, width = bins_range(lo[0], hi[0], 0.0)
        spans: list[tuple[int, int]] = []
        for a, b in zip(s.bounds[:-1].tolist(), s.bounds[1:].tolist(), strict=True):
            count = int(min(PER_SERIES, max(1, (b - a) // 400)))
            if (b - a) // 2 // count < 2:
                continue
            planted, where = plant((x[a:b] - low) / width, rng, count)
            x[a:b] = planted * width + low
            spans += [(a + f, a + last) for f, last in where]
        out.append(replace(s, values=x, spans=tuple(sorted(spans)), labelled=False))
    return replace(corpus, series=tuple(out))

"""What ``neurogate tune`` maximises (docs/tuning.md says what each optimises and how it can
mislead).

Every metric scores *segments* (one series' rows ``a .. b-1`` and the engine's outputs there)
in two ways: ``fit`` on the part a choice is made on, and ``score`` on a later part with what
``fit`` chose, so a held-out figure never reads the held-out labels. Only ``nab`` chooses
something (the corpus-wide threshold of NAB's sweep); the others score the engine's own flags
at its configured ``threshold`` or its raw score ranking.

* ``pr-auc`` -- average precision of the raw score (before alert suppression) over the rows;
* ``f1`` -- F1 of incident recall and flag precision, under the false-flag budget;
* ``recall`` -- incident recall under the false-flag budget;
* ``nab`` -- NAB's normalised score (standard profile unless told) on NAB-style windows;
* ``injected`` -- incident recall of anomalies injected at known places (no labels needed),
  under the same budget; flags elsewhere count as false.

An incident counts as found when a flag falls in its rows or up to ``TOLERANCE`` rows after;
a false flag is any other flag. The budget is false flags per 1,000 scored rows; a trial above
it is infeasible (TPE's constraint) and never chosen while a feasible one exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neurogate.evaluation.labelled import TOLERANCE
from neurogate.evaluation.metrics import average_precision
from neurogate.evaluation.nab import (
    PROFILES,
    optimize_threshold,
    reference_raws,
    score_file,
)
from neurogate.evaluation.nab import normalise as nab_normalise
from neurogate.evaluation.tune_data import Series
from neurogate.evaluation.tune_space import TuneError

__all__ = ["METRICS", "Figure", "Metric", "Segment", "get_metric"]


@dataclass(frozen=True)
class Segment:
    """One series' rows ``a .. b-1`` with the engine's outputs for the whole series."""

    series: Series
    a: int
    b: int
    score: np.ndarray  # emitted score (0 where suppressed): NAB's anomaly score
    raw: np.ndarray  # score before suppression: the ranking metrics'
    flagged: np.ndarray


@dataclass(frozen=True)
class Figure:
    """A metric's value on some segments, the false flags per 1,000 rows there (NaN where the
    metric has no budget) and what was chosen (NAB's threshold) for a later ``score``."""

    value: float
    false_rate: float = math.nan
    chosen: float | None = None

    def feasible(self, budget: float) -> bool:
        """Within the false-flag budget (always, for metrics without one)."""
        return math.isnan(self.false_rate) or self.false_rate <= budget


def _incidents(segments: Sequence[Segment]) -> tuple[int, int, int, int]:
    """Incidents found, incidents, false flags and rows over the segments."""
    found = total = false = rows = 0
    for g in segments:
        fl = g.flagged[g.a : g.b]
        near = np.zeros(g.b - g.a, dtype=bool)
        for s, e in g.series.spans:
            if s < g.a or s >= g.b:
                continue
            stop = min(e + TOLERANCE + 1, g.b)
            total += 1
            found += bool(fl[s - g.a : stop - g.a].any())
            near[s - g.a : stop - g.a] = True
        false += int((fl & ~near).sum())
        rows += g.b - g.a
    return found, total, false, rows


class Metric:
    """A metric of labelled (or injected) segments; subclasses define ``fit``."""

    name = ""
    needs_labels = True
    blind_to: tuple[str, ...] = ()  # settings that cannot change the value (not searched)
    budgeted = True

    def __init__(self, budget: float = 1.0, profile: str = "standard") -> None:
        if not 0 <= budget < math.inf:
            raise TuneError(f"--flag-budget must be a number >= 0 (false flags per 1,000 "
                            f"rows), got {budget}")
        if profile not in PROFILES:
            raise TuneError(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
        self.budget, self.profile = budget, profile

    def fit(self, segments: Sequence[Segment]) -> Figure:
        """The value on the part a choice is made on (and what is chosen there)."""
        raise NotImplementedError

    def score(self, segments: Sequence[Segment], fitted: Figure) -> Figure:  # noqa: ARG002  (overrides use it)
        """The value on a later part, with ``fitted``'s choice; the default chooses nothing."""
        return self.fit(segments)

    def describe(self) -> str:
        """One line for reports."""
        budget = f", at most {self.budget:g} false flags per 1,000 rows" if self.budgeted else ""
        return f"{self.name}{budget}"


class PrAuc(Metric):
    """Average precision of the raw score over the rows (threshold-free)."""

    name, budgeted = "pr-auc", False
    blind_to = ("threshold", "suppress_window")  # it ranks the score before suppression

    def fit(self, segments: Sequence[Segment]) -> Figure:
        y = np.concatenate([g.series.labels(g.a, g.b) for g in segments])
        s = np.concatenate([g.raw[g.a : g.b] for g in segments])
        return Figure(average_precision(y, s) if y.any() else math.nan)


class Recall(Metric):
    """Share of incidents with a flag in their rows (or ``TOLERANCE`` after)."""

    name = "recall"

    def fit(self, segments: Sequence[Segment]) -> Figure:
        found, total, false, rows = _incidents(segments)
        return Figure(found / total if total else math.nan, 1000.0 * false / max(rows, 1))


class Injected(Recall):
    """``recall`` on anomalies injected into the data (``tune_data.inject``)."""

    name, needs_labels = "injected", False


class F1(Metric):
    """Harmonic mean of incident recall and flag precision (flags near an incident / all)."""

    name = "f1"

    def fit(self, segments: Sequence[Segment]) -> Figure:
        found, total, false, rows = _incidents(segments)
        flags = sum(int(g.flagged[g.a : g.b].sum()) for g in segments)
        if not total:
            return Figure(math.nan, 1000.0 * false / max(rows, 1))
        r, p = found / total, (flags - false) / flags if flags else 0.0
        return Figure(2 * p * r / (p + r) if p + r else 0.0, 1000.0 * false / max(rows, 1))


class Nab(Metric):
    """NAB's normalised score; ``fit`` sweeps NAB's corpus-wide threshold, ``score`` keeps it."""

    name, budgeted = "nab", False
    blind_to = ("threshold",)  # NAB sweeps its own

    def describe(self) -> str:
        return f"nab ({self.profile} profile)"

    def _files(self, segments: Sequence[Segment]) -> tuple[list, dict[str, np.ndarray]]:
        files, scores = [], {}
        for g in segments:
            f = g.series.nab_segment(g.a, g.b)
            files.append(f)
            scores[f.name] = g.score[g.b - len(f.values) : g.b]
        return files, scores

    def fit(self, segments: Sequence[Segment]) -> Figure:
        files, scores = self._files(segments)
        if not any(f.windows for f in files):
            return Figure(math.nan)
        prof = PROFILES[self.profile]
        threshold, raw = optimize_threshold(scores, files, prof)
        return Figure(nab_normalise(raw, *reference_raws(files, prof)), chosen=threshold)

    def score(self, segments: Sequence[Segment], fitted: Figure) -> Figure:
        files, scores = self._files(segments)
        if not any(f.windows for f in files) or fitted.chosen is None:
            return Figure(math.nan)
        prof = PROFILES[self.profile]
        raw = sum(score_file(scores[f.name], f, fitted.chosen, prof).raw for f in files)
        return Figure(nab_normalise(raw, *reference_raws(files, prof)), chosen=fitted.chosen)


METRICS: dict[str, type[Metric]] = {m.name: m for m in (PrAuc, F1, Recall, Nab, Injected)}


def get_metric(name: str, budget: float = 1.0, profile: str = "standard") -> Metric:
    """The metric called ``name``; ``TuneError`` listing the known ones otherwise."""
    if name not in METRICS:
        raise TuneError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name](budget, profile)

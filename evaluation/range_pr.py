"""Range-based precision and recall for time series (Tatbul et al., "Precision and Recall for
Time Series", NeurIPS 2018), with flat positional bias and reciprocal cardinality, the
settings TimeEval uses by default.

A *real range* is a maximal run of labelled rows, a *predicted range* a maximal run of flagged
rows. For a real range R and the predicted ranges P_j:

    recall(R)    = alpha * [R meets any P_j] + (1 - alpha) * gamma(x) * sum_j |R & P_j| / |R|
    precision(P) = gamma(y) * sum_i |P & R_i| / |P|

where x (y) counts the predicted (real) ranges the range overlaps and gamma = 1 for at most
one, else 1 / count (a range cut into pieces earns less). Corpus figures are means over all
real ranges (recall) and all predicted ranges (precision) of every stream. ``alpha = 0`` (the
default) rewards only the overlap; an existence reward is what ``incident recall`` reports.

No maintained PyPI package provides this on numpy 2: ``prts`` pins numpy < 2 and was last
released in 2021; ``vus`` needs TensorFlow. The tests check this code against examples
computed by hand.

>>> y = [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0]
>>> flags = [0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1]
>>> s = range_scores([(y, flags)])
>>> round(s.recall, 4), round(s.precision, 4)   # (2/3 + 1/2) / 2, (2/3 + 1 + 0) / 3
(0.5833, 0.5556)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

AUC_THRESHOLDS = 100  # score quantiles at which range_pr_auc evaluates precision and recall


@dataclass(frozen=True)
class RangeScores:
    """Range-based precision, recall and their F1 over a set of streams."""

    precision: float
    recall: float

    @property
    def f1(self) -> float:
        """Harmonic mean of range precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def runs(mask: npt.ArrayLike) -> np.ndarray:
    """Maximal runs of true values as [k, 2] (start, end exclusive)."""
    m = np.asarray(mask).astype(bool).ravel()
    edges = np.flatnonzero(np.diff(np.r_[0, m.view(np.int8), 0]))
    return edges.reshape(-1, 2)


def _overlap_terms(ranges: np.ndarray, other: np.ndarray, other_mask: np.ndarray) -> np.ndarray:
    """For each range: gamma(number of ``other`` ranges it meets) * overlap share (flat bias)."""
    if not len(ranges):
        return np.zeros(0)
    covered = np.r_[0, np.cumsum(other_mask, dtype=np.int64)]
    overlap = covered[ranges[:, 1]] - covered[ranges[:, 0]]
    # ``other`` is sorted and disjoint: ranges starting before our end, minus those ending
    # at or before our start, are the ones we meet
    meets = (np.searchsorted(other[:, 0], ranges[:, 1], side="left")
             - np.searchsorted(other[:, 1], ranges[:, 0], side="right"))
    gamma = 1.0 / np.maximum(meets, 1)
    return gamma * overlap / (ranges[:, 1] - ranges[:, 0])


def recall_of_ranges(ranges: np.ndarray, flagged: npt.ArrayLike) -> np.ndarray:
    """Overlap recall (alpha = 0) of given ranges [k, 2] (start, end exclusive) of a stream."""
    f = np.asarray(flagged).astype(bool).ravel()
    return _overlap_terms(np.asarray(ranges, dtype=np.int64).reshape(-1, 2), runs(f), f)


def stream_terms(labels: npt.ArrayLike, flagged: npt.ArrayLike, alpha: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-real-range recall and per-predicted-range precision of one stream."""
    y = np.asarray(labels).astype(bool).ravel()
    f = np.asarray(flagged).astype(bool).ravel()
    if y.shape != f.shape:
        raise ValueError(f"labels ({y.size}) and flags ({f.size}) differ in length")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    real, pred = runs(y), runs(f)
    overlap_recall = _overlap_terms(real, pred, f)
    if alpha:
        covered = np.r_[0, np.cumsum(f, dtype=np.int64)]
        exists = (covered[real[:, 1]] - covered[real[:, 0]]) > 0
        overlap_recall = alpha * exists + (1 - alpha) * overlap_recall
    return overlap_recall, _overlap_terms(pred, real, y)


def range_scores(streams: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]], alpha: float = 0.0
                 ) -> RangeScores:
    """Range precision and recall over streams given as (labels, flags) pairs; recall is NaN
    without any labelled range, precision 0 without any flag."""
    rec, prec = [], []
    for labels, flagged in streams:
        r, p = stream_terms(labels, flagged, alpha)
        rec.append(r)
        prec.append(p)
    r_all, p_all = np.concatenate(rec or [np.zeros(0)]), np.concatenate(prec or [np.zeros(0)])
    recall = float(r_all.mean()) if r_all.size else float("nan")
    return RangeScores(float(p_all.mean()) if p_all.size else 0.0, recall)


def range_pr_auc(streams: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
                 thresholds: int = AUC_THRESHOLDS) -> float:
    """Threshold-free range PR-AUC: range precision and recall at up to ``thresholds`` score
    quantiles (pooled over streams; NaN scores never flag), summed as average precision is,
    sum over points sorted by recall of (R_k - R_{k-1}) * P_k. NaN without labelled ranges."""
    pairs = [(np.asarray(y).astype(bool).ravel(),
              np.nan_to_num(np.asarray(s, dtype=np.float64).ravel(), nan=-np.inf))
             for y, s in streams]
    if not any(y.any() for y, _ in pairs):
        return float("nan")
    pooled = np.concatenate([s for _, s in pairs])
    finite = pooled[np.isfinite(pooled)]
    if not finite.size:
        return 0.0
    cuts = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, thresholds)))
    points = []
    for t in cuts:
        sc = range_scores([(y, s >= t) for y, s in pairs])
        points.append((sc.recall, sc.precision))
    points.sort(key=lambda rp: (rp[0], -rp[1]))
    rec = np.array([r for r, _ in points])
    prec = np.array([p for _, p in points])
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))

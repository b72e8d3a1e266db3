"""Row-level binary metrics for labelled benchmarks: confusion counts at an operating threshold,
precision / recall / F1, and the threshold-free PR-AUC (average precision) and ROC-AUC.

Implemented with numpy (tests check them against scikit-learn) so the harness has no hard
dependency on scikit-learn; ties in scores are grouped as scikit-learn does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of flags against labels (positive = anomaly / fraud)."""

    tn: int
    fp: int
    fn: int
    tp: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when nothing was flagged."""
        flagged = self.tp + self.fp
        return self.tp / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0 when there are no positives."""
        positives = self.tp + self.fn
        return self.tp / positives if positives else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _arrays(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Labels as bool and scores as float64 of the same 1-D length, NaN scores ranked lowest."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    return y, np.where(np.isnan(s), -np.inf, s)


def confusion(labels: npt.ArrayLike, flagged: npt.ArrayLike) -> Confusion:
    """Confusion counts of boolean flags against 0/1 labels."""
    y, f = _arrays(labels, flagged)
    f = f > 0
    return Confusion(
        tn=int((~y & ~f).sum()), fp=int((~y & f).sum()), fn=int((y & ~f).sum()),
        tp=int((y & f).sum()),
    )


def _ranked(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative TP and FP counts at each distinct score, scores descending, and the scores."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(~y_sorted)[last_of_tie]
    return tp, fp, s_sorted[last_of_tie]


def pr_curve(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at every distinct score (descending thresholds)."""
    y, s = _arrays(labels, scores)
    tp, fp, thresholds = _ranked(y, s)
    positives = max(int(y.sum()), 1)
    return tp / np.maximum(tp + fp, 1), tp / positives, thresholds


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """PR-AUC as average precision: sum over thresholds of (R_k - R_{k-1}) * P_k (no
    interpolation, scikit-learn's definition); NaN when there are no positives."""
    y, _ = _arrays(labels, scores)
    if not y.any():
        return float("nan")
    precision, recall, _ = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (probability a positive outranks a negative, ties count half);
    NaN unless both classes are present."""
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    tp, fp, _ = _ranked(y, s)
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def best_f1(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """The highest F1 over all thresholds and its threshold: an oracle (it reads the labels),
    reported only next to the operating-threshold figures, never instead of them."""
    precision, recall, thresholds = pr_curve(labels, scores)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    if not f1.size:
        return 0.0, float("nan")
    k = int(np.argmax(f1))
    return float(f1[k]), float(thresholds[k])


@dataclass(frozen=True)
class BinaryReport:
    """Everything reported for one detector on one labelled benchmark."""

    rows: int
    positives: int
    confusion: Confusion
    precision: float
    recall: float
    f1: float
    pr_auc: float
    roc_auc: float
    best_f1: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (confusion counts flattened)."""
        out = asdict(self)
        out["confusion"] = asdict(self.confusion)
        return out


def binary_report(
    labels: npt.ArrayLike, scores: npt.ArrayLike, flagged: npt.ArrayLike
) -> BinaryReport:
    """Operating-point figures from ``flagged`` and threshold-free ones from ``scores``."""
    y, _ = _arrays(labels, scores)
    c = confusion(labels, flagged)
    return BinaryReport(
        rows=int(y.size), positives=int(y.sum()), confusion=c, precision=c.precision,
        recall=c.recall, f1=c.f1, pr_auc=average_precision(labels, scores),
        roc_auc=roc_auc(labels, scores), best_f1=best_f1(labels, scores)[0],
    )

"""Label-aware naive-Bayes posterior over an event's patterns, and the seed's explanation line.

For class y (0 normal, 1 anomaly): prior = ln(st/ast) with st the labelled events of class y
and ast all labelled events of the scope; likely = sum over the event's code streams of
ln P(pattern | y), a class-conditional Dirichlet back-off chain smoothed toward the class-free
probability; posterior = likely + prior (MEMPUTE V3's ``pid prior_v posterior likely prior st
ast``). Labels only ever add counts after the event was scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurogate.engine.patterns import TOTAL
from neurogate.engine.scoring import backoff


@dataclass(frozen=True)
class ClassEvidence:
    """The seed's explanation fields for one class."""

    pid: int  # key of the pattern that speaks most for this class
    prior_v: int
    posterior: float
    likely: float
    prior: float
    st: int
    ast: int

    def line(self) -> str:
        return (
            f"pid({self.pid}) prior_v({self.prior_v}) posterior({self.posterior:.6f}) "
            f"likely({self.likely:.6f}) prior({self.prior:.6f}) "
            f"prior st({self.st}) prior ast({self.ast})"
        )


def class_log_likelihoods(
    counts: np.ndarray, p_uni: np.ndarray, beta: float
) -> np.ndarray:
    """ln P(pattern | y) per event, stream and class: [n, k, 2] from counts [n, k, NKINDS, 3]."""
    out = np.empty(counts.shape[:2] + (2,))
    for y in (0, 1):
        _, p = backoff(counts[..., 1 + y], p_uni, beta, beta)
        out[..., y] = np.log(p)
    return out


def log_odds(counts: np.ndarray, p_uni: np.ndarray, beta: float) -> np.ndarray:
    """ln P(anomaly | patterns) - ln P(normal | patterns) per event; NaN until both classes have
    labels in the event's scope."""
    ll = class_log_likelihoods(counts, p_uni, beta).sum(axis=1)
    st = counts[:, 0, TOTAL, 1:].astype(np.float64)  # labelled events per class, first stream
    ok = (st > 0).all(axis=1)
    with np.errstate(divide="ignore"):
        prior = np.log(st)
    out = (ll[:, 1] + prior[:, 1]) - (ll[:, 0] + prior[:, 0])
    return np.where(ok, out, np.nan)


def explain(counts: np.ndarray, p_uni: np.ndarray, keys: np.ndarray, beta: float,
            tri_kind: int) -> list[ClassEvidence]:
    """Evidence lines for one event (counts [k, NKINDS, 3], p_uni [k], keys [k, NKINDS]); only
    classes that have labelled events get a line."""
    ll = class_log_likelihoods(counts[None], p_uni[None], beta)[0]  # [k, 2]
    st = counts[0, TOTAL, 1:].astype(np.int64)
    ast = int(st.sum())
    lines = []
    for y in (0, 1):
        if st[y] <= 0:
            continue
        lean = ll[:, y] - ll[:, 1 - y]
        best = int(np.argmax(lean))
        likely = float(ll[:, y].sum())
        prior = float(np.log(st[y] / ast))
        lines.append(
            ClassEvidence(
                pid=int(keys[best, tri_kind]),
                prior_v=y,
                posterior=likely + prior,
                likely=likely,
                prior=prior,
                st=int(st[y]),
                ast=ast,
            )
        )
    return lines

"""Per-stream probabilities from counts (Dirichlet back-off), surprise, and level combination."""

from __future__ import annotations

import numpy as np

from neurogate.engine.patterns import BI, BICTX, CAL, CALCTX, TOTAL, TRI, TRICTX, UNI


def backoff(
    c: np.ndarray, base: np.ndarray | float, strength0: float | np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet back-off chain over counts c[..., NKINDS]: unigram (smoothed toward ``base``
    with ``strength0``) -> calendar -> bigram -> trigram context (each smoothed toward the one
    before with ``strength``). Returns (unigram p, full-context p)."""
    c = c.astype(np.float64)
    p0 = (c[..., UNI] + strength0 * base) / (c[..., TOTAL] + strength0)
    p = (c[..., CAL] + strength * p0) / (c[..., CALCTX] + strength)
    p = (c[..., BI] + strength * p) / (c[..., BICTX] + strength)
    p = (c[..., TRI] + strength * p) / (c[..., TRICTX] + strength)
    return p0, p


def stream_probabilities(
    counts: np.ndarray, vocab: np.ndarray, alpha: float, alpha0: float
) -> tuple[np.ndarray, np.ndarray]:
    """(unigram p, context p) per event and stream from all-event counts [n, k, NKINDS]."""
    return backoff(counts, 1.0 / vocab, alpha0 * vocab, alpha)


def top_k_mean(s: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis: one quiet level can't dilute another's
    event (docs/background.md section 2, X2: +3.4 NAB points over the plain mean)."""
    k = min(k, s.shape[-1])
    top = s if k == s.shape[-1] else np.partition(s, s.shape[-1] - k, axis=-1)[..., -k:]
    mean: np.ndarray = top.mean(axis=-1)  # numpy's stubs type a reduction's result as Any
    return mean


def squash(s: np.ndarray) -> np.ndarray:
    """Map surprise in nats to 0..1 monotonically; raw nats are already comparable across
    sources, so one threshold serves them all."""
    return s / (1.0 + s)


def rank_calibrate(score: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Per-source empirical tail rank of each score among its recent scores, mixed 50/50 with
    the score (docs/background.md section 2, "Q2"); ``history`` is [n, window] with NaN for
    empty slots."""
    valid = np.isfinite(history)
    below = ((history < score[:, None]) & valid).sum(axis=1)
    total = valid.sum(axis=1)
    rank = np.where(total > 0, below / np.maximum(total, 1), 0.0)
    return 0.5 * rank + 0.5 * score

"""Planted-anomaly check: how well each code stream of an encoder ranks anomalies planted into
sources' recent values above the events around them. The NeuroNet's unsupervised takeover rule
(``neurogate.engine.shadow``) compares encoders level by level with it.

Why this and not a property of the codes alone: the score is each source's pattern surprise
calibrated against that source's own history (``neurogate.engine.evidence``), so what decides
detection is how a stream *ranks* an unusual event within its source. For each sampled source, a
copy of its reservoir gets ``PER_SERIES`` anomalies of the kinds in ``KINDS`` (strengths in units of
the series' robust spread), each encoder's codes are counted prequentially from an empty table
(score, then count, as the engine does), and each level's surprise gives a ROC-AUC of each
planted anomaly's events (its span and the level's reach after it) against the other events
of its slot (a sixth of the second half: surprise falls as counts grow, so comparing across
the whole half would favour late events); the AUCs are averaged over anomalies and sources.

Examples
--------
>>> import numpy as np
>>> from engine.encoder import FixedEncoder
>>> t = np.arange(1500)
>>> series = [(0.5 + 0.3 * np.sin(t / 8)).astype(np.float32)[:, None]]
>>> auc = level_aucs([FixedEncoder()], series, seed=0)[0]
>>> sorted(auc), auc[1].shape, bool(((0 <= auc[1]) & (auc[1] <= 1)).all())
([0, 1, 2, 3, 4, 5, 6], (6,), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurogate.engine.counts import CountTable
from neurogate.engine.encoder import Encoder
from neurogate.engine.keys import text_hash64
from neurogate.engine.patterns import NKINDS, NO_CALENDAR, pattern_keys, stream_bases
from neurogate.engine.scoring import stream_probabilities

KINDS = ("spike", "level_shift", "variance", "frozen", "trend", "reversal")
PER_SERIES = 6  # anomalies planted into the second half of each series
MIN_SPREAD = 0.02  # robust spread floor in normalised units (a flat series still gets anomalies)


def robust_spread(x: np.ndarray) -> np.ndarray:
    """Per channel: 1.4826 x the median absolute deviation, at least ``MIN_SPREAD``."""
    med = np.median(x, axis=0)
    spread: np.ndarray = np.maximum(  # numpy's stubs type ufunc results as Any
        1.4826 * np.median(np.abs(x - med), axis=0), MIN_SPREAD)
    return spread


def plant(series: np.ndarray, rng: np.random.Generator, count: int = PER_SERIES
          ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A copy of ``series`` [T, C] with ``count`` anomalies (kinds in turn, in random order;
    random channel; random place in its slot, the second half cut into ``count`` slots) and
    their spans (first, last event)."""
    x = np.asarray(series, dtype=np.float64).copy()
    t, c = x.shape
    spread = robust_spread(x)
    spans = []
    half = t // 2
    slot = (t - half) // count
    kinds = [KINDS[i % len(KINDS)] for i in rng.permutation(count)]
    for k, kind in enumerate(kinds):
        ch = int(rng.integers(c))
        s = spread[ch]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        length = {"spike": int(rng.integers(1, 4)), "level_shift": int(rng.integers(20, 61)),
                  "variance": 30, "frozen": int(rng.integers(30, 61)), "trend": 60,
                  "reversal": 60}[kind]
        length = max(1, min(length, slot - 1))
        start = half + k * slot + int(rng.integers(0, max(slot - length, 1)))
        seg = slice(start, start + length)
        if kind == "spike":
            x[seg, ch] += sign * rng.uniform(4, 8) * s
        elif kind == "level_shift":
            x[seg, ch] += sign * rng.uniform(2, 3) * s
        elif kind == "variance":
            x[seg, ch] += rng.normal(0.0, 2.0 * s, length)
        elif kind == "frozen":
            x[seg, ch] = x[start, ch]
        elif kind == "trend":
            x[seg, ch] += sign * np.linspace(0.0, 3.0 * s, length)
        else:
            x[seg, ch] = x[seg, ch][::-1].copy()
        spans.append((start, start + length - 1))
    return x, spans


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC-AUC of ``score`` for 0/1 ``label`` (ties count half); 0.5 without both classes."""
    pos = int(label.sum())
    neg = label.size - pos
    if pos == 0 or neg == 0:
        return 0.5
    order = np.argsort(score, kind="stable")
    ranks = np.empty(score.size)
    ranks[order] = np.arange(1, score.size + 1)
    s = score[order]
    edges = np.flatnonzero(np.diff(s)) + 1  # average the ranks of tied scores
    for lo, hi in zip(np.r_[0, edges], np.r_[edges, s.size], strict=True):
        if hi - lo > 1:
            ranks[order[lo:hi]] = (lo + 1 + hi) / 2.0
    return float((ranks[label == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def level_aucs(encoders: Sequence[Encoder], series: Sequence[np.ndarray], *, seed: int,
               alpha: float = 1.0, alpha0: float = 0.5) -> list[dict[int, np.ndarray]]:
    """Per encoder and level: the ROC-AUC of the level's surprise (the largest of its
    streams', e.g. one per channel) on each anomaly planted into ``series`` (each [T, C],
    normalised; see the module docstring), in the same order for every encoder, so two
    encoders can be compared anomaly by anomaly (``compare``)."""
    rng = np.random.default_rng(seed)
    window = max(e.window for e in encoders)
    levels = [sorted({s.level for s in e.streams}) for e in encoders]
    out: list[dict[int, list[float]]] = [{lv: [] for lv in lv_list} for lv_list in levels]
    for j, raw in enumerate(series):
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim == 1:
            raw = raw[:, None]
        if len(raw) < 16 * PER_SERIES:
            continue
        x, spans = plant(raw, rng)
        t = len(x)
        slot = (t - t // 2) // len(spans)
        padded = np.concatenate([np.repeat(x[:1], window - 1, 0), x]).astype(np.float32)
        scope = np.full(t, text_hash64(f"planted:{j}"), dtype=np.uint64)
        bucket = np.full(t, NO_CALENDAR, dtype=np.uint64)
        for e, enc in enumerate(encoders):
            idx = np.arange(t)[:, None] + np.arange(window - enc.window, window)[None, :]
            codes = enc.encode(padded[idx])
            bases = stream_bases(f"{enc.name}:{enc.version}", len(enc.streams))
            keys = pattern_keys(bases, scope, codes, bucket)
            deltas = np.zeros((t, 3), dtype=np.int64)
            deltas[:, 0] = 1
            counts = CountTable(1 << 16).score_then_add(keys.reshape(t, -1), deltas)
            counts = counts.reshape(t, len(enc.streams), NKINDS, 3)[..., 0]
            vocab = np.array([s.vocab for s in enc.streams], dtype=np.float64)
            _, p_ctx = stream_probabilities(counts, vocab, alpha, alpha0)
            surprise = -np.log(p_ctx)
            for lv in levels[e]:
                cols = [k for k, s in enumerate(enc.streams) if s.level == lv]
                reach = 2 * max(enc.streams[k].dilation for k in cols)
                label = np.zeros(t, dtype=np.int8)
                for lo, hi in spans:
                    label[lo : min(hi + reach, t - 1) + 1] = 1
                score = surprise[:, cols].max(axis=1)
                # each anomaly against the normal events of its own slot: surprise falls as
                # counts grow, and a comparison across the whole half would reward lateness
                for k in range(len(spans)):
                    a = t // 2 + k * slot
                    out[e][lv].append(_auc(score[a : a + slot], label[a : a + slot]))
    return [{lv: np.array(v) for lv, v in d.items()} for d in out]


def compare(candidate: np.ndarray, serving: np.ndarray, margin: float) -> tuple[bool, float]:
    """Whether per-anomaly AUCs ``candidate`` beat ``serving`` (same anomalies): the mean
    paired gain minus two standard errors must exceed ``margin``, so a handful of planted
    anomalies (a few sources) cannot decide by chance. Returns (wins, mean gain)."""
    n = min(candidate.size, serving.size)
    if n < 2:
        return False, float("nan")
    gain = candidate[:n] - serving[:n]
    low = gain.mean() - 2.0 * gain.std(ddof=1) / np.sqrt(n)
    return bool(low > margin), float(gain.mean())

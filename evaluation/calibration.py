"""A per-stream map of an unbounded anomaly score to [0, 1], fixed from the stream's warm-up.

PySAD's detectors emit scores on scales of their own (negative log-densities, negated counts,
displacements) that differ between streams. The harness needs scores in [0, 1], comparable
across the streams it pools, and one a-priori operating threshold. So each stream's raw scores
of the second half of its warm-up (the model has learned from the first half) fix a median
``m`` and a spread ``d`` = (99th percentile - m); a raw score ``s`` maps to

    x = (s - m) / d,        score = 0.5 + 0.5 * x / (1 + |x|)

strictly increasing (rows keep their order within a stream), 0.5 at the warm-up median, 0.75 at
its 99th percentile. ``THRESHOLD`` flags x >= 1: above the warm-up's 99th percentile. (A first
run used x >= 2, which RS-Hash and PySAD's HalfSpaceTrees never reach: their raw scores are
bounded above, -mean log2(1 + count) <= 0 and minus a mass, so twice the spread lies beyond
the largest score they can give.)

>>> cal = WarmupCalibration(warmup=4)
>>> cal.observe(np.array([9.0, 9.0, 1.0, 3.0]))   # rows 2 and 3 are the calibration sample
>>> cal.frozen, float(cal.median), round(float(cal.spread), 2)
(True, 2.0, 0.98)
>>> [round(float(v), 3) for v in cal(np.array([2.0, 2.0 + cal.spread]))]
[0.5, 0.75]
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.75  # x >= 1
MIN_SPREAD = 1e-12


class WarmupCalibration:
    """Collects the raw scores of a stream's warm-up rows, then maps raw scores to [0, 1]."""

    def __init__(self, warmup: int) -> None:
        self.warmup = max(int(warmup), 1)
        self.seen = 0
        self._sample: list[np.ndarray] = []
        self.median = 0.0
        self.spread = 1.0
        self.frozen = False

    def observe(self, raw: np.ndarray) -> None:
        """Take the raw scores of rows just scored (in stream order); freeze at the warm-up end."""
        raw = np.asarray(raw, dtype=np.float64).ravel()
        if self.frozen:
            self.seen += len(raw)
            return
        lo = max(self.warmup // 2 - self.seen, 0)
        hi = max(self.warmup - self.seen, 0)
        self._sample.append(raw[lo:hi])
        self.seen += len(raw)
        if self.seen >= self.warmup:
            sample = np.concatenate(self._sample)
            sample = sample[np.isfinite(sample)]
            if sample.size:
                self.median = float(np.median(sample))
                spread = float(np.quantile(sample, 0.99)) - self.median
                self.spread = max(spread, MIN_SPREAD * max(abs(self.median), 1.0))
            self._sample.clear()
            self.frozen = True

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of raw scores (0 until the warm-up has ended; NaN maps to 0)."""
        raw = np.asarray(raw, dtype=np.float64).ravel()
        if not self.frozen:
            return np.zeros(len(raw))
        x = (raw - self.median) / self.spread
        out = 0.5 + 0.5 * x / (1.0 + np.abs(x))
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

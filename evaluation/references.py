"""Two simple references fitted on a stream's warm-up rows and frozen there.

* ``ZScoreModel``: each channel's z against its warm-up mean and standard deviation; the raw
  score is the mean of |z| over the last ``zscore_window`` rows (10), the largest over channels.
  Emitted as m / (m + 3): 0.5 (the operating threshold) at a mean |z| of 3.
* ``HotellingModel``: Hotelling's T^2 of each row against the warm-up mean and covariance
  (taken on the channels standardised by their warm-up standard deviations, regularised by
  1e-6 and pseudo-inverted, so collinear channels and channels in any units are fine). Emitted
  as T^2 / (T^2 + q) with q the 99.9 % quantile of chi^2 with as many degrees of freedom as
  channels: 0.5 (the threshold) where a Gaussian row would be that rare.

A channel without variance in the warm-up (a setpoint, a status) has no statistics to judge it
by: both leave it out (before, its first change read |z| ~ 1e9 and held both at 1 for the
rest of the stream, and a ridge of the mean variance swamped a channel in small units).

Both maps are fixed, so pooled rows of different streams compare on the same scale; rows of the
warm-up score 0 (not evaluated).

>>> from neurogate.evaluation.protocol import SourceInfo
>>> rng = np.random.default_rng(0)
>>> m = HotellingModel(SourceInfo("s", 2, warmup=200), BaselineSettings())
>>> m.learn(rng.normal(size=(200, 2)), np.zeros(200))
>>> [round(float(v), 2) for v in m.score(np.array([[0.0, 0.0], [8.0, -8.0]]), np.zeros(2))]
[0.0, 0.91]
"""

from __future__ import annotations

import numpy as np

from neurogate.evaluation.baselines import BaselineSettings
from neurogate.evaluation.protocol import SourceInfo

ZSCORE_HALF = 3.0  # mean |z| that maps to 0.5
T2_QUANTILE = 0.999
RIDGE = 1e-6


class _WarmupFit:
    """Shared plumbing: collect the warm-up rows, fit once at its end, then only score."""

    def __init__(self, info: SourceInfo) -> None:
        self.warmup = max(info.warmup, 2)
        self.rows: list[np.ndarray] = []
        self.seen = 0
        self.fitted = False

    def rows_until_update(self) -> int:
        """Rows until the fit at the end of the warm-up; after it, a whole batch at once."""
        return max(self.warmup - self.seen, 1) if not self.fitted else 1 << 30

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Keep warm-up rows and fit at the warm-up's end; afterwards only the history moves."""
        x = np.asarray(x, dtype=np.float64)
        self.seen += len(x)
        if self.fitted:
            self._after(x)
            return
        self.rows.append(x)
        if self.seen >= self.warmup:
            self._fit(np.concatenate(self.rows))
            self.rows.clear()
            self.fitted = True

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Unsupervised: labels are ignored."""

    def _fit(self, warm: np.ndarray) -> None:
        raise NotImplementedError

    def _after(self, x: np.ndarray) -> None:
        """Rows scored after the fit (for state that follows the stream, e.g. smoothing)."""


class ZScoreModel(_WarmupFit):
    """Per-channel z-score against the warm-up, smoothed over ``zscore_window`` rows."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        super().__init__(info)
        self.window = max(settings.zscore_window, 1)
        self.mean = np.zeros(info.channels)
        self.std = np.ones(info.channels)
        self.recent = np.zeros((0, info.channels))  # |z| of the last window - 1 rows

    def _abs_z(self, x: np.ndarray) -> np.ndarray:
        return np.abs(np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def _fit(self, warm: np.ndarray) -> None:
        self.mean = warm.mean(axis=0)
        std = warm.std(axis=0)
        self.std = np.where(std > 0, std, np.inf)  # no variance: left out (module docstring)
        self._after(warm)

    def _after(self, x: np.ndarray) -> None:
        keep = self.window - 1
        z = np.concatenate([self.recent, self._abs_z(x)])
        self.recent = z[len(z) - keep :] if keep else z[:0]

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """m / (m + 3) with m the largest channel's mean |z| over the window ending at a row."""
        if not self.fitted:
            return np.zeros(len(x))
        z = np.concatenate([self.recent, self._abs_z(x)])
        c = np.cumsum(np.r_[np.zeros((1, z.shape[1])), z], axis=0)
        ends = np.arange(len(self.recent) + 1, len(z) + 1)
        starts = np.maximum(ends - self.window, 0)
        m = ((c[ends] - c[starts]) / (ends - starts)[:, None]).max(axis=1)
        return m / (m + ZSCORE_HALF)


class HotellingModel(_WarmupFit):
    """Hotelling's T^2 against the warm-up mean and regularised covariance."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        from scipy.stats import chi2

        super().__init__(info)
        self.q = float(chi2.ppf(T2_QUANTILE, info.channels))
        self.mean = np.zeros(info.channels)
        self.precision: np.ndarray = np.eye(info.channels)

    def _fit(self, warm: np.ndarray) -> None:
        from scipy.stats import chi2

        self.mean = warm.mean(axis=0)
        sd = warm.std(axis=0)
        kept = np.flatnonzero(sd > 0)  # no variance: left out (module docstring)
        self.precision = np.zeros((warm.shape[1], warm.shape[1]))
        if kept.size:
            corr = np.atleast_2d(np.cov(warm[:, kept] / sd[kept], rowvar=False))
            inv = np.linalg.pinv(corr + RIDGE * np.eye(kept.size), hermitian=True)
            self.precision[np.ix_(kept, kept)] = inv / np.outer(sd[kept], sd[kept])
            self.q = float(chi2.ppf(T2_QUANTILE, kept.size))

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """T^2 / (T^2 + q) of each row."""
        if not self.fitted:
            return np.zeros(len(x))
        d = np.asarray(x, dtype=np.float64) - self.mean
        t2 = np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0)
        return t2 / (t2 + self.q)

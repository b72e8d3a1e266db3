"""Baseline detectors run through the same prequential harness as neurogate.

Each baseline is a per-stream ``SourceModel`` (score, then learn) inside ``PerSource``. They share
one feature map, ``Shingle``: the last ``k`` rows of every channel, scaled by the stream's range
(given up front, or frozen from the warm-up rows, the same rule neurogate follows).

* ``hst``: River ``HalfSpaceTrees`` (score_one then learn_one per row, River's defaults; the
  range maps to the middle half of HST's unit box).
* ``iforest``: scikit-learn ``IsolationForest`` refitted on a sliding window of recent rows.
* ``autoencoder``: a small torch MLP autoencoder, reconstruction error as the score (the seed's
  baseline), trained at the end of the warm-up and retrained on recent rows.
* ``supervised``: River logistic regression on standardised features, learning only from
  revealed labels (an online supervised reference for labelled benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurogate.evaluation.protocol import SourceInfo

RANGE_MARGIN = 0.10  # warm-up range widened by this share on each side (as neurogate's default)


@dataclass(frozen=True)
class BaselineSettings:
    """Parameters of the baselines for one benchmark (set a priori, not tuned on its labels)."""

    shingle: int = 8  # rows per feature vector
    iforest_window: int = 1000  # rows the forest is fitted on
    iforest_every: int = 250  # rows between refits
    iforest_trees: int = 50
    ae_window: int = 2000  # rows the autoencoder is (re)trained on
    ae_every: int = 2000  # rows between retrainings
    ae_epochs: int = 150
    rrcf_trees: int = 25  # PySAD's default 100 costs 15-22 ms per row here, 25 about 4 ms
    zscore_window: int = 10  # rows whose mean |z| the z-score reference takes
    seed: int = 0


class Shingle:
    """Feature vectors of a stream: the last ``k`` rows of every channel, range-scaled to 0..1.

    The range is the given one, or the running min/max of the warm-up rows frozen (and widened
    by ``RANGE_MARGIN``) when the warm-up ends. Rows before the first one repeat it.
    """

    def __init__(self, info: SourceInfo, k: int) -> None:
        self.k = max(int(k), 1)
        self.channels = info.channels
        self.warmup = info.warmup
        self.seen = 0
        self.history = np.zeros((0, info.channels))
        if info.value_range is not None:
            lo = np.asarray(info.value_range[0], dtype=np.float64).reshape(-1)
            hi = np.asarray(info.value_range[1], dtype=np.float64).reshape(-1)
            self.lo, self.hi, self.frozen = lo, hi, True
        else:
            self.lo = np.full(info.channels, np.inf)
            self.hi = np.full(info.channels, -np.inf)
            self.frozen = False

    @property
    def dim(self) -> int:
        """Length of a feature vector."""
        return self.k * self.channels

    def features(self, x: np.ndarray) -> np.ndarray:
        """Features [n, k*channels] of rows ``x`` following the history (history unchanged)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.channels)
        past = self.history if len(self.history) else x[:1]
        if len(past) < self.k - 1:
            past = np.concatenate([np.repeat(past[:1], self.k - 1 - len(past), axis=0), past])
        full = np.concatenate([past[len(past) - (self.k - 1) :], x]) if self.k > 1 else x
        return self.windows(full, *self._range(x))

    def windows(self, rows: np.ndarray, lo: np.ndarray | None = None,
                hi: np.ndarray | None = None) -> np.ndarray:
        """Scaled feature vectors of every k-row window of ``rows`` [m, channels]: [m-k+1, dim];
        the current range unless one is given."""
        if lo is None or hi is None:
            lo, hi = self.lo, self.hi
        idx = np.arange(len(rows) - self.k + 1)[:, None] + np.arange(self.k)[None, :]
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((rows[idx] - lo) / span).reshape(len(idx), -1)

    def push(self, x: np.ndarray) -> None:
        """Append scored rows to the history; freeze the range when the warm-up ends."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.channels)
        if not self.frozen:
            take = x[: max(self.warmup - self.seen, 0)]
            if len(take):
                self.lo = np.minimum(self.lo, take.min(axis=0))
                self.hi = np.maximum(self.hi, take.max(axis=0))
            if self.seen + len(x) >= self.warmup:
                span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
                self.lo, self.hi = self.lo - RANGE_MARGIN * span, self.hi + RANGE_MARGIN * span
                self.frozen = True
        self.seen += len(x)
        keep = max(self.k - 1, 0)
        self.history = np.concatenate([self.history, x])[len(self.history) + len(x) - keep :]

    def _range(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The scaling range: frozen, or the warm-up's so far including ``x`` (not learned)."""
        if self.frozen:
            return self.lo, self.hi
        return np.minimum(self.lo, x.min(axis=0)), np.maximum(self.hi, x.max(axis=0))


class _RowModel:
    """Shared plumbing of the River models: one row at a time, features as dicts."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        self.shingle = Shingle(info, settings.shingle)

    def rows_until_update(self) -> int:
        """River models learn after every row."""
        return 1

    @staticmethod
    def _as_dict(f: np.ndarray) -> dict[int, float]:
        """A feature vector as River's {feature: value} dict."""
        return dict(enumerate(f.tolist()))


class HalfSpaceTreesModel(_RowModel):
    """River HalfSpaceTrees over the shingle. HST splits the fixed unit box, so the stream's
    range is mapped to its middle half (0.25..0.75): values beyond the range, up to half a
    range-width out, still land in leaves of their own instead of the box's edge."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        from river.anomaly import HalfSpaceTrees

        super().__init__(info, settings)
        self.model = HalfSpaceTrees(seed=settings.seed)

    def _box(self, x: np.ndarray) -> np.ndarray:
        """Features mapped into HST's unit box (range -> 0.25..0.75)."""
        return np.clip(0.25 + 0.5 * self.shingle.features(x), 0.0, 1.0)

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Scores of rows ``x`` from the model as it is (no learning)."""
        return np.array([self.model.score_one(self._as_dict(r)) for r in self._box(x)])

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Learn from rows that have just been scored."""
        for r in self._box(x):
            self.model.learn_one(self._as_dict(r))
        self.shingle.push(x)

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Unsupervised: labels are ignored."""


class SupervisedModel(_RowModel):
    """River standard scaler + logistic regression, trained on revealed labels only; the
    score is P(anomaly). Feature vectors of scored rows wait (by row number) for their labels."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        from river import linear_model, preprocessing

        super().__init__(info, settings)
        self.model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        self._waiting: dict[int, dict[int, float]] = {}

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Scores of rows ``x`` from the model as it is (no learning)."""
        f = self.shingle.features(x)
        out = [self.model.predict_proba_one(self._as_dict(r)).get(True, 0.0) for r in f]
        return np.clip(np.array(out, dtype=np.float64), 0.0, 1.0)

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Learn from rows that have just been scored."""
        first = self.shingle.seen
        for k, r in enumerate(self.shingle.features(x)):
            self._waiting[first + k] = self._as_dict(r)
        self.shingle.push(x)

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Learn the revealed labels of earlier rows (by stream row number)."""
        for r, y in zip(rows.tolist(), labels.tolist(), strict=True):
            self.model.learn_one(self._waiting.pop(r), bool(y))


class _WindowModel:
    """Shared plumbing of the refitted models: the recent raw rows, refitted every ``every``
    rows (first at the end of the warm-up) on their feature vectors under the current range;
    rows before the first fit score 0."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings, window: int,
                 every: int) -> None:
        self.shingle = Shingle(info, settings.shingle)
        self.warmup = max(info.warmup, 2)
        self.window, self.every = window, every
        self.raw = np.zeros((0, info.channels))
        self.since_fit = 0
        self.fitted = False
        self.seed = settings.seed

    def rows_until_update(self) -> int:
        """Rows until the next (re)fit: the end of the warm-up, then every ``every`` rows."""
        if not self.fitted:
            return max(self.warmup - self.shingle.seen, 1)
        return max(self.every - self.since_fit, 1)

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Scores of rows ``x`` from the model as it is (no learning)."""
        if not self.fitted:
            return np.zeros(len(x))
        return self._score(self.shingle.features(x))

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Learn from rows that have just been scored."""
        self.shingle.push(x)
        keep = self.window + self.shingle.k - 1
        self.raw = np.concatenate([self.raw, np.asarray(x, np.float64)])[-keep:]
        self.since_fit += len(x)
        due = self.since_fit >= self.every if self.fitted else self.shingle.seen >= self.warmup
        if due and len(self.raw) >= self.shingle.k:
            self._fit(self.shingle.windows(self.raw))
            self.fitted, self.since_fit = True, 0

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Unsupervised: labels are ignored."""

    def _fit(self, f: np.ndarray) -> None:
        """(Re)fit the model on feature vectors of the recent rows."""
        raise NotImplementedError

    def _score(self, f: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of feature vectors under the fitted model."""
        raise NotImplementedError


class IsolationForestModel(_WindowModel):
    """scikit-learn IsolationForest on the last ``iforest_window`` rows, refitted every
    ``iforest_every`` rows; the score is its anomaly score 2^(-E h / c) in (0, 1]."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        super().__init__(info, settings, settings.iforest_window, settings.iforest_every)
        self.trees = settings.iforest_trees
        self.forest: Any = None  # sklearn IsolationForest once fitted

    def _fit(self, f: np.ndarray) -> None:
        """(Re)fit the model on feature vectors of the recent rows."""
        from sklearn.ensemble import IsolationForest

        self.forest = IsolationForest(n_estimators=self.trees, random_state=self.seed).fit(f)

    def _score(self, f: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of feature vectors under the fitted model."""
        assert self.forest is not None
        return np.clip(-self.forest.score_samples(f), 0.0, 1.0)


class AutoencoderModel(_WindowModel):
    """A torch MLP autoencoder (dim -> h -> b -> h -> dim), full-batch Adam on the recent rows;
    score = e / (e + q99) with e the squared reconstruction error and q99 the 99th percentile of
    the training errors (0.5 at q99), so one threshold serves every stream."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings) -> None:
        super().__init__(info, settings, settings.ae_window, settings.ae_every)
        self.epochs = settings.ae_epochs
        self.net: Any = None  # torch.nn.Sequential once fitted (torch is imported lazily)
        self.q99 = 1.0

    def _fit(self, f: np.ndarray) -> None:
        """(Re)fit the model on feature vectors of the recent rows."""
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        dim = f.shape[1]
        hidden = max(4, min(32, 2 * dim))
        bottleneck = max(2, dim // 4)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, bottleneck), nn.Tanh(),
            nn.Linear(bottleneck, hidden), nn.Tanh(), nn.Linear(hidden, dim),
        )
        x = torch.as_tensor(f, dtype=torch.float32)
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = ((self.net(x) - x) ** 2).mean()
            loss.backward()
            opt.step()
        err = self._errors(f)
        self.q99 = float(max(np.quantile(err, 0.99), 1e-9))

    def _errors(self, f: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error of each feature vector."""
        import torch

        assert self.net is not None
        with torch.no_grad():
            x = torch.as_tensor(f, dtype=torch.float32)
            return ((self.net(x) - x) ** 2).mean(dim=1).double().numpy()

    def _score(self, f: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of feature vectors under the fitted model."""
        e = self._errors(f)
        return e / (e + self.q99)

"""PySAD's streaming detectors (xStream, RS-Hash, LODA, RRCF, HalfSpaceTrees) as baselines.

Each runs per stream on the baselines' shared feature map (``Shingle``: the last ``k`` rows of
every channel scaled by the warm-up range), row by row: ``score_partial`` then
``fit_partial``, so every row is scored before the model learns it. Their raw scores are mapped
to [0, 1] by the stream's ``WarmupCalibration`` (operating threshold ``THRESHOLD``).

Parameters are PySAD's defaults, except RRCF's number of trees (``BaselineSettings.rrcf_trees``,
25 instead of 100: PySAD's pure-Python trees take 15-22 ms per row with 100 trees here, 4 ms
with 25). RS-Hash and HalfSpaceTrees are told the feature box [0, 1] (the warm-up range).

>>> from neurogate.evaluation.baselines import BaselineSettings
>>> from neurogate.evaluation.protocol import SourceInfo
>>> model = PySADModel(SourceInfo("s", 1, warmup=50), BaselineSettings(shingle=2), "loda")
>>> x = np.sin(np.arange(60) / 3.0)[:, None]
>>> for row in x:
...     _ = model.score(row[None], np.zeros(1)); model.learn(row[None], np.zeros(1))
>>> bool(model.score(np.array([[25.0]]), np.zeros(1))[0] > model.score(x[:1], np.zeros(1))[0])
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neurogate.evaluation.baselines import BaselineSettings, Shingle
from neurogate.evaluation.calibration import WarmupCalibration
from neurogate.evaluation.protocol import SourceInfo


def _xstream(_dim: int, s: BaselineSettings) -> Any:
    from pysad.models import xStream

    return xStream(random_state=s.seed)


def _rshash(dim: int, s: BaselineSettings) -> Any:
    from pysad.models import RSHash

    return RSHash(np.zeros(dim), np.ones(dim), random_state=s.seed)


def _loda(_dim: int, s: BaselineSettings) -> Any:
    from pysad.models import LODA

    return LODA(random_state=s.seed)


def _rrcf(_dim: int, s: BaselineSettings) -> Any:
    from pysad.models import RobustRandomCutForest

    return RobustRandomCutForest(num_trees=s.rrcf_trees, random_state=s.seed)


def _hst(dim: int, s: BaselineSettings) -> Any:
    from pysad.models import HalfSpaceTrees

    return HalfSpaceTrees(np.zeros(dim), np.ones(dim), random_state=s.seed)


MODELS: dict[str, Callable[[int, BaselineSettings], Any]] = {
    "xstream": _xstream, "rshash": _rshash, "loda": _loda, "rrcf": _rrcf, "hst": _hst,
}


class PySADModel:
    """One PySAD model over one stream's shingle, its raw scores calibrated on the warm-up."""

    def __init__(self, info: SourceInfo, settings: BaselineSettings, kind: str) -> None:
        if kind not in MODELS:
            raise KeyError(f"unknown PySAD model {kind!r}; known: {', '.join(MODELS)}")
        self.shingle = Shingle(info, settings.shingle)
        self.model = MODELS[kind](self.shingle.dim, settings)
        self.calibration = WarmupCalibration(info.warmup)
        self._raw = np.zeros(0)

    def rows_until_update(self) -> int:
        """PySAD models learn after every row."""
        return 1

    def score(self, x: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Calibrated scores of rows ``x`` from the model as it is (no learning)."""
        self._raw = np.array([float(np.asarray(self.model.score_partial(f)).ravel()[0])
                              for f in self.shingle.features(x)])
        return self.calibration(self._raw)

    def learn(self, x: np.ndarray, ts: np.ndarray) -> None:
        """Learn from rows that have just been scored (their raw scores feed the calibration)."""
        for f in self.shingle.features(x):
            self.model.fit_partial(f)
        self.calibration.observe(self._raw)
        self.shingle.push(x)

    def learn_labels(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """Unsupervised: labels are ignored."""

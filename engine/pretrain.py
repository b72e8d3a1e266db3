"""The pretrained NeuroNet shipped in ``engine/pretrained/neuronet.npz``: the generated series it
is trained on (never an evaluation corpus) and the one call that trains it
(``neurogate train --pretrain --out engine/pretrained/neuronet.npz``).

Each generated series mixes the shapes sensors produce: seasonal (one or two sines), random
walk and AR(1), square waves, sawtooth, piecewise-constant steps, plus trend, noise of random
size, sometimes quantisation to a step, and a few spikes. It is normalised as the engine
normalises a source, by its warm-up (first eighth, at least 150 values) minimum and maximum
widened by 10 % on each side (the ``range_margin`` default), so later values may leave [0, 1]
as live values do. The tokenizers of pretrained time-series models are the reference point:
Chronos scales each series by its mean absolute value and bins it uniformly; here the scale is
the warm-up range (what the engine knows about a source) and the bins are learned.

Examples
--------
>>> series = corpus(4, 500, seed=1)
>>> len(series), series[0].shape, series[0].dtype
(4, (500, 1), dtype('float32'))
"""

from __future__ import annotations

import numpy as np
from numba import njit

from neurogate.engine.encoder import FixedEncoder
from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig, TrainReport
from neurogate.engine.planted import compare, level_aucs

SEED = 20240601  # the corpus and the training seed of the shipped NeuroNet
SERIES = 256
LENGTH = 4096
STEPS = 1000
RANGE_MARGIN = 0.1  # warm-up range widened by this share on each side (EngineConfig default)
VALIDATION_SERIES, VALIDATION_LENGTH = 96, 3000  # the planted-anomaly check's own series
MARGIN = 0.01  # planted-AUC gain over the fixed codes for a level to serve (neuronet.margin)


@njit(cache=True)
def _ar(e: np.ndarray, phi: float) -> np.ndarray:
    out = np.empty_like(e)
    y = 0.0
    for i in range(e.size):
        y = phi * y + e[i]
        out[i] = y
    return out


def _one(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    kind = int(rng.integers(0, 7))
    x = np.zeros(n)
    if kind <= 2:  # seasonal: one or two sines
        for _ in range(int(rng.integers(1, 3))):
            x += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * t / rng.uniform(8, 400)
                                                + rng.uniform(0, 2 * np.pi))
    elif kind == 3:  # random walk or AR(1)
        x += 0.1 * _ar(rng.normal(0.0, 1.0, n), float(rng.uniform(0.8, 1.0)))
    elif kind == 4:  # square wave
        x += np.sign(np.sin(2 * np.pi * t / rng.uniform(20, 300) + rng.uniform(0, 2 * np.pi)))
    elif kind == 5:  # sawtooth
        x += (t / rng.uniform(20, 300)) % 1.0
    else:  # piecewise constant with rare steps
        x += np.cumsum(rng.random(n) < 0.003) * rng.normal(0.0, 1.0)
    x += rng.normal(0.0, 0.02) * t / n  # slow trend
    size = x.std() if x.std() > 0 else 1.0
    x += rng.normal(0.0, max(rng.uniform(0.0, 0.3) * size, 1e-3), n)
    if rng.random() < 0.3:  # a sensor that reports in steps
        step = size * rng.uniform(0.05, 0.3)
        x = np.round(x / step) * step
    for _ in range(int(rng.poisson(2))):  # a few spikes
        x[int(rng.integers(0, n))] += rng.normal(0.0, 4.0) * size
    warm = x[: max(150, n // 8)]
    lo, hi = warm.min(), warm.max()
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    low, width = lo - RANGE_MARGIN * span, span * (1 + 2 * RANGE_MARGIN)
    column: np.ndarray = ((x - low) / width).astype(np.float32)[:, None]  # stubs: Any
    return column


def corpus(count: int = SERIES, length: int = LENGTH, seed: int = SEED) -> list[np.ndarray]:
    """``count`` generated, normalised series [length, 1] (the same for the same arguments)."""
    rng = np.random.default_rng(seed)
    return [_one(rng, length) for _ in range(count)]


def pretrain(steps: int = STEPS, seed: int = SEED, progress: bool = False
             ) -> tuple[NeuroNet, TrainReport]:
    """Train the shipped NeuroNet (1 channel, default architecture) on ``corpus()`` and choose
    the levels it serves from the first event: those where its ROC-AUC on anomalies planted
    into a validation corpus (other series, ``seed + 1``) beats the fixed codes' by ``MARGIN``
    beyond two standard errors (``engine.planted.compare``, the online takeover's rule). Both
    are in ``net.meta``."""
    from neurogate.engine.neurotrain import fit

    net, report = fit(corpus(seed=seed), NeuroNetConfig(), steps=steps, seed=seed,
                      progress=progress)
    validation = corpus(VALIDATION_SERIES, VALIDATION_LENGTH, seed + 1)
    ours, fixed = level_aucs([net, FixedEncoder()], validation, seed=seed)
    serve = [lv for lv in sorted(ours) if compare(ours[lv], fixed[lv], MARGIN)[0]]
    net.meta = {
        "serve_levels": serve,
        "planted_auc": {str(lv): round(float(a.mean()), 4) for lv, a in ours.items()},
        "fixed_planted_auc": {str(lv): round(float(fixed[lv].mean()), 4) for lv in ours},
        "corpus": f"engine.pretrain.corpus(seed={seed}), {SERIES} x {LENGTH}",
        "code_perplexity": [round(p, 2) for p in report.code_perplexity],
    }
    return net, report

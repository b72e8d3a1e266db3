"""A labelled multivariate benchmark we generate (fixed seed), and how detectors are scored on
it (``neurogate.evaluation.labelled``: row-level, range-based, incident and per-kind figures).

Each source has several channels driven by one shared latent factor (so they are correlated),
a daily season, a slow drift of level and noise. After the warm-up (no anomalies there)
incidents of four kinds are planted, each in one channel: a *spike* (a few rows far off),
a *level shift* (an offset for a while), a *correlation break* (the channel leaves the shared
factor and follows its own process with the same mean and spread) and a *frozen sensor*
(the channel repeats one value). Labels are 1 on the incident's rows. The warm-up is NAB's
probationary period (15 %, at most 750 rows). Scoring: ``neurogate.evaluation.labelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from neurogate.evaluation import labelled
from neurogate.evaluation.labelled import Incident, LabelledStream
from neurogate.evaluation.nab import probation_length

KINDS = ("spike", "level_shift", "correlation_break", "frozen")
CHANNELS = ("load", "power", "temp", "flow")
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
STEP = 300.0  # 5 minutes
DAY = 288  # rows per day


@dataclass(frozen=True)
class MvSettings:
    """Size and mix of the generated benchmark."""

    sources: int = 6
    length: int = 6000
    incidents: int = 8  # per source, kinds in turn
    seed: int = 7


def generate(settings: MvSettings | None = None) -> list[LabelledStream]:
    """The benchmark's streams; the same settings always give the same data."""
    s = settings or MvSettings()
    rng = np.random.default_rng(s.seed)
    return [_stream(f"mv-{i}", s, rng) for i in range(s.sources)]


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with marginal standard deviation ``sd``."""
    e = rng.normal(0.0, sd * np.sqrt(1 - phi * phi), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def _stream(name: str, s: MvSettings, rng: np.random.Generator) -> LabelledStream:
    """One source: correlated seasonal channels with drift, then the planted incidents."""
    n, c = s.length, len(CHANNELS)
    t = np.arange(n)
    season = np.sin(2 * np.pi * (t / DAY + rng.uniform())) + 0.3 * np.sin(4 * np.pi * t / DAY)
    factor = _ar1(rng, n, 0.98, 0.6)
    drift = np.cumsum(rng.normal(0.0, 0.02, n)) + np.linspace(0.0, rng.uniform(-1, 1), n)
    gain = rng.uniform(0.6, 1.4, c) * rng.choice([-1.0, 1.0], c)
    base = rng.uniform(10, 50, c)
    scale = rng.uniform(1, 5, c)
    noise = np.stack([_ar1(rng, n, 0.5, 0.25) for _ in range(c)], axis=1)
    common = season[:, None] + factor[:, None] + 0.5 * drift[:, None]
    clean = common * gain + noise
    values = base + scale * clean
    labels = np.zeros(n, dtype=np.int8)
    incidents = []
    warm = probation_length(n)
    slots = np.linspace(warm + 100, n - 250, s.incidents).astype(int)
    for k, at in enumerate(slots):
        kind = KINDS[k % len(KINDS)]
        ch = int(rng.integers(c))
        start = int(at + rng.integers(-40, 40))
        sd = scale[ch] * float(np.std(clean[:warm, ch]))
        if kind == "spike":
            end = start + int(rng.integers(0, 3))
            values[start : end + 1, ch] += rng.choice([-1, 1]) * rng.uniform(5, 8) * sd
        elif kind == "level_shift":
            end = start + int(rng.integers(50, 150))
            values[start : end + 1, ch] += rng.choice([-1, 1]) * rng.uniform(2, 3) * sd
        elif kind == "correlation_break":
            end = start + int(rng.integers(100, 200))
            seg = values[start : end + 1, ch]
            own = _ar1(rng, len(seg), 0.98, 1.0)
            values[start : end + 1, ch] = seg.mean() + seg.std() * (own - own.mean()) / max(
                own.std(), 1e-9)
        else:  # frozen
            end = start + int(rng.integers(60, 150))
            values[start : end + 1, ch] = values[start, ch]
        labels[start : end + 1] = 1
        incidents.append(Incident(kind, ch, start, end))
    return LabelledStream(name, T0 + STEP * t, values, labels, tuple(incidents), warm)


# the benchmark's figures for one detector: ``evaluate(streams, detector, feed_labels=...,
# batch_size=..., progress=...)`` (``neurogate.evaluation.labelled.evaluate``)
evaluate = partial(labelled.evaluate, kinds=KINDS, desc="multivariate")

"""Planted-anomaly check (the NeuroNet's unsupervised takeover rule): the anomalies land where
they say, the AUC is the AUC, and a stream that sees nothing scores 0.5 while one that sees the
anomalies scores above it."""

from __future__ import annotations

import numpy as np
import pytest

from neurogate.engine.encoder import FixedEncoder, StreamSpec
from neurogate.engine.planted import KINDS, PER_SERIES, _auc, compare, level_aucs, plant


def seasonal(length: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return (0.5 + 0.3 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 0.01, length)
            ).astype(np.float32)[:, None]


class Blind:
    """An encoder whose codes never change: its streams cannot rank anything."""

    name, version, window, channels = "blind", "0", 16, 1
    streams = [StreamSpec(level=1, channel=0, dilation=2, vocab=4)]

    def encode(self, windows: np.ndarray) -> np.ndarray:
        return np.zeros((len(windows), 1, 3), dtype=np.int64)


def test_plant_puts_every_kind_in_the_second_half() -> None:
    x = seasonal()
    planted, spans = plant(x, np.random.default_rng(1))
    assert len(spans) == PER_SERIES >= len(KINDS)
    changed = np.flatnonzero(np.any(planted != x, axis=1))
    inside = np.zeros(len(x), dtype=bool)
    for lo, hi in spans:
        assert len(x) // 2 <= lo <= hi < len(x)
        inside[lo : hi + 1] = True
    assert changed.size and inside[changed].all()  # nothing changed outside the spans
    assert np.array_equal(plant(x, np.random.default_rng(1))[0], planted)  # seeded


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_counts_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 5, 200).astype(float)  # many ties
    label = (rng.random(200) < 0.3).astype(np.int8)
    pos, neg = score[label == 1], score[label == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert _auc(score, label) == pytest.approx(pairs)
    assert _auc(score, np.zeros(200, np.int8)) == 0.5


def test_a_blind_encoder_scores_half_and_fixed_codes_see_the_anomalies() -> None:
    series = [seasonal(seed=s) for s in range(4)]
    blind, fixed = level_aucs([Blind(), FixedEncoder()], series, seed=0)
    assert list(blind) == [1] and blind[1].shape == (4 * PER_SERIES,)
    assert abs(blind[1].mean() - 0.5) < 0.05  # surprise falling with time is no signal
    assert sorted(fixed) == list(range(7))
    assert max(a.mean() for a in fixed.values()) > 0.7


def test_compare_needs_a_gain_beyond_chance() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, 60)
    assert compare(base + 0.05 + rng.normal(0, 0.01, 60), base, 0.01)[0]
    noisy = base + 0.02 + rng.normal(0, 0.2, 60)  # a small mean gain, much noise
    wins, gain = compare(noisy, base, 0.01)
    assert not wins and gain > 0
    assert compare(base[:1], base[:1], 0.0) == (False, pytest.approx(float("nan"), nan_ok=True))

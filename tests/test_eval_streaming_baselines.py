"""The PySAD baselines, the z-score and Hotelling T^2 references and the warm-up calibration."""

from __future__ import annotations

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.evaluation.baselines import BaselineSettings
from neurogate.evaluation.calibration import THRESHOLD, WarmupCalibration
from neurogate.evaluation.protocol import SourceInfo, run_stream
from neurogate.evaluation.references import HotellingModel, ZScoreModel
from neurogate.evaluation.registry import (
    DEFAULT_ENGINE,
    DETECTORS,
    build_detector,
    parse_detectors,
    with_default,
)

NEW = ("pysad-xstream", "pysad-rshash", "pysad-loda", "pysad-rrcf", "pysad-hst", "zscore", "t2")


def three_channels(n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    return np.stack([np.sin(t / 10), np.cos(t / 7), np.sin(t / 13) + 0.5], axis=1) + rng.normal(
        0, 0.05, (n, 3))


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_a_planted_spike_scores_above_every_normal_row(name: str) -> None:
    n, warm = 600, 200
    x = three_channels(n)
    x[450:455, 1] += 5.0
    det = build_detector(name, EngineConfig(), BaselineSettings(shingle=4))
    run = run_stream(det, SourceInfo("s", 3, warm, has_calendar=False), np.arange(n, dtype=float),
                     x, batch_size=128)
    det.close()
    assert np.all((run.score >= 0) & (run.score <= 1))
    assert not run.score[:warm].any()  # warm-up rows are not scored
    normal = np.r_[run.raw[warm:450], run.raw[470:]]  # the shingle / smoothing window after it
    assert run.raw[450:455].max() > normal.max()


def test_the_new_detectors_are_in_the_registry_and_in_all() -> None:
    assert set(NEW) <= set(parse_detectors("all"))
    assert DEFAULT_ENGINE not in parse_detectors("all") and DEFAULT_ENGINE in DETECTORS


def test_the_default_configuration_is_reported_beside_a_changed_one() -> None:
    changed = EngineConfig().replace(top_k=3)
    assert with_default(["neurogate", "zscore"], changed) == ["neurogate", DEFAULT_ENGINE,
                                                              "zscore"]
    assert with_default(["neurogate", "zscore"], EngineConfig()) == ["neurogate", "zscore"]
    assert with_default(["zscore"], changed) == ["zscore"]
    det = build_detector(DEFAULT_ENGINE, changed, BaselineSettings())
    assert det.config == EngineConfig()  # type: ignore[attr-defined]


def test_calibration_is_monotone_and_fixed_from_the_second_half_of_the_warmup() -> None:
    cal = WarmupCalibration(warmup=100)
    assert not cal(np.array([5.0])).any()  # nothing before the warm-up ends
    cal.observe(np.r_[np.full(50, 1e6), np.linspace(0.0, 1.0, 50)])  # first half is ignored
    assert cal.frozen and cal.median == pytest.approx(0.5)
    raw = np.linspace(-5, 5, 101)
    out = cal(raw)
    assert np.all(np.diff(out) > 0) and out.min() > 0 and out.max() < 1
    flag_at = cal.median + cal.spread
    assert cal(np.array([flag_at]))[0] == pytest.approx(THRESHOLD)
    flat = WarmupCalibration(warmup=4)
    flat.observe(np.full(4, 3.0))  # constant warm-up scores: a tiny spread, no division by 0
    assert flat(np.array([3.0, 3.1]))[1] > 0.99 and flat(np.array([np.nan]))[0] == 0.0


def test_zscore_is_the_smoothed_largest_channel_by_hand() -> None:
    info = SourceInfo("s", 2, warmup=4)
    m = ZScoreModel(info, BaselineSettings(zscore_window=2))
    m.learn(np.array([[0.0, 10.0], [2.0, 10.0], [0.0, 12.0], [2.0, 12.0]]), np.zeros(4))
    # means (1, 11), stds (1, 1); last warm-up row has |z| = (1, 1)
    got = m.score(np.array([[4.0, 11.0], [1.0, 11.0]]), np.zeros(2))
    # row 1: channel 0 mean of |z| (1, 3) = 2, channel 1 (1, 0) = 0.5 -> m = 2
    # row 2: channel 0 (3, 0) = 1.5 -> m = 1.5
    assert got.tolist() == pytest.approx([2 / (2 + 3), 1.5 / (1.5 + 3)])
    flat = ZScoreModel(SourceInfo("s", 2, warmup=4), BaselineSettings(zscore_window=1))
    flat.learn(np.array([[0.0, 5.0], [2.0, 5.0], [0.0, 5.0], [2.0, 5.0]]), np.zeros(4))
    # a channel without warm-up variance is left out: its later change scores nothing
    assert flat.score(np.array([[1.0, 9.0]]), np.zeros(1)).tolist() == [0.0]


def test_hotelling_copes_with_constant_and_collinear_channels() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=300)
    warm = np.stack([a, 2 * a, np.full(300, 7.0)], axis=1)
    m = HotellingModel(SourceInfo("s", 3, warmup=300), BaselineSettings())
    m.learn(warm, np.zeros(300))
    s = m.score(np.array([[0.1, 0.2, 7.0], [1.0, -2.0, 7.0], [0.0, 0.0, 8.0]]), np.zeros(3))
    assert np.isfinite(s).all()
    # a broken relation flags; a channel without warm-up variance is left out (judged against
    # nothing, a setpoint raised once held the frozen reference at 1 for the rest of a stream)
    assert s[0] < 0.5 < s[1] and s[2] < 0.5
    units = np.array([1e6, 1e-4, 1.0])  # the same in other units
    scaled = HotellingModel(SourceInfo("s", 3, warmup=300), BaselineSettings())
    scaled.learn(warm * units, np.zeros(300))
    rows = np.array([[0.1, 0.2, 7.0], [1.0, -2.0, 7.0], [0.5, 1.1, 7.0]])
    np.testing.assert_allclose(scaled.score(rows * units, np.zeros(3)), m.score(rows, np.zeros(3)),
                               rtol=1e-6)

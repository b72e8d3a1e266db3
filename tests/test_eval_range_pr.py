"""Range-based precision and recall (Tatbul et al.) against examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurogate.evaluation.range_pr import range_pr_auc, range_scores, recall_of_ranges, runs


def test_runs_are_maximal_half_open() -> None:
    assert runs([0, 1, 1, 0, 1]).tolist() == [[1, 3], [4, 5]]
    assert runs([1, 1]).tolist() == [[0, 2]]
    assert runs([0, 0]).shape == (0, 2)


def test_two_ranges_by_hand() -> None:
    # real [2, 5) and [8, 10); predicted [1, 4), [9, 10), [11, 12)
    y = np.zeros(12, dtype=int)
    y[2:5] = y[8:10] = 1
    f = np.zeros(12, dtype=int)
    f[1:4] = f[9] = f[11] = 1
    s = range_scores([(y, f)])
    # recall: R1 overlaps 2 of 3 rows, R2 1 of 2 -> (2/3 + 1/2) / 2
    assert s.recall == pytest.approx(7 / 12)
    # precision: P1 2 of 3 rows in R1, P2 1 of 1, P3 0 -> (2/3 + 1 + 0) / 3
    assert s.precision == pytest.approx(5 / 9)
    assert s.f1 == pytest.approx(2 * (5 / 9) * (7 / 12) / (5 / 9 + 7 / 12))


def test_fragmented_detection_earns_less_and_existence_weight() -> None:
    y = np.zeros(12, dtype=int)
    y[0:10] = 1
    f = np.zeros(12, dtype=int)
    f[1:3] = f[5] = 1  # two predicted ranges inside one real range: gamma = 1/2
    assert range_scores([(y, f)]).recall == pytest.approx(0.5 * 3 / 10)
    assert range_scores([(y, f)], alpha=0.5).recall == pytest.approx(0.5 + 0.5 * 0.15)
    # one predicted range covering two real ranges: its precision is halved
    y2 = np.array([1, 1, 0, 1, 1, 0])
    f2 = np.array([1, 1, 1, 1, 1, 0])
    assert range_scores([(y2, f2)]).precision == pytest.approx(0.5 * 4 / 5)
    with pytest.raises(ValueError, match="alpha"):
        range_scores([(y, f)], alpha=2.0)


def test_streams_pool_their_ranges_and_edge_cases() -> None:
    a = (np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]))  # perfect
    b = (np.array([1, 0, 0, 0]), np.array([0, 0, 0, 0]))  # missed, no flag
    s = range_scores([a, b])
    assert s.recall == pytest.approx(0.5) and s.precision == pytest.approx(1.0)
    none = range_scores([(np.zeros(4), np.ones(4))])
    assert math.isnan(none.recall) and none.precision == 0.0
    assert range_scores([(np.ones(3), np.zeros(3))]).f1 == 0.0
    with pytest.raises(ValueError, match="length"):
        range_scores([(np.zeros(3), np.zeros(4))])


def test_recall_of_given_ranges() -> None:
    f = np.array([0, 1, 1, 0, 0, 1, 0, 0])
    assert recall_of_ranges(np.array([[0, 4], [4, 8]]), f).tolist() == pytest.approx(
        [0.5, 0.25])


def test_range_pr_auc() -> None:
    y = np.zeros(200, dtype=int)
    y[50:60] = y[120:140] = 1
    perfect = y.astype(float)
    assert range_pr_auc([(y, perfect)]) == pytest.approx(1.0)
    noise = np.random.default_rng(0).uniform(size=200)
    assert range_pr_auc([(y, noise)]) < 0.5
    assert math.isnan(range_pr_auc([(np.zeros(5), noise[:5])]))
    assert range_pr_auc([(y, np.full(200, np.nan))]) == 0.0

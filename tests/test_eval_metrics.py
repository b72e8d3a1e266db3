"""neurogate.evaluation.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from neurogate.evaluation.metrics import (
    average_precision,
    best_f1,
    binary_report,
    confusion,
    pr_curve,
    roc_auc,
)


def test_confusion_precision_recall_f1_by_hand() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    flag = [1, 1, 0, 1, 0, 0, 0, 0]
    c = confusion(y, flag)
    assert (c.tn, c.fp, c.fn, c.tp) == (4, 1, 1, 2)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)


def test_empty_flags_and_no_positives_give_zero_not_nan() -> None:
    assert confusion([1, 0], [0, 0]).precision == 0.0
    assert confusion([0, 0], [1, 0]).recall == 0.0
    assert confusion([1, 0], [0, 0]).f1 == 0.0
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_average_precision_and_roc_auc_by_hand() -> None:
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg)
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    assert average_precision(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    assert roc_auc(y, s) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered right


def test_ties_count_half_in_roc_and_group_in_pr() -> None:
    y, s = [1, 0], [0.5, 0.5]
    assert roc_auc(y, s) == pytest.approx(0.5)
    precision, recall, thresholds = pr_curve(y, s)
    assert thresholds.tolist() == [0.5] and precision.tolist() == [0.5]
    assert recall.tolist() == [1.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=2000) < 0.05
    s = np.round(rng.normal(size=2000) + 1.5 * y, 1)  # rounding creates ties
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    flag = s > 1.0
    assert confusion(y, flag).f1 == pytest.approx(f1_score(y, flag))
    f1, thr = best_f1(y, s)
    assert f1 == pytest.approx(max(f1_score(y, s >= t) for t in np.unique(s)))
    assert f1_score(y, s >= thr) == pytest.approx(f1)


def test_nan_scores_rank_lowest_and_report_is_json_ready() -> None:
    y = [1, 0, 0]
    s = [np.nan, 0.2, 0.1]
    assert roc_auc(y, s) == 0.0
    rep = binary_report(y, [0.9, 0.2, 0.1], [True, False, False]).as_dict()
    assert rep["confusion"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 1}
    assert rep["f1"] == 1.0 and rep["pr_auc"] == 1.0 and rep["roc_auc"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([1, 0], [0.1])

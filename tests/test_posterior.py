"""The naive-Bayes posterior and the seed's explanation line
``pid(..) prior_v(..) posterior(..) likely(..) prior(..) prior st(..) prior ast(..)``."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.patterns import BI, BICTX, CAL, CALCTX, NKINDS, TOTAL, TRI, TRICTX, UNI
from neurogate.engine.posterior import ClassEvidence, class_log_likelihoods, explain, log_odds

LINE = re.compile(
    r"pid\((?P<pid>\d+)\) prior_v\((?P<prior_v>[01])\) posterior\((?P<posterior>-?\d+\.\d{6})\) "
    r"likely\((?P<likely>-?\d+\.\d{6})\) prior\((?P<prior>-?\d+\.\d{6})\) "
    r"prior st\((?P<st>\d+)\) prior ast\((?P<ast>\d+)\)"
)


def evidence_inputs(
    st0: int, st1: int, streams: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random but consistent (counts [k, NKINDS, 3], p_uni [k], keys [k, NKINDS]): per class,
    the stream total is st0/st1 (what explain reads as labelled events), and every pattern is
    seen at most as often as its context, which is seen at most as often as the total."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((streams, NKINDS, 3), dtype=np.int64)
    for col, total in ((1, st0), (2, st1)):
        counts[:, TOTAL, col] = total
        counts[:, UNI, col] = rng.integers(0, total + 1, size=streams)
        for ctx, pattern in ((CALCTX, CAL), (BICTX, BI), (TRICTX, TRI)):
            counts[:, ctx, col] = rng.integers(0, total + 1, size=streams)
            counts[:, pattern, col] = rng.integers(0, counts[:, ctx, col] + 1)
    counts[..., 0] = counts[..., 1] + counts[..., 2] + rng.integers(0, 100, size=(streams, 1))
    p_uni = rng.uniform(0.001, 0.9, size=streams)
    keys = rng.integers(1, 2**63, size=(streams, NKINDS)).astype(np.uint64)
    return counts, p_uni, keys


def parse(line: str) -> dict[str, float | int]:
    m = LINE.fullmatch(line)
    assert m, f"explanation line has the wrong format: {line!r}"
    return {k: (int if k in ("pid", "prior_v", "st", "ast") else float)(v)
            for k, v in m.groupdict().items()}


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 10**6),
    st.integers(1, 10**6),
    st.integers(1, 6),
    st.integers(0, 2**16),
    st.floats(0.01, 10.0),
)
def test_explanation_arithmetic(st0: int, st1: int, streams: int, seed: int, beta: float) -> None:
    counts, p_uni, keys = evidence_inputs(st0, st1, streams, seed)
    lines = explain(counts, p_uni, keys, beta, TRI)
    ll = class_log_likelihoods(counts[None], p_uni[None], beta)[0]
    assert [e.prior_v for e in lines] == [0, 1]
    for e in lines:
        y = e.prior_v
        assert (e.st, e.ast) == ((st0, st1)[y], st0 + st1)
        assert e.prior == pytest.approx(math.log(e.st / e.ast), abs=1e-12)
        assert abs(e.posterior - (e.likely + e.prior)) <= 1e-9
        assert e.likely == pytest.approx(ll[:, y].sum(), rel=1e-12)
        best = int(np.argmax(ll[:, y] - ll[:, 1 - y]))  # the stream that leans most toward y
        assert e.pid == int(keys[best, TRI])
        assert e.likely <= 0 and e.prior <= 0
    # the log-odds the detector reports is the difference of the two posteriors
    odds = log_odds(counts[None], p_uni[None], beta)[0]
    assert odds == pytest.approx(lines[1].posterior - lines[0].posterior, rel=1e-9, abs=1e-9)


def test_seed_numbers() -> None:
    counts, p_uni, keys = evidence_inputs(2993, 1)
    normal, anomaly = explain(counts, p_uni, keys, 1.0, TRI)
    assert f"{normal.prior:.6f}" == "-0.000334"
    assert f"{anomaly.prior:.6f}" == "-8.004366"
    assert normal.line().endswith("prior(-0.000334) prior st(2993) prior ast(2994)")
    assert anomaly.line().endswith("prior(-8.004366) prior st(1) prior ast(2994)")
    for e in (normal, anomaly):
        fields = parse(e.line())
        assert fields["posterior"] == pytest.approx(fields["likely"] + fields["prior"], abs=2e-6)


def test_line_format() -> None:
    e = ClassEvidence(pid=18446744073709551615, prior_v=1, posterior=-12.5, likely=-4.4958,
                      prior=-8.0043662, st=1, ast=2994)
    assert e.line() == (
        "pid(18446744073709551615) prior_v(1) posterior(-12.500000) likely(-4.495800) "
        "prior(-8.004366) prior st(1) prior ast(2994)"
    )
    assert parse(e.line())["pid"] == 18446744073709551615


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # -inf - -inf
@pytest.mark.parametrize(("st0", "st1", "classes"), [(5, 0, [0]), (0, 7, [1]), (0, 0, [])])
def test_only_classes_with_labels_get_a_line(st0: int, st1: int, classes: list[int]) -> None:
    counts, p_uni, keys = evidence_inputs(st0, st1)
    lines = explain(counts, p_uni, keys, 1.0, TRI)
    assert [e.prior_v for e in lines] == classes
    for e in lines:
        assert e.prior == 0.0 and e.ast == e.st  # the only class has all the labelled events
    assert np.isnan(log_odds(counts[None], p_uni[None], 1.0)).all()


def test_class_likelihood_is_the_smoothed_back_off_chain() -> None:
    counts = np.zeros((1, 1, NKINDS, 3))
    anomaly = {TOTAL: 4, UNI: 2, CALCTX: 2, CAL: 1, BICTX: 1, BI: 1, TRICTX: 0, TRI: 0}
    for kind, n in anomaly.items():
        counts[0, 0, kind, 2] = n
    p_uni, beta = np.array([[0.25]]), 1.0
    p = (2 + 0.25) / (4 + 1)  # unigram, smoothed toward the class-free probability
    p = (1 + p) / (2 + 1)  # calendar
    p = (1 + p) / (1 + 1)  # bigram
    p = (0 + p) / (0 + 1)  # trigram context never seen: back-off passes through
    ll = class_log_likelihoods(counts, p_uni, beta)
    assert ll[0, 0, 1] == pytest.approx(math.log(p))
    assert ll[0, 0, 0] == pytest.approx(math.log(0.25))  # no normal counts: the prior p_uni


def test_more_class_evidence_raises_that_class_posterior() -> None:
    counts, p_uni, keys = evidence_inputs(100, 10, streams=2)
    counts[:, [TRI, TRICTX, BI, BICTX, CAL, CALCTX, UNI], 2] = 0  # no anomaly evidence yet
    before = explain(counts, p_uni, keys, 1.0, TRI)[1]
    counts[0, [TRI, TRICTX, BI, BICTX, CAL, CALCTX, UNI], 2] = 9  # stream 0: 9 of 10 anomalies
    after = explain(counts, p_uni, keys, 1.0, TRI)[1]
    assert after.likely > before.likely and after.posterior > before.posterior
    assert after.pid == int(keys[0, TRI])


def test_detector_explanations_satisfy_the_arithmetic() -> None:
    config = EngineConfig(warmup=30).replace(**{"neuronet.enabled": False})
    events = []
    for i in range(600):
        anomaly = i % 40 == 20 and i > 60
        value = math.sin(i / 4) + (4.0 + i / 100 if anomaly else 0.0)
        events.append(Event("m", 1_700_000_000.0 + 60 * i, (value,), label=int(anomaly)))
    out = Detector(config).process_many(events)
    lines = [line for r in out for line in (e.line() for e in r.explanation)]
    assert lines, "no flagged labelled event carried an explanation"
    for line in lines:
        f = parse(line)
        assert f["prior"] == pytest.approx(math.log(f["st"] / f["ast"]), abs=1e-6)
        assert f["posterior"] == pytest.approx(f["likely"] + f["prior"], abs=2e-6)
    for r in out:
        if r.explanation:
            assert r.posterior is not None
            by_class = {e.prior_v: e.posterior for e in r.explanation}
            assert r.posterior == pytest.approx(by_class[1] - by_class[0], abs=1e-9)

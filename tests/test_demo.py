"""The demo stream: deterministic, interleaved, every anomaly kind planted, honest evaluation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from neurogate.cli.demo import DEMO_START, KINDS, DemoTruth, Incident, demo_events
from neurogate.engine.events import Event


@pytest.fixture(scope="module")
def demo() -> tuple[list[Event], DemoTruth]:
    """The default demo stream (built once for this module)."""
    return demo_events()


def test_shape_and_interleaving(demo: tuple[list[Event], DemoTruth]) -> None:
    events, _ = demo
    assert len(events) == 8 * 5000
    assert len({e.source for e in events}) == 8
    ts = [e.ts for e in events]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert events[0].ts == DEMO_START and events[0].source == "pump-1"
    assert [e.source for e in events[:8]] == [e.source for e in events[8:16]]
    assert all(e.fields == ("value",) and np.isfinite(e.values[0]) for e in events)
    assert events[8].ts - events[0].ts == 300.0


def test_deterministic_per_seed() -> None:
    a = demo_events(sources=3, length=1500, seed=7)
    assert a == demo_events(sources=3, length=1500, seed=7)
    assert a[0] != demo_events(sources=3, length=1500, seed=8)[0]


def test_all_kinds_planted_after_warmup(demo: tuple[list[Event], DemoTruth]) -> None:
    events, truth = demo
    assert truth.kinds == KINDS
    assert set(Counter(i.kind for i in truth.incidents)) == set(KINDS)
    per_source = Counter(i.source for i in truth.incidents)
    assert set(per_source.values()) == {3}
    warmup_end = DEMO_START + 0.15 * 5000 * 300.0
    assert all(warmup_end <= i.first_ts <= i.last_ts for i in truth.incidents)
    for source in per_source:  # spaced apart: tolerance windows never overlap
        mine = sorted((i for i in truth.incidents if i.source == source), key=lambda i: i.first_ts)
        for a, b in zip(mine, mine[1:], strict=False):
            assert a.last_ts + 12 * 300.0 < b.first_ts


def test_labels_match_truth(demo: tuple[list[Event], DemoTruth]) -> None:
    events, truth = demo
    assert all(bool(e.label) == truth.is_anomalous(e.source, e.ts) for e in events[::11])
    flagged = [(e.source, e.ts) for e in events if e.label]
    result = truth.evaluate(flagged)
    assert result["recall"] == 1.0 and result["precision"] == 1.0
    assert result["per_kind"] == dict.fromkeys(KINDS, 1.0)


def test_anomalies_change_the_signal() -> None:
    events, truth = demo_events(sources=4, length=3000, seed=1)
    x = np.array([e.values[0] for e in events if e.source == "pump-1"])
    seen = set()
    for inc in truth.incidents:
        if inc.source == "pump-1":  # source 0 has no time offset, so ts maps straight to index
            i, j = (round((t - DEMO_START) / 300.0) for t in (inc.first_ts, inc.last_ts))
            seg = x[i : j + 1]
            if inc.kind == "frozen":
                assert seg.size > 1 and np.all(seg == seg[0])
            elif inc.kind == "spike":
                assert abs(seg[0] - np.median(x)) > 15  # daily range is about +-10
            elif inc.kind == "level_shift":
                before = x[i - 288 : j + 1 - 288]  # same hours one day earlier
                assert abs(seg.mean() - before.mean()) > 5
            seen.add(inc.kind)
    assert seen == {"spike", "level_shift", "frozen"}


def test_evaluate_arithmetic_by_hand() -> None:
    truth = DemoTruth(
        kinds=("spike", "frozen"),
        incidents=(
            Incident("a", "spike", 100.0, 100.0),
            Incident("a", "frozen", 1000.0, 1100.0),
            Incident("b", "spike", 100.0, 200.0),
        ),
        step=10.0,
        tolerance_steps=2,
    )
    flagged = [
        ("a", 120.0),  # inside spike's tolerance (100 + 2 * 10): hit
        ("a", 121.0),  # just outside: false flag
        ("b", 1050.0),  # inside a's frozen window, wrong source: false flag
        ("a", 1100.0),  # frozen: hit
        ("c", 100.0),  # unknown source: false flag
    ]
    result = truth.evaluate(flagged)
    assert result["detected"] == 2 and result["incidents"] == 3
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["flags"] == 5 and result["true_flags"] == 2
    assert result["precision"] == pytest.approx(2 / 5)
    assert result["per_kind"] == {"spike": 0.5, "frozen": 1.0}
    assert truth.is_anomalous("a", 1050.0) and not truth.is_anomalous("a", 1101.0)
    assert truth.evaluate([])["precision"] == 0.0


def test_short_streams_and_bad_arguments() -> None:
    events, truth = demo_events(sources=2, length=100)
    assert len(events) == 200 and truth.incidents == ()
    hourly, truth = demo_events(sources=2, length=2000, step=3600.0)
    assert len(truth.incidents) == 6 and {i.kind for i in truth.incidents} == set(KINDS)
    with pytest.raises(ValueError):
        demo_events(sources=0)

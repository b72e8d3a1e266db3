"""The public API (``neurogate``): River-style learn_one/score_one, score_many that learns
nothing, the context manager, and ``detect`` on a pandas DataFrame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import neurogate
from neurogate import Detector, EngineConfig, Event, open_store

T0 = 1_700_000_000.0


def config() -> EngineConfig:
    return EngineConfig(warmup=40).replace(**{"neuronet.enabled": False})


def wave(source: str, start: int, n: int, channels: int = 1) -> list[Event]:
    fields = ("value",) if channels == 1 else tuple(f"c{i}" for i in range(channels))
    return [Event(source, T0 + 60.0 * t,
                  tuple(math.sin(t / 7 + c) + 0.05 * ((t * 7919 + c) % 13) for c in
                        range(channels)), fields) for t in range(start, start + n)]


def test_the_public_names_are_importable_and_versioned() -> None:
    assert set(neurogate.__all__) >= {"Detector", "EngineConfig", "Event", "open_store",
                                      "detect", "__version__"}
    assert neurogate.__version__.count(".") >= 1


@pytest.mark.slow
def test_score_many_learns_nothing() -> None:
    """A detector that also ran score_many (on known sources, a new source and a new field
    set) then goes on exactly like one that never did."""
    history = wave("a", 0, 300) + wave("m", 0, 300, channels=3)
    later = wave("a", 300, 200) + wave("m", 300, 200, channels=3)
    probe = wave("a", 300, 50) + wave("m", 300, 50, channels=3) + wave("new", 0, 80) + \
        wave("other", 0, 60, channels=2)
    plain, probed = Detector(config()), Detector(config())
    plain.process_many(history)
    probed.process_many(history)
    before = len(probed.cache)
    scored = probed.score_many(probe)
    assert (scored.status[: 100] == 0).all() and scored.score[:100].max() > 0
    assert "new" not in probed._sources and len(probed.banks) == 2
    assert probed.events_seen == plain.events_seen and len(probed.cache) >= before
    np.testing.assert_array_equal(probed.process_many(later).score,
                                  plain.process_many(later).score)
    # and a source first seen in score_many starts clean when it really arrives
    np.testing.assert_array_equal(probed.process_many(wave("new", 0, 80)).score,
                                  plain.process_many(wave("new", 0, 80)).score)


def test_score_one_and_learn_one_are_river_style() -> None:
    det = Detector(config())
    assert det.score_one({"temp": 1.0}) == 0.0  # warming up
    for t in range(300):
        det.learn_one({"temp": math.sin(t / 5), "rpm": 100 + math.cos(t / 5)})
    usual = {"temp": math.sin(300 / 5), "rpm": 100 + math.cos(300 / 5)}
    first = det.score_one(usual)
    assert det.score_one(usual) == first  # scoring learned nothing
    assert det.score_one({"temp": 9.0, "rpm": 100.0}) > max(first, 0.9)
    det.learn_one(usual)
    assert det.events_seen == 301
    with pytest.raises(ValueError, match="number"):
        det.learn_one({"temp": "hot"})
    with pytest.raises(ValueError, match="at least one field"):
        det.score_one({})


@pytest.mark.slow
def test_the_detector_flushes_its_counts_when_the_with_block_ends(tmp_path) -> None:
    store = open_store(str(tmp_path / "api.db"))
    with Detector(config(), store) as det:
        det.process_many(wave("a", 0, 100))
    assert store.size() > 0 and store.get_meta("detector/state") is not None
    store.close()


def test_detect_scores_a_frame_and_explains_its_flags() -> None:
    t = pd.date_range("2024-01-01", periods=600, freq="5min", tz="UTC")
    rng = np.random.default_rng(0)
    base = np.sin(np.arange(600) / 20)
    df = pd.DataFrame({"when": t, "site": ["x"] * 300 + ["y"] * 300,
                       "load": base + rng.normal(0, 0.05, 600),
                       "power": 2 * base + rng.normal(0, 0.05, 600)})
    df.loc[250:280, "power"] = df.loc[250:280, "power"].mean()  # power stops following load
    out = neurogate.detect(df, time="when", source="site", config=config())
    assert list(out.columns) == list(df.columns) + ["score", "flagged", "status", "explanation"]
    assert (out.status.iloc[:40] == "warming").all() and (out.score.iloc[:40] == 0).all()
    hits = out.index[out.flagged]
    assert any(250 <= i <= 290 for i in hits)
    assert all(out.explanation[hits] != "") and (out.explanation[~out.flagged] == "").all()
    assert (df.columns == out.columns[: len(df.columns)]).all()  # the input is not changed
    indexed = neurogate.detect(df.set_index("when")[["load", "power"]], config=config())
    assert len(indexed) == 600
    with pytest.raises(KeyError, match="no column 'nope'"):
        neurogate.detect(df, values=["nope"])
    with pytest.raises(ValueError, match="no numeric value column"):
        neurogate.detect(df[["site"]])


def test_a_range_given_up_front_fixes_the_bins_and_is_checked() -> None:
    cfg = config()
    given, learned = Detector(cfg), Detector(cfg)
    given.set_range("a", -5.0, 5.0)
    given.process_many(wave("a", 0, 100))
    learned.process_many(wave("a", 0, 100))
    (bank, row) = given._sources["a"]
    np.testing.assert_array_equal(bank.state.lo[row], [-5.0])
    np.testing.assert_array_equal(bank.state.scale[row], [10.0])
    assert learned._sources["a"][0].state.scale[row][0] < 3  # the warm-up's own range
    with pytest.raises(ValueError, match="already fixed its range"):
        given.set_range("a", 0.0, 1.0)
    with pytest.raises(ValueError, match="lo must not exceed hi"):
        given.set_range("b", 1.0, 0.0)
    given.process_many(wave("m", 0, 5, channels=3))
    with pytest.raises(ValueError, match="3 channels"):
        given.set_range("m", [0.0, 0.0], [1.0, 1.0])

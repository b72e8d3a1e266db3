"""NeuroNet lifecycle inside the detector: cold start on fixed codes (or a pretrained NeuroNet),
training off the scoring path installed at a fixed event count, warming, shadow decision,
scheduled retraining to new versions, artifacts kept for rollback, resume."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.encoders import BUILTIN
from neurogate.engine.events import Event
from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig
from neurogate.engine.stores import MemoryStore


def stream(n: int, sources: int = 3) -> list[Event]:
    """Interleaved seasonal sources with noise."""
    rng = np.random.default_rng(7)
    out = []
    for t in range(n):
        for s in range(sources):
            v = math.sin(2 * math.pi * t / 48 + s) + 0.1 * rng.standard_normal()
            out.append(Event(f"s{s}", 1_700_000_000.0 + 300 * t, (v,)))
    return out


@pytest.fixture
def cfg() -> EngineConfig:
    return EngineConfig(warmup=100).replace(**{
        "neuronet.train_after": 900, "neuronet.retrain_every": 900, "neuronet.shadow_events": 300,
        "neuronet.train_events": 300, "neuronet.levels": 2, "neuronet.hidden": 4,
        "neuronet.steps": 15, "neuronet.reservoir": 256, "neuronet.background": False,
        "neuronet.pretrained": "",
    })


def run(det: Detector, events: list[Event], batch: int = 256) -> list[str]:
    versions = []
    for i in range(0, len(events), batch):
        versions.append(det.process_many(events[i : i + batch]).model_version)
    return versions


def test_fixed_codes_serve_until_a_neuronet_is_installed_then_it_shadows(
        cfg: EngineConfig) -> None:
    det = Detector(cfg)
    versions = run(det, stream(600))  # 1,800 events: training starts at 1,024, due at 1,324
    assert all("neuronet" not in v for v in versions[:5])  # up to 1,280 events
    assert "neuronet:" in versions[5] and "[shadow]" in versions[5]  # installed at 1,536
    (status,) = det.status()["encoders"].values()
    assert len(status["training"]) == 1 and "L1 acc" in status["training"][0]
    (net,) = status["neuronets"].values()
    assert len(net["perplexity"]) == 2 and all(p >= 1.0 for p in net["perplexity"])
    assert len(net["live_perplexity"]) == 2 and status["pending"] is None
    assert det.timings["train_seconds"] > 0
    names = det.store.meta_names("encoder/neuronet/")
    assert len(names) == 1 and names[0].split("/")[-1] in versions[-1]


@pytest.mark.slow
def test_background_training_gives_the_inline_result_at_the_same_event(
        cfg: EngineConfig) -> None:
    """A job trained in a separate process is installed at the same event count as one trained
    inline, with the same weights: scores are identical, however long training took."""
    events = stream(500)
    inline = Detector(cfg)
    background = Detector(cfg.replace(**{"neuronet.background": True}))
    a = [inline.process_many(events[i : i + 256]) for i in range(0, len(events), 256)]
    b = [background.process_many(events[i : i + 256]) for i in range(0, len(events), 256)]
    assert [x.model_version for x in a] == [x.model_version for x in b]
    assert "neuronet" in a[-1].model_version
    np.testing.assert_array_equal(np.concatenate([x.score for x in a]),
                                  np.concatenate([x.score for x in b]))


def test_training_waits_for_sources_past_their_warm_up(cfg: EngineConfig) -> None:
    """Many sources arriving in turn: at ``train_after`` events every source is still warming
    up, so there is nothing to train on yet; training starts once some source has data."""
    det = Detector(cfg.replace(**{"neuronet.train_after": 300}))
    run(det, stream(150, sources=8)[:512])  # nothing ready yet: no training started
    (status,) = det.status()["encoders"].values()
    assert status["pending"] is None and det.lifecycles[("value",)].last_train == 0
    run(det, stream(150, sources=8)[512:])
    assert det.lifecycles[("value",)].last_train > 0


def test_scheduled_retraining_makes_new_versions_decided_on_planted_anomalies(
    cfg: EngineConfig,
) -> None:
    det = Detector(cfg, MemoryStore())
    run(det, stream(1000))  # 3,000 events: trainings at ~1,024, ~2,048
    (status,) = det.status()["encoders"].values()
    assert len(status["training"]) >= 2
    assert status["decisions"], "a shadow decision was taken for the first candidate"
    for decision in status["decisions"]:
        assert set(decision["levels"]) <= {1, 2}
        for level in decision["levels"].values():
            assert level["rule"] == "planted" and isinstance(level["takes_over"], bool)
            assert 0.0 <= level["candidate"] <= 1.0 and 0.0 <= level["serving"] <= 1.0
    artifacts = det.store.meta_names("encoder/neuronet/")
    assert len(artifacts) == len(status["training"]) >= 2  # every version kept for rollback
    assert len(set(artifacts)) == len(artifacts)


def test_labels_in_the_shadow_period_decide_by_separation(cfg: EngineConfig) -> None:
    events = stream(700)
    labelled = [Event(e.source, e.ts, e.values, label=int(i % 41 == 0))
                for i, e in enumerate(events)]
    det = Detector(cfg)
    run(det, labelled)
    (status,) = det.status()["encoders"].values()
    (decision,) = status["decisions"]
    assert {lv["rule"] for lv in decision["levels"].values()} == {"separation"}


@pytest.mark.parametrize("split", [900, 1200])
def test_resume_gives_the_same_scores(cfg: EngineConfig, split: int) -> None:
    """A detector resumed from a store's state snapshot scores as if it had never stopped:
    at 1,200 events with a trained NeuroNet in shadow, restored from the registry; at 900 with
    a training job started but not installed, restarted from the payload the snapshot holds
    (and installed at the same event, 1,200)."""
    events = stream(600)
    whole = Detector(cfg)
    full = np.concatenate([whole.process_many(events[i : i + 300]).score
                           for i in range(0, len(events), 300)])
    store = MemoryStore()
    first = Detector(cfg, store, flush_every=None)
    part1 = [first.process_many(events[i : i + 300]).score for i in range(0, split, 300)]
    (status,) = first.status()["encoders"].values()
    if split == 900:
        assert status["pending"] == {"started_at": 900, "due_at": 1200, "done": True}
    first.close()
    second = Detector(cfg, store, flush_every=None)  # restores state + NeuroNet from the store
    assert second.model_version() == first.model_version()
    assert ("neuronet" in second.model_version()) == (split == 1200)
    part2 = [second.process_many(events[i : i + 300]).score
             for i in range(split, len(events), 300)]
    (after,), (want,) = second.status()["encoders"].values(), whole.status()["encoders"].values()
    assert after["decisions"] == want["decisions"] and after["serving"] == want["serving"]
    np.testing.assert_array_equal(np.concatenate(part1 + part2), full)


def test_the_pretrained_neuronet_serves_from_the_first_event_and_is_fine_tuned(
        cfg: EngineConfig) -> None:
    """The shipped NeuroNet serves the levels its planted-anomaly check chose (its artifact
    says which) from the first event; online training fine-tunes it (same architecture)."""
    pretrained = NeuroNet.load(BUILTIN)
    levels = pretrained.meta["serve_levels"]
    assert levels and set(levels) <= {1, 2, 3, 4, 5, 6}
    store = MemoryStore()
    det = Detector(cfg.replace(**{"neuronet.pretrained": "builtin"}), store)
    versions = run(det, stream(700))  # training at 1,024, installed at 1,536, decided at 2,048
    det.flush()
    again = Detector(cfg.replace(**{"neuronet.pretrained": "builtin"}), store)
    assert again.model_version() == det.model_version()  # the view of levels is restored
    assert f"neuronet:{pretrained.version}[{','.join(map(str, levels))}]" in versions[0]
    (status,) = det.status()["encoders"].values()
    assert len(status["neuronets"][pretrained.version]["live_perplexity"]) == len(levels)
    (candidate,) = det.status()["encoders"]["value"]["decisions"]
    cand = NeuroNet.from_bytes(det.store.get_meta(f"encoder/neuronet/{candidate['candidate']}"))
    assert cand.config == pretrained.config != NeuroNetConfig(window=16, levels=2, hidden=4)
    level0 = Detector(cfg.replace(**{"neuronet.pretrained": "builtin", "fixed.levels": 1}))
    assert "neuronet" not in level0.process_many(stream(10)).model_version  # no level 4, 5
    pair = Detector(cfg.replace(**{"neuronet.pretrained": "builtin"}))
    out = pair.process_many([Event("x", float(t), (1.0, 2.0), ("a", "b")) for t in range(50)])
    assert "neuronet" not in out.model_version  # 2 channels: the 1-channel net does not fit


def test_without_torch_a_pretrained_neuronet_still_serves(
        cfg: EngineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving needs no torch (numpy/numba); training does: without torch the shipped NeuroNet
    serves its levels, nothing is trained, and the run goes on."""
    from neurogate.engine.extras import _warn_neuronet_off

    monkeypatch.setitem(sys.modules, "torch", None)
    _warn_neuronet_off.cache_clear()
    try:
        det = Detector(cfg.replace(**{"neuronet.pretrained": "builtin"}))
        versions = run(det, stream(600))
    finally:
        _warn_neuronet_off.cache_clear()
    levels = NeuroNet.load(BUILTIN).meta["serve_levels"]
    assert all(f"[{','.join(map(str, levels))}]" in v and "shadow" not in v for v in versions)
    (status,) = det.status()["encoders"].values()
    assert status["training"] == [] and status["pending"] is None

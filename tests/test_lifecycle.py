"""NeuroNet lifecycle inside the detector: cold start on fixed codes, training, warming, shadow
decision, scheduled retraining to new versions, artifacts kept for rollback, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
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
        "neuronet.levels": 2, "neuronet.hidden": 4, "neuronet.max_steps_per_level": 15,
        "neuronet.reservoir": 256,
    })


def run(det: Detector, events: list[Event], batch: int = 256) -> list[str]:
    versions = []
    for i in range(0, len(events), batch):
        versions.append(det.process_many(events[i : i + batch]).model_version)
    return versions


def test_fixed_codes_serve_until_a_neuronet_is_trained_then_it_shadows(cfg: EngineConfig) -> None:
    det = Detector(cfg)
    versions = run(det, stream(400))  # 1,200 events: one training at 900
    assert versions[0].startswith("fixed:") and "neuronet" not in versions[0]
    assert "neuronet:" in versions[-1] and "[shadow]" in versions[-1]
    (status,) = det.status()["encoders"].values()
    assert len(status["training"]) == 1 and "level 1" in status["training"][0]
    assert det.timings["train_seconds"] > 0
    names = det.store.meta_names("encoder/neuronet/")
    assert len(names) == 1 and names[0].split("/")[-1] in versions[-1]


def test_training_waits_for_sources_past_their_warm_up(cfg: EngineConfig) -> None:
    """Many sources arriving in turn: at ``train_after`` events every source is still warming
    up, so there is nothing to train on yet; training happens once some source has data."""
    det = Detector(cfg.replace(**{"neuronet.train_after": 300}))
    versions = run(det, stream(150, sources=8))  # 1,200 events; warm-ups end at ~800
    assert "neuronet" not in versions[1]  # 512 events seen, nothing ready: no training
    assert "neuronet:" in versions[-1]
    assert det.timings["train_seconds"] > 0


def test_scheduled_retraining_makes_new_versions_with_their_own_namespace(
    cfg: EngineConfig,
) -> None:
    det = Detector(cfg, MemoryStore())
    run(det, stream(1000))  # 3,000 events: trainings at ~900, ~1,800, ~2,700
    (status,) = det.status()["encoders"].values()
    assert len(status["training"]) >= 2
    assert status["decisions"], "a shadow decision was taken for the first candidate"
    for decision in status["decisions"]:
        assert set(decision["levels"]) <= {1, 2}
        for level in decision["levels"].values():
            assert level["rule"] in ("rho", "separation") and isinstance(level["takes_over"], bool)
    artifacts = det.store.meta_names("encoder/neuronet/")
    assert len(artifacts) == len(status["training"]) >= 2  # every version kept for rollback
    assert len(set(artifacts)) == len(artifacts)


def test_resume_with_a_trained_neuronet_gives_the_same_scores(cfg: EngineConfig) -> None:
    events = stream(600)
    whole = Detector(cfg)
    full = np.concatenate([whole.process_many(events[i : i + 300]).score
                           for i in range(0, len(events), 300)])
    store = MemoryStore()
    first = Detector(cfg, store, flush_every=None)
    part1 = [first.process_many(events[i : i + 300]).score for i in range(0, 1200, 300)]
    first.flush()
    second = Detector(cfg, store, flush_every=None)  # restores state + NeuroNet from the store
    part2 = [second.process_many(events[i : i + 300]).score
             for i in range(1200, len(events), 300)]
    assert "neuronet" in second.model_version()
    np.testing.assert_array_equal(np.concatenate(part1 + part2), full)

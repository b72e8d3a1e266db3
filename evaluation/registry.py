"""Every detector the harness can run, by name, built for one benchmark's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.config import EngineConfig
from evaluation.baselines import (
    AutoencoderModel,
    BaselineSettings,
    HalfSpaceTreesModel,
    IsolationForestModel,
    SupervisedModel,
)
from evaluation.engine_adapter import NeurogateDetector
from evaluation.protocol import PerSource, SourceInfo, SourceModel, StreamDetector


@dataclass(frozen=True)
class DetectorInfo:
    """A registry entry: what it is, whether it learns from labels, how to build it."""

    description: str
    supervised: bool
    build: Callable[[EngineConfig, BaselineSettings, str], StreamDetector]


def _engine(changes: dict[str, object]) -> Callable[[EngineConfig, BaselineSettings, str],
                                                    StreamDetector]:
    """A neurogate variant: the benchmark's engine configuration with ``changes``."""

    def build(cfg: EngineConfig, _: BaselineSettings, name: str) -> StreamDetector:
        """Build the detector for a benchmark's settings."""
        return NeurogateDetector(cfg.replace(**changes) if changes else cfg, name=name)

    return build


def _baseline(
    model: Callable[[SourceInfo, BaselineSettings], SourceModel], threshold: float,
    uses_labels: bool = False,
) -> Callable[[EngineConfig, BaselineSettings, str], StreamDetector]:
    """A per-source baseline with its a-priori operating threshold."""

    def build(_: EngineConfig, settings: BaselineSettings, name: str) -> StreamDetector:
        """Build the detector for a benchmark's settings."""
        return PerSource(name, lambda info: model(info, settings), threshold, uses_labels)

    return build


DETECTORS: dict[str, DetectorInfo] = {
    "neurogate": DetectorInfo(
        "neurogate as configured (NeuroNet enabled unless the configuration says otherwise)",
        False, _engine({})),
    "neurogate-fixed": DetectorInfo(
        "ablation: NeuroNet disabled, fixed multi-scale level x trend codes only",
        False, _engine({"neuronet.enabled": False})),
    "neurogate-binning": DetectorInfo(
        "ablation: plain binning (level 0 value bins only) instead of the encoder",
        False, _engine({"neuronet.enabled": False, "fixed.levels": 1,
                 "fixed.change_stream": False})),
    "hst": DetectorInfo(
        "River HalfSpaceTrees on the shingle (threshold 0.9)", False,
        _baseline(HalfSpaceTreesModel, 0.9)),
    "iforest": DetectorInfo(
        "scikit-learn IsolationForest on a sliding window (threshold 0.5, scikit-learn's "
        "contamination='auto' rule)", False, _baseline(IsolationForestModel, 0.5)),
    "autoencoder": DetectorInfo(
        "torch MLP autoencoder, reconstruction error (threshold 0.8 = 4x the training q99)",
        False, _baseline(AutoencoderModel, 0.8)),
    "supervised": DetectorInfo(
        "River logistic regression on revealed labels (threshold 0.5)", True,
        _baseline(SupervisedModel, 0.5, uses_labels=True)),
}

UNSUPERVISED = tuple(name for name, d in DETECTORS.items() if not d.supervised)


def build_detector(name: str, engine: EngineConfig, settings: BaselineSettings) -> StreamDetector:
    """The detector called ``name`` for a benchmark's engine config and baseline settings."""
    if name not in DETECTORS:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name].build(engine, settings, name)


def parse_detectors(text: str, supervised_ok: bool = True) -> list[str]:
    """``"all"`` or a comma-separated list of names, validated."""
    if text == "all":
        return [n for n, d in DETECTORS.items() if supervised_ok or not d.supervised]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise KeyError(f"unknown detector(s) {unknown or text!r}; known: {', '.join(DETECTORS)}")
    return names

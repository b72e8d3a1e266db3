"""Every detector the harness can run, by name, built for one benchmark's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from neurogate.engine.config import EngineConfig
from neurogate.evaluation.baselines import (
    AutoencoderModel,
    BaselineSettings,
    HalfSpaceTreesModel,
    IsolationForestModel,
    SupervisedModel,
)
from neurogate.evaluation.calibration import THRESHOLD as CALIBRATED
from neurogate.evaluation.engine_adapter import NeurogateDetector
from neurogate.evaluation.protocol import PerSource, SourceInfo, SourceModel, StreamDetector
from neurogate.evaluation.pysad_models import PySADModel
from neurogate.evaluation.references import HotellingModel, ZScoreModel


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


def _default_engine(_: EngineConfig, __: BaselineSettings, name: str) -> StreamDetector:
    """neurogate with the engine's defaults, whatever the benchmark's configuration says."""
    return NeurogateDetector(EngineConfig(), name=name)


def _pysad(kind: str) -> Callable[[SourceInfo, BaselineSettings], SourceModel]:
    """A PySAD model's per-source factory."""
    return lambda info, settings: PySADModel(info, settings, kind)


def _baseline(
    model: Callable[[SourceInfo, BaselineSettings], SourceModel], threshold: float,
    uses_labels: bool = False,
) -> Callable[[EngineConfig, BaselineSettings, str], StreamDetector]:
    """A per-source baseline with its a-priori operating threshold."""

    def build(_: EngineConfig, settings: BaselineSettings, name: str) -> StreamDetector:
        """Build the detector for a benchmark's settings."""
        return PerSource(name, lambda info: model(info, settings), threshold, uses_labels)

    return build


DEFAULT_ENGINE = "neurogate-default"

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
    DEFAULT_ENGINE: DetectorInfo(
        "neurogate with the engine's defaults (added beside 'neurogate' when the benchmark's "
        "preset, --config or --set change the configuration)", False, _default_engine),
    "hst": DetectorInfo(
        "River HalfSpaceTrees on the shingle (threshold 0.9)", False,
        _baseline(HalfSpaceTreesModel, 0.9)),
    "iforest": DetectorInfo(
        "scikit-learn IsolationForest on a sliding window (threshold 0.5, scikit-learn's "
        "contamination='auto' rule)", False, _baseline(IsolationForestModel, 0.5)),
    "autoencoder": DetectorInfo(
        "torch MLP autoencoder, reconstruction error (threshold 0.8 = 4x the training q99)",
        False, _baseline(AutoencoderModel, 0.8)),
    "pysad-xstream": DetectorInfo(
        "PySAD xStream on the shingle (100 chains, window 256), warm-up calibrated "
        f"(threshold {CALIBRATED:.3f})", False, _baseline(_pysad("xstream"), CALIBRATED)),
    "pysad-rshash": DetectorInfo(
        "PySAD RS-Hash on the shingle (100 components, decay 0.015), warm-up calibrated",
        False, _baseline(_pysad("rshash"), CALIBRATED)),
    "pysad-loda": DetectorInfo(
        "PySAD LODA on the shingle (100 projections, 10 bins), warm-up calibrated", False,
        _baseline(_pysad("loda"), CALIBRATED)),
    "pysad-rrcf": DetectorInfo(
        "PySAD robust random cut forest on the shingle (25 trees of 256), warm-up calibrated",
        False, _baseline(_pysad("rrcf"), CALIBRATED)),
    "pysad-hst": DetectorInfo(
        "PySAD HalfSpaceTrees on the shingle (25 trees, depth 15, window 250), warm-up "
        "calibrated", False, _baseline(_pysad("hst"), CALIBRATED)),
    "zscore": DetectorInfo(
        "per-channel z against the warm-up mean and std, 10-row mean of |z|, max over channels"
        " (threshold 0.5 = mean |z| of 3)", False, _baseline(ZScoreModel, 0.5)),
    "t2": DetectorInfo(
        "Hotelling T^2 against the warm-up mean and covariance (threshold 0.5 = chi^2 99.9 %)",
        False, _baseline(HotellingModel, 0.5)),
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
    """``"all"`` (every detector but ``neurogate-default``, which ``with_default`` adds where
    it differs from ``neurogate``) or a comma-separated list of names, validated."""
    if text == "all":
        return [n for n, d in DETECTORS.items()
                if (supervised_ok or not d.supervised) and n != DEFAULT_ENGINE]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise KeyError(f"unknown detector(s) {unknown or text!r}; known: {', '.join(DETECTORS)}")
    return names


def with_default(names: list[str], engine: EngineConfig) -> list[str]:
    """``names`` plus ``neurogate-default`` right after ``neurogate`` when the benchmark's
    engine configuration is not the engine's default: the default is always reported beside
    a preset or an override."""
    if "neurogate" not in names or DEFAULT_ENGINE in names or engine == EngineConfig():
        return names
    k = names.index("neurogate") + 1
    return [*names[:k], DEFAULT_ENGINE, *names[k:]]

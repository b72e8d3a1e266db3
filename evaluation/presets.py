"""Per-benchmark settings: the engine changes and baseline parameters each benchmark runs with
(one parameter set per benchmark; docs/evaluation.md says which were chosen on which labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neurogate.evaluation.baselines import BaselineSettings


@dataclass(frozen=True)
class Preset:
    """Engine setting changes (dotted keys) and baseline settings of one benchmark."""

    engine: dict[str, Any] = field(default_factory=dict)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)


NAB = Preset(
    # machine_temperature's timestamps go backwards once; NAB feeds rows in file order anyway.
    engine={"late_tolerance": 1e12, "calendar": False},
    baselines=BaselineSettings(shingle=1),
)
CREDITCARD = Preset(
    # Transactions are independent rows: no multi-scale levels over time (level 0 only), no
    # repeat suppression, no time-of-day buckets (Time counts seconds from an unknown start).
    engine={"suppress_window": 0, "calendar": False, "fixed.levels": 1},
    baselines=BaselineSettings(shingle=1, iforest_window=2000, iforest_every=1000,
                               ae_window=5000, ae_every=5000),
)
MULTIVARIATE = Preset(engine={}, baselines=BaselineSettings(shingle=8))
# The engine's defaults; the series' timestamps are row numbers, so no calendar applies anyway.
GUTENTAG = Preset(engine={}, baselines=BaselineSettings(shingle=8))

PRESETS = {"nab": NAB, "creditcard": CREDITCARD, "multivariate": MULTIVARIATE,
           "gutentag": GUTENTAG}

"""Engine configuration: one typed place, validated, loadable from a mapping (TOML) and from
``NEUROGATE_*`` environment variables (strings coerced to the field's type)."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DataclassT = TypeVar("DataclassT", bound="DataclassInstance")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message says which and why."""


def time_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The time zone ``name`` (an IANA name); None for UTC, whose wall clock is the epoch's.

    >>> time_zone("UTC") is None, str(time_zone("Asia/Tokyo"))
    (True, 'Asia/Tokyo')
    >>> time_zone("Mars/Olympus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neurogate.engine.config.ConfigError: timezone must be an IANA time zone name ... 'Mars/Olympus'
    """
    if name == "UTC":
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone must be an IANA time zone name such as UTC or "
                          f"Europe/Berlin, got {name!r}") from None


# Here, not beside the encoder: reading the configuration must not load numba (engine/encoder.py),
# which made every `neurogate` command start in 0.66 s instead of 0.1 s (bench/startup.py).
@dataclass(frozen=True)
class FixedEncoderConfig:
    """Multi-scale level x trend bins (docs/background.md section 2, "N0/N9" codes).

    Level 0 bins the value itself into ``value_bins`` bins over the warm-up range (plus one code
    below and one above it). Level l >= 1 codes the mean of the last 2**l values into
    ``level_bins`` bins (plus below/above) crossed with the trend of that mean against the block
    before it, cut at ``-trend_step, 0, +trend_step``. With ``change_stream``, each channel
    also gets a level-0 stream "did the value change at all", so a frozen sensor shows up as a
    rare run of no-change codes (demo stream: frozen-sensor recall 0.25 -> 1.00; NAB unchanged,
    while a log-scale step-size stream cost 1.4 NAB points).
    """

    levels: int = 7  # code streams per channel: level 0 and the means of 2**l values
    value_bins: int = 32  # level 0: bins over the warm-up range (plus one below, one above)
    level_bins: int = 4  # levels >= 1: bins of the mean (plus one below, one above)
    trend_step: float = 0.05  # levels >= 1: trend cut points, in units of the warm-up range
    change_stream: bool = True  # a level-0 "did the value change" stream per channel

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 10:
            raise ValueError(f"fixed encoder: levels must be in 1..10, got {self.levels}")
        if self.value_bins < 2 or self.level_bins < 1:
            raise ValueError("fixed encoder: value_bins must be >= 2 and level_bins >= 1")
        if not self.trend_step > 0:
            raise ValueError(f"fixed encoder: trend_step must be > 0, got {self.trend_step}")


@dataclass(frozen=True)
class NeuroNetSettings:
    """When and how the NeuroNet is trained and when it may take over a level (engine/shadow.py).

    Training runs in the background (``background``): the job started at event N is installed
    at event N + ``train_events`` exactly, waiting for it then if needed, so results depend on
    the input and the settings only, not on how fast training ran."""

    enabled: bool = True  # train NeuroNets (needs the neuronet extra); false: fixed codes only
    # "": fixed codes serve until a trained NeuroNet takes over; "builtin": the NeuroNet shipped
    # in engine/pretrained/ (trained on generated series only) serves the levels its
    # planted-anomaly check chose (4, 5) from the first event of 1-channel sources (NAB, 5 seeds:
    # 68.59 / 62.85 / 73.05 vs 68.13 / 63.04 / 72.81 without it, not a clear gain for ~30 % of
    # the throughput); or the path of a NeuroNet file (`neurogate train`)
    pretrained: str = ""
    train_after: int = 20_000  # events (all sources) seen before the first training
    retrain_every: int = 0  # events between retrainings to a new version; 0 = never
    train_events: int = 5_000  # events between a training's start and its installation
    background: bool = True  # train in a separate process (false: in the scoring thread)
    reservoir: int = 2048  # recent values kept per source for (re)training and re-counting
    max_sources: int = 256  # sources sampled into one training run
    shadow_events: int = 5_000  # events a candidate is shadow-scored before the takeover decision
    margin: float = 0.01  # gain in planted-anomaly ROC-AUC (or d' with labels) to take over
    steps: int = 300  # training steps (batches of 256 windows)
    levels: int = 6  # levels of a trained NeuroNet
    hidden: int = 16  # hidden channels of a trained NeuroNet

    def __post_init__(self) -> None:
        for name in ("train_after", "reservoir", "shadow_events", "max_sources", "levels",
                     "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"neuronet.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("retrain_every", "train_events"):
            if getattr(self, name) < 0:
                raise ConfigError(f"neuronet.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.margin < math.inf:
            raise ConfigError(f"neuronet.margin must be a finite number >= 0, got {self.margin}")
        if not 1 <= self.levels <= 10:
            raise ConfigError(f"neuronet.levels must be in 1..10, got {self.levels}")
        if self.hidden < 1:
            raise ConfigError(f"neuronet.hidden must be >= 1, got {self.hidden}")
        if self.pretrained not in ("", "builtin") and not Path(self.pretrained).is_file():
            raise ConfigError(f"neuronet.pretrained must be '', 'builtin' or the path of a "
                              f"NeuroNet file, got {self.pretrained!r} (no such file)")


@dataclass(frozen=True)
class EvidenceSettings:
    """Evidence beside the pattern codes and how each family is calibrated (engine/evidence.py).

    With ``calibrate = false`` and both families off, the score is the pattern surprise alone,
    squashed as before this section existed (the ablation)."""

    calibrate: bool = True  # score = squashed -ln of the families' combined tail probability
    # each channel against its own forecast (slow baseline, seasonal profile or local trend;
    # channels that drift or that the others predict better are left out)
    deviation: bool = True
    # ...for every channel of sources with at least this many channels; a source with fewer
    # (univariate) has it only for a clearly periodic channel (engine/evidence.py,
    # PERIODIC_SHARE): judging every univariate channel cost 17 points on NAB (68.30 -> 50.88),
    # since on long non-stationary series a value's distance from a slow baseline has its own
    # heavy tail. GutenTAG (unreported seed) 8 / 40 channels 0.636 / 0.606 -> 0.823 / 0.817,
    # generated multivariate (unreported seed) 0.910 unchanged (its channels are left to
    # relation).
    deviation_channels: int = 2
    # ...and on those sources a channel that is not clearly periodic (nor a random walk, nor
    # a trend) keeps an alert's episode scored while its value stays away from its forecast
    # (rules.EpisodeCarry). It never raises an alert, so NAB is unchanged (71.07 / 66.61 /
    # 74.68), while a level shift stays anomalous instead of being learnt within 20-50 events
    # (`eval multivariate --corpus single`: ROC-AUC 0.662 -> 0.879, seed 2 0.665 -> 0.845)
    confirm: bool = True
    # ...and on those sources a channel that trends through the warm-up (and does not wander
    # like a random walk) is judged against a local linear forecast that follows it
    # (engine/evidence.py, TREND): once a trend leaves the warm-up's range its value codes sit
    # in the top bin, and a shift or a variance burst on it looked normal. `eval multivariate
    # --corpus single-trend` seeds 1 / 2: ROC-AUC 0.488 / 0.492 -> 0.868 / 0.892; NAB unchanged
    trend: bool = True
    relation: bool = True  # each channel against what the others predict (2+ channels)
    smoothing: int = 10  # events averaged by the deviation and relation statistics
    # longest period (events) a deviation forecast's seasonal profile may have; 0 = none.
    # A warm-up finds periods up to a third of its length (66 events with the default
    # ``warmup``); 288 is a day at 5-minute sampling, found by the late look below. Memory:
    # 16 * period_max * channels bytes per source, only with deviation on.
    period_max: int = 288
    # a source keeps its values until it has seen MIN_PERIODS x period_max events (864 by
    # default, warm-up included), then looks for a period once more (engine/evidence.py
    # ``late_start``): a daily cycle at 5-minute sampling needs three days, which no default
    # warm-up holds. A source with a day of period_max events or more (5 minutes, 1 minute)
    # looks at a day once it has seen three whole days (``day_start``): one event per 5-minute
    # slot, and a daily profile of those slots, the phase read from the clock (`eval
    # multivariate --corpus single-minutely`: ROC-AUC 0.853 -> 0.996). Memory: 8 x (3
    # period_max - warmup) x channels bytes per source, and 4 x 3 period_max x channels for
    # the day (with ``weekend`` on).
    late_period: bool = True
    # a seasonal channel whose period is within 5 % of a day of its timestamps gets exactly a
    # day's period and an hourly weekend offset, learnt on its first weekend (Saturdays and
    # Sundays UTC; engine/evidence.py, DAY): a weekend unlike the weekdays was a sustained
    # change against one daily profile every week. 12 generated weekly series, flags in weeks
    # 2-4: 222 -> 38 (49 without the late look). Its phase is read from the clock, so a gap
    # in the feed does not shift it (`--corpus single-gaps`: ROC-AUC 0.952 -> 0.995). Memory:
    # 384 bytes per channel
    weekend: bool = True
    rate: float = 0.001  # learning rate of the slow baselines (about 1/rate events to adapt)
    ridge: float = 0.01  # relative ridge on the covariance diagonal before it is inverted
    refresh: int = 50  # events between recomputations of a source's precision matrix
    # events each family's history holds (halved when full). 4000, not 2000: chosen on NAB's
    # labels (fixed codes 68.30 -> 69.60 standard, with the seed weight below 70.11; 3000:
    # 68.90, 5000: 69.31, 10000: 68.05); generated multivariate (unreported seed) 0.910 ->
    # 0.913, GutenTAG (unreported seed) unchanged (its series are shorter than the memory)
    tail_memory: int = 4000
    # weight of each warm-up event in the histories it starts: the pattern history (the last
    # quarter of the replay, engine/detector.py: an event the replay knew little about counts
    # for less than a scored one) and the deviation and relation histories (their statistics
    # against the warm-up's baselines, engine/evidence.py ``start``). 0.5: chosen on NAB's
    # labels for patterns (with tail_memory 4000, fixed codes 69.60 -> 70.11, NeuroNet 70.50
    # -> 71.07; 0.25: 70.01, 1.0: 69.60, 0: 68.68); for deviation and relation on dev seeds
    # (docs/evaluation.md section 9): sensors 2 / 3 ROC-AUC 0.816 / 0.748 -> 0.841 / 0.805
    # (1.0: 0.855 / 0.823), GutenTAG 777-779 8 / 40 channels mean 0.833 / 0.847 -> 0.841 /
    # 0.854, flag precision 0.968 / 0.896 -> 0.939 / 0.933 (1.0: 0.882 / 0.918)
    seed_weight: float = 0.5
    hold: float = 1e-3  # a family holds its learning while its tail probability is below this
    # ...for at most this many consecutive events (then adapts); 0 = never. 300, not 1000:
    # generated multivariate (unreported seed) ROC-AUC 0.910 either way, GutenTAG (unreported
    # seed) 8 / 40 channels 0.629 / 0.605 -> 0.634 / 0.604, report corpus 40 ch 0.643 -> 0.675
    # (a random walk drifting away holds the relation family back)
    hold_max: int = 300
    # ...and also while it stays below this for a whole smoothing ring (smoothing x 4 = 40
    # events), judged without that run's own events, which are then taken back out of the
    # history: a moderate incident (p ~ 0.003) no longer becomes normal within 150 events,
    # while a shorter normal excursion is learnt as before. 0 = only ``hold``; so is a
    # ``hold_max`` below the ring (such a run would be past its hold when confirmed). Dev seeds:
    # sensors 2 / 3 ROC-AUC 0.841 / 0.805 -> 0.865 / 0.846, false flags 23 / 11 -> 30 / 11;
    # 0.003: 0.870 / 0.823; 0.1: 0.873 / 0.847 with 66 / 28 false flags
    sustained: float = 0.01

    def __post_init__(self) -> None:
        if self.smoothing < 1 or self.refresh < 1:
            raise ConfigError("evidence.smoothing and evidence.refresh must be >= 1")
        if self.deviation_channels < 1:
            raise ConfigError("evidence.deviation_channels must be >= 1, got "
                              f"{self.deviation_channels}")
        if self.period_max < 0:
            raise ConfigError(f"evidence.period_max must be >= 0, got {self.period_max}")
        if not 0 < self.rate < 1:
            raise ConfigError(f"evidence.rate must be in (0, 1), got {self.rate}")
        if not 0 <= self.ridge < math.inf:
            raise ConfigError(f"evidence.ridge must be a finite number >= 0, got {self.ridge}")
        if self.tail_memory < 100:
            raise ConfigError(f"evidence.tail_memory must be >= 100, got {self.tail_memory}")
        if not 0 <= self.seed_weight < math.inf:
            raise ConfigError("evidence.seed_weight must be a finite number >= 0, got "
                              f"{self.seed_weight}")
        if not 0 <= self.hold < 1:
            raise ConfigError(f"evidence.hold must be in [0, 1), got {self.hold}")
        if self.hold_max < 0:
            raise ConfigError(f"evidence.hold_max must be >= 0, got {self.hold_max}")
        if not 0 <= self.sustained < 1:
            raise ConfigError(f"evidence.sustained must be in [0, 1), got {self.sustained}")


# Settings read only when an event is scored or admitted, never kept in the detector's state:
# they may differ between the run that wrote a store and the one that resumes it.
SCORING_ONLY = frozenset({"threshold", "alpha", "alpha0", "top_k", "extreme_rule", "extreme_floor",
                          "extreme_margin", "posterior_beta", "label_memory", "late_tolerance",
                          "max_future_skew", "max_patterns", "escalation", "score_interval"})


@dataclass(frozen=True)
class EngineConfig:
    """Every knob of the detector, checked when built; ``replace`` takes dotted names.

    Examples
    --------
    >>> cfg = EngineConfig(threshold=0.95).replace(**{"neuronet.enabled": False})
    >>> cfg.threshold, cfg.neuronet.enabled, cfg.warmup
    (0.95, False, 200)
    >>> EngineConfig(threshold=1.5)
    Traceback (most recent call last):
    ...
    neurogate.engine.config.ConfigError: threshold must be in (0, 1], got 1.5
    """

    warmup: int = 200  # events per source used to fix its range before it is scored
    range_margin: float = 0.10  # warm-up range widened by this share on each side
    late_tolerance: float = 0.0  # seconds a timestamp may go backwards before it is rejected
    # seconds an event's timestamp may lie ahead of the clock; later ones are rejected
    # (future_timestamp) without moving the source's clock; inf = no bound
    max_future_skew: float = 86_400.0
    alpha: float = 1.0  # Dirichlet back-off strength for contexts
    alpha0: float = 0.5  # additive smoothing of the unigram
    calendar: bool = True  # condition codes on (3-hour bucket x weekend) where timestamps allow
    calendar_hours: int = 3  # width of the calendar buckets in hours (divides 24)
    # the time zone (IANA name) whose wall clock the calendar reads: the codes' hour buckets
    # and weekends, and a daily profile's time of day and weekend offset. A business metric
    # follows its local day: read in UTC, Tokyo's weekend began 9 hours early, and every
    # change of daylight saving time shifted a daily cycle by an hour against its profile
    timezone: str = "UTC"
    top_k: int = 2  # levels combined by the mean of the k largest surprises
    extreme_margin: float = 0.05  # new-extreme rule: outside seen [min,max] +- margin*range -> 1.0
    extreme_rule: bool = True  # apply the new-extreme rule (extreme_margin)
    # ...for a channel the relation family judges, only where the calibrated score is at least
    # this, and for one judged against a local trend where its forecast's score is
    # (engine/rules.py ExtremeValue); 0 = always. 0.7 (a tail probability of 0.2), chosen
    # on dev corpora (gating every channel: 0.77 and 0.81 lost sensors incidents with the long
    # warm-up); sensors files with the default warm-up, false extremes 35 / 37 -> 21 / 26
    extreme_floor: float = 0.7
    suppress_window: int = 30  # a score alerts only if it beats the previous N scores; 0 = off
    # ...and inside an open episode (from an alert until ``suppress_window`` scores in a row stay
    # below the threshold) only if it escalates: its bits of tail probability beyond the
    # threshold's are more than this many times the episode's highest alert's, and one bit
    # more (rules.Suppression); a new extreme always alerts; 0 = the window rule alone, inf =
    # one alert per episode besides new extremes. Flags per incident found: sensors 44.1 -> 3.1,
    # generated multivariate 21.1 -> 3.7, the same incidents found; NAB 71.07 -> 70.92
    # (docs/evaluation.md section 9)
    escalation: float = 2.0
    # flag when the combined tail probability is below 2**-9 (about 1 in 500 normal events of
    # the source, or 5-minute spans where it is sampled faster, before suppression); set on the
    # built-in demo stream (5-minute steps): incidents 0.83, flag precision 0.48 (0.92 / 0.40
    # at 0.89, 0.67 / 0.46 at 0.91)
    threshold: float = 0.9
    # ...per this many seconds of a source's clock, not per event: a source sampled faster
    # has its combined tail probability read over the events in that span (Sidak, 1 - (1 -
    # p)^k, k = score_interval / its warm-up's mean step), so a 1-minute metric does not alert
    # five times as often a day as the same process every 5 minutes. 300 s: the sampling the
    # threshold was set at (the demo, and NAB's files, whose scores it leaves unchanged).
    # `eval multivariate --corpus single-minutely` (the weekly cycle every minute): false flags
    # on days 4-13 244 -> 69, against 86 on those days at 5 minutes (`single-weekly`); flag
    # precision 0.151 -> 0.289, ROC-AUC 0.996 either way, incidents found 0.97 -> 0.94 (a
    # 5.6-sd one-minute spike that sets no record). 0 = per event; so is a source whose
    # timestamps are not times, or whose events arrive at random rather than at a step
    # (transactions, log lines: engine/evidence.py, REGULAR_SHARE)
    score_interval: float = 300.0
    # "source": each source learns its own patterns; "global": sources with the same fields
    # share their counts
    scope: Literal["source", "global"] = "source"
    calibration: Literal["none", "rank"] = "none"  # "rank": score = rank among recent scores
    calibration_window: int = 2000  # scores per source the rank calibration compares with
    posterior_beta: float = 1.0  # smoothing of class-conditional pattern probabilities
    label_memory: int = 200_000  # recent events whose pattern keys are kept for late labels
    # pattern keys a detector keeps in memory (the worker splits it between its partitions);
    # past it, keys whose counts are committed are evicted and read back from the store when
    # needed again (same scores). Keys with uncommitted counts are never evicted, so the bound
    # holds between commits. ~80 B per key resident (docs/operations.md, "Memory and sizing").
    max_patterns: int = 4_000_000
    seed: int = 0  # seed of NeuroNet training (and anything else drawn at random)
    fixed: FixedEncoderConfig = field(default_factory=FixedEncoderConfig)
    neuronet: NeuroNetSettings = field(default_factory=NeuroNetSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)

    def __post_init__(self) -> None:
        if self.warmup < 2:
            raise ConfigError(f"warmup must be >= 2 events, got {self.warmup}")
        for name in ("range_margin", "extreme_margin", "late_tolerance", "max_future_skew",
                     "score_interval"):
            if not getattr(self, name) >= 0:  # also rejects NaN
                raise ConfigError(f"{name} must be a number >= 0, got {getattr(self, name)}")
        if not self.score_interval < math.inf:
            raise ConfigError(f"score_interval must be finite, got {self.score_interval}")
        if not 0 <= self.extreme_floor <= 1:
            raise ConfigError(f"extreme_floor must be in [0, 1], got {self.extreme_floor}")
        for name in ("alpha", "alpha0", "posterior_beta"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if not 1 <= self.calendar_hours <= 24 or 24 % self.calendar_hours:
            raise ConfigError(f"calendar_hours must divide 24, got {self.calendar_hours}")
        time_zone(self.timezone)  # raises ConfigError for an unknown name
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        self._check_suppression()
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.scope not in ("source", "global"):
            raise ConfigError(f"scope must be 'source' or 'global', got {self.scope!r}")
        if self.calibration not in ("none", "rank"):
            raise ConfigError(f"calibration must be 'none' or 'rank', got {self.calibration!r}")
        if self.calibration_window < 10 or self.label_memory < 0:
            raise ConfigError("calibration_window must be >= 10 and label_memory >= 0")
        if self.max_patterns < 1000:
            raise ConfigError(f"max_patterns must be >= 1000, got {self.max_patterns}")

    def _check_suppression(self) -> None:
        if self.suppress_window < 0:
            raise ConfigError(f"suppress_window must be >= 0, got {self.suppress_window}")
        if not (self.escalation == 0 or self.escalation >= 1):  # also rejects NaN; inf is fine
            raise ConfigError(f"escalation must be 0 (off) or >= 1, got {self.escalation}")

    def state_settings(self) -> dict[str, Any]:
        """Every setting that shapes the learned state (dotted names -> values): a store's
        saved state only resumes under the same ones. ``SCORING_ONLY`` settings are left out,
        so e.g. the threshold can be changed on a running store."""
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                flat.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
            elif f.name not in SCORING_ONLY:
                flat[f.name] = value
        return flat

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with dotted or plain field changes, e.g. ``threshold=0.9``."""
        return from_mapping(EngineConfig, changes, base=self)


def _coerce(tp: Any, value: Any, where: str) -> Any:  # noqa: C901  (one branch per field type)
    """Convert a TOML/env value to the annotated type, or raise ConfigError naming the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:  # a TOML array, or comma-separated text (environment, --set)
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(typing.get_args(tp)[0], item, where) for item in value)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}")
        return value
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}") from None
    raise ConfigError(f"{where}: unsupported type {tp}")


def read_toml(path: Path, what: str = "config file",
              error: type[Exception] = ConfigError) -> dict[str, Any]:
    """A TOML file's tables; a missing file or bad TOML is one ``error`` naming the file."""
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def from_mapping(
    cls: type[DataclassT], data: Mapping[str, Any], *, base: DataclassT | None = None,
    prefix: str = "",
) -> DataclassT:
    """Build dataclass ``cls`` from a nested mapping (or ``a.b`` dotted keys), starting from
    ``base``; unknown keys are errors so typos don't pass silently."""
    nested: dict[str, Any] = {}
    for key, value in data.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, Mapping):
            nested.setdefault(head, {}).update(value)
        else:
            nested[head] = value
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in nested.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown setting {where!r}; known: {sorted(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where} must be a table of settings, got {value!r}")
            sub_base = getattr(base, key) if base is not None else None
            changes[key] = from_mapping(tp, value, base=sub_base, prefix=f"{where}.")  # type: ignore[arg-type]
        else:
            changes[key] = _coerce(tp, value, where)
    try:
        return dataclasses.replace(base, **changes) if base is not None else cls(**changes)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def env_overrides(environ: Mapping[str, str], cls: type = EngineConfig) -> dict[str, str]:
    """``NEUROGATE_THRESHOLD=0.9`` -> {"threshold": "0.9"}; ``NEUROGATE_NEURONET__ENABLED`` ->
    {"neuronet.enabled": ...}. Only names of this dataclass tree are taken."""
    known = field_paths(cls)
    out = {}
    for name, value in environ.items():
        if name.startswith("NEUROGATE_"):
            path = name[len("NEUROGATE_") :].lower().replace("__", ".")
            if path in known:
                out[path] = value
    return out


def field_paths(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of every leaf setting of dataclass ``cls`` (``neuronet.enabled``, ...)."""
    hints = typing.get_type_hints(cls)
    paths = set()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            paths |= field_paths(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            paths.add(f"{prefix}{f.name}")
    return paths

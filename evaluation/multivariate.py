"""A labelled multivariate benchmark we generate (fixed seed), and how detectors are scored on
it: row-level precision / recall / F1 at each detector's operating threshold, ROC-AUC and
PR-AUC of its scores, and incident recall per planted kind.

Each source has several channels driven by one shared latent factor (so they are correlated),
a daily season, a slow drift of level and noise. After the warm-up (no anomalies there)
incidents of four kinds are planted, each in one channel: a *spike* (a few rows far off),
a *level shift* (an offset for a while), a *correlation break* (the channel leaves the shared
factor and follows its own process with the same mean and spread) and a *frozen sensor*
(the channel repeats one value). Labels are 1 on the incident's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from evaluation.metrics import binary_report
from evaluation.nab import probation_length
from evaluation.protocol import SourceInfo, StreamDetector, run_stream

KINDS = ("spike", "level_shift", "correlation_break", "frozen")
CHANNELS = ("load", "power", "temp", "flow")
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z
STEP = 300.0  # 5 minutes
DAY = 288  # rows per day
TOLERANCE = 12  # rows after an incident in which a flag still counts as its detection


@dataclass(frozen=True)
class Incident:
    """One planted anomaly: kind, channel and rows ``start .. end`` (inclusive)."""

    kind: str
    channel: int
    start: int
    end: int


@dataclass(frozen=True)
class MvStream:
    """One generated source: timestamps, values [n, channels], 0/1 labels and incidents."""

    name: str
    ts: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    incidents: tuple[Incident, ...]

    @property
    def warmup(self) -> int:
        """Rows free of anomalies at the start, given to detectors to learn (NAB's rule)."""
        return probation_length(len(self.ts))


@dataclass(frozen=True)
class MvSettings:
    """Size and mix of the generated benchmark."""

    sources: int = 6
    length: int = 6000
    incidents: int = 8  # per source, kinds in turn
    seed: int = 7


def generate(settings: MvSettings | None = None) -> list[MvStream]:
    """The benchmark's streams; the same settings always give the same data."""
    s = settings or MvSettings()
    rng = np.random.default_rng(s.seed)
    return [_stream(f"mv-{i}", s, rng) for i in range(s.sources)]


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with marginal standard deviation ``sd``."""
    e = rng.normal(0.0, sd * np.sqrt(1 - phi * phi), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def _stream(name: str, s: MvSettings, rng: np.random.Generator) -> MvStream:
    """One source: correlated seasonal channels with drift, then the planted incidents."""
    n, c = s.length, len(CHANNELS)
    t = np.arange(n)
    season = np.sin(2 * np.pi * (t / DAY + rng.uniform())) + 0.3 * np.sin(4 * np.pi * t / DAY)
    factor = _ar1(rng, n, 0.98, 0.6)
    drift = np.cumsum(rng.normal(0.0, 0.02, n)) + np.linspace(0.0, rng.uniform(-1, 1), n)
    gain = rng.uniform(0.6, 1.4, c) * rng.choice([-1.0, 1.0], c)
    base = rng.uniform(10, 50, c)
    scale = rng.uniform(1, 5, c)
    noise = np.stack([_ar1(rng, n, 0.5, 0.25) for _ in range(c)], axis=1)
    common = season[:, None] + factor[:, None] + 0.5 * drift[:, None]
    clean = common * gain + noise
    values = base + scale * clean
    labels = np.zeros(n, dtype=np.int8)
    incidents = []
    warm = probation_length(n)
    slots = np.linspace(warm + 100, n - 250, s.incidents).astype(int)
    for k, at in enumerate(slots):
        kind = KINDS[k % len(KINDS)]
        ch = int(rng.integers(c))
        start = int(at + rng.integers(-40, 40))
        sd = scale[ch] * float(np.std(clean[:warm, ch]))
        if kind == "spike":
            end = start + int(rng.integers(0, 3))
            values[start : end + 1, ch] += rng.choice([-1, 1]) * rng.uniform(5, 8) * sd
        elif kind == "level_shift":
            end = start + int(rng.integers(50, 150))
            values[start : end + 1, ch] += rng.choice([-1, 1]) * rng.uniform(2, 3) * sd
        elif kind == "correlation_break":
            end = start + int(rng.integers(100, 200))
            seg = values[start : end + 1, ch]
            own = _ar1(rng, len(seg), 0.98, 1.0)
            values[start : end + 1, ch] = seg.mean() + seg.std() * (own - own.mean()) / max(
                own.std(), 1e-9)
        else:  # frozen
            end = start + int(rng.integers(60, 150))
            values[start : end + 1, ch] = values[start, ch]
        labels[start : end + 1] = 1
        incidents.append(Incident(kind, ch, start, end))
    return MvStream(name, T0 + STEP * t, values, labels, tuple(incidents))


@dataclass
class MvResult:
    """One detector's figures on the benchmark."""

    detector: str
    report: dict[str, Any]
    posterior_report: dict[str, Any] | None
    incident_recall: dict[str, float]
    flag_precision: float
    seconds: float
    rows: int
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "detector": self.detector,
            **self.report,
            "posterior": self.posterior_report,
            "incident_recall": self.incident_recall,
            "flag_precision": self.flag_precision,
            "detector_seconds": round(self.seconds, 2),
            "events_per_s": round(self.rows / self.seconds, 1) if self.seconds else None,
        }


def incident_figures(streams: Sequence[MvStream], flags: Sequence[np.ndarray]
                     ) -> tuple[dict[str, float], float]:
    """Share of incidents per kind (and "all") with a flag in [start, end + TOLERANCE], and the
    share of post-warm-up flags that fall in such a span (flag precision)."""
    hit: dict[str, list[bool]] = {k: [] for k in KINDS}
    good = total = 0
    for st, fl in zip(streams, flags, strict=True):
        near = np.zeros(len(fl), dtype=bool)
        for inc in st.incidents:
            stop = min(inc.end + TOLERANCE, len(fl) - 1)
            hit[inc.kind].append(bool(fl[inc.start : stop + 1].any()))
            near[inc.start : stop + 1] = True
        post = fl[st.warmup :]
        total += int(post.sum())
        good += int((post & near[st.warmup :]).sum())
    recall = {k: float(np.mean(v)) if v else float("nan") for k, v in hit.items()}
    recall["all"] = float(np.mean([x for v in hit.values() for x in v]))
    return recall, good / total if total else 0.0


def evaluate(
    streams: Sequence[MvStream], detector: StreamDetector, *, feed_labels: bool = True,
    batch_size: int = 1000, progress: bool = True,
) -> MvResult:
    """Run a detector over every stream (labels after scoring when ``feed_labels``) and score
    the rows after each stream's warm-up, pooled over streams: flags at the detector's
    operating threshold, ranking metrics from its score before alert suppression."""
    ys, ss, fs, ps, flags = [], [], [], [], []
    seconds = 0.0
    rows = sum(len(s.ts) for s in streams)
    with tqdm(total=rows, disable=not progress, desc=f"multivariate {detector.name}",
              unit="row", unit_scale=True, leave=False) as bar:
        for st in streams:
            info = SourceInfo(st.name, len(CHANNELS), st.warmup)
            run = run_stream(detector, info, st.ts, st.values,
                             st.labels if feed_labels else None, batch_size=batch_size,
                             bar=bar)
            seconds += run.seconds
            w = st.warmup
            ys.append(st.labels[w:])
            ss.append(run.raw[w:])
            fs.append(run.flagged[w:])
            flags.append(run.flagged)
            if run.posterior is not None:
                ps.append(run.posterior[w:])
    detector.close()
    y, s, f = np.concatenate(ys), np.concatenate(ss), np.concatenate(fs)
    report = binary_report(y, s, f).as_dict()
    post_report = None
    curves = {"labels": y, "scores": s}
    if len(ps) == len(streams):  # label log-odds, flag where > 0 (NaN until both labels seen)
        curves["posterior"] = p = np.concatenate(ps)
        post_report = binary_report(y, p, np.nan_to_num(p, nan=-1.0) > 0).as_dict()
    recall, precision = incident_figures(streams, flags)
    return MvResult(detector.name, report, post_report, recall, precision, seconds, rows,
                    curves)

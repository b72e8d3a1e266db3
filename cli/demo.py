"""The built-in demo stream: seasonal sensor signals with planted anomalies of known kinds.

`neurogate run` without a file streams this, and `DemoTruth.evaluate` says how many of the
planted incidents the flags caught, so the demo shows detection quality, not just output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from neurogate.engine.events import Event

__all__ = ["DEMO_START", "KINDS", "DemoTruth", "Incident", "demo_events"]

DEMO_START = 1704067200.0  # 2024-01-01T00:00:00Z
KINDS = (
    "spike",
    "level_shift",
    "frozen",
    "variance_burst",
    "seasonality_break",
    "trend_change",
)
SIGNALS = ("pump", "fan", "temp", "cpu")
WARMUP = 0.15  # no anomaly in the first 15% of each source
PER_SOURCE = 3  # planted incidents per source (fewer when the stream is too short)
TOLERANCE_STEPS = 12  # a flag up to this many steps after an incident still counts
DAY = 86400.0
WEEK = 7 * DAY


class Incident(NamedTuple):
    """One planted anomaly: which source, what kind, first and last timestamp (inclusive)."""

    source: str
    kind: str
    first_ts: float
    last_ts: float


@dataclass(frozen=True)
class DemoTruth:
    """Where the planted anomalies are, and how to score a detector's flags against them."""

    kinds: tuple[str, ...]
    incidents: tuple[Incident, ...]
    step: float
    tolerance_steps: int = TOLERANCE_STEPS

    def is_anomalous(self, source: str, ts: float) -> bool:
        """True when `ts` falls inside one of `source`'s incident windows (no tolerance)."""
        return any(i.source == source and i.first_ts <= ts <= i.last_ts for i in self.incidents)

    def evaluate(self, flagged: Iterable[tuple[str, float]]) -> dict[str, Any]:
        """Incident recall, flag precision and per-kind recall of `(source, ts)` flags.

        An incident is detected when a flag of its source falls in
        [first_ts, last_ts + tolerance_steps * step]; precision is the share of flags that
        fall in some such window of their source (0.0 when there are no flags).
        """
        slack = self.tolerance_steps * self.step
        windows: dict[str, list[tuple[float, float, int]]] = {}
        for k, inc in enumerate(self.incidents):
            windows.setdefault(inc.source, []).append((inc.first_ts, inc.last_ts + slack, k))
        detected = [False] * len(self.incidents)
        n_flags = hits = 0
        for source, ts in flagged:
            n_flags += 1
            inside = False
            for lo, hi, k in windows.get(source, ()):
                if lo <= ts <= hi:
                    detected[k] = inside = True
            hits += inside
        per_kind: dict[str, float] = {}
        for kind in self.kinds:
            ks = [k for k, inc in enumerate(self.incidents) if inc.kind == kind]
            if ks:
                per_kind[kind] = sum(detected[k] for k in ks) / len(ks)
        n_det = sum(detected)
        return {
            "recall": n_det / len(self.incidents) if self.incidents else 0.0,
            "precision": hits / n_flags if n_flags else 0.0,
            "incidents": len(self.incidents),
            "detected": n_det,
            "flags": n_flags,
            "true_flags": hits,
            "per_kind": per_kind,
        }


def _durations(steps_per_day: int) -> dict[str, int]:
    """How many steps each kind of anomaly lasts, scaled to the sampling rate."""
    return {
        "spike": 1,
        "level_shift": max(2, steps_per_day // 3),
        "frozen": max(2, steps_per_day // 6),
        "variance_burst": max(2, steps_per_day // 8),
        "seasonality_break": max(2, steps_per_day),
        "trend_change": max(2, steps_per_day // 2),
    }


def _signal(
    kind: str, t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(level + weekend + drift, daily pattern, noise, daily amplitude, noise sd) of a source."""
    day = (t % DAY) / DAY
    weekend = ((t // DAY + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    phase = rng.uniform(-0.05, 0.05)
    if kind == "pump":
        base, amp, sd = 50.0, 10.0, 0.8
        daily = amp * np.sin(2 * np.pi * (day + phase))
    elif kind == "fan":
        base, amp, sd = 1400.0, 300.0, 15.0
        daily = amp * np.tanh(4 * np.sin(2 * np.pi * (day - 0.25 + phase)))  # on by day
    elif kind == "temp":
        base, amp, sd = 21.0, 4.0, 0.25
        daily = amp * np.sin(2 * np.pi * (day - 0.35 + phase))
    else:  # cpu: morning and evening peaks
        base, amp, sd = 40.0, 15.0, 2.0
        daily = amp * (
            np.exp(-(((day - 0.4 - phase) / 0.06) ** 2))
            + 0.8 * np.exp(-(((day - 0.8 - phase) / 0.05) ** 2))
            - 0.3
        )
    daily = np.where(weekend, 0.6 * daily, daily)
    drift = np.cumsum(rng.normal(0.0, 0.004 * amp, t.size)) + rng.uniform(-0.1, 0.1) * amp * (
        (t - t[0]) / WEEK
    )
    level = base - 0.15 * amp * weekend + drift
    return level, daily, rng.normal(0.0, sd, t.size), amp, sd


def demo_events(
    *,
    sources: int = 8,
    length: int = 5000,
    seed: int = 0,
    start: float = DEMO_START,
    step: float = 300.0,
) -> tuple[list[Event], DemoTruth]:
    """A deterministic multi-source stream (interleaved by time) and the truth about its anomalies.

    Sources are named like "pump-1", "fan-2", "temp-3", "cpu-4", ...; each has a daily pattern,
    a weekend effect, slow drift and noise. After the first 15% of each source, a few incidents
    (kinds cycle through `KINDS` across sources, so all appear with 2+ sources) are planted,
    spaced apart. Events carry `label` 1 inside an incident window, else 0, and an id
    "<source>:<index>". Source j is offset by j*step/sources seconds so timestamps interleave.
    """
    if sources < 1 or length < 1 or step <= 0:
        raise ValueError("demo_events needs sources >= 1, length >= 1 and step > 0")
    rng = np.random.default_rng(seed)
    steps_per_day = max(1, round(DAY / step))
    dur = _durations(steps_per_day)
    warm = int(np.ceil(WARMUP * length))
    slot = max(dur.values()) + 2 * TOLERANCE_STEPS + 2  # room for any incident plus a gap
    n_per = min(PER_SOURCE, (length - warm) // slot)

    names = [f"{SIGNALS[j % len(SIGNALS)]}-{j + 1}" for j in range(sources)]
    idx = np.arange(length)
    columns: list[list[float]] = []
    labels: list[list[int]] = []
    times: list[list[float]] = []
    incidents: list[Incident] = []
    for j, name in enumerate(names):
        t = start + idx * step + j * step / sources
        level, daily, noise, amp, sd = _signal(SIGNALS[j % len(SIGNALS)], t, rng)
        x = level + daily + noise
        mask = np.zeros(length, dtype=bool)
        width = (length - warm) // max(n_per, 1)
        for k in range(n_per):
            kind = KINDS[(j * PER_SOURCE + k) % len(KINDS)]
            d = dur[kind]
            a = warm + k * width + int(rng.integers(0, width - slot + 1))
            w = slice(a, a + d)
            sign = rng.choice((-1.0, 1.0))
            if kind == "spike":
                x[w] += sign * (2.0 * amp + 8.0 * sd)
            elif kind == "level_shift":
                x[w] += sign * (0.8 * amp + 6.0 * sd)
            elif kind == "frozen":
                x[w] = x[a]
            elif kind == "variance_burst":
                x[w] += 4.0 * noise[w]  # noise x5
            elif kind == "seasonality_break":
                x[w] -= daily[w] * (2.0 if sign > 0 else 1.0)  # inverted or missing
            else:  # trend_change: a new slope for d steps, then the new level holds
                ramp = np.minimum(np.arange(length - a) + 1, d) / d
                x[a:] += sign * (amp + 6.0 * sd) * ramp
            mask[w] = True
            incidents.append(Incident(name, kind, float(t[a]), float(t[a + d - 1])))
        times.append(t.tolist())
        columns.append(np.round(x, 4).tolist())
        labels.append(mask.astype(int).tolist())

    events = [
        Event(names[j], times[j][i], (columns[j][i],), ("value",), f"{names[j]}:{i}", labels[j][i])
        for i in range(length)
        for j in range(sources)
    ]
    incidents.sort(key=lambda inc: (inc.first_ts, inc.source))
    return events, DemoTruth(KINDS, tuple(incidents), step)

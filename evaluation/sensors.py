"""A labelled corpus of short, noisy industrial-sensor files we generate (fixed seed): the kind
of stream issue 11's outside benchmark has (eight related sensors, a normal start, one incident
that lasts), pooled over files so one score must rank rows from every file.

Each file (1,000-1,300 rows at 1 s) has a pump load factor that two vibration RMS channels,
current, pressure, voltage and flow follow with their own noise, and two temperatures that
wander on their own (AR(1) with 0.95 and a slow drift). After 400 normal rows (every
detector's warm-up) one incident of 150-450 rows is planted, of one of four kinds: a *shift*
(pressure up, flow down, current up by 2-4 warm-up standard deviations: a valve partly
closed), *variance* (both vibration channels 2.5x noisier: cavitation), a *ramp* (pressure and
flow drift apart by 3-6 standard deviations: a valve closing) and a *relation* break (flow
stops following the load). Scoring: ``neurogate.evaluation.labelled``.

Variants (``variant``; ``eval multivariate --corpus sensors-NAME``) are the same files as a
real plant's export may have them, each chosen to show one fault a robustness study found
(docs/evaluation.md section 9) and fixed before its first run:

* ``logged``: pressure, both temperatures and flow stored in steps of one warm-up standard
  deviation (most values on a few steps, long runs of repeats);
* ``setpoint``: a ninth column, a setpoint at 50 that an operator raises to 52 once during
  normal operation (constant through the warm-up; unlabelled);
* ``units``: current in microamperes and pressure in units 1e4 times larger (the channels'
  variances 1e12 and 1e-8 times their own);
* ``polled``: the temperature read every 60 rows and the thermocouple every 300, held in
  between (as merged logger exports have them);
* ``timed``: the rows' timestamps read as times, one second apart (the plain files' are
  marked as row numbers), as the outside benchmark's are: a source sampled every second is
  read per ``score_interval`` (300 events), not per event.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np

from neurogate.evaluation import labelled
from neurogate.evaluation.labelled import Incident, LabelledStream

KINDS = ("shift", "variance", "ramp", "relation")
CHANNELS = ("acc1", "acc2", "current", "pressure", "temperature", "thermocouple", "voltage",
            "flow")
NORMAL_START = 400
T0 = 1_583_748_000.0  # 2020-03-09T10:00:00Z
STEP = 1.0
LOGGED = ("pressure", "temperature", "thermocouple", "flow")  # stored in steps (``logged``)
VARIANTS = ("logged", "setpoint", "units", "polled", "timed")


@dataclass(frozen=True)
class SensorSettings:
    """Size of the generated corpus, and which variant of its files (None: as generated)."""

    files: int = 30
    seed: int = 1
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.variant is not None and self.variant not in VARIANTS:
            raise ValueError(f"unknown sensors variant {self.variant!r}; known: {VARIANTS}")


def generate(settings: SensorSettings | None = None) -> list[LabelledStream]:
    """The corpus's files; the same settings always give the same data."""
    s = settings or SensorSettings()
    rng = np.random.default_rng(s.seed)
    files = [_file(f"sensors-{k:02d}", rng) for k in range(s.files)]
    if s.variant is None:
        return files
    # the variants' own draws (the setpoint's step) come from a generator of their own, so the
    # files are the plain ones but for the variant's change
    draws = np.random.default_rng([s.seed, VARIANTS.index(s.variant)])
    return [_VARIANT[s.variant](f, draws) for f in files]


def _logged(f: LabelledStream, _: np.random.Generator) -> LabelledStream:
    """``f`` with its LOGGED channels rounded to steps of their warm-up standard deviation."""
    x = f.values.copy()
    for ch in (CHANNELS.index(name) for name in LOGGED):
        step = x[:NORMAL_START, ch].std()
        x[:, ch] = np.round(x[:, ch] / step) * step
    return dataclasses.replace(f, values=x)


def _setpoint(f: LabelledStream, draws: np.random.Generator) -> LabelledStream:
    """``f`` with a setpoint column: 50, raised to 52 at a row of normal operation after the
    warm-up (before the incident where there is room, else after it)."""
    (inc,) = f.incidents
    n = len(f.ts)
    lo, hi = (NORMAL_START + 20, inc.start - 20) if inc.start - NORMAL_START > 60 else (
        inc.end + 20, n - 20)
    setpoint = np.full(n, 50.0)
    setpoint[int(draws.integers(lo, max(hi, lo + 1))):] = 52.0
    return dataclasses.replace(f, values=np.column_stack([f.values, setpoint]))


def _units(f: LabelledStream, _: np.random.Generator) -> LabelledStream:
    """``f`` with current in microamperes and pressure in units 1e4 times larger."""
    x = f.values.copy()
    x[:, CHANNELS.index("current")] *= 1e6
    x[:, CHANNELS.index("pressure")] *= 1e-4
    return dataclasses.replace(f, values=x)


def _polled(f: LabelledStream, _: np.random.Generator) -> LabelledStream:
    """``f`` with the temperature read every 60 rows and the thermocouple every 300, held."""
    x = f.values.copy()
    for name, every in (("temperature", 60), ("thermocouple", 300)):
        ch = CHANNELS.index(name)
        x[:, ch] = x[(np.arange(len(x)) // every) * every, ch]
    return dataclasses.replace(f, values=x)


def _timed(f: LabelledStream, _: np.random.Generator) -> LabelledStream:
    """``f`` with its timestamps read as times (a second apart)."""
    return dataclasses.replace(f, has_calendar=True)


_VARIANT = {"logged": _logged, "setpoint": _setpoint, "units": _units, "polled": _polled,
            "timed": _timed}


def _ar(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """An AR(1) path started at 0 with innovations of standard deviation ``sd``."""
    e = rng.normal(0.0, sd, n)
    out = np.zeros(n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + e[i]
    return out


def _file(name: str, rng: np.random.Generator) -> LabelledStream:
    n = int(rng.integers(1000, 1300))
    load = _ar(rng, n, 0.98, 0.02)
    x = np.zeros((n, len(CHANNELS)))
    x[:, 0] = 0.21 + 0.02 * load + _ar(rng, n, 0.3, 0.004) + rng.normal(0, 0.006, n)
    x[:, 1] = 0.26 + 0.03 * load + _ar(rng, n, 0.3, 0.005) + rng.normal(0, 0.008, n)
    x[:, 2] = 1.5 + 0.8 * load + rng.normal(0, 0.25, n)
    x[:, 3] = 0.1 + 0.3 * load + rng.normal(0, 0.05, n)
    drift = np.linspace(0, rng.uniform(0.0, 0.3), n)
    x[:, 4] = 80 + drift + _ar(rng, n, 0.95, 0.03)
    x[:, 5] = 27 + 0.5 * drift + _ar(rng, n, 0.95, 0.02)
    x[:, 6] = 230 + 2 * load + rng.normal(0, 0.8, n)
    x[:, 7] = 32 + 4 * load + _ar(rng, n, 0.5, 0.3) + rng.normal(0, 0.4, n)
    start = int(rng.integers(450, 800))
    length = int(rng.integers(150, min(450, n - start)))
    seg = slice(start, start + length)
    kind = str(rng.choice(KINDS))
    sd = x[:NORMAL_START].std(axis=0)
    channel = {"shift": 3, "variance": 0, "ramp": 3, "relation": 7}[kind]
    if kind == "shift":
        m = rng.uniform(2.0, 4.0)
        x[seg, 3] += m * sd[3]
        x[seg, 7] -= m * sd[7]
        x[seg, 2] += 0.5 * m * sd[2]
    elif kind == "variance":
        x[seg, 0] += rng.normal(0, 2.5 * sd[0], length)
        x[seg, 1] += rng.normal(0, 2.5 * sd[1], length)
    elif kind == "ramp":
        r = np.linspace(0, rng.uniform(3, 6), length)
        x[seg, 3] += r * sd[3]
        x[seg, 7] -= r * sd[7]
    else:
        x[seg, 7] = (32 + 4 * load[start] + _ar(rng, n, 0.5, 0.3)[seg]
                     + rng.normal(0, 0.4, length) + 4 * rng.permutation(load[seg]))
    labels = np.zeros(n, dtype=np.int8)
    labels[seg] = 1
    incident = Incident(kind, channel, start, start + length - 1)
    return LabelledStream(name, T0 + STEP * np.arange(n), x, labels, (incident,), NORMAL_START,
                          has_calendar=False)


# the corpus's figures for one detector: ``evaluate(streams, detector, feed_labels=...,
# batch_size=..., progress=...)`` (``neurogate.evaluation.labelled.evaluate``)
evaluate = partial(labelled.evaluate, kinds=KINDS, desc="sensors")

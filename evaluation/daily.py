"""A labelled corpus of generated sources with several channels and one daily cycle (fixed
seed): what a service exporting a few metrics every 5 minutes sends (requests, CPU, latency,
bytes), pooled over files so one score must rank rows from every file.

Each file is 2,880 rows (ten days) at 300 s of four channels that follow one daily cycle
(a sine of period 288 rows; amplitudes 2-4 noise standard deviations, phases within 0.1
radian) under white noise. A default warm-up (200 rows) cannot show that period; the late look
for one (``evidence.late_period``, after 864 rows) can. One incident is planted between rows
1,000 and 2,600, of one of four kinds, in turn: a *surge* (every channel 2-3 standard
deviations higher for 150 rows: more traffic within the day's range, the channels still in
step), a *shift* (one channel 3-4 higher for 150 rows), *variance* (one channel's noise 3x
larger for 150 rows) and a *lag* (one channel's cycle a quarter of a day late for 150 rows:
it leaves its relation to the others). Scoring: ``neurogate.evaluation.labelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from neurogate.evaluation import labelled
from neurogate.evaluation.labelled import Incident, LabelledStream

KINDS = ("surge", "shift", "variance", "lag")
CHANNELS = 4
DAY = 288  # rows of the cycle's period (a day at 5-minute sampling)
ROWS = 10 * DAY
NORMAL_START = 200
LENGTH = 150  # rows of every incident
T0 = 1_700_000_000.0
STEP = 300.0


@dataclass(frozen=True)
class DailySettings:
    """Size of the generated corpus: files (kinds in turn) and the seed."""

    files: int = 24
    seed: int = 1


def generate(settings: DailySettings | None = None) -> list[LabelledStream]:
    """The corpus's files; the same settings always give the same data."""
    s = settings or DailySettings()
    rng = np.random.default_rng(s.seed)
    return [_file(k, KINDS[k % len(KINDS)], rng) for k in range(s.files)]


def _file(k: int, kind: str, rng: np.random.Generator) -> LabelledStream:
    phase = rng.uniform(0.0, 2.0 * np.pi) + rng.normal(0.0, 0.1, CHANNELS)
    amp = rng.uniform(2.0, 4.0, CHANNELS)
    t = np.arange(ROWS)[:, None]
    cycle = amp * np.sin(2.0 * np.pi * t / DAY + phase)
    x = cycle + rng.normal(0.0, 1.0, (ROWS, CHANNELS))
    start = int(rng.integers(1000, 2600 - LENGTH))
    seg = slice(start, start + LENGTH)
    channel = int(rng.integers(CHANNELS))
    if kind == "surge":
        x[seg] += rng.uniform(2.0, 3.0)
    elif kind == "shift":
        x[seg, channel] += rng.uniform(3.0, 4.0)
    elif kind == "variance":
        x[seg, channel] += rng.normal(0.0, np.sqrt(8.0), LENGTH)
    else:
        late = amp[channel] * np.sin(2.0 * np.pi * (t[seg, 0] - DAY // 4) / DAY + phase[channel])
        x[seg, channel] += late - cycle[seg, channel]
    labels = np.zeros(ROWS, dtype=np.int8)
    labels[seg] = 1
    incident = Incident(kind, 0 if kind == "surge" else channel, start, start + LENGTH - 1)
    return LabelledStream(f"daily-{k:02d}-{kind}", T0 + STEP * np.arange(ROWS), x, labels,
                          (incident,), NORMAL_START, has_calendar=False)


# the corpus's figures for one detector: ``evaluate(streams, detector, feed_labels=...,
# batch_size=..., progress=...)`` (``neurogate.evaluation.labelled.evaluate``)
evaluate = partial(labelled.evaluate, kinds=KINDS, desc="daily")

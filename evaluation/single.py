"""A labelled corpus of single-metric streams we generate (fixed seed): what a Kafka user sends
one number at a time (a CPU percentage, a request count, a queue depth), pooled over files so
one score must rank rows from every file.

Each file is 1,400 rows at 60 s of one of four conditions, in turn: *white* noise, *ar*
(AR(1) noise with coefficient 0.8: it wanders for a few dozen events), *counts* (Poisson with
mean 3, integers) and *trend* (white noise on a rise of 15 standard deviations over the file).
After 200 normal rows (the engine's default warm-up, every detector's warm-up here) one
incident is planted between rows 450 and 1,000, of one of three kinds, in turn: a *shift* (the
level moves by 3-5 standard deviations for 150 rows), a *spike* (one row 6-10 standard
deviations out) and *variance* (the noise 3-4x larger for 150 rows). Scoring:
``neurogate.evaluation.labelled``. ``--corpus single-white`` (``-ar``, ``-counts``,
``-trend``) gives files of one condition only, the kinds in turn.

``--corpus single-daily`` (not in the pooled corpus, whose figures it would change) gives
files of a *daily* cycle at 5-minute sampling: a sine of period 288 rows and 3 noise standard
deviations' amplitude under white noise, 2,880 rows (ten days), the incident planted between
rows 1,000 and 2,600. A default warm-up cannot show that period; the late look for one
(``evidence.late_period``, after 864 rows) can. ``--corpus single-weekly`` gives the same cycle
with real timestamps from a Monday, four weeks long, its weekends 1.5 noise sd lower with
0.6x the amplitude (a business metric), the incident planted between days 10 and 26: against
one daily profile every weekend was a sustained change (``evidence.weekend``).
``--corpus single-gaps`` gives the weekly files as a feed delivers them: OUTAGES gaps of 10
minutes to 6 hours after the first day (never inside the incident), and every timestamp off
its 5-minute mark by up to JITTER seconds; a daily profile counted in events slipped against
the day at each gap, and a gap in the first three days hid the day from the late look (the
profile's phase is read from the clock now, and a source looks at a day by the clock too).
``--corpus single-minutely`` gives the weekly cycle at 1-minute sampling, two weeks (a day is
1,440 events, beyond ``evidence.period_max``: only the look at a day, ``evidence.day_start``,
finds it), the incident planted between days 7 and 13, after the first weekend.

The corpus was built to measure rules.EpisodeCarry (docs/evaluation.md section 9): before it,
a single channel's shift alerted at its start and its new codes were learnt within 20-50
events, so the rest of the shift scored like normal rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from neurogate.evaluation import labelled
from neurogate.evaluation.labelled import Incident, LabelledStream

KINDS = ("shift", "spike", "variance")
CONDITIONS = ("white", "ar", "counts", "trend")
# conditions only asked for by name, not in the pooled corpus
ALONE = ("daily", "weekly", "gaps", "minutely")
ROWS = 1400
DAY = 288  # rows of the daily condition's period (a day at 5-minute sampling)
DAILY_ROWS = 10 * DAY
WEEKLY_ROWS = 28 * DAY
MINUTE_DAY = 1440  # rows of a day of the minutely condition
MINUTELY_ROWS = 14 * MINUTE_DAY
MONDAY = 1_704_067_200.0  # 2024-01-01T00:00:00Z, where the weekly condition starts
OUTAGES = 4  # gaps in the feed of the gaps condition, each GAP_ROWS long
GAP_ROWS = (2, 72)  # 10 minutes to 6 hours at 5-minute sampling
JITTER = 30.0
NORMAL_START = 200
T0 = 1_700_000_000.0
STEP = 60.0
LENGTH = 150  # rows of a shift or variance incident


@dataclass(frozen=True)
class SingleSettings:
    """Size of the generated corpus: files (conditions and kinds in turn), the seed, and one
    condition for every file (``eval multivariate --corpus single-NAME``) or None (all)."""

    files: int = 36
    seed: int = 1
    condition: str | None = None

    def __post_init__(self) -> None:
        if self.condition is not None and self.condition not in CONDITIONS + ALONE:
            raise ValueError(f"unknown single-metric condition {self.condition!r}; known: "
                             f"{CONDITIONS + ALONE}")


def generate(settings: SingleSettings | None = None) -> list[LabelledStream]:
    """The corpus's files; the same settings always give the same data."""
    s = settings or SingleSettings()
    rng = np.random.default_rng(s.seed)
    if s.condition is None:
        return [_file(k, CONDITIONS[k % len(CONDITIONS)], KINDS[k // len(CONDITIONS) % len(KINDS)],
                      rng) for k in range(s.files)]
    return [_file(k, s.condition, KINDS[k % len(KINDS)], rng) for k in range(s.files)]


def _noise(condition: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A normal series of ``condition`` and its noise's standard deviation."""
    if condition in ALONE:
        rows = {"daily": DAILY_ROWS, "minutely": MINUTELY_ROWS}.get(condition, WEEKLY_ROWS)
        day = MINUTE_DAY if condition == "minutely" else DAY
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = 3.0 * np.sin(2.0 * np.pi * np.arange(rows) / day + phase)
        if condition != "daily":  # days 5 and 6 of each week (from a Monday): a weekend
            weekend = (np.arange(rows) // day) % 7 >= 5
            wave = np.where(weekend, 0.6 * wave - 1.5, wave)
        return wave + rng.normal(0.0, 1.0, rows), 1.0
    if condition == "white":
        return rng.normal(0.0, 1.0, ROWS), 1.0
    if condition == "ar":
        e = rng.normal(0.0, 1.0, ROWS)
        x = np.zeros(ROWS)
        for i in range(1, ROWS):
            x[i] = 0.8 * x[i - 1] + e[i]
        return x, 1.0 / np.sqrt(1.0 - 0.64)
    if condition == "counts":
        return rng.poisson(3.0, ROWS).astype(np.float64), np.sqrt(3.0)
    return rng.normal(0.0, 1.0, ROWS) + np.linspace(0.0, 15.0, ROWS), 1.0


def _file(k: int, condition: str, kind: str, rng: np.random.Generator) -> LabelledStream:
    x, sd = _noise(condition, rng)
    daily = condition in ALONE
    weekly = (10 * DAY, 26 * DAY)
    low, high = {"daily": (1000, 2600), "weekly": weekly, "gaps": weekly,
                 "minutely": (7 * MINUTE_DAY, 13 * MINUTE_DAY)}.get(condition, (450, 1000))
    start = int(rng.integers(low, high - LENGTH))
    length = 1 if kind == "spike" else LENGTH
    seg = slice(start, start + length)
    if kind == "shift":
        x[seg] += rng.uniform(3.0, 5.0) * sd
    elif kind == "spike":
        x[seg] += rng.uniform(6.0, 10.0) * sd
    else:
        x[seg] += rng.normal(0.0, np.sqrt(rng.uniform(9.0, 16.0) - 1.0) * sd, length)
    if condition == "counts":
        x = np.maximum(np.round(x), 0.0)
    labels = np.zeros(x.size, dtype=np.int8)
    labels[seg] = 1
    step = 300.0 if daily and condition != "minutely" else STEP
    calendar = condition in ("weekly", "gaps", "minutely")
    t0 = MONDAY if calendar else T0
    ts = t0 + step * np.arange(x.size)
    if condition == "gaps":
        ts += rng.uniform(-JITTER, JITTER, x.size)
        keep = _outages(x.size, seg, rng)
        x, labels, ts = x[keep], labels[keep], ts[keep]
        start = int(np.flatnonzero(labels)[0])
    incident = Incident(kind, 0, start, start + length - 1)
    return LabelledStream(f"single-{k:02d}-{condition}-{kind}", ts, x[:, None], labels,
                          (incident,), NORMAL_START, has_calendar=calendar)


def _outages(rows: int, incident: slice, rng: np.random.Generator) -> np.ndarray:
    """Which of ``rows`` a feed with OUTAGES gaps delivers: gaps of GAP_ROWS after the first
    day, none touching the ``incident`` or another gap."""
    keep = np.ones(rows, dtype=bool)
    placed = 0
    while placed < OUTAGES:
        length = int(rng.integers(GAP_ROWS[0], GAP_ROWS[1] + 1))
        begin = int(rng.integers(DAY, rows - length))
        span = slice(begin - 1, begin + length + 1)  # a delivered row on either side
        if not keep[span].all() or begin + length >= incident.start and begin <= incident.stop:
            continue
        keep[begin : begin + length] = False
        placed += 1
    return keep


# the corpus's figures for one detector: ``evaluate(streams, detector, feed_labels=...,
# batch_size=..., progress=...)`` (``neurogate.evaluation.labelled.evaluate``)
evaluate = partial(labelled.evaluate, kinds=KINDS, desc="single")

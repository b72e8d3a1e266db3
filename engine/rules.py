"""The rules that turn a scored event's pattern surprise into its score and its flag, in order.

In the spirit of River's composable filters and Merlion's post-rules (calibrate, then
threshold): each rule is a small object with one method, ``apply(ctx)``, that reads and
changes a ``ScoreContext`` (one bank's scored events of a batch, arrival order). ``chain``
builds the ordered chain from an ``EngineConfig``; it is the only place the order is decided:

1. the base score: ``CalibratedEvidence`` (evidence families, each a tail probability against
   the source's own history, with the episode hold; Bonferroni; squashed) or, with
   ``evidence.calibrate = false``, ``PatternSurprise`` (the pattern surprise squashed);
2. ``RankCalibration`` (``calibration = "rank"``): mixed with its rank among the source's
   recent scores;
3. ``ExtremeValue`` (``extreme_rule``): a value outside everything the source has seen scores 1
   (for a channel the relation family judges, where the score is already ``extreme_floor``);
4. ``EpisodeCarry`` (``evidence.confirm``): on a single-channel source, an alert's episode
   stays scored while the channel's deviation from its forecast confirms it, never above the
   alert's own score;
5. ``Suppression`` (``suppress_window`` > 0): a score that does not beat the source's previous
   ones, or one inside an open episode that does not escalate it (``escalation``), is the same
   incident alerting again;
6. ``Threshold``: flagged where the score reaches ``threshold`` and is not suppressed.

Rules that keep history keep it in the bank's per-source arrays (``ctx.state``), so it is
saved in snapshots with the rest of a source's state. Each rule updates only its own arrays,
so rules 2 and 3 could swap without changing any figure; the order above is the one the
score is read in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numba import njit

from neurogate.engine import evidence
from neurogate.engine.config import EngineConfig, EvidenceSettings
from neurogate.engine.patterns import weekend
from neurogate.engine.scoring import rank_calibrate, squash
from neurogate.engine.state import (
    Groups,
    Growing,
    extend,
    grouped_cummax_before,
    store_tail,
    windows_at,
)

# Smallest combined tail probability: -ln of it (690 nats) still squashes below 1.0, which
# the new-extreme rule keeps for values outside everything seen.
MIN_PROBABILITY = 1e-300
# An alert opens no carried episode when the deviation family's p was below ``hold`` on more
# than this share of recent events (an exponential mean over the 40-event ring): the forecast
# misfits the channel (a slow baseline under a slow noisy cycle), so the deviation says
# nothing about this alert. A 1-day sine at 1-min sampling with noise of half its amplitude:
# 4.8 % of its normal events at 0.9 or more with the carry, 2.2 % with this gate, 0.3 %
# without the carry; the single-metric corpus (seed 1): 0.874 -> 0.879.
CHRONIC = 0.5
# A record in a source's first day counts whatever the calibrated score beyond this many
# ``extreme_margin`` spans (15 % of the seen range for one channel): an 8-sd spike after a
# wild warm-up value, whose codes the stretched range hides, and a wandering channel's
# 10-sd jumps among related sensors (tests) still count; with the score alone neither did.
# single-minutely day 0 false flags 45 with the score alone, 49 with this, 45 with 5 (which
# lost the jumps)
FIRST_DAY_FAR = 3.0


def probability_score(p: np.ndarray, events: np.ndarray | None = None) -> np.ndarray:
    """The score of a combined tail probability: ``b / (1 + b)`` of ``b = -log2 p`` bits,
    ``p`` read over ``events`` events first where there are more than one
    (``evidence.interval_bits``)."""
    bits = -np.log2(np.maximum(p, MIN_PROBABILITY))
    if events is not None:
        many = events > 1.0
        bits[many] = np.minimum(evidence.interval_bits(p[many], events[many]), bits[many])
    out: np.ndarray = squash(bits)
    return out


@dataclass
class ScoreContext:
    """One bank's scored events of a batch (arrival order), as the rules read and change them.

    Inputs: ``state`` (the bank's per-source arrays), ``rows`` (each event's source row),
    ``groups`` (the events grouped by source), raw ``values`` [n, C], ``pattern_stat`` (mean of
    the k largest code-stream surprises, nats) and ``pattern_prior`` (ln of the code vocabulary,
    the pattern family's prior). Outputs, filled in by the rules: ``score``, ``extreme``,
    ``suppressed``, ``flagged`` and, when the score is calibrated, each evidence family's tail
    probability ``family_p`` [n, NFAM] and driving channel ``family_channel`` [n, 2]."""

    state: Growing
    rows: np.ndarray
    groups: Groups
    values: np.ndarray
    pattern_stat: np.ndarray
    pattern_prior: float = 0.0
    relation: bool = False  # the relation family applies (evidence.relation, 2+ channels)
    deviation: bool = False  # the deviation family applies (evidence.deviation; a univariate
    # source judges only a clearly periodic channel)
    # each event's time on the wall clock of ``timezone``, epoch seconds (NaN, None: none)
    times: np.ndarray | None = None
    # each event's seconds since its source's first event, on its clock (NaN, None: none)
    age: np.ndarray | None = None
    score: np.ndarray = field(init=False)
    extreme: np.ndarray = field(init=False)
    suppressed: np.ndarray = field(init=False)
    flagged: np.ndarray = field(init=False)
    family_p: np.ndarray = field(init=False)
    family_channel: np.ndarray = field(init=False)
    confirm_p: np.ndarray = field(init=False)  # deviation's p where it only confirms, else NaN
    escalated: np.ndarray = field(init=False)  # not suppressed inside an open episode (Suppression)
    # [n, C] each channel judged against a local trend as its event was scored (a look may end
    # it within the batch: read after the batch, the events before the look were judged by it)
    trending: np.ndarray = field(init=False)
    # [n] what the deviation family's channel was judged against as the event was scored
    # (evidence.FORECAST_NAMES; -1: none)
    forecast: np.ndarray = field(init=False)
    # [n] the events of its source in ``score_interval`` (``evidence.interval_events``) that a
    # tail probability is read over before it is scored (``CalibratedEvidence``; 1: per event)
    interval_events: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.rows.size
        self.score = np.zeros(n)
        self.extreme = np.zeros(n, dtype=bool)
        self.suppressed = np.zeros(n, dtype=bool)
        self.flagged = np.zeros(n, dtype=bool)
        self.family_p = np.full((n, evidence.NFAM), np.nan)
        self.family_channel = np.full((n, 2), -1, dtype=np.int64)
        self.confirm_p = np.full(n, np.nan)
        self.escalated = np.zeros(n, dtype=bool)
        self.trending = np.zeros(self.values.shape, dtype=bool)
        self.forecast = np.full(n, -1, dtype=np.int64)
        self.interval_events = np.ones(n)

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])


class Rule(Protocol):
    """One step of the chain: reads and changes ``ctx`` (and its own per-source arrays)."""

    def apply(self, ctx: ScoreContext) -> None:
        ...


class PatternSurprise:
    """The uncalibrated base score: the pattern surprise squashed to 0..1 (``s / (1 + s)``).

    >>> import numpy as np
    >>> from neurogate.engine.state import Groups, Growing
    >>> rows = np.zeros(2, dtype=np.int64)
    >>> ctx = ScoreContext(Growing({}), rows, Groups.of(rows), np.zeros((2, 1)),
    ...                    pattern_stat=np.array([1.0, 9.0]))
    >>> PatternSurprise().apply(ctx)
    >>> ctx.score
    array([0.5, 0.9])
    """

    def apply(self, ctx: ScoreContext) -> None:
        ctx.score = squash(ctx.pattern_stat)


class CalibratedEvidence:
    """The calibrated base score (engine/evidence.py): each evidence family's tail probability
    against the source's own history, combined by Bonferroni over the families a source has,
    read over the source's events in ``interval`` seconds (``score_interval``; Sidak), scored
    as ``s / (1 + s)`` with ``s = -log2 p``. Learns from each event unless its family is in an
    open episode (``evidence.hold``, at most ``hold_max`` events).

    >>> import numpy as np
    >>> from neurogate.engine.bank import Bank
    >>> from neurogate.engine.config import EngineConfig
    >>> bank = Bank(("v",), 16, EngineConfig())
    >>> rows = np.repeat(bank.add_source("s"), 2)
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((2, 1)),
    ...                    pattern_stat=np.array([1.0, 30.0]), pattern_prior=np.log(34.0))
    >>> CalibratedEvidence(EngineConfig().evidence).apply(ctx)  # no history yet: the prior
    >>> (ctx.family_p[:, 0] < 1e-9).tolist(), (ctx.score > 0.9).tolist()
    ([False, True], [False, True])
    """

    def __init__(self, settings: EvidenceSettings, interval: float = 0.0) -> None:
        self.settings, self.interval = settings, interval

    def apply(self, ctx: ScoreContext) -> None:
        st, ev = ctx.state, self.settings
        n = ctx.rows.size
        stat = np.empty((n, evidence.NFAM))
        if ctx.relation:
            mu, cov, prec, related = st.ev_mu, st.ev_cov, st.ev_prec, st.ev_related
            last, reps, stuck = st.ev_last, st.ev_reps, st.ev_stuck
        else:  # typed placeholders: the kernel does not read them
            mu, cov, prec = np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1, 1))
            related = np.ones((1, 1), dtype=np.int64)
            last, stuck = np.zeros((1, 1)), np.zeros((1, 1))
            reps = np.zeros((1, 1), dtype=np.int64)
        values = np.ascontiguousarray(ctx.values, dtype=np.float64)
        pattern_stat = np.ascontiguousarray(ctx.pattern_stat, dtype=np.float64)
        confirm = st.ev_confirm[ctx.rows] == 1  # per event: a late look may end it (below)
        times = np.full(n, np.nan) if ctx.times is None else ctx.times
        on_weekend = weekend(times, np.isfinite(times))
        clock = np.ascontiguousarray(times % evidence.DAY, dtype=np.float64)
        periodic_only = ctx.channels < ev.deviation_channels
        late, day = self._late_looks(ctx), self._day_looks(ctx, times)
        begin = 0
        for look in [*sorted(set(late) | set(day)), None]:
            end = n if look is None else look
            part = slice(begin, end)
            ctx.trending[part] = st.ev_mode[ctx.rows[part]] == evidence.TREND
            evidence.score_events(
                ctx.rows[part], values[part], pattern_stat[part],
                ctx.deviation, ctx.relation, ctx.pattern_prior,
                st.ev_base, st.ev_slope, st.ev_spread, st.ev_floor, st.ev_ring, st.ev_n, st.ev_mode,
                st.ev_period, st.ev_profile, st.ev_recent, st.ev_weekend,
                st.ev_weekend_n, st.ev_daily,
                on_weekend[part], clock[part], st.ev_origin, st.ev_per_slot, st.ev_t, st.ev_hist,
                st.ev_total, st.ev_held, st.ev_run, st.ev_run_w, st.ev_run_n, mu, cov, prec,
                related, last, reps, stuck, ev.rate, ev.ridge, ev.refresh,
                float(ev.tail_memory), ev.hold, ev.hold_max, ev.sustained, evidence.WIDTH,
                ctx.family_p[part], stat[part], ctx.family_channel[part])
            if ctx.deviation:  # before a look below may change the forecast
                self._forecasts(ctx, begin, end)
            # the event before it completed its source's late values; the event at it begins
            # its source's fourth day (``_day_looks``)
            judged = np.concatenate([
                evidence.late_start(st, ctx.rows[look - 1 : look], ev, periodic_only)
                if look in late else np.zeros(0, np.int64),
                evidence.day_start(st, ctx.rows[look : look + 1], ev, periodic_only)
                if look in day else np.zeros(0, np.int64)])
            if judged.size:
                st.ep_level[judged] = 0.0  # its carried episode ends: the family judges now
                confirm[look:] &= ~np.isin(ctx.rows[look:], judged)
            begin = end
        if ctx.deviation:  # a family that only confirms is not combined (EpisodeCarry reads it)
            ctx.confirm_p = np.where(confirm, ctx.family_p[:, evidence.DEVIATION], np.nan)
            ctx.family_p[confirm, evidence.DEVIATION] = np.nan
        families = 1 + int(ctx.deviation) + int(ctx.relation)
        combined = evidence.combine(ctx.family_p, families)
        ctx.interval_events = evidence.interval_events(st.step[ctx.rows], self.interval)
        ctx.score = probability_score(combined, ctx.interval_events)

    @staticmethod
    def _forecasts(ctx: ScoreContext, begin: int, end: int) -> None:
        """What each event's deviation channel was judged against (``ctx.forecast``) for the
        events ``begin:end`` just scored."""
        st = ctx.state
        rows, ch = ctx.rows[begin:end], ctx.family_channel[begin:end, 0]
        ok = ch >= 0
        mode = st.ev_mode[rows[ok], ch[ok]]
        daily = (mode == evidence.SEASONAL) & (st.ev_daily[rows[ok], ch[ok]] > 0)
        ctx.forecast[begin + np.flatnonzero(ok)] = np.where(daily, evidence.DAILY, mode)

    @staticmethod
    def _day_looks(ctx: ScoreContext, times: np.ndarray) -> list[int]:
        """Keep one event per slot of the first MIN_PERIODS whole days of each source that
        has a look at a day to make (``ev_days``, ``evidence.day_start``: the first event in a
        slot, in arrival order); returns, ascending, the index of each such source's first
        event after them, where the batch is cut for the look."""
        st = ctx.state
        if "ev_day0" not in st.arrays:
            return []
        timed = np.isfinite(times)
        pending = np.flatnonzero((st.ev_day0[ctx.rows] == evidence.DAY_PENDING) & timed)
        if pending.size:  # a source's first whole day: the next after its first scored event's
            starts, first = np.unique(ctx.rows[pending], return_index=True)
            st.ev_day0[starts] = np.floor(times[pending[first]] / evidence.DAY) + 1
        day0 = st.ev_day0[ctx.rows]
        waiting = np.flatnonzero((day0 >= 0) & timed)
        if not waiting.size:
            return []
        slots = st.ev_days.shape[1] // evidence.MIN_PERIODS
        at = evidence.day_slots(times[waiting], slots) - day0[waiting] * slots
        rows = ctx.rows[waiting]
        early = (at >= 0) & (at < st.ev_days.shape[1])
        first = np.unique(np.stack([rows[early], at[early]]), axis=1, return_index=True)[1]
        keep = waiting[early][first]
        empty = np.isnan(st.ev_days[rows[early][first], at[early][first]])  # [k, C]
        st.ev_days[rows[early][first], at[early][first]] = np.where(
            empty, ctx.values[keep], st.ev_days[rows[early][first], at[early][first]])
        late = at >= st.ev_days.shape[1]
        _, ends = np.unique(rows[late], return_index=True)  # each source's first
        cuts: list[int] = np.sort(waiting[late][ends]).tolist()
        return cuts

    @staticmethod
    def _late_looks(ctx: ScoreContext) -> list[int]:
        """Keep the values of events between a source's warm-up and its late look for a
        period (``ev_late``, ``evidence.late_start``); returns, ascending, the index after
        each event that completes them, where the batch is cut for the look, so the scores do
        not depend on how events are batched."""
        st = ctx.state
        if "ev_late" not in st.arrays:
            return []
        g, warm = ctx.groups, st.warm.shape[1]
        t = np.empty(ctx.rows.size, dtype=np.int64)  # each event's position in its source
        t[g.order] = st.ev_t[g.rows][g.gid] + g.rank
        end = warm + st.ev_late.shape[1]
        keep = (t >= warm) & (t < end)
        st.ev_late[ctx.rows[keep], t[keep] - warm] = ctx.values[keep]
        cuts: list[int] = (np.flatnonzero(t == end - 1) + 1).tolist()
        return cuts


class RankCalibration:
    """Each score mixed 50/50 with its empirical rank among the source's previous ``window``
    scores (``scoring.rank_calibrate``); keeps those scores in ``ctx.state.cal_hist``.

    >>> import numpy as np
    >>> from neurogate.engine.bank import Bank
    >>> from neurogate.engine.config import EngineConfig
    >>> bank = Bank(("v",), 16, EngineConfig(calibration="rank"))
    >>> rows = np.repeat(bank.add_source("s"), 3)
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((3, 1)),
    ...                    pattern_stat=np.zeros(3))
    >>> ctx.score = np.array([0.2, 0.6, 0.4])
    >>> RankCalibration().apply(ctx)
    >>> ctx.score
    array([0.1 , 0.8 , 0.45])
    """

    def apply(self, ctx: ScoreContext) -> None:
        g, st, score = ctx.groups, ctx.state, ctx.score
        ext, vpos = extend(st.cal_hist[g.rows], g, score[g.order])
        store_tail(st.cal_hist, g, ext, vpos)
        hist = np.empty((score.size, st.cal_hist.shape[1]))
        hist[g.order] = windows_at(ext, vpos - 1, st.cal_hist.shape[1])
        ctx.score = rank_calibrate(score, hist)


class ExtremeValue:
    """New-extreme rule: an event with any channel outside its source's seen [min, max]
    widened by ``margin`` of that range scores 1.0 (``ctx.extreme``); updates the seen range
    (``ext_lo``, ``ext_hi``, started from the warm-up's). A record of a channel the relation
    family judges, and a record in its source's first day (``ctx.age``) by less than
    FIRST_DAY_FAR margins, counts only where the calibrated score is already at least
    ``floor``.

    >>> import numpy as np
    >>> from neurogate.engine.bank import Bank
    >>> from neurogate.engine.config import EngineConfig
    >>> bank = Bank(("v",), 16, EngineConfig())
    >>> rows = np.repeat(bank.add_source("s"), 3)
    >>> bank.state.ext_lo[0], bank.state.ext_hi[0] = 0.0, 10.0
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.array([[5.0], [10.2], [11.0]]),
    ...                    pattern_stat=np.zeros(3))
    >>> ctx.score = np.full(3, 0.3)
    >>> ExtremeValue(0.05).apply(ctx)
    >>> ctx.extreme, ctx.score
    (array([False, False,  True]), array([0.3, 0.3, 1. ]))
    """

    def __init__(self, margin: float, floor: float = 0.0) -> None:
        self.margin = margin
        self.floor = floor

    def apply(self, ctx: ScoreContext) -> None:
        st, g = ctx.state, ctx.groups
        v = ctx.values[g.order]
        hi = grouped_cummax_before(st.ext_hi[g.rows], g, v)
        lo = -grouped_cummax_before(-st.ext_lo[g.rows], g, -v)
        # Each channel can set a record by chance: with C channels the margin grows by ln C, so
        # a noisy 40-channel source does not hit the rule 40 times as often (measured: 2.1 % of
        # normal events at margin 0.05 on 40 noisy channels; univariate sources unchanged).
        span = (hi - lo) * self.margin * (1.0 + np.log(ctx.channels))
        # ...and, with several channels, is at least one logging step (twice the spread floor,
        # ``evidence._step``): a temperature logged in tenths of a degree, wandering among
        # related sensors, set a "record" at every new tenth (sensors dev files: 42 of 61 false
        # flags). Not for a single channel: there a count of 4 errors after at most 3 is news
        # (generated Poisson counts: 15 -> 10 of 20 spikes flagged with the step everywhere).
        if ctx.channels > 1:
            span = np.maximum(span, 2.0 * st.ev_floor[ctx.rows][g.order])
        broke = np.empty_like(v, dtype=bool)  # [n, C] the channels that set a record
        broke[g.order] = (v > hi + span) | (v < lo - span)
        last = g.starts + g.counts - 1
        st.ext_hi[g.rows] = np.maximum(hi[last], v[last])
        st.ext_lo[g.rows] = np.minimum(lo[last], v[last])
        ctx.extreme = np.asarray(broke.any(axis=1))
        if self.floor > 0 and (ctx.relation or ctx.deviation):
            # Channels that follow one factor set records together when it wanders past its
            # warm-up range, and the relation family knows they still agree; so a record of a
            # channel relation judges counts where the calibrated score is at least ``floor``
            # (records of other channels count as before). Sensors dev files with the default
            # warm-up of 200: false extremes 35 / 37 -> 21 / 26, incidents found 27 / 22 ->
            # 27 / 21; sensors, GutenTAG and multivariate dev with their long warm-ups: the
            # same incidents found (gating every channel's records: 19 / 19, but 3 of 120 dev
            # GutenTAG incident detections lost, records of channels relation does not judge).
            # A record of a channel judged against a local trend counts where the trend's own
            # forecast agrees (the deviation family's score, Bonferroni over the source's
            # families): a rising series sets one every few events, and its codes above the
            # warm-up's range are new to the patterns family too, so the calibrated score
            # passed many (5 normal rising series: 42 flags without the trend, 22 gated by the
            # score, 16 by the forecast; `--corpus single-trend` seeds 1-3 flag precision
            # 0.370 / 0.378 / 0.409 -> 0.484 / 0.438 / 0.528, the same incidents found).
            judged = np.zeros_like(broke)
            if ctx.relation:
                related = st.ev_related[ctx.rows]
                judged |= (related == 1) & (
                    related.sum(axis=1, keepdims=True) >= evidence.MIN_RELATED)
            ctx.extreme = (broke & ~judged & ~ctx.trending).any(axis=1) | (
                (broke & judged).any(axis=1) & (ctx.score >= self.floor))
            if ctx.deviation:
                families = 1 + int(ctx.deviation) + int(ctx.relation)
                p_dev = np.nan_to_num(ctx.family_p[:, evidence.DEVIATION], nan=1.0)
                forecast = probability_score(np.minimum(1.0, families * p_dev),
                                             ctx.interval_events)
                ctx.extreme |= (broke & ctx.trending).any(axis=1) & (forecast >= self.floor)
        if self.floor > 0 and ctx.age is not None:
            # A source's first day counts a record where the calibrated score is at least
            # ``floor`` too, or where it lies beyond FIRST_DAY_FAR margins: a warm-up of 200
            # events sees 3.3 hours of a 1-minute source's day (16.7 of a 5-minute one's), and
            # a daily cycle crept past its range all through the rest of it, a record at a
            # time. `--corpus single-minutely` false flags on day 0 104 -> 49 of 189, PR-AUC
            # 0.765 -> 0.838; `single-weekly` 0.852 -> 0.865, `single-gaps` 0.810 -> 0.820;
            # the demo 111 -> 110 flags, the same incidents; NAB unchanged (each file's warm-up
            # is its probation, two days or more)
            first_day = ctx.age < evidence.DAY  # NaN (no clock): False
            if first_day.any():
                far = np.empty(len(v), dtype=bool)  # a record by more than FIRST_DAY_FAR margins
                far[g.order] = ((v > hi + FIRST_DAY_FAR * span)
                                | (v < lo - FIRST_DAY_FAR * span)).any(axis=1)
                ctx.extreme &= ~first_day | (ctx.score >= self.floor) | far
        ctx.score = np.where(ctx.extreme, 1.0, ctx.score)


class EpisodeCarry:
    """An alert's episode stays scored while the deviation family confirms it, on sources where
    that family only confirms (``ctx.confirm_p``: a single channel that is not clearly
    periodic: engine/evidence.py ``start``). A score at or above ``threshold`` opens an
    episode at that score; while it is open, each event scores at least the episode's level,
    the smaller of the previous level and the score of the deviation family's own tail
    probability (Bonferroni over two families), so the level never rises and the carried
    score never beats its predecessors; it is marked ``suppressed`` (the same incident), so it
    never alerts, with or without ``Suppression``. The
    episode closes once deviation's p is at least ``hold`` after the first ``grace`` events
    (the smoothed deviation needs a few events to see a shift), or after ``hold_max`` events.
    An alert opens none while deviation's p has been below ``hold`` on most recent events
    (``CHRONIC``, over ``LONG * grace`` events): that deviation was there before the alert.

    >>> import numpy as np
    >>> from neurogate.engine.bank import Bank
    >>> from neurogate.engine.config import EngineConfig
    >>> bank = Bank(("v",), 16, EngineConfig())
    >>> rows = np.repeat(bank.add_source("s"), 4)
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((4, 1)),
    ...                    pattern_stat=np.zeros(4))
    >>> ctx.score = np.array([0.95, 0.2, 0.1, 0.3])
    >>> ctx.confirm_p = np.array([0.5, 1e-6, 1e-5, 0.5])
    >>> EpisodeCarry(0.9, hold=1e-3, hold_max=300, grace=1).apply(ctx)
    >>> ctx.score.round(3)
    array([0.95, 0.95, 0.94, 0.3 ])
    """

    def __init__(self, threshold: float, hold: float, hold_max: int, grace: int) -> None:
        self.threshold, self.hold, self.hold_max, self.grace = threshold, hold, hold_max, grace

    def apply(self, ctx: ScoreContext) -> None:
        confirm = ~np.isnan(ctx.confirm_p)
        if not confirm.any():
            return
        st, own = ctx.state, ctx.score.copy()
        # deviation's own score, Bonferroni over two families, over the source's events in
        # score_interval (NaN where it does not confirm)
        confirmed = probability_score(np.minimum(1.0, 2.0 * ctx.confirm_p), ctx.interval_events)
        _carry(ctx.rows, confirm, ctx.confirm_p, confirmed, ctx.score, st.ep_level, st.ep_n,
               st.ep_low, self.threshold, self.hold, self.hold_max, self.grace,
               self.grace * evidence.LONG)
        ctx.suppressed |= ctx.score > own  # a carried score is the episode's, never an alert


@njit(cache=True)
def _carry(  # noqa: PLR0913  (numba kernel: flat arrays)
    rows: np.ndarray, confirm: np.ndarray, p: np.ndarray, confirmed: np.ndarray,
    score: np.ndarray, level: np.ndarray, n_open: np.ndarray, low: np.ndarray,
    threshold: float, hold: float, hold_max: int, grace: int, recent: int,
) -> None:
    """``EpisodeCarry`` event by event in arrival order (changes ``score`` in place);
    ``confirmed`` is the score of each event's deviation ``p``."""
    for i in range(rows.size):
        r = rows[i]
        if not confirm[i]:
            continue
        if level[r] > 0.0:
            n_open[r] += 1
            if n_open[r] > hold_max or (p[i] >= hold and n_open[r] > grace):
                level[r] = 0.0
            elif p[i] < hold:
                level[r] = min(level[r], confirmed[i])
                score[i] = max(score[i], level[r])
        if level[r] == 0.0 and score[i] >= threshold and low[r] < CHRONIC:
            level[r], n_open[r] = score[i], 0
        low[r] += ((1.0 if p[i] < hold else 0.0) - low[r]) / recent


class Suppression:
    """True in ``ctx.suppressed`` where a score is the same incident alerting again: it does
    not beat its source's previous ``window`` scores (kept in ``ctx.state.score_hist``), or it
    reaches the threshold inside the source's open **episode** without escalating: its bits
    (``b = s / (1 - s)``, ``-log2`` of the tail probability) beyond the threshold's must be more
    than ``escalation`` times the episode's highest alert's, and at least one bit above it.
    A new extreme (score 1) always escalates. An episode opens at an alert and closes once
    ``window`` scores in a row stay below the threshold (``ctx.state.sup_bits``,
    ``sup_quiet``); ``escalation`` 0 leaves the window rule alone, ``inf`` alerts once per
    episode and at new extremes. Why: a sustained incident's evidence keeps
    growing, so its score kept beating the last 30 and most of its events alerted.

    >>> import numpy as np
    >>> from neurogate.engine.bank import Bank
    >>> from neurogate.engine.config import EngineConfig
    >>> bank = Bank(("v",), 16, EngineConfig(suppress_window=2))
    >>> rows = np.repeat(bank.add_source("s"), 4)
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((4, 1)),
    ...                    pattern_stat=np.zeros(4))
    >>> ctx.score = np.array([0.5, 0.4, 0.45, 0.7])
    >>> Suppression(2).apply(ctx)
    >>> ctx.suppressed
    array([False,  True,  True, False])

    Inside an episode (threshold 0.9: 9 bits) a new high alerts where it escalates:

    >>> rows = np.repeat(bank.add_source("t"), 6)
    >>> ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((6, 1)),
    ...                    pattern_stat=np.zeros(6))
    >>> ctx.score = np.array([0.9, 0.905, 0.91, 0.92, 0.93, 0.94])
    >>> (ctx.score / (1 - ctx.score)).round(1)  # bits; each alert sets the next one's bar
    array([ 9. ,  9.5, 10.1, 11.5, 13.3, 15.7])
    >>> Suppression(2, threshold=0.9, escalation=2.0).apply(ctx)
    >>> ctx.suppressed  # 9.5 < 9 + 1; 13.3 < 9 + 2 * (11.5 - 9)
    array([False,  True, False, False,  True, False])
    >>> ctx.escalated  # the alerts after the episode's first
    array([False, False,  True,  True, False,  True])
    """

    def __init__(self, window: int, threshold: float = 1.0, escalation: float = 0.0) -> None:
        self.window, self.threshold, self.escalation = window, threshold, escalation

    def apply(self, ctx: ScoreContext) -> None:
        g, st, score = ctx.groups, ctx.state, ctx.score
        ext, vpos = extend(st.score_hist[g.rows], g, score[g.order])
        store_tail(st.score_hist, g, ext, vpos)
        prev = windows_at(ext, vpos - 1, self.window).max(axis=1)
        ctx.suppressed[g.order] |= score[g.order] <= prev
        if self.escalation > 0:
            _episodes(ctx.rows, score, ctx.suppressed, ctx.escalated, st.sup_bits,
                      st.sup_quiet, _bits(self.threshold), self.window, self.escalation)


@njit(cache=True)
def _bits(score: float) -> float:
    """The bits a score stands for, ``b`` of ``s = b / (1 + b)`` (1.0: infinitely many)."""
    return math.inf if score >= 1.0 else score / (1.0 - score)


@njit(cache=True)
def _episodes(  # noqa: PLR0913  (numba kernel: flat arrays)
    rows: np.ndarray, score: np.ndarray, suppressed: np.ndarray, escalated: np.ndarray,
    top: np.ndarray, quiet: np.ndarray, threshold: float, window: int, escalation: float,
) -> None:
    """``Suppression``'s episodes event by event in arrival order (sets ``suppressed`` and
    ``escalated`` in place); ``threshold`` in bits, ``top`` each source's open episode's
    highest alert in bits (0: none open)."""
    for i in range(rows.size):
        r = rows[i]
        if top[r] > 0.0 and quiet[r] >= window:
            top[r] = 0.0
        bits = _bits(score[i])
        if bits < threshold:
            quiet[r] += 1
            continue
        quiet[r] = 0
        # a new extreme (inf bits) always alerts, only the window rule holds it back: held by
        # the episode too, a spike inside a carried episode went unflagged (single-metric
        # corpus: incidents found 0.94 -> 0.86); strictly more excess, so ``escalation`` inf
        # lets nothing else through (inf * 0 is NaN: nor where the episode sat at the threshold)
        if top[r] > 0.0 and bits < math.inf and not (
                bits >= top[r] + 1.0 and bits - threshold > escalation * (top[r] - threshold)):
            suppressed[i] = True
        elif not suppressed[i]:
            escalated[i] = top[r] > 0.0
            top[r] = bits
        elif top[r] == 0.0:
            top[r] = bits


class Threshold:
    """Flagged where the score reaches ``threshold`` and was not suppressed.

    >>> import numpy as np
    >>> from neurogate.engine.state import Groups, Growing
    >>> rows = np.zeros(3, dtype=np.int64)
    >>> ctx = ScoreContext(Growing({}), rows, Groups.of(rows), np.zeros((3, 1)),
    ...                    pattern_stat=np.zeros(3))
    >>> ctx.score, ctx.suppressed = np.array([0.95, 0.5, 0.97]), np.array([False, False, True])
    >>> Threshold(0.9).apply(ctx)
    >>> ctx.flagged
    array([ True, False, False])
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def apply(self, ctx: ScoreContext) -> None:
        ctx.flagged = (ctx.score >= self.threshold) & ~ctx.suppressed


def chain(config: EngineConfig) -> list[Rule]:
    """The post-score rules of ``config``, in the order they run (see the module docstring).

    >>> from neurogate.engine.config import EngineConfig
    >>> print(*(type(r).__name__ for r in chain(EngineConfig(calibration="rank"))))
    CalibratedEvidence RankCalibration ExtremeValue EpisodeCarry Suppression Threshold
    >>> cfg = EngineConfig(extreme_rule=False, suppress_window=0)
    >>> [type(r).__name__ for r in chain(cfg.replace(**{"evidence.calibrate": False}))]
    ['PatternSurprise', 'Threshold']
    """
    rules: list[Rule] = [CalibratedEvidence(config.evidence, config.score_interval)
                         if config.evidence.calibrate else PatternSurprise()]
    if config.calibration == "rank":
        rules.append(RankCalibration())
    if config.extreme_rule:
        rules.append(ExtremeValue(config.extreme_margin, config.extreme_floor))
    if config.evidence.calibrate and config.evidence.deviation and config.evidence.confirm:
        ev = config.evidence
        rules.append(EpisodeCarry(config.threshold, ev.hold, ev.hold_max, ev.smoothing))
    if config.suppress_window > 0:
        rules.append(Suppression(config.suppress_window, config.threshold, config.escalation))
    rules.append(Threshold(config.threshold))
    return rules


def run(rules: list[Rule], ctx: ScoreContext) -> ScoreContext:
    """Apply ``rules`` to ``ctx`` in order; returns ``ctx``."""
    for rule in rules:
        rule.apply(ctx)
    return ctx

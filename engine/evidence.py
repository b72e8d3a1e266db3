"""Evidence families and their calibration: what turns a source's statistics into one score
that means the same on a clean 1-channel stream and a noisy 40-channel source.

Three families of evidence, each reduced to one statistic per event:

* **patterns**: the mean of the k largest code-stream surprises (nats), as the pattern layer
  computes them (``scoring.top_k_mean``).
* **deviation**: each channel against its own forecast, as ``|x - forecast| / spread``
  averaged over the last ``smoothing`` events and over ``LONG`` times as many; the largest
  channel counts (sources with at least ``deviation_channels`` channels; fewer: clearly
  periodic channels only, below). The forecast is
  chosen per channel at the end of the warm-up, whichever fits the warm-up best (smallest mean
  |residual|): a slow robust baseline (a running median) or a seasonal profile (the channel's
  mean at each phase of the period its warm-up autocorrelation shows; an amplitude, mean,
  shape or phase change of a periodic channel leaves its profile; a period within 5 % of a
  day of real timestamps is a day, with a weekend offset, ``DAY``). A channel its previous
  value forecasts better still drifts (a random walk, mode jumps: it keeps leaving any slow
  baseline) and one the other channels predict more closely belongs to relation; both are left
  out, and a source with no channel left has no deviation family (its p is NaN, and
  ``combine`` does not count it). GutenTAG 8 channels (a seed not reported) 0.636 -> 0.823.
  A source with fewer channels (a univariate one) keeps only a clearly periodic channel
  (``PERIODIC_SHARE``): on long non-stationary series a value's distance from a slow baseline
  has its own heavy tail (NAB: 17 points lost), a periodic wave's distance from its profile
  does not. Such a source's other channels only *confirm* (``ev_confirm``): their tail
  probability is not combined into the score, it keeps an alert's episode scored
  (rules.EpisodeCarry) while the value stays away from its forecast (a slow baseline for a
  drifting channel); a channel that trends through the warm-up (``TREND_SHARE``) or wanders
  like a random walk (``STEP_SHARE``) does not confirm; a trending one is judged against a
  local trend instead (``TREND``, ``evidence.trend``).
* **relation** (sources with two or more channels): each channel against what the *other*
  channels predict, from a slowly forgetting covariance of the source (the Gaussian conditional:
  ``e = P (x - mu)``, ``z_c = |e_c| / sqrt(P_cc)`` with ``P`` the regularised precision),
  averaged the same way. A channel that leaves its relation to the others (a correlation break,
  a frozen sensor among moving ones, a shift in one channel) shows here even when its value
  stays inside its usual range. A channel whose warm-up residual against the others wanders
  on its own (``_related``) is left out of the family and of the others' predictions; a
  source with fewer than two channels left has no relation family (its p is NaN, as for
  deviation). A stuck channel counts here too: its run of exact repeats times what one repeat
  costs, ``-ln P(repeat)`` from the warm-up (``_repeats``): a frozen sensor of the generated
  multivariate set was found late, when the others had moved away from its value (that kind's
  ROC-AUC 0.837 -> 0.995).

Each family's statistic is turned into a **tail probability** against the source's own recent
history of that statistic: a histogram of the last ``tail_memory`` events (halved when full;
started from the warm-up, ``start``, so an incident soon after it meets a grown history),
read empirically where at least ``TAIL_EVENTS`` events lie beyond the value and extrapolated
beyond that with an exponential tail fitted to those top events (peaks over threshold). The
families are combined by ``p = min(1, F * min_f p_f)`` (Bonferroni over the F families a
source has), so a source with more evidence streams does not alert more by chance, and the
score is ``s / (1 + s)`` with ``s = -log2 p`` (bits).

**Holding back learning.** While the deviation or relation family's tail probability is below
``hold`` (an open episode), that family neither updates its baseline nor its history, for at
most ``hold_max`` consecutive events: a sustained incident stays unusual instead of becoming
the new normal within minutes. A run of events below ``sustained`` (a moderate incident, p ~
0.003, which ``hold`` never catches) is learnt as usual while it is shorter than the smoothing
ring (40 events: a normal excursion lasts about as long as the statistic's own memory); once
it lasts that long it is an open episode too, and its events are taken back out of the
history (``_forget``). Whether a run goes on is judged against the history without its own
events (``_tail_without``), else the run would end by teaching itself. Sensors dev seeds:
ROC-AUC 0.841 / 0.805 -> 0.865 / 0.846. Labels play no part: the unsupervised score never depends on
them (they feed the posterior). The pattern family is not held: its counts are the shared,
exactly-once state of the store, and holding its history back cost 8.6 NAB points
(67.46 -> 58.81), since a regime change then kept alerting.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from neurogate.engine.config import EvidenceSettings

FAMILIES = ("patterns", "deviation", "relation")
PATTERNS, DEVIATION, RELATION = range(3)
NFAM = len(FAMILIES)
BINS = 256
# Histogram bin width per family: patterns in nats over [0, 64), deviation and relation in
# smoothed |z| over [0, 25.6); values beyond the top are kept in the last bin. (Tried: bins of
# ln(1 + |z|), so that the fitted tail is a power law in |z|: GutenTAG, unreported seed, 8 / 40
# channels 0.636 / 0.606 -> 0.658 / 0.623, but the generated multivariate set, unreported seed,
# 0.910 -> 0.886; bins of 0.25: 0.654 / 0.623 and 0.890.)
WIDTH = np.array([0.25, 0.1, 0.1])
# a source whose `score_interval` holds at most this share more than one event is scored per
# event (``interval_events``): NAB's 5-minute files' warm-up steps average 294-300 s
INTERVAL_TOLERANCE = 0.05
# ...and one whose events arrive at random, not at a step: at least this share of its warm-up's
# steps lie within half a median step of it where a source is sampled at a rate (1-minute
# steps jittered by up to 30 s: 0.75; 5-minute steps with gaps and 30 s: all), about 35 % for
# exponential gaps (events of a Poisson process)
REGULAR_SHARE = 0.7
TAIL_EVENTS = 10  # events beyond a value needed to read its tail probability empirically
MIN_HISTORY = 30  # events in a family's history before it is read at all (the prior before)
SPREAD_FLOOR = 1e-3  # spread never below this share of the warm-up range (or of |median|)
MAD_SIGMA = 1.4826  # MAD -> standard deviation of a normal distribution
SPAN_SIGMAS = 4.653  # the 1st to 99th percentile of a normal distribution, in standard deviations
ABS_SIGMA = 1.2533  # mean |deviation| -> standard deviation of a normal distribution
# Deviation and relation read two scales: the last ``smoothing`` events and LONG times as
# many (a slow drift away from the others shows in the long mean first). The long mean's
# excess over E|z| = 0.798 is scaled by sqrt(LONG), as its spread is sqrt(LONG) times smaller
# for independent events. Generated multivariate (a seed not reported): ROC-AUC 0.865 -> 0.910.
LONG = 4
LONG_GAIN = math.sqrt(LONG)
HALF_NORMAL_MEAN = 0.7979
CLIP = 8.0  # baselines learn a deviation as at most this many spreads (winsorised updates)
# Deviation forecasts (``ev_mode``): slow baseline, seasonal profile, local trend.
# NONE: the channel is left out of the family -- it drifts (its previous value forecasts it
# better than a baseline or a profile: a random walk, mode jumps) or the other channels
# predict it more closely than its own forecast does (the relation family judges it).
# TREND (univariate sources, ``evidence.trend``): a channel that trends through its warm-up,
# judged against a local linear forecast that follows the trend (``TREND_GAIN``).
BASELINE, SEASONAL, NONE, TREND = range(4)
# What a deviation statistic's channel was judged against (``Result.families``): its mode, or
# DAILY for a seasonal profile whose period is a day (``ev_daily``).
DAILY = 4
FORECAST_NAMES = ("baseline", "seasonal", "", "trend", "daily")
# A local trend's level learns this share of each residual and its slope TREND_GAIN *
# TREND_SLOPE of it (Holt's linear smoothing in error-correction form): a level shift on a
# trend stays visible for about 1 / TREND_GAIN events, and the forecast follows a trend that
# turns or stops (a line fitted to the warm-up and moved on by its slope does not: a sawtooth
# put 10.9 % of its normal events at 0.9 or more). `eval multivariate --corpus single-trend`,
# an offline prototype, seeds 1 / 2: level gain 0.01 / 0.02 / 0.05 ROC-AUC 0.866 / 0.857 /
# 0.789 and 0.881 / 0.876 / 0.806 (0.488 / 0.492 without).
TREND_GAIN = 0.02
TREND_SLOPE = 0.05
# A seasonal channel whose period is a day of its source's timestamps (within this share;
# ``evidence.weekend``) is given exactly a day's period and a weekend offset for Saturdays and
# Sundays (UTC, as the calendar buckets of the pattern codes): a weekend that differs from the
# weekdays was a sustained change against one daily profile, every week, and what the profile
# learnt from it was wrong on Mondays.
DAY = 86400.0
DAY_TOLERANCE = 0.05
# The weekend offset is one value per block of the day: an hour, or at least WEEKEND_EVENTS
# events of the period (3 hours at 15-minute sampling, 12 at hourly): one per phase, learnt
# from two weekend days, had a noise of 0.7 noise sd and raised false flags on weekends like
# weekdays. Each block's offset is the mean of its residuals on its first WEEKEND_DAYS weekend
# days, learnt whether or not the family holds: a first weekend unlike the weekdays is an
# open episode, which holds the family's learning, so at the usual rate (0.288 per visit,
# after the hold) the demo's weekends were learnt over three or four weeks.
WEEKEND_BLOCKS = 24
WEEKEND_EVENTS = 12
WEEKEND_DAYS = 2
MIN_AUTOCORR = 0.5  # a warm-up autocorrelation peak at least this high is a period
MIN_PERIODS = 3  # a period needs this many whole periods in the warm-up
# A source with fewer than ``deviation_channels`` channels (univariate) has the deviation
# family only for a clearly periodic channel: its seasonal profile leaves at most this share of
# the slow baseline's mean |residual| (GutenTAG's periodic series 0.07-0.15; the 6 of NAB's 58
# files with a warm-up period 0.36-0.91, and there the family cost 17 points as a baseline).
# GutenTAG dev seeds 777-779, 1 channel: 0.638 / 0.668 / 0.680 -> 0.779 / 0.795 / 0.823; NAB
# unchanged (no file qualifies).
PERIODIC_SHARE = 0.25
# ...and its other channels only confirm an alert's episode (rules.EpisodeCarry, against a
# slow baseline where they drift), unless they trend through the warm-up: a straight line
# leaves less than this share of the median's mean |residual| (white noise: about 1.0; 15 sd
# over 1,400 events: 0.8). A slow baseline lags a trend for ever, so its deviation read as
# unusual and carried each false alert of a rising series for up to ``hold_max`` events (5.6 %
# of a normal trend's events at 0.9 or more, 0.4 % without the carry)...
TREND_SHARE = 0.9
# ...or unless they wander: a channel its previous value forecasts best whose mean step is
# below this share of its mean |x - median| (a random walk; with every drifting channel
# confirming, 9 % of a normal random walk's events scored 0.9 or more, 0.25 % without; an
# AR(1) with coefficient 0.95: 1.2 % against 0.3 % at this share).
STEP_SHARE = 0.5
# A channel's residual against the others "wanders" when its mean step is below this share of
# its mean size (white noise: 1.41; AR(1) noise with coefficient phi: sqrt(2 (1 - phi)), so
# 0.75 is phi ~ 0.72): the generated multivariate set's channel noise (phi 0.5, ratio ~1.0)
# stays related; a temperature wandering with phi 0.95 reads ~0.5 over a 200-event warm-up.
# 0.5 left SKAB-like files' temperatures in (pooled ROC-AUC 0.776 / 0.777 vs 0.850 / 0.832);
# 1.0 put half the multivariate set's channels out (0.913 -> 0.766).
WANDER_RATIO = 0.75
FOLDS = 4  # folds of the warm-up's cross-fitted relation statistics (``_cross_fitted``)
# ``channel_out`` of a relation statistic a stuck channel drove: STUCK - channel (-1: none)
STUCK = -2
# A channel is judged for being stuck only if exact repeats were rare in its warm-up (at most
# this share of successive pairs): a quantised channel (a pressure logged in steps of its own
# noise) repeats in long, autocorrelated runs that its repeat share underprices, and those
# runs, read in nats beside relation's |z|, raised the relation family's normal history.
# Sensors dev seed 2 with pressure in steps of 1.2 warm-up sd: ROC-AUC 0.864 -> 0.740, with
# this share 0.858 (flow in steps of 1 sd: 0.725 -> 0.866); 0.01 gives the same.
STUCK_SHARE = 0.02
MIN_RELATED = 2  # channels the relation family must judge for a source to have the family
NO_DAY_LOOK = -2  # ``ev_day0`` of a source with no day look to make (``day_start``)
DAY_PENDING = -1  # ...and of one to make, whose first day the next event with a time sets
# ``ev_daily`` of a daily profile whose slots hold several events each (``day_start``): an
# event is not judged against the last period's value at its phase, which is the previous
# event of its slot there (a 4-sd shift at 1-minute sampling then scored as normal after its
# first minute: 12 generated files' shifts ROC-AUC 0.58-0.90)
SLOTS = 2


def state_specs(channels: int, smoothing: int, relation: bool, period_max: int = 0,
                late: int = 0, day_look: bool = False
                ) -> dict[str, tuple[tuple[int, ...], type, float]]:
    """Per-source arrays the families keep (added to the bank's state, saved in snapshots).
    Bytes per source: 8 * (5C + 2 K C + 2 NFAM * BINS/2 ...) -- see docs/operations.md; the
    deviation family's seasonal profiles and last periods add 16 * period_max * C (bounded by
    the setting), a daily profile's weekend offsets 16 * WEEKEND_BLOCKS * C, the
    open run of unusual events 16 * 2 K + 16 (K = ``smoothing``, the ring's length), and the
    values kept for the late look for a period (``late_start``) 8 * ``late`` * C, and with
    ``day_look`` the events kept for the look at a day (``day_start``) 4 * 3 period_max * C."""
    c = channels
    specs: dict[str, tuple[tuple[int, ...], type, float]] = {
        "ev_mode": ((c,), np.int64, BASELINE),
        "ev_period": ((c,), np.int64, 1),
        "ev_t": ((), np.int64, 0),
        "ev_profile": ((max(period_max, 1), c), np.float64, 0.0),
        "ev_recent": ((max(period_max, 1), c), np.float64, np.nan),  # the last period's values
        # a daily profile's weekend offset per hour, and the weekend events each has learnt
        "ev_weekend": ((WEEKEND_BLOCKS, c), np.float64, 0.0),
        "ev_weekend_n": ((WEEKEND_BLOCKS, c), np.int64, 0),
        "ev_daily": ((c,), np.int64, 0),  # 1: the channel's period is a day (``_weekends``)
        # a daily profile's phase by the clock: its slot of the day at phase 0 (-1: taken from
        # the next event with a time), and the events a slot of it has a day (``day_start``)
        "ev_origin": ((c,), np.int64, -1),
        "ev_per_slot": ((), np.float64, 1.0),
        "ev_base": ((c,), np.float64, 0.0),
        "ev_slope": ((c,), np.float64, 0.0),  # a local trend's slope per event (TREND)
        "ev_spread": ((c,), np.float64, 1.0),
        "ev_floor": ((c,), np.float64, 1e-12),
        "ev_ring": ((smoothing, 2, c), np.float64, 0.0),
        "ev_n": ((), np.int64, 0),
        "ev_hist": ((NFAM, BINS), np.float32, 0.0),
        "ev_total": ((NFAM,), np.float64, 0.0),
        "ev_held": ((NFAM,), np.int64, 0),
        # an open run of unusual events (deviation, relation): statistics, history weights
        "ev_run": ((NFAM - 1, smoothing), np.float64, 0.0),
        "ev_run_w": ((NFAM - 1, smoothing), np.float64, 0.0),
        "ev_run_n": ((NFAM - 1,), np.int64, 0),
        # 1: the deviation family only keeps an alert's episode open (``start``), 0: judged
        "ev_confirm": ((), np.int64, 0),
    }
    if late > 0:  # the events after the warm-up, until the late look (NaN: not kept)
        specs["ev_late"] = ((late, c), np.float64, np.nan)
    if day_look and period_max > 0:
        # a source with a day of period_max events or more: one event per slot of its
        # first MIN_PERIODS whole days, in single precision (a profile of noisy values; 3.4
        # instead of 6.8 KB per channel), NaN: none yet; and the first day's number (days
        # since the epoch; DAY_PENDING: taken from the next event; NO_DAY_LOOK: none to look
        # at, or looked already; ``day_start``)
        specs["ev_days"] = ((MIN_PERIODS * max(period_max, 1), c), np.float32, np.nan)
        specs["ev_day0"] = ((), np.int64, NO_DAY_LOOK)
    if relation and c >= 2:
        specs["ev_mu"] = ((c,), np.float64, 0.0)
        specs["ev_cov"] = ((c, c), np.float64, 0.0)
        specs["ev_prec"] = ((c, c), np.float64, 0.0)
        specs["ev_related"] = ((c,), np.int64, 1)
        # stuck channels: the last value, the run of exact repeats ending at it, and what
        # one repeat costs (nats; 0 = never judged)
        specs["ev_last"] = ((c,), np.float64, np.nan)
        specs["ev_reps"] = ((c,), np.int64, 0)
        specs["ev_stuck"] = ((c,), np.float64, 0.0)
    return specs


def period(x: np.ndarray, period_max: int) -> int:
    """The period of a warm-up series ``x`` [n]: the lag (at most ``period_max`` and a
    ``MIN_PERIODS``-th of n) of the highest autocorrelation after its first zero crossing, if
    that is at least ``MIN_AUTOCORR``; else 0 (no period: noise, a drift, a random walk)."""
    n = x.shape[0]
    top = min(period_max, n // MIN_PERIODS)
    d = x - x.mean()
    energy = float(d @ d)
    if top < 2 or not energy > 0:
        return 0
    # every lag's sum of products at once, through the FFT of the zero-padded series (the
    # same sums to 1e-13 of the energy, 10x faster than a dot product per lag at n = 864)
    spectrum = np.fft.rfft(d, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[1 : top + 1] / energy
    crossed = np.flatnonzero(ac < 0)
    if not crossed.size:
        return 0
    lag = int(crossed[0] + np.argmax(ac[crossed[0]:])) + 1
    return lag if ac[lag - 1] >= MIN_AUTOCORR else 0


def forecasts(warm: np.ndarray, med: np.ndarray, period_max: int, day: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each channel's deviation forecast from its warm-up ``warm`` [n, C] (clipped) and median
    ``med`` [C]: ``(mode, period, profile [period_max, C], residuals [n, C])``, the mode whose
    warm-up residuals have the smallest mean |residual| (NONE where the previous value's is
    smallest; the seasonal profile's in-sample figure is raised by sqrt(m / (m - 1)) for m
    periods, the bias of a mean of m values). The mean, not the median: a mode-jump channel
    that sat in one mode for 7 of its 8 warm-up blocks had a small median |x - median| and then
    alerted on 59 % of normal rows (GutenTAG 8 channels, a seed not reported: 0.746 -> 0.823).
    A peak within ``DAY_TOLERANCE`` of ``day`` (the events in a day of the source's timestamps;
    0: none) is that day exactly: the late look put a daily cycle's peak at 283 of 288 events,
    and a profile 5 events short slipped a weekend's worth against the clock every week."""
    n, c = warm.shape
    mode = np.full(c, BASELINE, dtype=np.int64)
    per = np.ones(c, dtype=np.int64)
    profile = np.zeros((max(period_max, 1), c))
    resid = warm - med
    for ch in range(c):
        x = warm[:, ch]
        best = np.mean(np.abs(resid[:, ch]))
        step = np.empty(n)
        step[0] = 0.0
        step[1:] = np.diff(x)
        if n > 1 and np.mean(np.abs(step[1:])) < best:
            best = np.mean(np.abs(step[1:]))
            mode[ch], resid[:, ch] = NONE, step
        peak = period(x, period_max) if period_max >= 2 else 0
        # the autocorrelation peak may sit one lag off the period in noise (measured: 99 for
        # a period of 100), so its neighbours are tried too (never beyond ``period_max``: a
        # warm-up of 900 events with a peak at 288 tried 289 and overflowed the profile)
        top = min(peak + 1, n // MIN_PERIODS, period_max)
        lags = range(max(peak - 1, 2), top + 1) if peak else range(0)
        if (peak and abs(peak - day) <= DAY_TOLERANCE * day
                and day * MIN_PERIODS <= n * (1 + DAY_TOLERANCE)  # a day of 289 in 864 events
                and day <= period_max):  # a day longer than the profile is never one
            lags = range(day, day + 1)
        for lag in lags:
            phase = np.arange(n) % lag
            prof = np.bincount(phase, weights=x, minlength=lag) / np.bincount(phase, minlength=lag)
            r = x - prof[phase]
            m = n / lag
            if np.mean(np.abs(r)) * math.sqrt(m / (m - 1)) < best:
                best = np.mean(np.abs(r)) * math.sqrt(m / (m - 1))
                mode[ch], per[ch], resid[:, ch] = SEASONAL, lag, r
                profile[:, ch] = 0.0
                profile[:lag, ch] = prof
    return mode, per, profile, resid


def start(state: object, rows: np.ndarray, warm: np.ndarray, settings: EvidenceSettings,
          relation: bool, deviation: bool, periodic_only: bool = False) -> None:
    """End of warm-up: baselines from the warm-up values ``warm`` [r, warmup, C] of ``rows``
    (median and MAD; outliers beyond 8 spreads, or 8 standard deviations of the 1-99 % span if
    that is wider, are clipped before the covariance is taken),
    each channel's deviation forecast (``forecasts``), the smoothing ring filled with the last
    warm-up events' deviations, and (``seed_weight`` > 0, a warm-up at least a ring long) the
    deviation and relation histories started with the warm-up events' statistics, each as
    ``seed_weight`` events (``_seed``): deviation's against the warm-up's own forecasts (a
    seasonal profile's raised by its in-sample bias), relation's cross-fitted
    (``_cross_fitted``: a C x C covariance fits its own events closer than the next ones --
    judged in-sample, a GutenTAG 8-channel series (dev seed, weight 1) put 157 normal events
    over the threshold, cross-fitted 4). With ``periodic_only`` (a source with fewer than
    ``deviation_channels`` channels) deviation judges only clearly periodic channels."""
    st = state
    ridge, smoothing = settings.ridge, settings.smoothing * LONG
    period_max = settings.period_max if deviation else 0
    med, span, floor, clipped = _clip_warm(warm)
    resid = np.empty_like(clipped)
    base = med.copy()
    st.ev_slope[rows] = 0.0  # type: ignore[attr-defined]
    st.ev_per_slot[rows] = 1.0  # type: ignore[attr-defined]
    for j, r in enumerate(rows.tolist()):
        day = _day(st, r, settings)
        mode, per, profile, resid[j] = forecasts(clipped[j], med[j], period_max, day)
        mode = np.where(span[j] > 0, mode, NONE)  # constant through the warm-up: below
        st.ev_confirm[r] = 0  # type: ignore[attr-defined]
        if periodic_only:  # only a clearly periodic channel is judged (module docstring)
            mode, st.ev_confirm[r] = _univariate(  # type: ignore[attr-defined]
                clipped[j], med[j], mode, resid[j], span[j] > 0, settings.confirm,
                settings.trend)
            trend = mode == TREND
            if trend.any():  # the local trend starts from the warm-up's line
                _, _, slope, line = _shape(clipped[j], med[j])
                resid[j][:, trend] = (clipped[j] - line)[:, trend]
                base[j, trend] = line[-1, trend]
                st.ev_slope[r, trend] = slope[trend]  # type: ignore[attr-defined]
        st.ev_mode[r], st.ev_period[r] = mode, per  # type: ignore[attr-defined]
        st.ev_profile[r] = profile  # type: ignore[attr-defined]
        st.ev_daily[r] = 0  # type: ignore[attr-defined]
        _weekends(st, r, mode == SEASONAL, day)
        if "ev_day0" in st.arrays:  # type: ignore[attr-defined]
            st.ev_days[r] = np.nan  # type: ignore[attr-defined]
            st.ev_day0[r] = (DAY_PENDING  # type: ignore[attr-defined]
                             if day >= period_max > 0 else NO_DAY_LOOK)
        _last_period(st.ev_recent[r], clipped[j], mode, per, resid[j])  # type: ignore[attr-defined]
    rmad = np.median(np.abs(resid), axis=1) * MAD_SIGMA
    spread = np.maximum(np.where(np.isfinite(rmad), rmad, 0.0), floor)
    st.ev_base[rows], st.ev_spread[rows], st.ev_floor[rows] = base, spread, floor  # type: ignore[attr-defined]
    st.ev_t[rows] = warm.shape[1]  # type: ignore[attr-defined]
    tail = clipped[:, -smoothing:]  # [r, <=K, C]
    k = tail.shape[1]
    ring = st.ev_ring  # type: ignore[attr-defined]
    ring[rows] = 0.0
    ring[rows, :k, 0] = np.abs(resid[:, -k:]) / spread[:, None]
    st.ev_n[rows] = k % smoothing  # type: ignore[attr-defined]
    st.ev_hist[rows] = 0.0  # type: ignore[attr-defined]
    st.ev_total[rows] = 0.0  # type: ignore[attr-defined]
    st.ev_held[rows] = 0  # type: ignore[attr-defined]
    st.ev_run_n[rows] = 0  # type: ignore[attr-defined]
    seeded = settings.seed_weight > 0 and warm.shape[1] >= smoothing
    if relation and "ev_mu" in st.arrays:  # type: ignore[attr-defined]
        mu = clipped.mean(axis=1)
        dev = clipped - mu[:, None]
        cov = np.einsum("rtc,rtd->rcd", dev, dev) / clipped.shape[1]
        st.ev_mu[rows] = mu  # type: ignore[attr-defined]
        st.ev_cov[rows] = cov  # type: ignore[attr-defined]
        for j, r in enumerate(rows.tolist()):
            # A channel constant through the warm-up (a setpoint, a status, a slowly polled
            # sensor held between polls) is judged by neither family: with no variance, its
            # first change read |z| ~ 1e6 and, unlearnable, held the score at 1 for the rest of
            # the run (a setpoint raised once among sensors dev files: 0.86 -> 0.60 ROC-AUC).
            # Its change still meets the patterns family and the new-extreme rule.
            related = _related(dev[j], cov[j], ridge) * (span[j] > 0)
            st.ev_related[r] = related  # type: ignore[attr-defined]
            prec = _precision(_masked(cov[j], related), ridge)
            st.ev_prec[r] = prec  # type: ignore[attr-defined]
            # a channel the others predict more closely (conditional sd 1 / sqrt(P_cc)) than
            # its own forecast is left to the relation family (if that judges it)
            st.ev_mode[r, _closer(prec, related, spread[j])] = NONE  # type: ignore[attr-defined]
            e = (tail[j] - mu[j]) @ prec
            ring[r, :k, 1] = np.abs(e) / np.sqrt(np.diag(prec))
            runs, cost = _repeats(warm[j])
            st.ev_last[r], st.ev_reps[r], st.ev_stuck[r] = warm[j, -1], runs[-1], cost  # type: ignore[attr-defined]
            if seeded:
                stats = smoothed_maxima(
                    _finite(np.abs(_cross_fitted(clipped[j], related, ridge))), related, smoothing)
                _seed(st, r, RELATION, np.maximum(
                    stats, (runs * cost).max(axis=1)[warm.shape[1] - stats.size:]), settings)
    if deviation and seeded:
        for j, r in enumerate(rows.tolist()):
            _seed_deviation(st, r, resid[j], spread[j], settings)


def _clip_warm(warm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Warm-up values ``warm`` [r, n, C]: their median, 1-99 % span and spread floor [r, C],
    and the values clipped at 8 spreads (MAD) from the median, or 8 of the span's standard
    deviations if wider: a mode-jump channel's MAD is its noise around the mode it sat in
    most, and clipping its other modes at 8 MADs skewed its covariance with a channel sharing
    the modes (their relation residual then followed the level: GutenTAG dev seed, 8 channels,
    39 false flags -> 3)."""
    med = np.median(warm, axis=1)  # [r, C]
    mad = np.median(np.abs(warm - med[:, None]), axis=1) * MAD_SIGMA
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.percentile(warm, 99.0, axis=1) - np.percentile(warm, 1.0, axis=1)
    span = np.where(np.isfinite(span), span, 0.0)
    floor = np.maximum(SPREAD_FLOOR * np.where(span > 0, span, np.maximum(np.abs(med), 1.0)),
                       _step(warm, span) / 2)
    spread = np.maximum(np.where(np.isfinite(mad), mad, 0.0), floor)
    reach = 8 * np.maximum(spread, span / SPAN_SIGMAS)
    clipped = np.clip(warm, (med - reach)[:, None], (med + reach)[:, None])
    return med, span, floor, clipped


def clock_steps(ts: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """Each source's step in seconds [r] from its warm-up's timestamps ``ts`` and calendar
    flags ``cal`` [r, n], 0 where they are not times (row numbers, NaN) or do not advance: the
    mean of the steps under 1.5 median steps (a gap is at least two), so a jitter averages
    away (5-minute steps jittered by up to a minute: the median step of a 200-event warm-up
    made a day 284-290 events, and no daily period was found; this mean, 287-289, mostly 288).

    >>> t = 1_700_000_000.0 + 60.0 * np.arange(6)
    >>> clock_steps(np.stack([t, np.r_[t[:3], t[3:] + 3600]]), np.ones((2, 6), bool))
    array([60., 60.])
    """
    out = np.zeros(ts.shape[0])
    if ts.shape[1] < 2:
        return out
    timed = cal.all(axis=1) & np.isfinite(ts).all(axis=1)
    steps = np.diff(np.where(timed[:, None], ts, 0.0), axis=1)
    median = np.median(steps, axis=1, keepdims=True)
    regular = (steps < 1.5 * median) & (median > 0)
    mean = (steps * regular).sum(axis=1) / np.maximum(regular.sum(axis=1), 1)
    out[timed & (median[:, 0] > 0)] = mean[timed & (median[:, 0] > 0)]
    return out


def sampling_steps(ts: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """Each source's sampling step in seconds [r] (``clock_steps``) where its warm-up's events
    came at a regular step, at least REGULAR_SHARE of its steps within half a median step of
    it (a metric sampled at a rate, a gap or a jitter aside); 0 where they arrived at random
    (transactions, log lines: exponential gaps put about 35 % there), whose tail
    probabilities stay per event.

    >>> rng = np.random.default_rng(0)
    >>> t = 1_700_000_000.0 + np.stack([60.0 * np.arange(200) + rng.uniform(-20, 20, 200),
    ...                                 np.cumsum(rng.exponential(60.0, 200))])
    >>> (sampling_steps(t, np.ones((2, 200), bool)) > 0).tolist()
    [True, False]
    """
    steps = np.diff(ts, axis=1)
    if not steps.shape[1]:
        return np.zeros(ts.shape[0])
    with np.errstate(invalid="ignore"):  # NaN times: clock_steps gives them no step anyway
        median = np.median(steps, axis=1, keepdims=True)
        near = (np.abs(steps - median) <= 0.5 * median).mean(axis=1)
    out: np.ndarray = np.where(near >= REGULAR_SHARE, clock_steps(ts, cal), 0.0)
    return out


def interval_events(step: np.ndarray, interval: float) -> np.ndarray:
    """Events in ``interval`` seconds of each source's clock (``step`` seconds apart, 0: no
    clock), 1 where it is not more than INTERVAL_TOLERANCE above one event or ``interval`` is
    0 (per event): a 5-minute feed whose steps drift a few seconds keeps its scores."""
    k = np.where(step > 0, interval / np.where(step > 0, step, 1.0), 1.0)
    out: np.ndarray = np.where(k > 1.0 + INTERVAL_TOLERANCE, k, 1.0)
    return out


def interval_bits(p: np.ndarray, events: np.ndarray) -> np.ndarray:
    """``-log2`` of a tail probability per event ``p`` read over ``events`` events (Sidak: the
    chance that at least one of that many independent events has one as small, ``1 - (1 -
    p)^events``), in a form that keeps a ``p`` near 1 apart: ``1 - (1 - p)^300`` rounds to 1
    above p = 0.12, and all such events would score 0 alike (here, above p = 0.92, where
    ``(1 - p)^300`` underflows). Monotone in ``p``.

    >>> bits = interval_bits(np.array([1e-4, 0.5, 0.99, 1.0]), np.full(4, 5.0))
    >>> (2.0 ** -bits).round(5).tolist()
    [0.0005, 0.96875, 1.0, 1.0]
    >>> bool(interval_bits(np.array([0.5]), np.array([300.0]))[0] > 0)
    True
    """
    with np.errstate(divide="ignore"):  # p = 1: log1p(-1) = -inf, and 0 bits
        log_q = events * np.log1p(-np.minimum(p, 1.0))  # ln (1 - p)^events
        # 1 - q from expm1 where q = (1 - p)^events is near 1, else log1p(-q) (no rounding)
        out: np.ndarray = np.where(log_q > -math.log(2.0), -np.log2(-np.expm1(log_q)),
                                   -np.log1p(-np.exp(log_q)) / math.log(2.0))
    return out


def _day(state: object, r: int, settings: EvidenceSettings) -> int:
    """Events in a day of source ``r``'s warm-up timestamps (``clock_steps``), or 0 where they
    are not times (row numbers) or ``evidence.weekend`` is off."""
    step = float(clock_steps(state.warm_ts[r : r + 1],  # type: ignore[attr-defined]
                             state.warm_cal[r : r + 1])[0])  # type: ignore[attr-defined]
    if not settings.weekend or not step > 0:
        return 0
    return round(DAY / step)


def _weekends(state: object, r: int, channels: np.ndarray, day: int) -> None:
    """Give source ``r``'s seasonal ``channels`` [C] whose period is a ``day`` (``_day``) a
    weekend offset, none learnt yet (``ev_daily`` 1)."""
    st = state
    daily = channels & (st.ev_period[r] == day) & (day > 0)  # type: ignore[attr-defined]
    st.ev_origin[r, channels] = -1  # type: ignore[attr-defined]  # from the next event
    st.ev_daily[r, channels] = daily[channels]  # type: ignore[attr-defined]
    st.ev_weekend[r][:, channels] = 0.0  # type: ignore[attr-defined]
    st.ev_weekend_n[r][:, channels] = 0  # type: ignore[attr-defined]


def _last_period(recent: np.ndarray, x: np.ndarray, mode: np.ndarray, per: np.ndarray,
                 resid: np.ndarray) -> None:
    """Keep the last period's values of each seasonal channel of warm-up ``x`` [n, C] in
    ``recent`` [period_max, C] (NaN elsewhere), and take each event's residual ``resid`` (in
    place) against the period before it where that is smaller, as the kernel does."""
    for ch in np.flatnonzero(mode == SEASONAL).tolist():
        lag = int(per[ch])
        recent[:, ch] = np.nan
        last = np.arange(x.shape[0] - lag, x.shape[0])
        recent[last % lag, ch] = x[last, ch]
        naive = np.full(x.shape[0], np.inf)
        naive[lag:] = x[lag:, ch] - x[:-lag, ch]
        resid[:, ch] = np.where(np.abs(naive) < np.abs(resid[:, ch]), naive, resid[:, ch])


def _seed_deviation(state: object, r: int, resid: np.ndarray, spread: np.ndarray,
                    settings: EvidenceSettings, judged: np.ndarray | None = None) -> None:
    """Start source ``r``'s deviation history from its warm-up residuals ``resid`` [n, C]
    against its forecasts, in spreads, as the kernel would have smoothed them (``judged``
    channels only; by default those with a forecast)."""
    modes, periods = state.ev_mode[r], state.ev_period[r]  # type: ignore[attr-defined]
    judged = modes != NONE if judged is None else judged
    # a profile's phase means fit their own m events: in-sample residuals are
    # sqrt((m - 1) / (m + 1)) of the next periods' (white noise)
    m = resid.shape[0] / periods
    out_of_sample = np.where(modes == SEASONAL, np.sqrt((m + 1) / np.maximum(m - 1, 1e-9)), 1.0)
    _seed(state, r, DEVIATION, smoothed_maxima(
        _finite(np.abs(resid) / spread * out_of_sample), judged.astype(np.int64),
        settings.smoothing * LONG), settings)


def late_start(state: object, rows: np.ndarray, settings: EvidenceSettings,
               periodic_only: bool, series: np.ndarray | None = None, day: int = 0
               ) -> np.ndarray:
    """The late look for a period (``late_period``) of ``rows`` that have just seen
    ``MIN_PERIODS * period_max`` events: their warm-up and the events kept since
    (``ev_late``) are read as one longer warm-up. On a univariate source (``periodic_only``)
    a channel clearly periodic there (``_univariate``) is judged from now on against its
    seasonal profile, as if the warm-up had shown it; on a source with more channels, each
    channel whose seasonal profile now fits best (``forecasts``) and that the other channels do
    not predict more closely (as at the warm-up) changes to it. The deviation family's history
    restarts from those events (``seed_weight``); the other families are untouched. A source
    with nothing to change is left as it was. Generated daily cycles at 5-minute sampling
    (``eval multivariate --corpus single-daily``, ``daily``): see docs/evaluation.md section 9.
    ``day_start`` gives its own ``series`` [r, n, C] and ``day`` (0: each source's own).
    Returns the rows that changed."""
    st = state
    k = settings.smoothing * LONG
    if series is None:
        series = np.concatenate([st.warm[rows], st.ev_late[rows]], axis=1)  # type: ignore[attr-defined]
    looked = np.isfinite(series).all(axis=(1, 2))
    # a channel judged against a period already has nothing to look for (at ``day_start``, one
    # judged against a day: a gap before the late look had made other periods of a day)
    done = st.ev_daily[rows] > 0 if day else st.ev_mode[rows] == SEASONAL  # type: ignore[attr-defined]
    if periodic_only:  # a univariate source whose warm-up found its period has nothing to look for
        looked &= ~done.any(axis=1)
    rows, series, done = rows[looked], series[looked], done[looked]
    med, span, floor, clipped = _clip_warm(series)
    changed = []
    for j, r in enumerate(rows.tolist()):
        mode, per, profile, resid = forecasts(clipped[j], med[j], settings.period_max,
                                              day or _day(st, r, settings))
        mode = np.where(span[j] > 0, mode, NONE)
        if periodic_only:
            mode, _ = _univariate(clipped[j], med[j], mode, resid, span[j] > 0, settings.confirm)
            switch = mode == SEASONAL
        else:
            switch = (mode == SEASONAL) & ~done[j]
        recent = st.ev_recent[r].copy()  # type: ignore[attr-defined]
        _last_period(recent, clipped[j], np.where(switch, SEASONAL, NONE), per, resid)
        spread = np.maximum(np.median(np.abs(resid), axis=0) * MAD_SIGMA, floor[j])
        if not periodic_only and "ev_prec" in st.arrays:  # type: ignore[attr-defined]
            switch &= ~_closer(st.ev_prec[r], st.ev_related[r], spread)  # type: ignore[attr-defined]
        if day:  # ``day_start``: its slots are a day's, a shorter period's are not events
            switch &= per == day
        if not switch.any():
            continue
        changed.append(r)
        current = st.ev_mode[r]  # type: ignore[attr-defined]
        if periodic_only:  # its other channels only confirmed: left out from now on
            current[:] = NONE
            st.ev_confirm[r] = 0  # type: ignore[attr-defined]
        current[switch] = SEASONAL
        st.ev_period[r, switch] = per[switch]  # type: ignore[attr-defined]
        st.ev_profile[r][:, switch] = profile[:, switch]  # type: ignore[attr-defined]
        _weekends(st, r, switch, day or _day(st, r, settings))
        st.ev_recent[r][:, switch] = recent[:, switch]  # type: ignore[attr-defined]
        st.ev_spread[r, switch] = spread[switch]  # type: ignore[attr-defined]
        st.ev_floor[r, switch] = floor[j, switch]  # type: ignore[attr-defined]
        # the deviation ring and history restart from these events (channels with a slow
        # baseline against the median, as at the warm-up; ones seasonal since the warm-up are
        # left out of the seed and join the history as they score)
        z = np.where(switch, resid, clipped[j] - med[j]) / st.ev_spread[r]  # type: ignore[attr-defined]
        slots = (st.ev_n[r] - k + np.arange(k)) % k  # type: ignore[attr-defined]
        st.ev_ring[r, slots[:, None], 0, np.flatnonzero(switch)[None, :]] = np.abs(  # type: ignore[attr-defined]
            z[-k:][:, switch])
        st.ev_hist[r, DEVIATION] = 0.0  # type: ignore[attr-defined]
        st.ev_total[r, DEVIATION] = 0.0  # type: ignore[attr-defined]
        st.ev_held[r, DEVIATION] = 0  # type: ignore[attr-defined]
        st.ev_run_n[r, DEVIATION - 1] = 0  # type: ignore[attr-defined]
        if settings.seed_weight > 0:
            _seed_deviation(st, r, z * st.ev_spread[r], st.ev_spread[r], settings,  # type: ignore[attr-defined]
                            switch | (current == BASELINE))
    return np.array(changed, dtype=np.int64)


def day_slots(ts: np.ndarray, slots: int) -> np.ndarray:
    """Each time's slot counted from the epoch, ``slots`` to a day, a time belonging to
    the slot it is nearest the start of (as the kernel's phase of a daily profile): its day
    is ``// slots``, its slot of the day ``% slots``.

    >>> day_slots(np.array([0.0, 149.0, 151.0, 86399.0]), 288).tolist()
    [0, 0, 1, 288]
    """
    out: np.ndarray = np.floor(ts * (slots / DAY) + 0.5).astype(np.int64)
    return out


def day_start(state: object, rows: np.ndarray, settings: EvidenceSettings,
              periodic_only: bool) -> np.ndarray:
    """The look at a day of ``rows`` whose day holds ``period_max`` events or more: at one
    minute or 30 seconds no warm-up or late look can show it, and at 5 minutes the late look
    reads its events in the order they came, so a gap in its first three days hid the day
    (a channel already judged against a day is left as it was). Once they have seen
    MIN_PERIODS whole days (of ``timezone``), the events they kept, one per slot of
    ``period_max`` to a day (``ev_days``, each the first in its slot: a 5-minute series of
    the same noise), are read
    as the late look reads its events, with a day of ``period_max`` slots. A channel that
    changes (``late_start``) is judged against a daily profile of those slots, each event
    against the slot of its time (``ev_origin`` 0). A slot no event reached (a gap in the
    feed) is interpolated from its neighbours; with more than a third of them empty the source
    is not looked at. Each source looks once. Slots of several events learn a day's share
    over them (``ev_per_slot``) and are not judged against the last period (``SLOTS``).
    Returns the rows that changed."""
    st = state
    days = st.ev_days[rows].astype(np.float64)  # type: ignore[attr-defined]  # [r, 3 slots, C]
    st.ev_day0[rows] = NO_DAY_LOOK  # type: ignore[attr-defined]
    slots = days.shape[1] // MIN_PERIODS
    full = np.isfinite(days).mean(axis=1).min(axis=1) >= 2 / 3
    rows, days = rows[full], days[full]
    at = np.arange(days.shape[1])
    for j in range(rows.size):
        for ch in range(days.shape[2]):
            seen = np.isfinite(days[j, :, ch])
            days[j, :, ch] = np.interp(at, at[seen], days[j, seen, ch])
    before = st.ev_daily[rows] > 0  # type: ignore[attr-defined]
    changed = late_start(st, rows, settings, periodic_only, days, slots)
    for r in changed.tolist():
        switched = (st.ev_daily[r] > 0) & ~before[np.flatnonzero(rows == r)[0]]  # type: ignore[attr-defined]
        st.ev_origin[r, switched] = 0  # type: ignore[attr-defined]  # its slots are the day's
        # a slot learns a day's share over its events, not at each (a day of 287-289 events
        # at 5 minutes is one event a slot)
        per_slot = _day(st, r, settings) / slots
        st.ev_per_slot[r] = per_slot  # type: ignore[attr-defined]
        if per_slot >= 1.5:
            st.ev_daily[r, switched] = SLOTS  # type: ignore[attr-defined]
    return changed


def _closer(prec: np.ndarray, related: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Channels the other channels predict (conditional sd ``1 / sqrt(P_cc)``) more closely
    than their own forecast does (``spread``): left to the relation family, if that judges
    them."""
    with np.errstate(divide="ignore"):
        out: np.ndarray = ((1.0 / np.sqrt(np.diag(prec)) < spread) & (related == 1)
                           & (related.sum() >= MIN_RELATED))
    return out


def _univariate(warm: np.ndarray, med: np.ndarray, mode: np.ndarray, resid: np.ndarray,
                varies: np.ndarray, confirm: bool, trend: bool = False
                ) -> tuple[np.ndarray, int]:
    """The deviation modes of a source with fewer than ``deviation_channels`` channels, from
    its warm-up ``warm`` [n, C], median, forecast ``mode``, residuals and which channels vary
    (the 1-99 % span is not 0), and whether its family only confirms (1): a clearly periodic
    channel is judged (``PERIODIC_SHARE``); with none, a channel that trends and does not
    wander is judged against a local trend (``trend``, ``TREND``); with neither, the channels
    that may confirm (neither trending nor wandering while they drift, ``_shape``) do, a
    drifting one against a slow baseline; the rest are left out."""
    strong = (np.mean(np.abs(resid), axis=0)
              <= PERIODIC_SHARE * np.mean(np.abs(warm - med), axis=0))
    judged = (mode == SEASONAL) & strong
    trends, wanders, _, _ = _shape(warm, med)
    follows = trends & ~wanders & varies  # judged against a local trend (``trend``)
    if trend and not judged.any() and follows.any():
        return np.where(follows, TREND, NONE), 0
    confirming = ~trends & ~((mode == NONE) & wanders) & varies
    if confirm and not judged.any() and confirming.any():
        return np.where(confirming, np.where(mode == NONE, BASELINE, mode), NONE), 1
    return np.where(judged, SEASONAL, NONE), 0


def _shape(warm: np.ndarray, med: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For a univariate source's warm-up ``warm`` [n, C] (median ``med``): which channels
    trend (a straight line fits them closer, in mean |residual|, than TREND_SHARE of their
    median) and which wander (mean step below STEP_SHARE of their mean |x - median|: a random
    walk), each channel's least-squares slope [C] and line [n, C]. A trending channel does not
    confirm (a slow baseline lags it for ever), nor does one that wanders and drifts (its
    previous value forecasts it best); AR(1) noise with coefficient 0.8, at about 0.63,
    confirms against a slow baseline."""
    t = np.arange(warm.shape[0], dtype=np.float64)
    t -= t.mean()
    slope = t @ (warm - warm.mean(axis=0)) / max(float(t @ t), 1e-300)
    line = warm.mean(axis=0) + np.outer(t, slope)
    size = np.mean(np.abs(warm - med), axis=0)
    trends = np.mean(np.abs(warm - line), axis=0) < TREND_SHARE * size
    wanders = np.mean(np.abs(np.diff(warm, axis=0)), axis=0) < STEP_SHARE * size
    return trends, wanders, slope, line


def _step(warm: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Each channel's quantisation step [r, C]: the smallest gap between distinct warm-up
    values (gaps below 1e-9 of the span are rounding), 0 for a continuous channel in effect
    (its smallest gap is tiny). A channel logged in steps of its own noise has a MAD of 0 once
    half its values sit on one step, and a spread at the floor made every other step an
    outlier: sensors dev seed 2 with pressure in steps of 2 warm-up sd, 94 % of normal rows
    below p = 0.001 and ROC-AUC 0.864 -> 0.587; with half a step as the floor 0.859."""
    gaps = np.diff(np.sort(warm, axis=1), axis=1)
    tiny = 1e-9 * np.maximum(span, 1e-300)[:, None]
    with np.errstate(invalid="ignore"):
        gaps = np.where(gaps > tiny, gaps, np.inf)
    step = gaps.min(axis=1) if gaps.shape[1] else np.full(span.shape, np.inf)
    return np.where(np.isfinite(step), step, 0.0)


def _repeats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For warm-up values ``x`` [n, C]: each event's run of exact repeats per channel [n, C]
    and what one repeat costs per channel [C], ``-ln P(repeat)`` with P the warm-up's share of
    repeats (Laplace: (repeats + 1) / (pairs + 2)), or 0 (never judged) where that share is
    above ``STUCK_SHARE``. A sensor stuck on one value repeats it; a continuous channel that
    never repeated in 200 warm-up events costs 5.3 nats per repeat, one that repeats every
    other event is not judged."""
    n = x.shape[0]
    same = np.zeros(x.shape, dtype=bool)
    same[1:] = x[1:] == x[:-1]
    count = np.cumsum(same, axis=0)
    runs: np.ndarray = count - np.maximum.accumulate(np.where(same, 0, count), axis=0)
    share = (same.sum(axis=0) + 1.0) / (max(n - 1, 0) + 2)
    cost = np.where(share <= STUCK_SHARE, -np.log(share), 0.0)
    return runs, cost


def _seed(state: object, r: int, f: int, stats: np.ndarray, settings: EvidenceSettings) -> None:
    """Add warm-up statistics ``stats`` to family ``f``'s history of source ``r``, each as
    ``seed_weight`` events."""
    hist, total = state.ev_hist, state.ev_total  # type: ignore[attr-defined]
    for x in stats.tolist():
        remember(hist, total, r, f, x, float(WIDTH[f]), float(settings.tail_memory),
                 settings.seed_weight)


def _finite(z: np.ndarray) -> np.ndarray:
    """|z| values bounded as the kernel bounds them (NaN -> 0, at most 1e12)."""
    out: np.ndarray = np.minimum(np.nan_to_num(z, nan=0.0, posinf=1e12), 1e12)
    return out


def _cross_fitted(x: np.ndarray, related: np.ndarray, ridge: float) -> np.ndarray:
    """Relation z [n, C] (signed) of the warm-up events ``x`` [n, C] in ``FOLDS`` contiguous
    folds, each judged by the mean and covariance of the others. Folds, not halves: a warm-up
    whose second half sat in one mode judged its first half's mode changes against noise
    alone, and the history started with 200 events of |z| ~ 20 (a GutenTAG series'
    mode-correlation incident, |z| 20, then read p = 0.08); contiguous, not alternate blocks,
    since a block's neighbours fit it too closely (alternate blocks of 40 events: 40 channels,
    dev seeds, 222 / 457 false flags against 6 / 8)."""
    fold = np.arange(x.shape[0]) * FOLDS // max(x.shape[0], 1)
    out = np.zeros_like(x)
    for k in range(FOLDS):
        judged = fold == k
        fit = x[~judged]
        if not judged.any() or not fit.shape[0]:
            continue
        mu = fit.mean(axis=0)
        dev = fit - mu
        prec = _precision(_masked(dev.T @ dev / dev.shape[0], related), ridge)
        out[judged] = (x[judged] - mu) @ prec / np.sqrt(np.diag(prec))
    return out


def _related(dev: np.ndarray, cov: np.ndarray, ridge: float) -> np.ndarray:
    """Which channels the relation family judges (1) from the warm-up's deviations ``dev``
    [n, C]: a channel whose residual against the others wanders (its previous residual
    forecasts it better than zero, as for deviation's drifting channels) moves on its own --
    a temperature that drifts while the others do not -- and would keep the family's normal
    events high; it is left out, and out of the others' predictions. Channels that drift
    together (one factor) keep white residuals and stay, and so does a channel the others
    explain at least 90 % of (two noiseless channels moving together: their tiny residual is
    the ridge's smooth leak of the shared wave). The residual is taken out of fold
    (``_cross_fitted``): fitted on its own events by many channels, a random walk's drift was
    fitted away and its residual looked white."""
    prec = _precision(cov, ridge)
    e = _cross_fitted(dev, np.ones(cov.shape[0], dtype=np.int64), ridge)
    if e.shape[0] < 3:
        return np.ones(cov.shape[0], dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = 1.0 - 1.0 / (np.diag(prec) * np.diag(cov))
    wanders: np.ndarray = ((np.mean(np.abs(np.diff(e, axis=0)), axis=0)
                            < WANDER_RATIO * np.mean(np.abs(e), axis=0)) & ~(explained >= 0.9))
    return np.where(wanders, 0, 1).astype(np.int64)


@njit(cache=True)
def _masked(cov: np.ndarray, related: np.ndarray) -> np.ndarray:
    """``cov`` with the covariances of channels left out of relation set to zero (their
    variance kept), so they neither predict nor are predicted by the others."""
    out = cov.copy()
    c = cov.shape[0]
    for a in range(c):
        for b in range(c):
            if a != b and (related[a] == 0 or related[b] == 0):
                out[a, b] = 0.0
    return out


@njit(cache=True)
def _precision(cov: np.ndarray, ridge: float) -> np.ndarray:
    """Inverse of ``cov`` with its diagonal raised by ``ridge`` (relative), by Gauss-Jordan
    elimination with partial pivoting (numba's np.linalg would need SciPy's LAPACK), on the
    correlation matrix and scaled back, so the result does not depend on the channels' units:
    a jitter of 1e-12 of the largest variance, with a current in microamperes (variance
    6e10), swamped a pressure's 2.5e-11 and cut it out of the relation model (sensors dev
    seed 3 with those units 0.849 -> 0.816). A channel without variance is scaled by the
    largest one (its jitter as before)."""
    c = cov.shape[0]
    var = np.diag(cov).copy()
    scale: float = max(var.max(), 1e-300)
    sd = np.sqrt(np.where(var > 0.0, var, scale))
    units = np.outer(sd, sd)
    a = cov / units
    for i in range(c):
        a[i, i] = a[i, i] * (1.0 + ridge) + 1e-12
    inv = np.eye(c)
    for col in range(c):
        piv = col
        for r in range(col + 1, c):
            if abs(a[r, col]) > abs(a[piv, col]):
                piv = r
        if a[piv, col] == 0.0:
            degenerate: np.ndarray = np.eye(c) / scale
            return degenerate
        if piv != col:
            for j in range(c):
                a[col, j], a[piv, j] = a[piv, j], a[col, j]
                inv[col, j], inv[piv, j] = inv[piv, j], inv[col, j]
        d = a[col, col]
        for j in range(c):
            a[col, j] /= d
            inv[col, j] /= d
        for r in range(c):
            if r != col:
                f = a[r, col]
                if f != 0.0:
                    for j in range(c):
                        a[r, j] -= f * a[col, j]
                        inv[r, j] -= f * inv[col, j]
    out: np.ndarray = inv / units
    return out


@njit(cache=True)
def _bin(x: float, width: float, bins: int) -> int:
    """The history bin of statistic ``x`` (values beyond the top kept in the last bin)."""
    b: int = min(max(int(x / width), 0), bins - 1)
    return b


@njit(cache=True)
def tail_probability(hist: np.ndarray, total: float, x: float, width: float,
                     prior_log: float) -> float:
    """P(statistic >= x) from a history histogram: empirical where at least TAIL_EVENTS events
    lie beyond x, else an exponential tail fitted to the top TAIL_EVENTS events; before
    MIN_HISTORY events, the prior ``min(1, exp(prior_log - x))``. The last bin holds every
    value beyond the histogram's top, so a value there is read against all of it: a source
    whose statistic stayed beyond the top (a broken channel, after ``hold_max``) read
    p ~ 1e-22 from the fitted tail with 75 % of its history there, and alerted for ever."""
    if total < MIN_HISTORY:
        return min(1.0, math.exp(prior_log - x))
    nb = hist.size
    pos = x / width
    b = _bin(x, width, nb)
    frac = 1.0 if b == nb - 1 else min(max((b + 1) - pos, 0.0), 1.0)
    above: float = hist[b] * frac  # numpy's stubs type indexing as Any
    for j in range(b + 1, nb):
        above += hist[j]
    if above >= TAIL_EVENTS:
        return above / total
    mass = 0.0
    moment = 0.0
    j = nb - 1
    while j > 0 and mass + hist[j] < TAIL_EVENTS:
        mass += hist[j]
        moment += hist[j] * (j + 0.5) * width
        j -= 1
    need = TAIL_EVENTS - mass
    moment += need * (j + 0.5) * width
    u = j * width
    beta = max(moment / TAIL_EVENTS - u, width)
    return (TAIL_EVENTS / total) * math.exp(-(x - u) / beta)


@njit(cache=True)
def _capped(z: float) -> float:
    """A statistic bounded to [0, 1e12] (NaN -> the bound), so a wild input value (1e308)
    cannot overflow a histogram index."""
    return z if z < 1e12 else 1e12


@njit(cache=True)
def absolute_bound(family: int, x: float, pattern_prior: float) -> float:
    """A tail probability that holds whatever the source's history: for patterns the union
    bound P(-ln p(code) >= x) <= V e^-x (V codes), for deviation and relation Chebyshev's
    P(|z| >= x) <= 1 / x^2. The family's probability is the larger of this and the history's,
    so a quiet stream's most unusual moment is not an anomaly merely for being its top."""
    if family == PATTERNS:
        return min(1.0, math.exp(pattern_prior - x))
    return 0.0


@njit(cache=True)
def remember(hist: np.ndarray, total: np.ndarray, row: int, f: int, x: float, width: float,
             memory: float, weight: float) -> bool:
    """Add ``x`` with ``weight`` (events) to a source's family history; halve it when full
    (True when it did)."""
    hist[row, f, _bin(x, width, hist.shape[2])] += weight
    total[row, f] += weight
    if total[row, f] <= memory:
        return False
    for j in range(hist.shape[2]):
        hist[row, f, j] *= 0.5
    total[row, f] *= 0.5
    return True


@njit(cache=True)
def _subtract(h: np.ndarray, total: float, run: np.ndarray, run_w: np.ndarray, n: int,
              width: float) -> float:
    """Take the first ``n`` events of ``run`` (statistics, with their weights ``run_w``) out of
    the histogram ``h`` in place; returns the total left."""
    for j in range(n):
        b = _bin(run[j], width, h.size)
        h[b] = max(h[b] - run_w[j], 0.0)
        total -= run_w[j]
    return max(total, 0.0)


@njit(cache=True)
def _tail_without(hist: np.ndarray, total: float, run: np.ndarray, run_w: np.ndarray, n: int,
                  x: float, width: float) -> float:
    """``tail_probability`` of ``x`` against a history less the first ``n`` events of ``run``."""
    h = hist.copy()
    return tail_probability(h, _subtract(h, total, run, run_w, n, width), x, width, 0.0)


@njit(cache=True)
def _forget(hist: np.ndarray, total: np.ndarray, r: int, f: int, run: np.ndarray,
            run_w: np.ndarray, n: int, width: float) -> None:
    """Take the first ``n`` events of ``run`` back out of source ``r``'s family ``f`` history."""
    total[r, f] = _subtract(hist[r, f], total[r, f], run, run_w, n, width)


@njit(cache=True)
def _smoothed(ring: np.ndarray, r: int, slot: int, fam: int, ch: int) -> float:
    """A channel's statistic from its smoothing ring (``slot`` the newest): the mean of the
    last k / LONG |z| or the long mean's excess scaled up, whichever is larger."""
    k = ring.shape[1]
    short = k // LONG
    s_long = 0.0
    s_short = 0.0
    for j in range(k):
        v = ring[r, (slot - j) % k, fam, ch]
        s_long += v
        if j < short:
            s_short += v
    s: float = max(s_short / short,
                   HALF_NORMAL_MEAN + LONG_GAIN * (s_long / k - HALF_NORMAL_MEAN))
    return s


@njit(cache=True)
def smoothed_maxima(z: np.ndarray, judged: np.ndarray, k: int) -> np.ndarray:
    """The statistic each event of a warm-up would have had, from the first full ring of ``k``
    events on: ``z`` [n, C] the events' per-channel |z| in time order, the largest judged
    channel's (``judged`` 1) smoothed as the kernel smooths it; empty when none is judged."""
    n, c = z.shape
    ring = np.zeros((1, k, 1, c))
    out = np.empty(max(n - k + 1, 0))
    m = 0
    for i in range(n):
        for ch in range(c):
            ring[0, i % k, 0, ch] = z[i, ch]
        if i < k - 1:
            continue
        best = -1.0
        for ch in range(c):
            if judged[ch] != 0:
                best = max(best, _smoothed(ring, 0, i % k, 0, ch))
        if best >= 0.0:
            out[m] = best
            m += 1
    return out[:m]


@njit(cache=True)
def score_events(  # noqa: C901, PLR0912, PLR0913, PLR0915  (numba kernel: flat arrays, one loop)
    rows: np.ndarray, values: np.ndarray, pattern_stat: np.ndarray,
    use_dev: bool, use_rel: bool, pattern_prior: float,
    base: np.ndarray, slope: np.ndarray, spread: np.ndarray, floor: np.ndarray,
    ring: np.ndarray, n_ev: np.ndarray,
    mode: np.ndarray, period: np.ndarray, profile: np.ndarray, recent: np.ndarray,
    weekend_offset: np.ndarray, weekend_n: np.ndarray, daily: np.ndarray, weekend: np.ndarray,
    clock: np.ndarray, origin: np.ndarray, per_slot: np.ndarray, t: np.ndarray,
    hist: np.ndarray, total: np.ndarray, held: np.ndarray,
    run: np.ndarray, run_w: np.ndarray, run_n: np.ndarray,
    mu: np.ndarray, cov: np.ndarray, prec: np.ndarray, related: np.ndarray,
    last: np.ndarray, reps: np.ndarray, stuck: np.ndarray,
    rate: float, ridge: float, refresh: int, memory: float, hold: float, hold_max: int,
    sustained: float, width: np.ndarray, p_out: np.ndarray, stat_out: np.ndarray,
    channel_out: np.ndarray,
) -> None:
    """Score then learn, event by event in arrival order (each touches only its source's row):
    writes each family's tail probability ``p_out`` [n, NFAM] (1.0 where a family is off),
    its statistic ``stat_out`` and the channel that drove deviation / relation
    ``channel_out`` [n, 2] (``STUCK - channel`` where a stuck channel's repeats did);
    updates the sources' baselines and histories unless held (the open run of unusual
    deviation / relation events is kept in ``run``, ``run_w``, ``run_n``). A source with a
    local trend (TREND) never holds its deviation family: a held trend would be extrapolated
    from a stale level and slope, and an offline prototype that held it put 17-83 % of the
    normal events of a sawtooth, a noisy sine and a random walk at 0.9 or more. An event on a
    ``weekend`` is judged against the profile plus its block's weekend offset on a channel
    whose period is a day (``daily``; the offset learns on the first two weekend days,
    ``weekend_n``, and the profile the rest of the time). Such a channel's phase is its
    event's slot of the day (``clock``, seconds into the day of ``timezone``; NaN: none) less its
    ``origin``, taken from its first event after the look so that the phases counted until
    then hold: a gap in the feed does not shift the profile against the day."""
    n, c = values.shape
    k = ring.shape[1]
    if hold_max < k:  # a run is confirmed after k events, already past the hold it may have
        sustained = 0.0
    z = np.empty((2, c))
    dev = np.empty(c)
    young = np.zeros(c, dtype=np.bool_)  # channels whose young weekend offset learnt already
    offset = np.zeros(c)  # each channel's weekend offset as the event was scored
    phase = np.zeros(c, dtype=np.int64)  # each seasonal channel's phase for this event
    for i in range(n):
        r = rows[i]
        x = values[i]
        slot = n_ev[r] % k
        dev_on = False  # a source whose channels all drift has no deviation evidence
        trend_on = False  # ...and one with a local trend never holds it (docstring)
        if use_dev:
            for ch in range(c):
                dev_on = dev_on or mode[r, ch] != NONE
                trend_on = trend_on or mode[r, ch] == TREND
        rel_on = False  # ...and one with fewer than two related channels no relation evidence
        if use_rel:
            judged = 0
            for ch in range(c):
                judged += related[r, ch]
            rel_on = judged >= MIN_RELATED
        families = 1 + int(dev_on) + int(rel_on)
        for ch in range(c):
            m = mode[r, ch]
            young[ch] = False
            if m == NONE:
                dev[ch] = 0.0
            elif m == SEASONAL:
                # the profile's residual, or the last period's if smaller: a period that is not
                # a whole number of events slips against the profile, not against the last
                # period (a clean sine of period 37.7: 115 false flags in 2,800 events)
                ph = t[r] % period[r, ch]
                if daily[r, ch] > 0 and clock[i] == clock[i]:  # by the clock (docstring)
                    of_day = int(clock[i] * period[r, ch] / DAY + 0.5) % period[r, ch]
                    if origin[r, ch] < 0:
                        origin[r, ch] = (of_day - ph) % period[r, ch]
                    ph = (of_day - origin[r, ch]) % period[r, ch]
                phase[ch] = ph
                offset[ch] = 0.0
                if weekend[i] and daily[r, ch] > 0:
                    blocks = _blocks(period[r, ch])
                    hour = ph * blocks // period[r, ch]
                    offset[ch] = weekend_offset[r, hour, ch]
                    young[ch] = weekend_n[r, hour, ch] < (
                        WEEKEND_DAYS * period[r, ch] * per_slot[r]) // blocks
                    if young[ch]:  # a young offset learns whether or not the family holds
                        lim = CLIP * spread[r, ch]
                        step = x[ch] - profile[r, ph, ch] - offset[ch]
                        weekend_n[r, hour, ch] += 1  # the running mean of its residuals
                        weekend_offset[r, hour, ch] += min(max(step, -lim), lim) / weekend_n[
                            r, hour, ch]
                dev[ch] = x[ch] - profile[r, ph, ch] - offset[ch]
                if daily[r, ch] != SLOTS:
                    if abs(x[ch] - recent[r, ph, ch]) < abs(dev[ch]):
                        dev[ch] = x[ch] - recent[r, ph, ch]
                    recent[r, ph, ch] = x[ch]
            elif m == TREND:
                dev[ch] = x[ch] - (base[r, ch] + slope[r, ch])
            else:
                dev[ch] = x[ch] - base[r, ch]
            z[0, ch] = _capped(abs(dev[ch]) / spread[r, ch])
        if use_rel:
            for a in range(c):
                e = 0.0
                for b in range(c):
                    e += prec[r, a, b] * (x[b] - mu[r, b])
                z[1, a] = _capped(abs(e) / math.sqrt(max(prec[r, a, a], 1e-300)))
        for ch in range(c):
            ring[r, slot, 0, ch] = z[0, ch]
            ring[r, slot, 1, ch] = z[1, ch] if use_rel else 0.0
            if use_rel:
                reps[r, ch] = reps[r, ch] + 1 if x[ch] == last[r, ch] else 0
                last[r, ch] = x[ch]
        stats = np.zeros(NFAM)
        stats[PATTERNS] = pattern_stat[i]
        for fam in range(2):
            best, arg = -1.0, 0
            for ch in range(c):
                if fam == 0 and mode[r, ch] == NONE or fam == 1 and related[r, ch] == 0:
                    continue
                s = _smoothed(ring, r, slot, fam, ch)
                if s > best:
                    best, arg = s, ch
            if fam == 1 and use_rel:  # a stuck channel: its run of repeats, in nats
                for ch in range(c):
                    s = _capped(reps[r, ch] * stuck[r, ch])
                    if s > best:
                        best, arg = s, STUCK - ch
            stats[1 + fam] = max(best, 0.0)
            channel_out[i, fam] = arg
        for f in range(NFAM):
            on = f == PATTERNS or (f == DEVIATION and dev_on) or (f == RELATION and rel_on)
            stat_out[i, f] = stats[f]
            if not on:
                applies = f == DEVIATION and use_dev or f == RELATION and use_rel
                p_out[i, f] = np.nan if applies else 1.0
                continue
            prior = pattern_prior if f == PATTERNS else 0.0
            p = tail_probability(hist[r, f], total[r, f], stats[f], width[f], prior)
            p_out[i, f] = max(p, absolute_bound(f, stats[f], pattern_prior))
        # learn (unless the family is in an open episode)
        for f in range(NFAM):
            on = f == PATTERNS or (f == DEVIATION and dev_on) or (f == RELATION and rel_on)
            if not on:
                continue
            if f == DEVIATION and trend_on:
                held[r, f] = 0
                run_n[r, f - 1] = 0
            elif f != PATTERNS:
                g = f - 1
                n_run = run_n[r, g]
                q = families * p_out[i, f]
                q_run = q  # judged against the history without the open run's own events
                if n_run > 0 and q >= hold:
                    q_run = families * max(
                        _tail_without(hist[r, f], total[r, f], run[r, g], run_w[r, g], n_run,
                                      stats[f], width[f]),
                        absolute_bound(f, stats[f], pattern_prior))
                if q < hold or (q_run < sustained and held[r, f] >= k):  # an open episode
                    if n_run > 0 and held[r, f] >= k:
                        _forget(hist, total, r, f, run[r, g], run_w[r, g], n_run, width[f])
                        run_n[r, g] = 0
                    if held[r, f] < hold_max:
                        held[r, f] += 1
                        continue
                elif q_run < sustained:  # a run, learnt as usual until it lasts k events
                    held[r, f] += 1
                    if held[r, f] >= k:
                        _forget(hist, total, r, f, run[r, g], run_w[r, g], n_run, width[f])
                        run_n[r, g] = 0
                        continue
                    run[r, g, n_run] = stats[f]
                    run_w[r, g, n_run] = 1.0
                    run_n[r, g] = n_run + 1
                else:
                    held[r, f] = 0
                    run_n[r, g] = 0
            if remember(hist, total, r, f, stats[f], width[f], memory, 1.0) and f != PATTERNS:
                for j in range(run_n[r, f - 1]):  # the history halved: so did the run's events
                    run_w[r, f - 1, j] *= 0.5
            if f == DEVIATION:
                for ch in range(c):
                    d = dev[ch]
                    if mode[r, ch] == BASELINE:
                        step = rate * spread[r, ch]
                        base[r, ch] += step if d > 0 else (-step if d < 0 else 0.0)
                    elif mode[r, ch] == SEASONAL and d == d and not young[ch]:
                        # one visit per period: the profile adapts in about 1/rate events too
                        lim = CLIP * spread[r, ch]
                        ph = phase[ch]
                        # the profile learns every day, a weekend day against the profile
                        # plus its offset (learnt while young, above): a drifting level is
                        # followed through the weekend, and the weekend is not learnt as one
                        step = x[ch] - profile[r, ph, ch] - offset[ch]
                        profile[r, ph, ch] += min(1.0, rate * period[r, ch]) / per_slot[r] * min(
                            max(step, -lim), lim)
                    elif mode[r, ch] == TREND and d == d:
                        e = min(max(d, -CLIP * spread[r, ch]), CLIP * spread[r, ch])
                        base[r, ch] += slope[r, ch] + TREND_GAIN * e
                        slope[r, ch] += TREND_GAIN * TREND_SLOPE * e
                    big = abs(d) * ABS_SIGMA
                    big = min(big, CLIP * spread[r, ch]) if big == big else spread[r, ch]
                    spread[r, ch] = max(spread[r, ch] + rate * (big - spread[r, ch]),
                                        floor[r, ch])
            elif f == RELATION:
                for a in range(c):  # winsorised: one wild value must not swamp the covariance
                    lim = CLIP * math.sqrt(max(cov[r, a, a], 1e-300))
                    z[0, a] = min(max(x[a] - mu[r, a], -lim), lim)
                for a in range(c):
                    mu[r, a] += rate * z[0, a]
                    for b in range(c):
                        cov[r, a, b] += rate * (z[0, a] * z[0, b] - cov[r, a, b])
                if n_ev[r] % refresh == refresh - 1:
                    prec[r] = _precision(_masked(cov[r], related[r]), ridge)
        n_ev[r] += 1
        t[r] += 1


@njit(cache=True)
def _blocks(period: int) -> int:
    """Blocks of a daily period's weekend offset: hours, or fewer, of WEEKEND_EVENTS events or
    more (``WEEKEND_BLOCKS``)."""
    return max(1, min(WEEKEND_BLOCKS, period // WEEKEND_EVENTS))


def combine(p: np.ndarray, families: int) -> np.ndarray:
    """Bonferroni over the families a source has: ``min(1, F * min_f p_f)``, F = ``families``
    less those its event has no evidence of (NaN: deviation on a source whose channels all
    drift, relation on one with fewer than two related channels)."""
    out: np.ndarray = np.minimum(  # numpy's stubs type ufunc results as Any
        1.0, (families - np.isnan(p).sum(axis=1)) * np.nanmin(p, axis=1))
    return out

"""Evidence families and their calibration (engine/evidence.py): tail probabilities, the
relation family on a channel that leaves the others, holding back learning during a sustained
incident, and a score that means the same on a clean 1-channel and a noisy 40-channel source."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurogate.cli.results import describe, summary
from neurogate.engine.bank import Bank
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import BatchResult, Detector
from neurogate.engine.events import Event
from neurogate.engine.evidence import (
    BASELINE,
    BINS,
    DEVIATION,
    FORECAST_NAMES,
    LONG,
    MIN_HISTORY,
    NO_DAY_LOOK,
    NONE,
    PATTERNS,
    RELATION,
    SEASONAL,
    SLOTS,
    TAIL_EVENTS,
    TREND,
    _blocks,
    _cross_fitted,
    _forget,
    _precision,
    _related,
    _repeats,
    _step,
    _tail_without,
    _univariate,
    clock_steps,
    combine,
    forecasts,
    interval_events,
    tail_probability,
)
from neurogate.engine.rules import EpisodeCarry, ExtremeValue, ScoreContext, Suppression
from neurogate.engine.state import Groups, Growing
from neurogate.evaluation import sensors

T0 = 1_700_000_000.0


def config(**changes: object) -> EngineConfig:
    base = EngineConfig(warmup=200).replace(**{"neuronet.enabled": False})
    return base.replace(**changes) if changes else base


def correlated(n: int, channels: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """Channels that follow one shared slow factor plus their own noise."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0, 0.3, n)
    factor = np.empty(n)
    factor[0] = shocks[0]
    for t in range(1, n):  # a stationary AR(1) factor
        factor[t] = 0.98 * factor[t - 1] + shocks[t]
    gains = rng.uniform(0.5, 2.0, channels)
    return factor[:, None] * gains + rng.normal(0, noise, (n, channels))


def score(values: np.ndarray, cfg: EngineConfig, source: str = "s") -> tuple[np.ndarray, list]:
    fields = tuple(f"c{i:02d}" for i in range(values.shape[1]))
    events = [Event(source, T0 + 60.0 * i, tuple(float(v) for v in row), fields=fields)
              for i, row in enumerate(values)]
    det = Detector(cfg)
    out = det.process_many(events)
    det.close()
    return out.score, list(out)


# -- tail probabilities ---------------------------------------------------------------------


def test_tail_probability_reads_the_history_then_extrapolates_it() -> None:
    rng = np.random.default_rng(0)
    xs = np.abs(rng.normal(0, 1, 2000))
    hist = np.histogram(xs, bins=BINS, range=(0, BINS * 0.1))[0].astype(np.float32)
    total = float(hist.sum())
    # inside the history: the share of events at or beyond x
    for x in (0.5, 1.0, 2.0):
        assert tail_probability(hist, total, x, 0.1, 0.0) == pytest.approx(
            (xs >= x).mean(), abs=0.01)
    # beyond the top events: decreasing, below the empirical floor, continuous at its edge
    start = np.sort(xs)[-TAIL_EVENTS]  # fewer than TAIL_EVENTS beyond: extrapolated
    grid = np.linspace(start + 0.05, 9.0, 30)
    p = np.array([tail_probability(hist, total, x, 0.1, 0.0) for x in grid])
    assert (np.diff(p) < 0).all() and p[-1] < 1e-6
    assert p[0] <= 2 * TAIL_EVENTS / total
    # no history yet: the prior exp(prior_log - x)
    assert tail_probability(np.zeros(BINS, np.float32), MIN_HISTORY - 1, 3.0, 0.1, 1.0) == (
        pytest.approx(math.exp(-2.0)))


def test_values_beyond_the_histogram_are_read_against_its_last_bin() -> None:
    """The last bin holds every value beyond the top (25.6 for |z|): with three quarters of
    the history there, a value beyond the top is as common as that, not extrapolated to 0."""
    hist = np.zeros(BINS, np.float32)
    hist[10] = 1000.0
    hist[-1] = 3000.0
    for x in (BINS * 0.1 - 0.05, 30.0, 1e6):
        assert tail_probability(hist, 4000.0, x, 0.1, 0.0) == pytest.approx(0.75)
    hist[-1] = 5.0  # fewer than TAIL_EVENTS: extrapolated from the top events as before
    assert tail_probability(hist, 1005.0, 30.0, 0.1, 0.0) < TAIL_EVENTS / 1005.0 / 10


def test_precision_inverts_a_covariance() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 6))
    cov = np.cov(a.T)
    np.testing.assert_allclose(_precision(cov, 0.0) @ cov, np.eye(6), atol=1e-8)
    singular = np.ones((3, 3))  # ridge keeps it invertible
    assert np.isfinite(_precision(singular, 0.01)).all()
    # in other units (x 1e6, x 1e-4) the precision follows them exactly: the ridge and the
    # jitter are relative to each channel's own variance
    units = np.array([1e6, 1e-4, 1, 1, 1, 1])
    np.testing.assert_allclose(_precision(cov * np.outer(units, units), 0.01),
                               _precision(cov, 0.01) / np.outer(units, units), rtol=1e-9)


def test_scores_do_not_depend_on_the_channels_units() -> None:
    """A current in microamperes beside a pressure in megapascals: the same scores (a jitter of
    the largest variance had cut the small-unit channel out of the relation model)."""
    values = correlated(1200, 4, seed=71)
    values[800:950, 1] += 0.8 * values[:800, 1].std()
    plain, _ = score(values, config())
    scaled, _ = score(values * np.array([1e6, 1e-5, 1.0, 1.0]), config())
    np.testing.assert_allclose(scaled, plain, atol=1e-6)


def test_a_channel_constant_through_the_warm_up_does_not_hold_the_score_when_it_moves() -> None:
    """A setpoint that sat still through the warm-up is raised once by an operator: one event
    may say so, but the source's normal events are not scored 1 from then on (|z| ~ 1e6,
    unlearnable) and a later shift of a related channel is still found."""
    values = np.column_stack([correlated(1500, 3, seed=72), np.full(1500, 50.0)])
    values[500:, 3] = 52.0
    values[1100:1300, 1] += 1.0 * values[:200, 1].std()
    s, results = score(values, config())
    normal = np.r_[520:1100, 1350:1500]
    assert np.mean(s[normal] >= 0.9) < 0.01
    assert sum(r.flagged for r in results[1100:1300]) >= 1


# -- the relation family --------------------------------------------------------------------


def test_a_channel_that_leaves_the_others_shows_in_the_relation_family() -> None:
    values = correlated(1500, 4, seed=2)
    broken = values.copy()
    rng = np.random.default_rng(3)
    # channel 2 keeps its spread but stops following the shared factor
    broken[1000:1200, 2] = rng.permutation(values[1000:1200, 2])
    s_with, results = score(broken, config())
    s_without, _ = score(broken, config(**{"evidence.relation": False}))
    inside = slice(1010, 1200)
    before = slice(600, 1000)
    assert np.median(s_with[inside]) > np.quantile(s_with[before], 0.99)
    assert np.median(s_with[inside]) > np.median(s_without[inside]) + 0.1
    flagged = [r for r in results[1000:1200] if r.flagged]
    assert flagged and any(r.family_channels.get("relation") == "c02" for r in flagged)


def with_a_wanderer(n: int, seed: int) -> np.ndarray:
    """Four channels that follow one factor (their own noise AR(1) with 0.5, as the generated
    multivariate set's) and a fifth that wanders on its own (AR(1) with 0.97: a temperature)."""
    rng = np.random.default_rng(seed)
    values = correlated(n, 5, seed)
    own = np.zeros(n)
    for t in range(1, n):
        own[t] = 0.5 * own[t - 1] + rng.normal(0, 0.1)
    values[:, :4] += own[:, None] * rng.uniform(0.5, 1.5, 4)
    wander = np.zeros(n)
    for t in range(1, n):
        wander[t] = 0.97 * wander[t - 1] + rng.normal(0, 0.2)
    values[:, 4] = wander
    return values


def test_a_channel_that_wanders_on_its_own_is_left_out_of_the_relation_family() -> None:
    """Its residual against the others is forecast by its previous residual: it is left out
    (and out of the others' predictions); channels following the factor stay, AR(0.5) noise
    and all."""
    warm = with_a_wanderer(200, seed=21)
    dev = warm - warm.mean(axis=0)
    assert _related(dev, dev.T @ dev / len(dev), 0.01).tolist() == [1, 1, 1, 1, 0]
    values = with_a_wanderer(1500, seed=22)
    values[1000:1200, 1] += 3 * values[:200, 1].std()  # one related channel shifts
    _, results = score(values, config())
    false_flags = sum(r.flagged for r in results[300:1000])
    # judged with the others, the wanderer put 16 of these 700 normal events over the threshold
    assert false_flags <= 5, false_flags
    assert sum(r.flagged and r.family_channels.get("relation") == "c01"
               for r in results[1000:1200]) >= 1


def test_random_walks_among_many_channels_are_left_out_of_the_relation_family() -> None:
    """Five random walks among 35 channels, a warm-up of 200 events: regressed in-sample on
    the 34 others, a walk's residual looked white (its drift fitted away) and the walks were
    judged; with the relation history seeded out of fold, a 40-channel GutenTAG series (dev
    seed) put 119 normal events over the threshold as their chance relation ended. Judged out
    of fold, each walk wanders."""
    rng = np.random.default_rng(51)
    n, t = 200, np.arange(200)
    walks = np.cumsum(rng.normal(0, 0.1, (n, 5)), axis=0)
    periods, phases = rng.uniform(20, 60, 30), rng.uniform(0, 6, 30)
    waves = np.sin(2 * np.pi * t[:, None] / periods + phases)
    dev = np.column_stack([walks, waves + rng.normal(0, 0.1, (n, 30))])
    dev -= dev.mean(axis=0)
    assert _related(dev, dev.T @ dev / n, 0.01)[:5].tolist() == [0] * 5


def test_a_source_with_fewer_than_two_related_channels_scores_as_without_relation() -> None:
    """Two channels wandering on their own and one of white noise: one channel stays related,
    nothing can predict it, so the family is absent (NaN) and not counted by Bonferroni."""
    rng = np.random.default_rng(17)
    values = np.zeros((900, 3))
    for t in range(1, 900):
        values[t, :2] = 0.97 * values[t - 1, :2] + rng.normal(0, 0.2, 2)
    values[:, 2] = rng.normal(0, 1, 900)
    warm = values[:200] - values[:200].mean(axis=0)
    assert _related(warm, warm.T @ warm / 200, 0.01).tolist() == [0, 0, 1]
    on, results = score(values, config())
    off, _ = score(values, config(**{"evidence.relation": False}))
    np.testing.assert_array_equal(on, off)
    assert all("relation" not in r.families for r in results)


def test_two_channels_sharing_mode_jumps_keep_their_relation_at_every_level() -> None:
    """Two channels jump between four shared levels, with their own noise (0.03 and 0.08); the
    warm-up sits at one level for 175 of its 200 events. Clipped at 8 MADs (each channel's
    noise), the other level's warm-up values were cut at different places per channel, the
    covariance no longer said "equal", and the relation residual followed the level: 39 false
    flags in the 550 events after the warm-up."""
    rng = np.random.default_rng(41)
    levels = np.array([1.0, 0.2, -0.6, -1.0])
    blocks = np.concatenate([[0] * 7 + [1], rng.integers(0, 4, 22)])
    level = np.repeat(levels[blocks], 25)
    values = np.column_stack([level[:, None] + rng.normal(0, 1, (level.size, 2)) * [0.03, 0.08],
                              rng.normal(0, 1, level.size)])
    _, results = score(values, config())
    assert sum(r.flagged for r in results[200:]) <= 3


def test_a_mode_correlation_break_is_found_after_a_warm_up_that_ends_in_one_mode() -> None:
    """Two channels share mode jumps; the warm-up's first half visits four levels, its second
    half stays at one. Seeded by halves, each judged by the other, the first half's level
    changes met the second half's noise-only covariance and started the relation history with
    |z| ~ 20, so channel b leaving the shared modes later went unflagged; folds that each see
    most of the warm-up find it."""
    rng = np.random.default_rng(43)
    levels = np.array([1.0, 0.2, -0.6, -1.0])
    blocks = np.concatenate([[0, 2, 1, 3], [0] * 4, rng.integers(0, 4, 16)])
    a = levels[np.repeat(blocks, 25)]
    b = a.copy()
    b[500:600] = levels[np.repeat((blocks[20:24] + 2) % 4, 25)]  # b leaves the shared modes
    values = np.column_stack([np.column_stack([a, b]) + rng.normal(0, 0.05, (a.size, 2)),
                              rng.normal(0, 1, a.size)])
    scores, results = score(values, config())
    assert (scores[500:600] >= 0.9).sum() >= 90  # the break stays unusual while it lasts...
    assert any(r.flagged for r in results[500:510])  # ...alerts at its start
    assert sum(r.flagged for r in results[200:500]) + sum(r.flagged for r in results[600:]) <= 2


def test_runs_of_repeats_and_what_a_repeat_costs() -> None:
    runs, cost = _repeats(np.array([[1, 5], [1, 5], [2, 5], [2, 6], [2, 6], [3, 6]], float))
    assert runs.T.tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 0, 1, 2]]
    assert cost.tolist() == [0.0, 0.0]  # repeats are common here: never judged as stuck
    x = np.random.default_rng(0).normal(size=(200, 2))
    x[50:54, 1] = x[50, 1]  # 3 repeats in 199 pairs: (3 + 1) / 201 <= STUCK_SHARE
    _, rare = _repeats(x)
    np.testing.assert_allclose(rare, np.log([201, 201 / 4]))  # (pairs + 2) / (repeats + 1)
    x[100:104, 1] = x[100, 1]  # 6 repeats: 7 / 201 is too common a repeat
    assert _repeats(x)[1][1] == 0.0


def test_the_step_of_a_quantised_channel() -> None:
    rng = np.random.default_rng(3)
    warm = np.stack([np.round(rng.normal(0, 1, 300) / 0.25) * 0.25, rng.normal(0, 1, 300),
                     np.full(300, 7.0)], axis=1)[None]
    span = np.percentile(warm, 99, axis=1) - np.percentile(warm, 1, axis=1)
    step = _step(warm, span)[0]
    assert step[0] == pytest.approx(0.25) and 0 < step[1] < 1e-3 and step[2] == 0.0


def test_a_channel_logged_in_coarse_steps_is_not_an_outlier_at_every_step() -> None:
    """A noisy channel the others do not predict, logged in steps of twice its noise (most of
    its values on one step, so its MAD is 0): its other steps are normal, not outliers (with
    the spread at the floor 94 % of a sensors file's normal rows were below p = 0.001), and a
    shift of a related channel is still found. Its frequent repeats are not a stuck sensor."""
    rng = np.random.default_rng(64)
    values = np.column_stack([correlated(1500, 3, seed=63),
                              np.round(rng.normal(0, 1, 1500) / 2) * 2])
    values[1100:1300, 1] += 1.0
    s, results = score(values, config())
    normal = np.r_[200:1100, 1350:1500]  # (40-event smoothing after the shift)
    assert np.mean(s[normal] >= 0.9) < 0.01  # was all of them, and the shift never flagged
    assert sum(r.flagged for r in results[1100:1300]) >= 1
    assert not any(r.stuck for r in results)


def test_a_stuck_sensor_is_flagged_at_its_first_repeats() -> None:
    """One of four related channels repeats its value exactly for 100 events: each repeat of
    a value that never repeated in the warm-up costs 5.3 nats, so the relation family flags
    it at once, by name (judged by its distance from the others alone, 8 events later)."""
    values = correlated(1200, 4, seed=61)
    values[800:900, 2] = values[800, 2]
    _, results = score(values, config())
    first = next(i for i, r in enumerate(results) if r.flagged and i >= 800)
    assert first <= 802
    assert results[first].family_channels.get("relation") == "c02" and results[first].stuck
    assert results[first].as_dict()["families"]["relation"]["stuck"] is True
    assert summary(results[first].as_dict()).startswith("c02 repeats one value")


def test_channels_that_repeat_values_normally_are_not_flagged_for_it() -> None:
    """Coarsely quantised channels repeat values all the time: their warm-up says so, a
    repeat costs little, and they are flagged no more often than without relation evidence."""
    values = np.round(correlated(1500, 4, seed=62) * 2) / 2
    _, with_relation = score(values, config())
    _, without = score(values, config(**{"evidence.relation": False}))
    assert sum(r.flagged for r in with_relation[200:]) <= sum(r.flagged for r in without[200:])


def test_channels_wandering_past_their_range_together_are_not_new_extremes() -> None:
    """Three channels follow a factor that wanders past its warm-up range: their records come
    with the relation intact, so they count only where the calibrated score is already 0.7;
    a spike of one channel still scores 1."""
    rng = np.random.default_rng(31)
    factor = np.zeros(700)
    for t in range(1, 700):
        factor[t] = 0.98 * factor[t - 1] + rng.normal(0, 0.3)
    factor[250:] += np.minimum(np.arange(450) / 50.0, 4.0)
    values = factor[:, None] * np.array([1.0, 1.5, 0.8]) + rng.normal(0, 0.3, (700, 3))
    values[600, 1] += 10.0
    _, gated = score(values, config())
    _, always = score(values, config(extreme_floor=0.0))
    wander = slice(250, 600)
    assert sum(r.extreme for r in gated[wander]) < sum(r.extreme for r in always[wander])
    assert all(r.score >= 0.7 for r in gated[wander] if r.extreme)
    assert gated[600].extreme and gated[600].score == 1.0


def test_records_of_a_channel_relation_does_not_judge_count_as_before() -> None:
    """The wanderer (left out of relation) jumps to new records while the related channels
    stay in range: its records are extremes whatever the calibrated score."""
    values = with_a_wanderer(900, seed=23)
    values[400:, 4] += 10 * values[:200, 4].std()
    values[700:, 4] += 10 * values[:200, 4].std()
    _, gated = score(values, config())
    _, always = score(values, config(extreme_floor=0.0))
    extremes = [i for i, r in enumerate(always) if r.extreme]
    assert extremes
    assert [i for i, r in enumerate(gated) if r.extreme] == extremes


# -- the deviation family: each channel against its own forecast ----------------------------


def independent(n: int, seed: int) -> np.ndarray:
    """GutenTAG-like independent channels: two noisy periodic waves (periods 100 and 50),
    white noise and a random walk."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([np.sin(2 * np.pi * t / 100), np.sign(np.sin(2 * np.pi * t / 50)),
                     np.zeros(n), np.cumsum(rng.normal(0, 0.05, n))], axis=1) + (
        rng.normal(0, 0.1, (n, 4)) * np.array([1, 1, 1, 0]))


def test_each_channel_gets_the_forecast_its_warm_up_fits_best() -> None:
    warm = independent(800, seed=11)
    mode, period, profile, resid = forecasts(warm, np.median(warm, axis=0), 200)
    assert mode.tolist() == [SEASONAL, SEASONAL, BASELINE, NONE]  # the walk drifts: left out
    assert period[:2].tolist() == [100, 50]
    np.testing.assert_allclose(profile[:100, 0], np.sin(2 * np.pi * np.arange(100) / 100),
                               atol=0.1)
    assert np.median(np.abs(resid[:, :3])) < 0.1  # what is left is the noise
    # no period search when period_max is 0: the waves fall back to a baseline
    assert SEASONAL not in forecasts(warm, np.median(warm, axis=0), 0)[0].tolist()


def test_a_periodic_channel_that_changes_shape_shows_in_the_deviation_family() -> None:
    """An amplitude change of one periodic channel among independent ones stays inside the
    channel's range and barely moves its relation to the others; against its seasonal
    profile it stands out."""
    values = independent(1600, seed=12)
    values[1200:1300, 0] *= 1.5
    inside = slice(1210, 1300)
    before = slice(400, 1200)
    on, results = score(values, config(warmup=400))
    off, _ = score(values, config(warmup=400, **{"evidence.deviation": False}))
    assert np.median(on[inside]) > np.quantile(on[before], 0.95)
    assert np.median(on[inside]) > np.median(off[inside]) + 0.2
    flagged = [r for r in results[1200:1300] if r.flagged]
    assert flagged and any(r.family_channels.get("deviation") == "c00" for r in flagged)


def test_a_source_whose_channels_all_drift_scores_as_without_the_deviation_family() -> None:
    """Drifting channels are left out of the family; with none left, the family is absent
    (NaN) and the Bonferroni count does not grow, so the score equals the one without it."""
    walks = np.cumsum(np.random.default_rng(13).normal(0, 1, (900, 3)), axis=0)
    on, results = score(walks, config())
    off, _ = score(walks, config(**{"evidence.deviation": False}))
    np.testing.assert_array_equal(on, off)
    fam = np.array([r.families.get("deviation", np.nan) for r in results])
    assert np.isnan(fam).all()
    p = np.array([[0.01, np.nan, 0.2], [0.3, 0.02, 0.5]])
    np.testing.assert_allclose(combine(p, 3), [0.02, 0.06])


def test_a_univariate_source_has_the_deviation_family_only_for_a_clear_period() -> None:
    """White noise (a baseline forecast) and a weakly periodic wave get no deviation family
    (their forecasts only confirm an alert's episode, ``ev_confirm``); a clear wave does, and
    a change of its shape shows there."""
    noise = independent(900, seed=14)[:, 2:3]
    default, results = score(noise, config())
    single, _ = score(noise, config(**{"evidence.deviation_channels": 1}))
    assert not any("deviation" in r.families for r in results)
    assert not np.array_equal(default, single)  # one more family when it is asked for
    t = np.arange(1200)
    rng = np.random.default_rng(15)
    modes = {}
    for name, sd in (("weak", 0.5), ("clear", 0.1)):
        det = Detector(config())
        det.process_many([Event(name, T0 + 60.0 * i, (float(np.sin(2 * np.pi * i / 50)
                                                            + rng.normal(0, sd)),))
                          for i in range(300)])
        bank, row = det._sources[name]
        modes[name] = (int(bank.state.ev_mode[row, 0]), int(bank.state.ev_confirm[row]))
        det.close()
    assert modes == {"weak": (SEASONAL, 1), "clear": (SEASONAL, 0)}
    wave = (np.sin(2 * np.pi * t / 50) + rng.normal(0, 0.1, t.size))[:, None]
    wave[800:900, 0] = np.sign(wave[800:900, 0])  # the sine turns into a square wave
    s_wave, wave_results = score(wave, config())
    flagged = [r for r in wave_results[800:900] if r.flagged]
    assert flagged and any("deviation" in r.families for r in flagged)
    assert np.median(s_wave[800:900]) > np.quantile(s_wave[300:800], 0.95)


def daily_wave(n: int, seed: int) -> np.ndarray:
    """A daily cycle at 5-minute sampling (period 288, amplitude 3) under white noise: a
    default warm-up of 200 events cannot show its period."""
    t = np.arange(n)
    return (3 * np.sin(2 * np.pi * t / 288)
            + np.random.default_rng(seed).normal(0, 1, n))[:, None]


def daily_peaks(n: int, seed: int) -> np.ndarray:
    """A CPU-like daily load at 5-minute sampling: a morning and an evening peak on a flat
    night, under noise. Its warm-up neither trends nor drifts, so its deviation confirms
    episodes (``ev_confirm``) until the late look finds the day."""
    day = (np.arange(n) % 288) / 288
    wave = 15 * (np.exp(-(((day - 0.4) / 0.06) ** 2)) + 0.8 * np.exp(-(((day - 0.8) / 0.05) ** 2)))
    return (wave + np.random.default_rng(seed).normal(0, 2, n))[:, None]


def daily_channels(n: int, seed: int) -> np.ndarray:
    """Four channels of one daily cycle at 5-minute sampling (amplitudes 2-4, phases within
    0.1 radian) under white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.stack([a * np.sin(2 * np.pi * t / 288 + rng.normal(0, 0.1))
                     for a in rng.uniform(2, 4, 4)], axis=1) + rng.normal(0, 1, (n, 4))


def scored_with_and_without_the_look(events: list[Event]
                                      ) -> tuple[BatchResult, BatchResult, Growing]:
    """One source's ``events`` (an incident over events 1,500-1,649) scored with the late look
    for a period and without it, and the state after the look: the incident scores 0.9 or
    more with it (median), below without, and above the 99th percentile of the days before."""
    det = Detector(config())
    late = det.process_many(events)
    det.close()
    without = Detector(config(**{"evidence.late_period": False})).process_many(events)
    assert np.median(late.score[1500:1650]) >= 0.9 > np.median(without.score[1500:1650])
    assert np.median(late.score[1500:1650]) > np.quantile(late.score[900:1500], 0.99)
    (bank,) = det.banks.values()
    return late, without, bank.state


def test_a_daily_cycle_the_warm_up_cannot_show_is_found_by_the_late_look() -> None:
    """After 3 x ``period_max`` events (864) a univariate source looks for a period once more,
    over its warm-up and the events kept since: a daily cycle is judged against its profile
    from then on, so a shift that stays inside the day's range stays unusual; without the
    late look it is learnt like any level shift of a noisy channel."""
    x = daily_wave(2400, seed=31)
    x[1500:1650, 0] += 3.0
    late, without, state = scored_with_and_without_the_look(
        [Event("d", T0 + 300.0 * i, (float(v),)) for i, v in enumerate(x[:, 0])])
    assert int(state.ev_mode[0, 0]) == SEASONAL
    assert abs(int(state.ev_period[0, 0]) - 288) <= 1
    # before the look the family judged it against a local trend (two thirds of a day in
    # the warm-up rise or fall like a trend; evidence.trend), not against its profile
    assert np.isfinite(late.family_p[200:, DEVIATION]).all()
    # the look raises no alert of its own: the normal days after it flag as before (one
    # event, by the patterns family)
    assert late.flagged[864:1500].tolist() == without.flagged[864:1500].tolist()


def test_channels_that_share_a_daily_cycle_are_judged_by_it_after_the_late_look() -> None:
    """Four channels with one daily cycle at 5-minute sampling: the warm-up shows no period,
    so each was judged against a slow baseline (or left to the relation family), and a surge
    of all four within the day's range did not stand out (the channels keep their relation);
    after the late look each is judged against its profile and the surge does."""
    x = daily_channels(2400, seed=41)
    x[1500:1650] += 2.5
    late, without, state = scored_with_and_without_the_look(
        [Event("m", T0 + 300.0 * i, tuple(map(float, row)), fields=tuple("abcd"))
         for i, row in enumerate(x)])
    assert (state.ev_mode[0] == SEASONAL).any()
    assert late.flagged[864:1500].sum() == without.flagged[864:1500].sum()


MONDAY = 1_704_067_200.0  # 2024-01-01, a Monday (UTC)


def weekly(seed: int, days: int = 21, step: float = 300.0) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (``step`` seconds apart from a Monday) and values of a daily cycle whose
    weekends are lower and weaker (level -1.5, amplitude 0.6x), under white noise."""
    rng = np.random.default_rng(seed)
    t = MONDAY + step * np.arange(round(86400 / step) * days)
    on_weekend = ((t // 86400 + 3) % 7) >= 5
    wave = 3 * np.sin(2 * np.pi * ((t % 86400) / 86400 + rng.uniform(0, 1)))
    return t, (10 + np.where(on_weekend, 0.6 * wave, wave) - 1.5 * on_weekend
               + rng.normal(0, 1, t.size))


def test_a_daily_profile_keeps_its_weekends_apart() -> None:
    """A daily cycle with real timestamps gets exactly a day's period at the late look (the
    autocorrelation peak of three days of noise sat up to 10 events off it) and an hourly
    weekend offset learnt on its first weekend: its weekends and Mondays are quiet, where one
    profile alerted every weekend (and learnt the weekend, wrongly for Monday). Timestamps
    that are row numbers get no weekend offset."""
    flags = {True: 0, False: 0}
    for seed in (4, 5, 8):  # their peaks sat at 281, 278 and 281 events
        t, x = weekly(seed)
        events = [Event("w", float(a), (float(b),)) for a, b in zip(t, x, strict=True)]
        for on in (True, False):
            det = Detector(config(**{"evidence.weekend": on}))
            out = det.process_many(events)
            (bank,) = det.banks.values()
            assert (int(bank.state.ev_period[0, 0]) == 288) == on
            assert int(bank.state.ev_daily[0, 0]) == int(on)
            # each hour's offset learnt from the two first weekend days (12 events each)
            assert bank.state.ev_weekend_n[0, :, 0].tolist() == [24 if on else 0] * 24
            det.close()
            flags[on] += int(out.flagged[3 * 288:].sum())
    assert flags[True] < flags[False] / 3
    rows = [Event("r", float(i), (float(v),), has_calendar=False)
            for i, v in enumerate(weekly(4)[1][:1200])]
    det = Detector(config())
    det.process_many(rows)
    (bank,) = det.banks.values()
    assert int(bank.state.ev_daily[0, 0]) == 0


def test_a_day_longer_than_the_profile_is_not_taken_as_the_period() -> None:
    """At 295-second steps a day is 293 events, beyond ``period_max`` (288): a peak near it
    in a warm-up of 1,000 events is not moved to it (its profile would overflow, as a lag
    beyond ``period_max`` did)."""
    t = MONDAY + 295.0 * np.arange(1200)
    x = 3 * np.sin(2 * np.pi * np.arange(1200) / 288) + np.random.default_rng(6).normal(0, 1, 1200)
    det = Detector(config(warmup=1000))
    det.process_many([Event("d", float(a), (float(b),)) for a, b in zip(t, x, strict=True)])
    (bank,) = det.banks.values()
    assert 0 < int(bank.state.ev_period[0, 0]) <= 288 and int(bank.state.ev_daily[0, 0]) == 0
    det.close()


def fed_with_gaps(seed: int, jitter: float = 30.0) -> list[Event]:
    """``weekly(seed)`` as a feed delivers it: each time up to ``jitter`` seconds off its
    5-minute mark, and gaps of 30 events (2.5 hours) on days 8 and 12."""
    t, x = weekly(seed)
    t = t + np.random.default_rng(seed).uniform(-jitter, jitter, t.size)
    keep = np.ones(t.size, dtype=bool)
    for day in (8, 12):
        keep[day * 288 + 100 : day * 288 + 130] = False
    return [Event("g", float(a), (float(b),)) for a, b in zip(t[keep], x[keep], strict=True)]


@pytest.mark.parametrize("seed", [4, 5])
def test_a_daily_profile_keeps_the_day_across_gaps_in_the_feed(seed: int) -> None:
    """A daily profile's phase is read from the clock (``ev_origin``): after a gap of 2.5
    hours its events are judged against the same hour of the profile, as on a feed without
    gaps (a phase counted in events slipped 30 events at each gap: 11 and 15 flags after the
    first, 2.8 and 4.1 % of the events at 0.9 or more). Jittered times still make a day of 288
    events (their median step made 284-290)."""
    det = Detector(config())
    out = det.process_many(fed_with_gaps(seed))
    (bank,) = det.banks.values()
    assert int(bank.state.ev_daily[0, 0]) == 1 and int(bank.state.ev_period[0, 0]) == 288
    assert int(bank.state.ev_origin[0, 0]) >= 0
    det.close()
    t, x = weekly(seed)
    on_time = Detector(config()).process_many(
        [Event("g", float(a), (float(b),)) for a, b in zip(t, x, strict=True)])
    after = 8 * 288 + 100
    assert (out.score[after:] >= 0.9).mean() < 0.005
    assert out.flagged[after:].sum() <= on_time.flagged[after:].sum() + 1


@pytest.mark.parametrize("seed", [4, 5])
def test_a_gap_before_the_late_look_does_not_hide_the_day(seed: int) -> None:
    """The late look reads the events it kept in the order they came: a 2.5-hour gap on day 1
    left a 5-minute daily cycle with no daily profile for good (seed 4 against a baseline,
    seed 5 a profile of 274 events). The look at a day reads the clock, so the day is found
    there (on day 4)."""
    t, x = weekly(seed, days=8)
    keep = np.ones(t.size, dtype=bool)
    keep[288 + 100 : 288 + 130] = False
    det = Detector(config())
    det.process_many([Event("g", float(a), (float(b),))
                      for a, b in zip(t[keep], x[keep], strict=True)])
    (bank,) = det.banks.values()
    st = bank.state
    assert st.ev_mode[0].tolist() == [SEASONAL] and int(st.ev_daily[0, 0]) == 1
    assert float(st.ev_per_slot[0]) == 1.0 and int(st.ev_origin[0, 0]) == 0
    det.close()


@pytest.mark.parametrize("split", [600, 2500])  # before the late look, after the first gap
def test_a_restarted_detector_keeps_a_daily_profile_on_the_clock(split: int) -> None:
    """The clock's origin lives in the saved state: restarted before the look (none yet) or
    after a gap, the scores go on as if the detector had not stopped."""
    assert_a_restart_continues(fed_with_gaps(4), split)


def every_minute(seed: int, days: int = 10) -> list[Event]:
    """``weekly(seed)`` at 1-minute sampling (a day of 1,440 events, beyond ``period_max``)
    with a 4-sd level shift for 3 hours on day 8 (a Tuesday)."""
    t, x = weekly(seed, days, 60.0)
    x[8 * 1440 + 600 : 8 * 1440 + 780] += 4.0
    return [Event("m", float(a), (float(b),)) for a, b in zip(t, x, strict=True)]


@pytest.mark.parametrize("seed", [4, 5])
def test_a_daily_cycle_sampled_every_minute_gets_a_daily_profile_after_three_days(
        seed: int) -> None:
    """No warm-up or late look shows a day of 1,440 events; the look at a day does, after
    three whole days (``day_start``): the source is judged against a profile of 288 slots of
    5 minutes, each learning a day's share over its 5 events, and a 3-hour shift within the
    day's range ranks above the normal events after the look (below them without it: the
    local trend or baseline followed it)."""
    events = every_minute(seed)
    labels = np.zeros(len(events))
    labels[8 * 1440 + 600 : 8 * 1440 + 780] = 1
    after = slice(5 * 1440, None)
    aucs = {}
    for look in (True, False):
        det = Detector(config(**{"evidence.late_period": look}))
        out = det.process_many(events)
        (bank,) = det.banks.values()
        st = bank.state
        if look:
            assert st.ev_mode[0].tolist() == [SEASONAL] and int(st.ev_period[0, 0]) == 288
            assert int(st.ev_daily[0, 0]) == SLOTS and float(st.ev_per_slot[0]) == 5.0
            assert int(st.ev_origin[0, 0]) == 0 and int(st.ev_day0[0]) == NO_DAY_LOOK
        det.close()
        aucs[look] = roc_auc_score(labels[after], out.score[after])
    assert aucs[True] > 0.95 and aucs[False] < 0.9


def test_a_metric_sampled_every_minute_alerts_about_as_often_a_day_as_every_five_minutes(
) -> None:
    """A tail probability per event made a 1-minute feed alert several times as often a day
    as the same process every 5 minutes; read over the events in ``score_interval`` (300 s)
    the two alert about as often, and a 3-hour shift is still flagged at 1 minute, its record
    saying over how many events its p was read."""
    flags = {"minute": 0, "per event": 0, "five minutes": 0}
    for seed in (4, 5, 8):
        for name, step, interval in (("minute", 60.0, 300.0), ("per event", 60.0, 0.0),
                                     ("five minutes", 300.0, 300.0)):
            t, x = weekly(seed, days=11, step=step)
            shift = (t - MONDAY >= 8 * 86400 + 36000) & (t - MONDAY < 8 * 86400 + 46800)
            x[shift] += 4.0
            det = Detector(config(score_interval=interval))
            out = det.process_many([Event("w", float(a), (float(b),))
                                    for a, b in zip(t, x, strict=True)])
            det.close()
            assert out.flagged[shift].any()
            record = out.result(int(np.flatnonzero(out.flagged & shift)[0])).as_dict()
            assert record.get("interval_events") == (5.0 if name == "minute" else None)
            assert ("the score reads it over its 5 events" in summary(record)) == (
                name == "minute" and not record["extreme"])
            after_look = (t - MONDAY >= 4 * 86400) & ~shift
            flags[name] += int(out.flagged[after_look].sum())
    assert flags["minute"] <= flags["five minutes"] + 3
    assert flags["per event"] >= 3 * flags["minute"]


def test_score_interval_reads_the_source_clock_and_leaves_a_five_minute_feed_alone() -> None:
    """The step is the warm-up's (a jitter averages away, row numbers have none); a feed
    within INTERVAL_TOLERANCE of one event per interval (NAB's 5-minute files drift to 294 s)
    and events that arrive at random (transactions, a second apart on average) score exactly
    as per event; an older state without the step reads it from the warm-up's timestamps it
    kept."""
    rng = np.random.default_rng(3)
    t = T0 + 60.0 * np.arange(200) + rng.uniform(-20, 20, 200)
    steps = clock_steps(np.stack([t, np.arange(200.0)]),
                        np.stack([np.ones(200, bool), np.zeros(200, bool)]))
    assert abs(steps[0] - 60.0) < 1.0 and steps[1] == 0.0
    assert interval_events(np.array([60.0, 294.0, 0.0]), 300.0).tolist() == [5.0, 1.0, 1.0]
    assert interval_events(np.array([60.0]), 0.0).tolist() == [1.0]
    x = rng.normal(0, 1, 3000)
    x[2000] += 6.0
    arrivals = T0 + np.cumsum(rng.exponential(1.0, 3000))
    random = [Event("r", float(a), (float(v),)) for a, v in zip(arrivals, x, strict=True)]
    np.testing.assert_array_equal(Detector(config()).process_many(random).score,
                                  Detector(config(score_interval=0.0)).process_many(random).score)
    events = [Event("f", T0 + 294.0 * i, (float(v),)) for i, v in enumerate(x)]
    per_event = Detector(config(score_interval=0.0)).process_many(events)
    det = Detector(config())
    np.testing.assert_array_equal(det.process_many(events).score, per_event.score)
    (bank,) = det.banks.values()
    meta, arrays = bank.to_state()
    older = {k: v for k, v in arrays.items() if k != "step"}
    restored = Bank.from_state(bank.fields, bank.window, det.config, meta, older).state
    assert restored.step[: restored.size].tolist() == [pytest.approx(294.0)]
    det.close()


def test_a_record_in_a_source_first_day_counts_where_the_calibrated_score_agrees() -> None:
    """A warm-up of 200 events sees 3.3 hours of a 1-minute source's day, and a daily cycle
    crept past its range all through the rest of its first day: there a record counts only
    where the calibrated score is at least ``extreme_floor`` or it lies beyond FIRST_DAY_FAR
    margins; after a day on the source's clock, or with no clock, every record counts. A 10-sd
    spike on a 1-minute source's first day is still flagged."""
    bank = Bank(("v",), 16, config())
    rows = np.repeat(bank.add_source("s"), 5)
    bank.state.ext_lo[0], bank.state.ext_hi[0] = 0.0, 10.0
    # each a record (beyond the seen range by 5 % of it), the third by 3 such margins
    values = np.array([[10.8], [11.5], [16.0], [16.9], [17.9]])
    age = np.array([3600.0, 3600.0, 3600.0, 86400.0 + 60, np.nan])
    ctx = ScoreContext(bank.state, rows, Groups.of(rows), values, pattern_stat=np.zeros(5),
                       age=age)
    ctx.score = np.array([0.3, 0.8, 0.3, 0.3, 0.3])
    ExtremeValue(0.05, floor=0.7).apply(ctx)
    assert ctx.extreme.tolist() == [False, True, True, True, True]
    for seed in (4, 5):
        t, x = weekly(seed, days=1, step=60.0)
        x[900] += 10.0
        out = Detector(config()).process_many([Event("w", float(a), (float(b),))
                                               for a, b in zip(t, x, strict=True)])
        assert out.flagged[900] and out.extreme[900]


def test_a_day_look_on_several_channels_switches_only_those_a_daily_profile_fits() -> None:
    """Four channels at 1-minute sampling, three following one daily cycle and one noise: the
    look at a day judges the cycle's channels it fits against daily profiles of slots, each
    with its own clock origin; the noise keeps its baseline, and a 3-hour shift of one
    channel is found."""
    rng = np.random.default_rng(5)
    n = 8 * 1440
    cycle = np.sin(2 * np.pi * np.arange(n) / 1440)
    x = np.stack([3 * cycle, 2 * cycle, -3 * cycle, np.zeros(n)], axis=1) + rng.normal(0, 1, (n, 4))
    x[6 * 1440 + 300 : 6 * 1440 + 480, 1] += 4.0
    det = Detector(config())
    out = det.process_many([Event("m", MONDAY + 60.0 * i, tuple(map(float, row)),
                                  fields=tuple("abcd")) for i, row in enumerate(x)])
    (bank,) = det.banks.values()
    st = bank.state
    daily = st.ev_daily[0] == SLOTS
    assert daily[[0, 2]].all() and not daily[3]
    assert (st.ev_origin[0][daily] == 0).all() and (st.ev_origin[0][~daily] == -1).all()
    assert out.flagged[6 * 1440 + 300 : 6 * 1440 + 480].any()
    det.close()


def test_scores_do_not_depend_on_how_events_are_batched_across_the_looks() -> None:
    """Both looks cut the batch where they happen, and a record of a channel judged against a
    local trend before the look is gated as it was when scored (it was read after the batch,
    when the look had ended the trend: a record on day 0 then scored 1.0 in one batch)."""
    events = every_minute(4, days=6)
    whole = Detector(config()).process_many(events)
    det = Detector(config())
    parts = [det.process_many(events[i : i + 997]) for i in range(0, len(events), 997)]
    np.testing.assert_array_equal(np.concatenate([p.score for p in parts]), whole.score)


def test_a_day_look_fills_a_gap_and_gives_up_on_a_day_mostly_missing() -> None:
    """An empty slot of the three days (a gap in the feed) is interpolated; with more than a
    third of them empty the source is not looked at (and never is)."""
    events = every_minute(5, days=6)
    for hours, looked in ((3, True), (30, False)):
        fed = [e for e in events if not 1.5 * 86400 <= e.ts - MONDAY < (1.5 * 24 + hours) * 3600]
        det = Detector(config())
        det.process_many(fed)
        (bank,) = det.banks.values()
        assert (int(bank.state.ev_daily[0, 0]) == SLOTS) == looked
        assert int(bank.state.ev_day0[0]) == NO_DAY_LOOK
        det.close()


@pytest.mark.parametrize("split", [3000, 7000])  # keeping its days, after the look
def test_a_restarted_detector_continues_a_day_look_exactly(split: int) -> None:
    """The events kept for the look at a day and its first day's number live in the saved
    state: restarted while keeping them or after the look, the scores go on as if the
    detector had not stopped."""
    assert_a_restart_continues(every_minute(4, days=6), split)


def test_a_deviation_record_names_the_forecast_it_was_judged_against() -> None:
    """A flagged event's deviation family says what its channel was judged against as it was
    scored (a daily profile, a local trend), and the explanation says it in words."""
    from neurogate.cli.results import summary

    t, x = weekly(4, days=14)
    x[10 * 288 : 10 * 288 + 50] += 4.0  # day 10, a Thursday, at the day's low (not a record)
    trend = rising(50)
    trend[800:950] -= 4.0  # below the trend, inside the range seen
    for events, start, name, words in (
            ([Event("w", float(a), (float(b),)) for a, b in zip(t, x, strict=True)],
             10 * 288, "daily", "value is far from its usual value at this time of day"),
            ([Event("s", T0 + 60.0 * i, (float(v),)) for i, v in enumerate(trend[:, 0])],
             800, "trend", "value is far from its local trend")):
        out = Detector(config()).process_many(events)
        flagged = [r.as_dict() for r in list(out)[start : start + 20] if r.flagged]
        assert flagged and not any(r["extreme"] for r in flagged)
        assert {r["families"]["deviation"]["forecast"] for r in flagged} == {name}
        assert any(words in summary(r) for r in flagged)
        assert {FORECAST_NAMES[int(f)] for f in out.forecast[start : start + 50]} == {name}


def test_the_calendar_reads_the_wall_clock_of_the_configured_timezone() -> None:
    """A business metric in Tokyo follows Tokyo's day and weekend; read in UTC, its weekend
    began 9 hours early and ended 9 hours late, and alerted every week. With ``timezone`` set
    the codes' buckets, the daily profile and its weekend offset read Tokyo's clock. An
    unknown name is a configuration error."""
    from zoneinfo import ZoneInfo

    from neurogate.engine.config import ConfigError
    from neurogate.engine.patterns import wall_clock

    flags = {"UTC": 0, "Asia/Tokyo": 0}
    for seed in (4, 5, 8):
        rng = np.random.default_rng(seed)
        t = MONDAY + 300.0 * np.arange(288 * 21)
        local = wall_clock(t, ZoneInfo("Asia/Tokyo"))
        on_weekend = ((local // 86400 + 3) % 7) >= 5
        wave = 3 * np.sin(2 * np.pi * ((local % 86400) / 86400 + rng.uniform(0, 1)))
        x = (10 + np.where(on_weekend, 0.6 * wave, wave) - 1.5 * on_weekend
             + rng.normal(0, 1, t.size))
        events = [Event("w", float(a), (float(b),)) for a, b in zip(t, x, strict=True)]
        for zone in flags:
            flags[zone] += int(Detector(config(timezone=zone)).process_many(
                events).flagged[4 * 288:].sum())
    assert flags["Asia/Tokyo"] < flags["UTC"] / 5
    with pytest.raises(ConfigError, match="IANA time zone"):
        config(timezone="Mars/Olympus")


def test_a_weekend_offset_has_blocks_of_an_hour_or_of_at_least_12_events() -> None:
    """At 5-minute sampling one per hour; coarser, blocks of 12 events or more (an offset
    learnt from two weekend days' events of one phase is as noisy as two events)."""
    assert [_blocks(p) for p in (288, 96, 24, 7)] == [24, 8, 2, 1]


def test_a_period_at_period_max_fits_its_profile() -> None:
    """A warm-up long enough to show a period at ``period_max`` tries the lags beside its
    autocorrelation peak, never one beyond ``period_max`` (the profile's length): a wave of
    period 100.7 peaked at 100 and its profile of 101 overflowed a profile of 100."""
    t = np.arange(1200)
    x = np.sin(2 * np.pi * t / 100.7) + np.random.default_rng(33).normal(0, 0.05, t.size)
    det = Detector(config(warmup=900, **{"evidence.period_max": 100}))
    det.process_many([Event("d", T0 + 60.0 * i, (float(v),)) for i, v in enumerate(x)])
    bank, row = det._sources["d"]  # it scored the rest (it raised on lag 101 before)
    assert int(bank.state.ev_period[row, 0]) <= 100  # 101 fits closer, but is too long
    det.close()


def test_a_source_without_a_period_is_left_as_it_was_by_the_late_look() -> None:
    """White noise shows no period in 864 events either: its scores are the same with and
    without the late look."""
    x = np.random.default_rng(32).normal(0, 1, (1200, 1))
    with_look, _ = score(x, config())
    without, _ = score(x, config(**{"evidence.late_period": False}))
    np.testing.assert_array_equal(with_look, without)


def rising(seed: int, n: int = 1400) -> np.ndarray:
    """White noise on a rise of 15 noise sd over 1,400 events (the single-metric corpus's
    trend): it leaves its warm-up's range after a few hundred events."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, n) + np.linspace(0, 15 * n / 1400, n))[:, None]


def test_a_shift_on_a_trend_is_judged_against_a_local_trend() -> None:
    """Once a rising series has left its warm-up's range its value codes sit in the top bin,
    so a 4-sd level shift on it (events 800-949) alerted at its start and then ranked below
    normal events; judged against a local trend (``evidence.trend``) it ranks above them
    (and alerts at its start; the false flags of a trend: the next test)."""
    for seed in (50, 51):
        x = rising(seed)
        x[800:950] += 4.0
        labels = np.zeros(len(x))
        labels[800:950] = 1
        det = Detector(config())
        on = det.process_many([Event("s", T0 + 60.0 * i, (float(v),))
                               for i, v in enumerate(x[:, 0])])
        (bank,) = det.banks.values()
        assert bank.state.ev_mode[0].tolist() == [TREND]
        det.close()
        off, _ = score(x, config(**{"evidence.trend": False}))
        assert roc_auc_score(labels[200:], on.score[200:]) > 0.8
        assert roc_auc_score(labels[200:], off[200:]) < 0.5
        assert on.flagged[800:810].any()  # it alerts at its start


def test_a_trend_sets_records_that_count_only_when_its_forecast_agrees() -> None:
    """A rising series sets a record every few events; judged against a local trend, a record
    counts as a new extreme only where the trend's own forecast agrees (the deviation family's
    score, Bonferroni over the source's families, at least ``extreme_floor``; the calibrated
    score also counted the codes above the warm-up's range, new on any rising series): fewer
    false flags on normal trends, and an 8-sd spike is still flagged (the trend's forecast
    sees it; one was missed without it)."""
    flags = {True: 0, False: 0}
    for seed in range(50, 55):
        for trend in (True, False):
            _, results = score(rising(seed), config(**{"evidence.trend": trend}))
            flags[trend] += sum(r.flagged for r in results)
            if trend:  # a record that counted: the trend's forecast found it unusual
                assert all(2 * r.families["deviation"] <= 0.2 for r in results
                           if r.extreme and r.flagged)
        x = rising(seed)
        x[1000] += 8.0
        _, results = score(x, config())
        assert results[1000].flagged
    assert flags[True] < 0.6 * flags[False]


def assert_a_restart_continues(events: list[Event], split: int) -> BatchResult:
    """A detector reopened on its store after ``events[:split]`` scores the rest exactly as
    one that went on (returned: the one that went on)."""
    from neurogate.engine.stores import MemoryStore

    whole = Detector(config()).process_many(events)
    store = MemoryStore()
    first = Detector(config(), store)
    first.process_many(events[:split])
    first.close()
    rest = Detector(config(), store).process_many(events[split:])
    np.testing.assert_array_equal(rest.score, whole.score[split:])
    np.testing.assert_array_equal(rest.family_p, whole.family_p[split:])
    return whole


@pytest.mark.parametrize("split", [1500, 1800, 2200])  # weekday, first weekend, after it
def test_a_restarted_detector_continues_a_weekend_offset_exactly(split: int) -> None:
    """The weekend offset and how much of it was learnt live in the saved state: restarted
    before, inside or after the first weekend, the scores go on as if it had not stopped."""
    t, x = weekly(4, days=10)
    assert_a_restart_continues(
        [Event("w", float(a), (float(b),)) for a, b in zip(t, x, strict=True)], split)


@pytest.mark.parametrize("split", [150, 600, 900])  # warming, before and inside the shift
def test_a_restarted_detector_continues_a_local_trend_exactly(split: int) -> None:
    """A local trend's level and slope live in the saved state: restarted anywhere, the scores
    go on as if the detector had not stopped."""
    x = rising(50)
    x[800:950] += 4.0
    assert_a_restart_continues(
        [Event("s", T0 + 60.0 * i, (float(v),)) for i, v in enumerate(x[:, 0])], split)


def shifted_noise(seed: int) -> np.ndarray:
    """White noise with a 4-sd level shift over events 500-649 (a single metric)."""
    x = np.random.default_rng(seed).normal(0, 1, (1000, 1))
    x[500:650] += 4.0
    return x


def test_a_univariate_level_shift_stays_scored_while_it_lasts() -> None:
    """The shift alerts at its start (patterns); without the episode carry the new codes are
    learnt within tens of events and the shift scores like normal data; with it, the shift
    scores at least 0.9 until it ends, alerts no more often, and the score falls back after."""
    for seed in (21, 22):
        x = shifted_noise(seed)
        carried, on = score(x, config())
        learnt, off = score(x, config(**{"evidence.confirm": False}))
        assert any(r.flagged for r in on[500:510])
        assert np.median(learnt[550:650]) < 0.5
        assert np.quantile(carried[520:650], 0.1) >= 0.9
        assert sum(r.flagged for r in on[500:650]) <= sum(r.flagged for r in off[500:650])
        assert np.median(carried[700:1000]) < 0.5


def test_which_single_channels_confirm_an_episode_or_follow_a_trend() -> None:
    """White noise and AR(1) noise (coefficient 0.8, against a slow baseline) confirm; a trend
    (a slow baseline lags it for ever) and a random walk do not. With ``evidence.trend`` the
    trend is judged against a local trend instead, and the others are left out; the random
    walk (its line fits it closely too) never is."""
    rng = np.random.default_rng(24)
    n = 200
    ar = np.zeros(n)
    for i in range(1, n):
        ar[i] = 0.8 * ar[i - 1] + rng.normal()
    warm = np.column_stack([rng.normal(0, 1, n), ar, rng.normal(0, 1, n) + np.linspace(0, 3, n),
                            np.cumsum(rng.normal(0, 1, n))])
    med = np.median(warm, axis=0)
    mode, _, _, resid = forecasts(warm, med, 0)
    assert mode.tolist() == [BASELINE, NONE, BASELINE, NONE]
    varies = np.ones(4, dtype=bool)
    confirming, confirm = _univariate(warm, med, mode, resid, varies, confirm=True)
    assert confirm == 1 and confirming.tolist() == [BASELINE, BASELINE, NONE, NONE]
    trend, confirm = _univariate(warm, med, mode, resid, varies, confirm=True, trend=True)
    assert confirm == 0 and trend.tolist() == [NONE, NONE, TREND, NONE]
    walk = warm[:, [3]]
    judged, _ = _univariate(walk, med[[3]], mode[[3]], resid[:, [3]], varies[:1], True, True)
    assert judged.tolist() == [NONE]


def test_a_carried_score_never_alerts_even_without_repeat_suppression() -> None:
    """With ``suppress_window`` 0 every score at the threshold alerts, but a carried one is the
    episode's: it is marked suppressed and not flagged."""
    x = shifted_noise(21)
    _, results = score(x, config(suppress_window=0))
    carried = [r for r in results[520:650] if r.score >= 0.9 and r.suppressed]
    assert len(carried) > 100 and not any(r.flagged for r in carried)


def test_an_alert_after_a_chronic_deviation_opens_no_carried_episode() -> None:
    """A deviation already unusual on most of the last 40 events is the forecast's misfit,
    not the alert's: that alert is not carried; the same alert after normal events is."""
    bank = Bank(("v",), 16, config())
    rows = np.repeat(bank.add_source("s"), 62)
    score = np.r_[np.zeros(60), 0.95, 0.1]
    for before, carried in ((0.5, True), (1e-6, False)):
        bank.state.ep_level[0], bank.state.ep_low[0] = 0.0, 0.0
        ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((62, 1)),
                           pattern_stat=np.zeros(62))
        ctx.score = score.copy()
        ctx.confirm_p = np.r_[np.full(60, before), 1e-6, 1e-6]
        EpisodeCarry(0.9, hold=1e-3, hold_max=300, grace=1).apply(ctx)
        assert (ctx.score[-1] >= 0.9) == carried


@pytest.mark.parametrize("kind", ["trend", "counts", "walk"])
def test_the_episode_carry_never_raises_an_alert(kind: str) -> None:
    """Carried scores never beat the alert that opened their episode, so every flag with the
    carry is a flag without it (it can only keep a later, lower alert in the same episode
    quiet), and the family is never reported as a flag's evidence."""
    rng = np.random.default_rng(23)
    n = 2000
    x = {"trend": rng.normal(0, 1, n) + np.linspace(0, 15, n),
         "counts": rng.poisson(3, n).astype(float),
         "walk": np.cumsum(rng.normal(0, 1, n))}[kind][:, None]
    x[900:1000] += 5.0
    carry = {"evidence.trend": False}  # else a trend is judged against a local trend
    _, on = score(x, config(**carry))
    _, off = score(x, config(**carry, **{"evidence.confirm": False}))
    flags_on = {i for i, r in enumerate(on) if r.flagged}
    assert flags_on <= {i for i, r in enumerate(off) if r.flagged}
    assert not any("deviation" in r.families for r in on)


@pytest.mark.parametrize("channels", [1, 2])
def test_a_clean_wave_whose_period_is_not_a_whole_number_of_events_is_not_flagged(
        channels: int) -> None:
    """A noiseless sine of period 37.7 events (and a cosine of another period beside it) slips
    against a profile of 38 phases a little more every period: judged against the profile
    alone, 115 of 2,800 events were flagged; the last period's value at the same phase slips
    by one period's worth only."""
    t = np.arange(3000)
    waves = np.column_stack([np.sin(2 * np.pi * t / 37.7), np.cos(2 * np.pi * t / 29.0)])
    _, results = score(waves[:, :channels], config())
    assert sum(r.flagged for r in results[200:]) <= 1


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_the_warm_up_replay_counts_seed_weight_events_each_in_the_pattern_history(
        weight: float) -> None:
    bank = Bank(("v",), 16, config(**{"evidence.seed_weight": weight}))
    row = bank.add_source("s")
    bank.seed_pattern_history(row, np.array([1.0, 2.0, 3.0, 30.0]))
    assert bank.state.ev_total[row, PATTERNS] == pytest.approx(4 * weight)
    assert bank.state.ev_hist[row, PATTERNS].sum() == pytest.approx(4 * weight)


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.5])
def test_the_warm_up_starts_the_deviation_and_relation_histories(weight: float) -> None:
    """Each warm-up event from the first full smoothing ring on counts ``seed_weight`` events,
    so an incident soon after the warm-up meets a grown history, not the prior."""
    cfg = config(**{"evidence.seed_weight": weight})
    # three channels following a factor (relation judges them) and heavy-tailed noise that
    # its own baseline forecasts closer than the others do (deviation judges it)
    values = np.column_stack([correlated(cfg.warmup, 3, seed=9),
                              np.random.default_rng(9).laplace(0, 1, cfg.warmup)])
    det = Detector(cfg)
    det.process_many([Event("s", T0 + 60.0 * i, tuple(float(v) for v in row),
                            fields=("a", "b", "c", "d")) for i, row in enumerate(values)])
    bank, row = det._sources["s"]
    ring = cfg.evidence.smoothing * LONG
    for family in (DEVIATION, RELATION):
        assert bank.state.ev_total[row, family] == pytest.approx(
            weight * (cfg.warmup - ring + 1))
        assert bank.state.ev_hist[row, family].sum() == pytest.approx(
            bank.state.ev_total[row, family])
    det.close()


def test_relation_statistics_of_the_warm_up_are_cross_fitted() -> None:
    """Judged by a covariance fitted on themselves, few events of many channels look closer to
    the others than the next events will; each half judged by the other half's fit does not
    (mean |z| of fresh events: the yardstick)."""
    rng = np.random.default_rng(3)
    channels, n = 12, 60
    mix = rng.normal(0, 1, (channels, channels))
    warm, fresh = rng.normal(0, 1, (n, channels)) @ mix, rng.normal(0, 1, (4000, channels)) @ mix
    related = np.ones(channels, dtype=np.int64)
    mu = warm.mean(axis=0)
    prec = _precision((warm - mu).T @ (warm - mu) / n, 0.01)

    def size(x: np.ndarray) -> float:
        return float(np.mean(np.abs((x - mu) @ prec) / np.sqrt(np.diag(prec))))

    in_sample, out_of_sample = size(warm), size(fresh)
    cross = float(np.mean(np.abs(_cross_fitted(warm, related, 0.01))))
    assert in_sample < 0.85 * out_of_sample
    assert cross > 0.9 * out_of_sample


@pytest.mark.parametrize(("warmup", "events"), [(200, 60), (800, 200)])
def test_the_pattern_history_starts_with_at_least_min_history_events(warmup: int,
                                                                      events: int) -> None:
    """The last quarter of the warm-up replay, but at least MIN_HISTORY events' worth: with
    the default warm-up of 200 the quarter made 25, so the first events after the warm-up met
    the union-bound prior alone."""
    cfg = config(warmup=warmup)
    det = Detector(cfg)
    det.process_many([Event("s", T0 + 60.0 * i, (float(v),), fields=("v",))
                      for i, v in enumerate(np.random.default_rng(4).normal(0, 1, warmup))])
    bank, row = det._sources["s"]
    assert bank.state.ev_total[row, PATTERNS] == pytest.approx(events * cfg.evidence.seed_weight)
    assert bank.state.ev_total[row, PATTERNS] >= MIN_HISTORY
    det.close()


def test_noisy_sensors_are_not_flagged_as_the_warm_up_ends() -> None:
    """Eight noisy 8-sensor files (evaluation/sensors.py) with the default warm-up of 200: the
    30 events after it were flagged 14 times (now 1) when the pattern history started below
    MIN_HISTORY."""
    early = 0
    for f in sensors.generate(sensors.SensorSettings(files=8, seed=2)):
        det = Detector(config())
        out = det.process_many([Event(f.name, float(t), tuple(v), fields=sensors.CHANNELS)
                                for t, v in zip(f.ts.tolist(), f.values.tolist(), strict=True)])
        early += int(out.flagged[200:230].sum())
        det.close()
    assert early <= 4, early


def test_a_univariate_source_scores_differently_with_a_lighter_seed() -> None:
    values = independent(900, seed=14)[:, 2:3]
    light, _ = score(values, config())  # seed_weight 0.5
    full, _ = score(values, config(**{"evidence.seed_weight": 1.0}))
    assert not np.array_equal(light, full)


# -- holding back learning during an incident ----------------------------------------------


def test_a_sustained_shift_stays_unusual_while_learning_is_held() -> None:
    values = correlated(2600, 3, seed=4)
    values[1500:2300, 1] += 1.5 * values[:1500, 1].std()  # a long shift of one channel
    held, _ = score(values, config())
    learning, _ = score(values, config(**{"evidence.hold": 0.0, "evidence.sustained": 0.0}))
    late = slice(1600, 1800)  # 100-300 events into the incident (hold_max is 300)
    assert np.median(held[late]) > 0.9
    assert np.median(held[late]) > np.median(learning[late]) + 0.2


def test_a_moderate_sustained_incident_stays_unusual() -> None:
    """One channel's noise doubles for 400 events: unusual (p ~ 0.003), never below ``hold``.
    Learnt as usual it became normal within 150 events; once its run outlasts a smoothing ring
    it is taken back out of the history and learning holds. Before that, and on the normal
    events before it, nothing changes (runs shorter than a ring are learnt as before)."""
    values = correlated(2000, 4, seed=12, noise=0.3)
    values[1200:1600, 1] += np.random.default_rng(13).normal(0, 0.6, 400)
    held, _ = score(values, config())
    learning, _ = score(values, config(**{"evidence.sustained": 0.0}))
    late = slice(1350, 1600)
    assert np.median(learning[late]) < 0.7
    assert np.median(held[late]) > 0.9
    np.testing.assert_array_equal(held[:1240], learning[:1240])


def test_a_sustained_incident_alerts_at_its_start_and_as_it_escalates() -> None:
    """Suppression's episodes: an 800-event shift of one channel alerted on 66 of its events
    (its evidence kept growing, so each score beat the last 30); now at its start and where
    its bits beyond the threshold at least double, and once with ``escalation`` inf. The
    scores are the same: only the flags change."""
    values = correlated(2600, 3, seed=4)
    values[1500:2300, 1] += 1.5 * values[:1500, 1].std()
    incident = range(1500, 2300)
    runs = {esc: score(values, config(escalation=esc)) for esc in (0.0, 2.0, math.inf)}
    flags = {esc: [i for i, r in enumerate(res) if r.flagged] for esc, (_, res) in runs.items()}
    inside = {esc: [i for i in f if i in incident] for esc, f in flags.items()}
    assert set(flags[2.0]) <= set(flags[0.0]) and set(flags[math.inf]) <= set(flags[2.0])
    assert inside[0.0][0] == inside[2.0][0] == inside[math.inf][0] == 1500  # the onset alerts
    assert len(inside[0.0]) > 50 and len(inside[math.inf]) == 1
    assert 2 <= len(inside[2.0]) <= len(inside[0.0]) // 5
    s = runs[2.0][0]
    excess = s[inside[2.0]] / (1 - s[inside[2.0]]) - 9.0  # bits beyond the threshold's 9
    assert (excess[1:] >= np.maximum(2 * excess[:-1], excess[:-1] + 1)).all()
    np.testing.assert_array_equal(runs[0.0][0], s)
    np.testing.assert_array_equal(runs[math.inf][0], s)
    alerts = [runs[2.0][1][i] for i in inside[2.0]]  # the first opens the episode, then updates
    assert [r.escalation for r in alerts] == [False] + [True] * (len(alerts) - 1)
    assert alerts[1].as_dict()["escalation"] is True
    assert "ESCALATION" in describe(alerts[1].as_dict())[0]


@pytest.mark.parametrize(("escalation", "alerts", "escalations"), [
    (0.0, [0, 36, 40, 76, 107], [False] * 5),  # the window rule alone
    (2.0, [0, 36, 40, 76, 107], [False, True, True, True, False]),
    (math.inf, [0, 40, 76, 107], [False, True, True, False]),
])
def test_an_episode_alerts_again_only_where_it_escalates(
    escalation: float, alerts: list[int], escalations: list[bool],
) -> None:
    """Scores at 0.905 hold an episode open (9.5 bits, threshold 9). 0.92 opens it (2.5 bits
    beyond the threshold), 0.95 escalates it (10 bits beyond: more than twice 2.5), and each
    new extreme (score 1) escalates it, the second once it beats the last 30 scores; after 30
    scores below the threshold the episode closes and 0.91 opens a new one. With
    ``escalation`` inf only the extremes escalate."""
    bank = Bank(("v",), 16, config())
    scores = np.r_[0.92, np.full(35, 0.905), 0.95, np.full(3, 0.905), 1.0,
                   np.full(35, 0.905), 1.0, np.full(30, 0.2), 0.91]
    rows = np.repeat(bank.add_source("s"), scores.size)
    ctx = ScoreContext(bank.state, rows, Groups.of(rows), np.zeros((scores.size, 1)),
                       pattern_stat=np.zeros(scores.size))
    ctx.score = scores.copy()
    Suppression(30, threshold=0.9, escalation=escalation).apply(ctx)
    flagged = np.flatnonzero((scores >= 0.9) & ~ctx.suppressed)
    assert flagged.tolist() == alerts
    assert ctx.escalated[flagged].tolist() == escalations


def test_a_hold_shorter_than_a_ring_leaves_sustained_runs_alone() -> None:
    """``hold_max`` 0 means "never hold": a moderate run that outlasts the ring is neither
    taken out of the history nor held (it was, for one event, when the run was confirmed)."""
    values = correlated(2000, 4, seed=12, noise=0.3)
    values[1200:1600, 1] += np.random.default_rng(13).normal(0, 0.6, 400)
    for hold_max in (0, 39):
        never, _ = score(values, config(**{"evidence.hold_max": hold_max}))
        only_hold, _ = score(values, config(**{"evidence.hold_max": hold_max,
                                               "evidence.sustained": 0.0}))
        np.testing.assert_array_equal(never, only_hold)


def test_an_open_run_is_judged_without_its_own_events() -> None:
    rng = np.random.default_rng(0)
    normal = np.abs(rng.normal(0, 1, 500))
    run = np.full(30, 3.0)
    hist = np.zeros(BINS, dtype=np.float32)
    np.add.at(hist, np.minimum((normal / 0.1).astype(int), BINS - 1), 1.0)
    alone = tail_probability(hist, 500.0, 2.5, 0.1, 0.0)
    with_run = hist.copy()
    np.add.at(with_run, np.full(30, 30), 1.0)
    assert tail_probability(with_run, 530.0, 2.5, 0.1, 0.0) > 3 * alone
    assert _tail_without(with_run, 530.0, run, np.ones(30), 30, 2.5, 0.1) == pytest.approx(alone)
    hists, totals = with_run[None, None].copy(), np.array([[530.0]])
    _forget(hists, totals, 0, 0, run, np.ones(30), 30, 0.1)
    np.testing.assert_array_equal(hists[0, 0], hist)
    assert totals[0, 0] == 500.0


@pytest.mark.slow
def test_hold_max_bounds_how_long_a_family_holds_back() -> None:
    values = correlated(2600, 3, seed=4)
    values[1000:, 1] += 1.5 * values[:1000, 1].std()  # a new normal that never ends
    bounded, _ = score(values, config(**{"evidence.hold_max": 200}))
    assert np.median(bounded[2200:]) < np.median(bounded[1050:1150])


# -- one meaning for the score -----------------------------------------------------------------


@pytest.mark.slow
def test_normal_events_reach_the_threshold_as_rarely_on_1_and_40_noisy_channels() -> None:
    """On normal data (no anomaly), the share of events at or above the default threshold is
    small on a clean 1-channel source and on a noisy 40-channel source alike; with the score
    of raw pattern surprise (not calibrated) the noisy source is above it far more often."""
    cfg = config()
    n = 4000
    t = np.arange(n)
    clean = (np.sin(2 * np.pi * t / 96) + np.random.default_rng(5).normal(0, 0.02, n))[:, None]
    noisy = correlated(n, 40, seed=6, noise=1.0)
    rates = {}
    for name, vals in (("clean", clean), ("noisy", noisy)):
        s, _ = score(vals, cfg)
        rates[name] = float((s[cfg.warmup + 500 :] >= cfg.threshold).mean())
    assert rates["clean"] < 0.01 and rates["noisy"] < 0.01
    raw, _ = score(noisy, config(**{"evidence.calibrate": False, "evidence.relation": False}))
    assert float((raw[cfg.warmup + 500 :] >= cfg.threshold).mean()) > 5 * max(rates["noisy"],
                                                                               1e-3)


# -- wild input (issue: one value or timestamp must not silence a source) --------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_a_wild_warmup_value_does_not_silence_the_source(channels: int) -> None:
    """±1e308 during warm-up used to stretch the range so far that every later score was 0."""
    values = correlated(900, channels, seed=7) + np.sin(np.arange(900) / 8)[:, None]
    values[50, 0], values[120, -1] = 1e308, -1e308
    values[700, 0] += 8 * values[200:600, 0].std()  # a spike after warm-up
    s, results = score(values, config())
    assert np.isfinite(s[200:]).all()
    assert (s[300:700] > 0.01).mean() > 0.25  # scores still vary with the data (they were 0)
    assert results[700].flagged


def test_an_event_far_in_the_future_is_rejected_without_moving_the_clock() -> None:
    cfg = config(warmup=20)
    det = Detector(cfg)
    now = T0 + 10_000.0
    early = [Event("s", T0 + 60.0 * i, (float(i % 7),)) for i in range(30)]
    det.process_many(early, now=now)
    wild = det.process_many([Event("s", 9.9e10, (1.0,))], now=now).result(0)
    assert wild.status == "rejected" and wild.reason == "future_timestamp"
    later = [Event("s", T0 + 60.0 * i, (float(i % 7),)) for i in range(30, 40)]
    out = det.process_many(later, now=now)
    assert all(r.status == "scored" for r in out)  # the source's clock did not move
    near = det.process_many([Event("s", now + 3600.0, (1.0,))], now=now).result(0)
    assert near.status == "scored"  # within max_future_skew (one day by default)
    unbounded = Detector(config(warmup=20, max_future_skew=math.inf))
    assert unbounded.process_many([Event("s", 9.9e10, (1.0,))], now=now).result(0).status == (
        "warming")


# -- state: restarts and batches ---------------------------------------------------------------


@pytest.mark.parametrize("split", [150, 1100, 1700])  # warming, before and inside the incident
def test_a_restarted_detector_continues_the_evidence_state_exactly(split: int) -> None:
    """Baselines, covariances, histories and held counters live in the saved state: a
    detector reopened on the store after a flush scores exactly like one that went on."""
    from neurogate.engine.stores import MemoryStore

    values = correlated(2200, 3, seed=8)
    values[1500:2000, 0] += 2 * values[:1500, 0].std()
    fields = ("a", "b", "c")
    events = [Event("m", T0 + 60.0 * i, tuple(map(float, row)), fields=fields)
              for i, row in enumerate(values)]
    cfg = config()
    whole = Detector(cfg).process_many(events)
    store = MemoryStore()
    first = Detector(cfg, store)
    first.process_many(events[:split])
    first.close()
    second = Detector(cfg, store)
    rest = second.process_many(events[split:])
    np.testing.assert_array_equal(rest.score, whole.score[split:])
    np.testing.assert_array_equal(rest.family_p, whole.family_p[split:])
    np.testing.assert_array_equal(rest.flagged, whole.flagged[split:])  # Suppression's episode
    np.testing.assert_array_equal(rest.suppressed, whole.suppressed[split:])


def test_a_restarted_detector_continues_a_carried_episode_exactly() -> None:
    """An open episode (rules.EpisodeCarry: its level, its events, the recent share of low
    deviation) lives in the saved state too: restarted inside a carried shift, the scores
    go on as if the detector had not stopped."""
    from neurogate.engine.stores import MemoryStore

    x = shifted_noise(21)
    events = [Event("u", T0 + 60.0 * i, (float(v),)) for i, v in enumerate(x[:, 0])]
    cfg = config()
    whole = Detector(cfg).process_many(events)
    assert whole.score[560] >= 0.9 and not whole.flagged[560]  # carried, not alerting
    store = MemoryStore()
    first = Detector(cfg, store)
    first.process_many(events[:540])
    first.close()
    rest = Detector(cfg, store).process_many(events[540:])
    np.testing.assert_array_equal(rest.score, whole.score[540:])


@pytest.mark.parametrize("split", [500, 864, 1000])  # while keeping values, at, after the look
def test_a_restarted_detector_continues_the_late_look_exactly(split: int) -> None:
    """The values kept for the late look for a period live in the saved state: restarted
    before, at or after the look, the scores go on as if the detector had not stopped."""
    events = [Event("d", T0 + 300.0 * i, (float(v),))
              for i, v in enumerate(daily_peaks(1300, seed=24)[:, 0])]
    events += [Event("w", T0 + 300.0 * i + 1, tuple(map(float, row)), fields=tuple("abcd"))
               for i, row in enumerate(daily_channels(1300, seed=27))]
    events.sort(key=lambda e: e.ts)
    whole = assert_a_restart_continues(events, 2 * split)  # two sources, interleaved
    assert np.isfinite(whole.family_p[1800::2, DEVIATION]).all()  # "d" is judged after the look


def test_a_state_saved_before_the_relation_mask_judges_every_channel() -> None:
    """An older engine's saved state has no ``ev_related``: its sources keep the behaviour
    they learned under (every channel related); any other missing array is an error."""
    cfg = config()
    bank = Bank(("a", "b", "c"), 16, cfg)
    bank.add_source("m")
    meta, arrays = bank.to_state()
    assert "ev_related" in arrays
    older = {k: v for k, v in arrays.items() if k != "ev_related"}
    restored = Bank.from_state(bank.fields, 16, cfg, meta, older).state
    assert restored.ev_related[: restored.size].tolist() == [[1, 1, 1]]
    broken = {k: v for k, v in arrays.items() if k != "ev_cov"}
    with pytest.raises(ValueError, match="ev_cov"):
        Bank.from_state(bank.fields, 16, cfg, meta, broken)


def test_a_univariate_state_saved_before_periodic_deviation_keeps_its_behaviour() -> None:
    """An older engine gave univariate channels a slow-baseline mode it never used; restored,
    such a channel must not start judging deviation (on NAB that cost 17 points)."""
    cfg = config()
    bank = Bank(("v",), 16, cfg)
    row = bank.add_source("u")
    bank.state.ev_mode[row] = BASELINE
    meta, arrays = bank.to_state()
    older = {k: v for k, v in arrays.items()
             if k not in ("ev_recent", "ev_confirm", "sup_bits", "sup_quiet", "ev_late")}
    restored = Bank.from_state(bank.fields, 16, cfg, meta, older).state
    assert np.isnan(restored.ev_late[: restored.size]).all()  # nothing kept: no late look
    assert restored.ev_mode[: restored.size].tolist() == [[NONE]]
    assert restored.ev_confirm[: restored.size].tolist() == [0]
    assert restored.sup_bits[: restored.size].tolist() == [0.0]  # no episode open


def test_evidence_does_not_depend_on_the_batch_size() -> None:
    values = correlated(1200, 4, seed=9)
    values[900:1000, 2] = values[900, 2]  # a frozen channel
    fields = tuple("abcd")
    events = [Event("m", T0 + 60.0 * i, tuple(map(float, row)), fields=fields)
              for i, row in enumerate(values)]
    events += [Event("u", T0 + 60.0 * i, (float(math.sin(i / 9)),)) for i in range(1200)]
    events += [Event("v", T0 + 60.0 * i, (float(v),))  # a carried level shift
               for i, v in enumerate(shifted_noise(22)[:, 0])]
    events += [Event("d", T0 + 60.0 * i, (float(v),))  # a late look for a period, at 864
               for i, v in enumerate(daily_wave(1200, seed=23)[:, 0])]
    events += [Event("c", T0 + 60.0 * i, (float(v),))  # confirms until its late look judges
               for i, v in enumerate(daily_peaks(1000, seed=25)[:, 0])]
    events += [Event("w", T0 + 60.0 * i, tuple(map(float, row)), fields=fields)  # 4 channels
               for i, row in enumerate(daily_channels(1000, seed=26))]
    events.sort(key=lambda e: e.ts)
    cfg = config(**{"evidence.deviation": True})
    whole = Detector(cfg).process_many(events)
    det = Detector(cfg)
    parts = [det.process_many(events[i : i + 37]) for i in range(0, len(events), 37)]
    np.testing.assert_array_equal(np.concatenate([p.score for p in parts]), whole.score)
    np.testing.assert_array_equal(np.concatenate([p.flagged for p in parts]), whole.flagged)

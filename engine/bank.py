"""State of all sources that share one field set: warm-up, frozen ranges, value history, the
arrays the post-score rules keep (new extremes, evidence, calibration and suppression
histories: engine/rules.py) and the reservoir the NeuroNet trains on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurogate.engine import evidence
from neurogate.engine.config import EngineConfig
from neurogate.engine.keys import text_hash64
from neurogate.engine.state import (
    Groups,
    Growing,
    extend,
    grouped_cummax_before,
    normalised_windows,
    store_tail,
)

log = logging.getLogger("neurogate.bank")
COUNTERS_TOLD = 5  # sources whose running totals are named per bank (``Bank._tell_counters``)


@dataclass
class Replay:
    """Warm-up events of sources whose range was just frozen, to be counted (not scored)."""

    rows: np.ndarray  # source row of each replayed event
    windows: np.ndarray  # float32 [m, W, C] normalised
    ts: np.ndarray
    has_calendar: np.ndarray
    labels: np.ndarray  # int8, -1 = unknown


@dataclass
class Prepared:
    """A bank's share of a batch after validation and warm-up handling."""

    late: np.ndarray  # bool per input event: rejected, timestamp went backwards
    future: np.ndarray  # bool per input event: rejected, timestamp too far ahead of the clock
    warming: np.ndarray  # bool per input event: consumed by warm-up (score 0)
    done_rows: np.ndarray  # sources whose warm-up ended in this batch (replay them)...
    done_at: np.ndarray  # ...at these input indices (the event that ended it), ascending
    post: np.ndarray  # input indices of scored events, arrival order
    groups: Groups | None  # grouping of the post events by source
    windows: np.ndarray  # float32 [len(post), W, C] normalised windows of the post events


# A warm-up value further than this many central spreads (1st-99th percentile) from the median is
# left out of the source's range: one ±1e308 must not squeeze every later value into one bin
# (measured before: every later score of the source was 0). NAB's warm-ups lose no value to it.
RANGE_FENCE = 20.0


def robust_bounds(warm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max over the warm-up values ``warm`` [r, n, C] of each source and channel,
    leaving out values beyond ``RANGE_FENCE`` central spreads from the median."""
    med = np.median(warm, axis=1, keepdims=True)
    p1, p99 = np.percentile(warm, [1.0, 99.0], axis=1, keepdims=True)
    spread = np.where(p99 > p1, p99 - p1, np.maximum(np.abs(med), 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        inside = np.abs(warm - med) <= RANGE_FENCE * spread
    lo = np.where(inside, warm, np.inf).min(axis=1)
    hi = np.where(inside, warm, -np.inf).max(axis=1)
    return lo, hi


def bins_range(lo: np.ndarray, hi: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(low edge, width) of the value bins for a range [lo, hi]: widened by ``margin`` of its
    span on each side; a flat range gets a span of 10 % of its value (at least 0.1)."""
    span = hi - lo
    span = np.where(span > 0, span, np.maximum(np.abs(hi), 1.0) * 0.1)
    return lo - margin * span, span * (1 + 2 * margin)


def warmup_range(warm: np.ndarray, margin: float,
                 given: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The one place a source's range is decided at the end of its warm-up: (low edge and width
    of the value bins, seen min and max) from its warm-up values ``warm`` [r, n, C]. The bins
    span the warm-up's robust min..max widened by ``margin`` on each side, or exactly a range
    ``given`` up front (lo, hi per channel; margin 0), as NAB gives its detectors."""
    lo, hi = robust_bounds(warm)
    if given is None:
        low, width = bins_range(lo, hi, margin)
    else:
        glo, ghi = (np.broadcast_to(np.asarray(v, dtype=np.float64), lo.shape) for v in given)
        low, width = bins_range(glo, ghi, 0.0)
    return low, width, lo, hi


# Per-source arrays a state saved by an older engine may lack; they keep their fill value, which
# is that engine's behaviour: ``ev_related`` (1: the relation family judges every channel) and
# the open run of unusual events (``ev_run_n`` 0: none open) and the stuck-channel arrays
# (``ev_stuck`` 0: never judged), Suppression's episode (``sup_bits`` 0: none open) and the
# values kept for the late look for a period (``ev_late`` NaN: none kept, so no look) and a
# local trend's slope (``ev_slope``: read only for a channel judged against a local trend) and
# a daily profile's weekend offsets (``ev_daily`` 0: none, ``ev_weekend``, ``ev_weekend_n``)
# and its clock (``ev_origin`` -1: taken from the next event, where its phases now hold;
# ``ev_per_slot`` 1: an event per phase), and the look at a day of a source sampled faster
# (``ev_day0`` NO_DAY_LOOK: none, as before it; ``ev_days``), and a source's step
# (``step``: computed from its warm-up's timestamps as it is read, ``from_state``).
ADDED_LATER = frozenset({"ev_related", "ev_run", "ev_run_w", "ev_run_n", "ev_last", "ev_reps",
                         "ev_stuck", "ev_recent", "ev_confirm", "ep_level", "ep_n",
                         "ep_low", "sup_bits", "sup_quiet", "ev_late", "ev_slope",
                         "ev_weekend", "ev_weekend_n", "ev_daily", "ev_origin", "ev_per_slot",
                         "ev_days", "ev_day0", "step"})


class Bank:
    """Per-source arrays for the sources of one field set (same channel count)."""

    def __init__(self, fields: tuple[str, ...], window: int, config: EngineConfig) -> None:
        self.fields = fields
        self.channels = c = len(fields)
        self.window = window
        self.config = config
        self.sources: list[str] = []
        # ranges given up front (Detector.set_range), read when a source's warm-up ends
        self.given_ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.counters = 0  # sources whose warm-up only rose (``_tell_counters``)
        supp = max(config.suppress_window, 1)
        specs: dict[str, tuple[tuple[int, ...], type, float]] = {
            "n_seen": ((), np.int64, 0),
            "last_ts": ((), np.float64, -np.inf),
            "scope": ((), np.uint64, 0),
            "lo": ((c,), np.float64, 0.0),
            "scale": ((c,), np.float64, 1.0),
            "ext_lo": ((c,), np.float64, 0.0),
            "ext_hi": ((c,), np.float64, 0.0),
            "hist": ((window, c), np.float64, 0.0),
            "warm": ((config.warmup, c), np.float64, 0.0),
            "warm_ts": ((config.warmup,), np.float64, np.nan),
            "warm_cal": ((config.warmup,), np.bool_, False),
            "warm_label": ((config.warmup,), np.int8, -1),
            # seconds between its events, from the warm-up's timestamps (0: none, or events
            # that arrive at random; set when the warm-up ends, ``evidence.sampling_steps``)
            "step": ((), np.float64, 0.0),
            "score_hist": ((supp,), np.float64, 0.0),
            # Suppression's open episode: its highest alert in bits (0 = none), and the scores
            # in a row below the threshold since its last score at the threshold
            "sup_bits": ((), np.float64, 0.0),
            "sup_quiet": ((), np.int64, 0),
            # an alert's open episode (rules.EpisodeCarry): its level (0 = none), its events
            "ep_level": ((), np.float64, 0.0),
            "ep_n": ((), np.int64, 0),
            "ep_low": ((), np.float64, 0.0),  # recent share of deviation's p below hold
        }
        if config.calibration == "rank":
            specs["cal_hist"] = ((config.calibration_window,), np.float64, np.nan)
        ev = config.evidence
        self.relation = ev.relation and c >= 2
        self.deviation = ev.deviation
        self.periodic_only = c < ev.deviation_channels  # deviation judges periodic channels only
        looks = ev.calibrate and self.deviation and ev.late_period  # rules.CalibratedEvidence
        late = evidence.MIN_PERIODS * ev.period_max - config.warmup if looks else 0
        specs.update(evidence.state_specs(c, ev.smoothing * evidence.LONG, self.relation,
                                          ev.period_max if self.deviation else 0,
                                          max(late, 0), looks and ev.weekend))
        if config.neuronet.enabled:
            specs["res"] = ((config.neuronet.reservoir, c), np.float32, 0.0)
            specs["res_n"] = ((), np.int64, 0)
        self.state = Growing(specs)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The bank's part of a detector state (engine/snapshot.py): a JSON-able header and
        every per-source array; ``from_state`` reads them back."""
        st = self.state
        return ({"fields": list(self.fields), "sources": self.sources},
                {name: arr[: st.size] for name, arr in st.arrays.items()})

    @classmethod
    def from_state(cls, fields: tuple[str, ...], window: int, config: EngineConfig,
                   meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Bank:
        """A bank as ``to_state`` saved it (``arrays`` may hold other parts' arrays too)."""
        bank = cls(fields, window, config)
        size = len(meta["sources"])
        bank.state.add(size)
        for name in bank.state.arrays:
            if name in arrays:
                bank.state.arrays[name][:size] = arrays[name]
            elif name not in ADDED_LATER:
                raise ValueError(f"the saved detector state has no {name!r} array")
        if "step" not in arrays:  # its warm-up's timestamps are kept: the same step as now
            warmed = np.flatnonzero(bank.state.n_seen[:size] >= config.warmup)
            bank.state.step[warmed] = evidence.sampling_steps(bank.state.warm_ts[warmed],
                                                              bank.state.warm_cal[warmed])
        if bank.periodic_only and "ev_confirm" not in arrays:
            # an older engine gave univariate channels slow baselines, unused
            modes = bank.state.ev_mode[:size]
            modes[modes != evidence.SEASONAL] = evidence.NONE
        bank.sources = list(meta["sources"])
        return bank

    def judged_sources(self, mode: int) -> int:
        """Sources with a channel the deviation family judges against forecast ``mode``
        (``evidence.SEASONAL``: a seasonal profile; ``evidence.TREND``: a local trend)."""
        modes = self.state.ev_mode[: self.state.size]
        return int((modes == mode).any(axis=1).sum())

    def read_per_interval(self) -> int:
        """Sources sampled faster than ``score_interval`` whose tail probabilities are read
        over the events in it (``evidence.interval_events``)."""
        steps = self.state.step[: self.state.size]
        return int((evidence.interval_events(steps, self.config.score_interval) > 1.0).sum())

    def add_source(self, source: str) -> int:
        """Register a new source; returns its row."""
        row = int(self.state.add(1)[0])
        self.sources.append(source)
        scope = source if self.config.scope == "source" else "global:" + ",".join(self.fields)
        self.state.scope[row] = text_hash64(scope)
        return row

    # -- batch preparation -------------------------------------------------------------------

    def prepare(
        self,
        rows: np.ndarray,
        ts: np.ndarray,
        has_cal: np.ndarray,
        values: np.ndarray,
        labels: np.ndarray,
        now: float,
    ) -> Prepared:
        """Reject events from the future (more than ``max_future_skew`` seconds after ``now``,
        for real timestamps) and late ones, feed warm-up, freeze completed ranges, cut windows
        for the rest. A rejected event never moves its source's clock."""
        st = self.state
        cfg = self.config
        n = rows.size
        future = has_cal & (ts > now + cfg.max_future_skew)
        g = Groups.of(rows)
        ts_o = np.where(future, np.nan, ts)[g.order]  # NaN: neither late nor a clock step
        prev = grouped_cummax_before(st.last_ts[g.rows], g, ts_o)
        late_o = ts_o < prev - cfg.late_tolerance
        late = np.zeros(n, dtype=bool)
        late[g.order[late_o]] = True
        ok = np.flatnonzero(~late & ~future)
        finite = np.where(np.isnan(ts_o) | late_o, -np.inf, ts_o)
        st.last_ts[g.rows] = np.maximum(st.last_ts[g.rows], np.maximum.reduceat(finite, g.starts))

        g = Groups.of(rows[ok])
        idx = ok[g.order]  # accepted events grouped by source, arrival order within a source
        seen_before = st.n_seen[g.rows].copy()
        pos = seen_before[g.gid] + g.rank
        warm_sel = pos < cfg.warmup
        wi, wp = idx[warm_sel], pos[warm_sel]
        wr = rows[wi]
        st.warm[wr, wp] = values[wi]
        st.warm_ts[wr, wp] = ts[wi]
        st.warm_cal[wr, wp] = has_cal[wi]
        st.warm_label[wr, wp] = labels[wi]
        st.n_seen[g.rows] += g.counts
        done = g.rows[(seen_before < cfg.warmup) & (st.n_seen[g.rows] >= cfg.warmup)]
        if done.size:
            self._freeze(done)
        warming = np.zeros(n, dtype=bool)
        warming[wi] = True
        last = wp == cfg.warmup - 1
        order = np.argsort(wi[last])
        done_rows, done_at = wr[last][order], wi[last][order]

        post = np.sort(idx[~warm_sel])
        if not post.size:
            empty = np.zeros((0, self.window, self.channels), dtype=np.float32)
            return Prepared(late, future, warming, done_rows, done_at, post, None, empty)
        pg = Groups.of(rows[post])
        vals = values[post[pg.order]]
        ext, vpos = extend(st.hist[pg.rows], pg, vals)
        store_tail(st.hist, pg, ext, vpos)
        prow = rows[post]
        win = normalised_windows(ext, vpos, pg.order, st.lo[prow], st.scale[prow], self.window)
        if "res" in st.arrays:
            self._reserve(pg, win[pg.order][:, -1, :])
        return Prepared(late, future, warming, done_rows, done_at, post, pg, win)

    def _tell_counters(self, rows: np.ndarray, warm: np.ndarray) -> None:
        """Warn about channels that only rose through their warm-up: a running total (bytes
        sent, requests served) sets a new high at every event, so nothing it does later looks
        unusual (generated counters with planted incidents: none of 20 flagged; their
        increments: 16 of 20). The engine scores what it is sent; the warning says what to send
        instead. Only the first ``COUNTERS_TOLD`` such sources of a bank are named."""
        rising = ((np.diff(warm, axis=1) >= 0).all(axis=1) & (warm[:, -1] > warm[:, 0]))
        for j, r in enumerate(rows.tolist()):
            if not rising[j].any():
                continue
            self.counters += 1
            if self.counters <= COUNTERS_TOLD:
                names = ", ".join(f for f, up in zip(self.fields, rising[j], strict=True) if up)
                log.warning("source %r: %s only rose through its warm-up (a running total?): "
                            "every value is a new high, so incidents do not stand out; send its "
                            "increments (differences, a rate) instead%s", self.sources[r], names,
                            " (further such sources are not named)"
                            if self.counters == COUNTERS_TOLD else "")

    def _freeze(self, rows: np.ndarray) -> None:
        """End of warm-up: fix each source's range (``warmup_range``) and seed its history with
        the warm-up values."""
        st = self.state
        warm = st.warm[rows]  # [r, warmup, C]
        self._tell_counters(rows, warm)
        for j, r in enumerate(rows.tolist()):
            low, width, lo, hi = warmup_range(warm[j : j + 1], self.config.range_margin,
                                              self.given_ranges.get(self.sources[r]))
            st.lo[r], st.scale[r] = low[0], width[0]
            st.ext_lo[r], st.ext_hi[r] = lo[0], hi[0]
        st.step[rows] = evidence.sampling_steps(st.warm_ts[rows], st.warm_cal[rows])
        padded = self._padded_warm(rows)
        st.hist[rows] = padded[:, -self.window :]
        evidence.start(st, rows, warm, self.config.evidence, self.relation, self.deviation,
                       self.periodic_only)
        if "res" in st.arrays:
            norm = (warm - st.lo[rows][:, None]) / st.scale[rows][:, None]
            keep = min(norm.shape[1], st.res.shape[1])
            st.res[rows, :keep] = norm[:, -keep:]
            st.res_n[rows] = keep

    def _padded_warm(self, rows: np.ndarray) -> np.ndarray:
        """Warm-up values preceded by window-1 copies of the first one: [r, W-1+warmup, C]."""
        warm = self.state.warm[rows]
        pad = np.repeat(warm[:, :1], self.window - 1, axis=1)
        return np.concatenate([pad, warm], axis=1)

    def replay(self, rows: np.ndarray) -> Replay:
        """Windows of the warm-up events of ``rows`` (already frozen), for counting."""
        st = self.state
        padded = self._padded_warm(rows)  # [r, W-1+warmup, C]
        wu = self.config.warmup
        idx = np.arange(wu)[:, None] + np.arange(self.window)[None, :]  # [warmup, W]
        win = padded[:, idx]  # [r, warmup, W, C]
        with np.errstate(over="ignore"):  # a wild warm-up value (1e308) becomes +-inf
            win = ((win - st.lo[rows][:, None, None]) / st.scale[rows][:, None, None]
                   ).astype(np.float32)
        r = rows.size
        return Replay(
            rows=np.repeat(rows, wu),
            windows=win.reshape(r * wu, self.window, self.channels),
            ts=st.warm_ts[rows].ravel(),
            has_calendar=st.warm_cal[rows].ravel(),
            labels=st.warm_label[rows].ravel(),
        )

    def _reserve(self, g: Groups, norm_values: np.ndarray) -> None:
        """Append normalised values to each source's reservoir ring (newest kept)."""
        st = self.state
        cap = st.res.shape[1]
        slot = (st.res_n[g.rows][g.gid] + g.rank) % cap
        st.res[g.rows[g.gid], slot] = norm_values
        st.res_n[g.rows] += g.counts

    def reservoir_series(self, rows: np.ndarray) -> list[np.ndarray]:
        """Each source's reservoir in time order (normalised): training data for the NeuroNet."""
        st = self.state
        cap = st.res.shape[1]
        out = []
        for r in rows:
            n = int(st.res_n[r])
            if n <= cap:
                out.append(st.res[r, :n].copy())
            else:
                start = n % cap
                out.append(np.concatenate([st.res[r, start:], st.res[r, :start]]))
        return out

    def seed_pattern_history(self, row: int, stats: np.ndarray) -> None:
        """Add pattern-evidence statistics (e.g. of the warm-up replay) to a source's history,
        each counting as ``evidence.seed_weight`` events."""
        st = self.state
        memory = float(self.config.evidence.tail_memory)
        weight = float(self.config.evidence.seed_weight)
        width = float(evidence.WIDTH[evidence.PATTERNS])
        for x in np.asarray(stats, dtype=np.float64).tolist():
            evidence.remember(st.ev_hist, st.ev_total, row, evidence.PATTERNS, x, width, memory,
                              weight)

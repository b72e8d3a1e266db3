"""The detector end to end on generated streams: determinism, warm-up, detection of planted
anomalies, the extreme and suppression rules, rejections, stores and the label posterior."""

from __future__ import annotations

import io
import json
import math
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from neurogate.engine import snapshot
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import BatchResult, Detector
from neurogate.engine.encoder import FixedEncoder
from neurogate.engine.events import Event, EventBatch
from neurogate.engine.stores import MemoryStore, PatternStore, SQLiteStore, merge_into, totals

if TYPE_CHECKING:
    from conftest import Planted, SeasonalFactory

WARMUP = 50
T0 = 1_700_000_000.0
STEP = 900.0


@dataclass
class Outcome:
    """Per-event columns of one run, concatenated over its batches."""

    score: np.ndarray
    flagged: np.ndarray
    status: np.ndarray
    suppressed: np.ndarray
    extreme: np.ndarray
    posterior: np.ndarray
    reasons: dict[int, str]
    records: list[dict]

    def part(self, rows: slice) -> Outcome:
        """The outcome of a contiguous range of events (reasons re-indexed)."""
        start = range(len(self.score))[rows].start
        cols = (self.score, self.flagged, self.status, self.suppressed, self.extreme,
                self.posterior)
        reasons = {i - start: r for i, r in self.reasons.items() if i - start in
                   range(len(self.score))[rows]}
        return Outcome(*(c[rows] for c in cols), reasons, self.records[rows])

    def assert_same(self, other: Outcome) -> None:
        for name in ("score", "flagged", "status", "suppressed", "extreme", "posterior"):
            np.testing.assert_array_equal(getattr(self, name), getattr(other, name), err_msg=name)
        assert self.reasons == other.reasons


def run(
    events: Sequence[Event],
    config: EngineConfig,
    store: PatternStore | None = None,
    batch: int = 4096,
    **detector_options: int,
) -> Outcome:
    det = Detector(config, store, **detector_options)
    parts, reasons, records = [], {}, []
    for start in range(0, len(events), batch):
        out = det.process_many(events[start : start + batch])
        parts.append(out)
        reasons.update({start + i: r for i, r in out.reasons.items()})
        records.extend(r.as_dict() for r in out)
    det.close()

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    status = np.array([BatchResult.STATUS[s] for s in cat("status")])
    return Outcome(
        cat("score"), cat("flagged"), status, cat("suppressed"), cat("extreme"),
        cat("posterior"), reasons, records,
    )


def sine_events(source: str, n: int, start: int = 0, amp: float = 10.0) -> list[Event]:
    """A clean sine (period 40 steps) of one source, steps start..start+n-1."""
    return [
        Event(source, T0 + i * STEP, (amp * math.sin(2 * math.pi * i / 40),))
        for i in range(start, start + n)
    ]


@pytest.fixture
def staggered(seasonal: SeasonalFactory) -> list[Event]:
    """Three sources, the third starting 100 steps late (so its warm-up ends mid-stream), with a
    spike and a level shift in the first source."""
    planted = seasonal(sources=3, length=300, seed=4, plant=False)
    out = []
    for e, step in zip(planted.events, planted.position, strict=True):
        if e.source == "s2" and step < 100:
            continue
        if e.source == "s0" and (step == 200 or 240 <= step < 260):
            e = Event(e.source, e.ts, (e.values[0] + (30.0 if step == 200 else 12.0),))
        out.append(e)
    return out


# -- determinism ---------------------------------------------------------------------------------


def test_same_events_and_config_give_identical_results(
    planted: Planted, fast_config: EngineConfig
) -> None:
    first = run(planted.events, fast_config)
    second = run(planted.events, fast_config)
    first.assert_same(second)
    assert first.records == second.records
    assert first.flagged.any()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"calibration": "rank", "calendar": False},
        {"scope": "global"},
    ],
    ids=["default", "rank-no-calendar", "global-scope"],
)
@pytest.mark.slow
def test_results_do_not_depend_on_batch_size(
    fast_config: EngineConfig, staggered: list[Event], changes: dict[str, str]
) -> None:
    config = fast_config.replace(**changes)
    events = staggered
    whole = run(events, config, batch=4096)
    assert whole.flagged.any()
    for batch in (1, 7):
        run(events, config, batch=batch).assert_same(whole)


# -- warm-up and detection -----------------------------------------------------------------------


def test_warmup_events_are_warming_with_score_zero(
    fast_config: EngineConfig, staggered: list[Event]
) -> None:
    events = staggered
    out = run(events, fast_config)
    per_source: dict[str, int] = {}
    for i, e in enumerate(events):
        k = per_source[e.source] = per_source.get(e.source, 0) + 1
        if k <= WARMUP:
            assert (out.status[i], out.score[i], out.flagged[i]) == ("warming", 0.0, False)
        else:
            assert out.status[i] == "scored"
            assert 0.0 <= out.score[i] <= 1.0
    assert per_source["s2"] == 200  # the late source warmed up on its own


def test_scores_rise_on_injected_anomalies(planted: Planted, fast_config: EngineConfig) -> None:
    out = run(planted.events, fast_config)
    normal = planted.mask("") & (out.status == "scored")
    base = out.score[normal].mean()
    anomalous = planted.kinds != ""
    assert out.score[anomalous].mean() > base + 0.1
    for kind in ("spike", "level_shift", "frozen"):
        assert out.score[planted.mask(kind)].mean() > base + 0.05, kind
    assert out.flagged[planted.mask("spike")].all()
    assert out.extreme[planted.mask("spike")].all()
    # most flags fall on or right after the planted incidents (not a flag on every wiggle)
    assert out.flagged[normal].mean() < 0.01


def test_a_frozen_sensor_is_flagged_through_the_change_stream(
    planted: Planted, fast_config: EngineConfig
) -> None:
    frozen = planted.mask("frozen")
    with_change = run(planted.events, fast_config)
    without = run(planted.events, fast_config.replace(**{"fixed.change_stream": False}))
    # the first no-change codes are rare (the run is learned quickly after that): the onset
    # stands out with the change stream (about 0.88 against 0 in every source); whether it
    # reaches the threshold depends on how noisy the source is (0.4 here)
    onset = frozen & (planted.position < planted.position[frozen].min() + 3)
    assert with_change.score[onset].mean() > without.score[onset].mean() + 0.05
    first_repeat = frozen & (planted.position == planted.position[frozen].min() + 1)
    assert first_repeat.sum() == 3  # one per source
    assert (with_change.score[first_repeat] > without.score[first_repeat] + 0.3).all()


def test_spike_is_surprising_to_the_patterns_alone(
    planted: Planted, fast_config: EngineConfig
) -> None:
    # without the late look for a period, which gives these daily sines the deviation family
    # from event 864 on (its smoothed statistic stays high for up to 40 events after each
    # planted incident: tests/test_evidence.py)
    cfg = fast_config.replace(**{"extreme_rule": False, "evidence.late_period": False})
    out = run(planted.events, cfg)
    spike = planted.mask("spike")
    assert not out.extreme.any()
    normal = planted.mask("") & (out.status == "scored")
    assert out.score[spike].min() > np.quantile(out.score[normal], 0.99)


def test_new_extreme_scores_one(fast_config: EngineConfig) -> None:
    events = sine_events("a", 200)
    inside = Event("a", T0 + 200 * STEP, (10.4,))  # above the max (10) but within the 5% margin
    beyond = Event("a", T0 + 201 * STEP, (100.0,))
    below = Event("a", T0 + 240 * STEP, (-150.0,))
    out = run(events + [inside, beyond] + sine_events("a", 38, start=202) + [below], fast_config)
    assert not out.extreme[:200].any()
    assert (out.extreme[200], out.extreme[201], out.extreme[-1]) == (False, True, True)
    assert out.score[201] == out.score[-1] == 1.0
    assert out.flagged[201] and out.flagged[-1]


def test_a_record_by_one_logging_step_is_not_a_new_extreme_among_several_channels(
        fast_config: EngineConfig) -> None:
    """A channel logged in whole units, 10-12 through the warm-up, beside a noisy one: 13 is
    one step past the max, within what the logger can say (the margin of the range is 0.3),
    so no new extreme; 15 is. A single channel's count of 13 after at most 12 is one."""
    rng = np.random.default_rng(5)
    levels = rng.integers(10, 13, 200).astype(float)
    noise = rng.normal(0, 1, 203)
    after = (13.0, 12.0, 15.0)
    pairs = [Event("a", T0 + i * STEP, (v, float(noise[i])), ("level", "noise"))
             for i, v in enumerate([*levels.tolist(), *after])]
    # (no relation family: its gate would hold back a related channel's record anyway)
    out = run(pairs, fast_config.replace(**{"evidence.relation": False}))
    assert (out.extreme[200], out.extreme[202]) == (False, True)
    single = [Event("b", T0 + i * STEP, (v,)) for i, v in enumerate([*levels.tolist(), 13.0])]
    assert run(single, fast_config).extreme[200]


def test_a_running_total_is_named_once_its_warm_up_ends(
        fast_config: EngineConfig, caplog: pytest.LogCaptureFixture) -> None:
    """A total (bytes sent) only rises: every value is a new high, so the run says to send its
    increments; a noisy channel beside it is not named, and after five totals no more are."""
    n = fast_config.warmup + 5
    rng = np.random.default_rng(9)
    events = [Event(f"host-{k}", T0 + i * STEP, (float(100 * i + rng.integers(0, 50)),
                                                 float(rng.normal())), ("bytes", "load"))
              for k in range(7) for i in range(n)]
    with caplog.at_level("WARNING", logger="neurogate.bank"):
        run(events, fast_config)
    told = [r.getMessage() for r in caplog.records if r.name == "neurogate.bank"]
    assert len(told) == 5 and all("bytes only rose" in m and "load" not in m for m in told)
    assert told[0].startswith("source 'host-0'") and "not named" in told[-1]


@pytest.mark.parametrize("second", [100.0, 150.0], ids=["equal-value", "further-out"])
def test_a_second_extreme_right_after_the_first_is_suppressed(
    fast_config: EngineConfig, second: float
) -> None:
    config = fast_config.replace(threshold=0.9)
    spike = [Event("a", T0 + (200 + k) * STEP, (v,)) for k, v in enumerate((100.0, second))]
    events = sine_events("a", 200) + spike
    out = run(events, config)
    assert out.flagged[200] and not out.suppressed[200] and out.score[200] == 1.0
    assert out.suppressed[201] and not out.flagged[201]
    assert out.extreme[201] == (second > 100.0)
    unsuppressed = run(events, config.replace(suppress_window=0))
    assert not unsuppressed.suppressed.any()
    assert unsuppressed.flagged[201]  # so it is the suppression that keeps it quiet
    np.testing.assert_array_equal(unsuppressed.score, out.score)


def test_extremes_alert_again_once_the_suppression_window_has_passed(
    fast_config: EngineConfig,
) -> None:
    config = fast_config.replace(suppress_window=10)
    events = (
        sine_events("a", 200)
        + [Event("a", T0 + 200 * STEP, (100.0,))]
        + sine_events("a", 40, start=201)
        + [Event("a", T0 + 241 * STEP, (200.0,))]
    )
    out = run(events, config)
    assert out.flagged[200] and out.flagged[-1]
    assert out.score[-1] == 1.0 and not out.suppressed[-1]


# -- rejections ----------------------------------------------------------------------------------


def two_sources(n: int) -> list[Event]:
    a, b = sine_events("a", n), sine_events("b", n, amp=3.0)
    return [e for pair in zip(a, b, strict=True) for e in pair]


BAD_EVENTS = {
    "nan": (Event("a", T0, (math.nan,)), "non_finite"),
    "inf": (Event("b", T0, (math.inf,)), "non_finite"),
    "schema": (Event("a", T0, (1.0, 2.0), ("x", "y")), "schema_mismatch"),
}


def with_bad_events(clean: list[Event], at: Sequence[int]) -> tuple[list[Event], dict[int, str]]:
    """Insert NaN, inf, schema-mismatch and late events before the given clean positions."""
    out: list[Event] = []
    expect: dict[int, str] = {}
    for i, e in enumerate(clean):
        if i in at:
            for bad, reason in BAD_EVENTS.values():
                expect[len(out)] = reason
                out.append(Event(bad.source, e.ts, bad.values, bad.fields))
            expect[len(out)] = "out_of_order"
            out.append(Event("a", e.ts - 10 * STEP, (0.0,)))
        out.append(e)
    return out, expect


@pytest.mark.parametrize("batch", [4096, 5])
def test_rejected_events_have_reasons_and_leave_the_rest_alone(
    fast_config: EngineConfig, batch: int
) -> None:
    clean = two_sources(160)
    clean.append(Event("a", T0 + 170 * STEP, (500.0,)))  # a flag that must survive
    dirty, expect = with_bad_events(clean, at=(5, 60, 101, 200, 250))
    got = run(dirty, fast_config, batch=batch)
    assert got.reasons == expect
    rejected = np.array(sorted(expect))
    assert (got.status[rejected] == "rejected").all()
    assert not got.flagged[rejected].any()
    for i in rejected:
        record = got.records[i]
        assert record["status"] == "rejected" and record["reason"] == expect[i]
    good = np.setdiff1d(np.arange(len(dirty)), rejected)
    want = run(clean, fast_config, batch=batch)
    np.testing.assert_array_equal(got.score[good], want.score)
    np.testing.assert_array_equal(got.flagged[good], want.flagged)
    np.testing.assert_array_equal(got.status[good], want.status)
    assert want.flagged[-1]


def test_late_tolerance_accepts_small_steps_back(fast_config: EngineConfig) -> None:
    events = sine_events("a", 80) + [Event("a", T0 + 79 * STEP - 20, (1.0,))]
    strict = run(events, fast_config)
    assert strict.reasons == {80: "out_of_order"}
    lenient = run(events, fast_config.replace(late_tolerance=30.0))
    assert lenient.reasons == {} and lenient.status[80] == "scored"
    too_late = run(events, fast_config.replace(late_tolerance=19.0))
    assert too_late.reasons == {80: "out_of_order"}


def test_rejected_records_are_strict_json(fast_config: EngineConfig) -> None:
    out = run(sine_events("a", 10) + [BAD_EVENTS["nan"][0]], fast_config)
    json.dumps(out.records[-1], allow_nan=False)


# -- event shapes and calendar -------------------------------------------------------------------


def machine_events(n: int, fault_at: int) -> list[Event]:
    """Two-channel sources (rpm, temp) whose temp alone jumps at ``fault_at``."""
    out = []
    for i in range(n):
        for m in ("m1", "m2"):
            rpm = 1400 + 100 * math.sin(2 * math.pi * i / 48)
            temp = 60 + 5 * math.cos(2 * math.pi * i / 48)
            if m == "m1" and i == fault_at:
                temp += 60
            out.append(Event(m, T0 + i * STEP, (rpm, temp), ("rpm", "temp")))
    return out


def test_multivariate_sources_are_scored_per_channel_and_alongside_univariate(
    fast_config: EngineConfig,
) -> None:
    multi = machine_events(200, fault_at=150)
    uni = sine_events("u", 200)
    mixed = [e for pair in zip(multi[::2], multi[1::2], uni, strict=True) for e in pair]
    out = run(mixed, fast_config, batch=97)
    fault = next(
        i for i, e in enumerate(mixed) if e.source == "m1" and e.ts == T0 + 150 * STEP
    )
    assert out.flagged[fault] and out.extreme[fault]
    evidence = out.records[fault]["evidence"]
    assert {ev["channel"] for ev in evidence} == {0, 1}
    assert {ev["level"] for ev in evidence} == set(range(fast_config.fixed.levels))
    # banks of different field sets don't interfere: same scores as separate runs
    alone_multi, alone_uni = run(multi, fast_config), run(uni, fast_config)
    is_uni = np.array([e.source == "u" for e in mixed])
    np.testing.assert_array_equal(out.score[is_uni], alone_uni.score)
    np.testing.assert_array_equal(out.score[~is_uni], alone_multi.score)


@pytest.mark.parametrize("calendar", [True, False])
def test_calendar_on_and_off_both_score(planted: Planted, calendar: bool) -> None:
    config = EngineConfig(warmup=WARMUP, calendar=calendar).replace(
        **{"neuronet.enabled": False}
    )
    events = planted.events[: 3 * 1600]
    out = run(events, config)
    scored = out.status == "scored"
    assert scored.sum() == len(events) - 3 * WARMUP
    assert ((out.score[scored] >= 0) & (out.score[scored] <= 1)).all()
    assert out.flagged[planted.mask("spike")[: len(events)]].all()
    # without real timestamps the calendar setting can't matter
    seq = [Event(e.source, float(i), e.values, has_calendar=False) for i, e in enumerate(events)]
    other = config.replace(calendar=not calendar)
    run(seq, config).assert_same(run(seq, other))


def test_calendar_setting_changes_scores_with_real_timestamps(
    planted: Planted, fast_config: EngineConfig
) -> None:
    events = planted.events[: 3 * 600]
    on = run(events, fast_config)
    off = run(events, fast_config.replace(calendar=False))
    assert not np.array_equal(on.score, off.score)


# -- stores --------------------------------------------------------------------------------------


def test_sqlite_and_memory_stores_give_identical_scores(
    tmp_path: Path, planted: Planted, fast_config: EngineConfig
) -> None:
    events = planted.events[: 3 * 900]
    mem_store = MemoryStore()
    with SQLiteStore(tmp_path / "p.db") as sql_store:
        # small flush interval: counts reach SQLite in many batches while scoring goes on
        sql = run(events, fast_config, sql_store, batch=500, flush_every=700)
        mem = run(events, fast_config, mem_store, batch=500)
        sql.assert_same(mem)
        assert sql.records == mem.records
        assert sql_store.size() == mem_store.size() > 0
        np.testing.assert_array_equal(totals(sql_store), totals(mem_store))


def test_background_flushes_while_missing_keys_are_fetched_give_the_same_store(
    tmp_path: Path, planted: Planted, fast_config: EngineConfig
) -> None:
    """Automatic flushes run in a thread while scoring goes on; a detector that reads missing
    keys from the same store (preload_limit=0) waits for them, and nothing is lost or doubled."""
    events = planted.events[: 3 * 900]
    head, tail = events[:900], events[900:]
    want_store = MemoryStore()
    want = run(events, fast_config, want_store, batch=300)
    with SQLiteStore(tmp_path / "p.db") as store:
        run(head, fast_config, store, batch=300)
        got = run(tail, fast_config, store, batch=300, flush_every=400, preload_limit=0)
        got.assert_same(want.part(slice(900, None)))
        np.testing.assert_array_equal(totals(store), totals(want_store))
        assert store.size() == want_store.size()


def test_a_failed_background_flush_is_written_again_by_the_next_one(
    tmp_path: Path, planted: Planted, fast_config: EngineConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds SQLite's write lock while automatic flushes run: they fail,
    scoring goes on, and once the lock is gone the next flush writes every count exactly once."""
    events = planted.events[: 3 * 600]
    want_store = MemoryStore()
    want = run(events, fast_config, want_store, batch=300)
    path = tmp_path / "p.db"
    with SQLiteStore(path, timeout=0.05) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        det = Detector(fast_config, store, flush_every=300)
        outs = [det.process_many(events[i : i + 300]) for i in range(0, 1200, 300)]
        assert det.flush_errors >= 2 and store.size() == 0
        assert "background flush failed" in caplog.text
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            det.flush()  # a waiting flush says so
        blocker.execute("ROLLBACK")
        outs += [det.process_many(events[i : i + 300]) for i in range(1200, len(events), 300)]
        det.close()
        np.testing.assert_array_equal(np.concatenate([o.score for o in outs]), want.score)
        np.testing.assert_array_equal(totals(store), totals(want_store))
        assert store.size() == want_store.size()
        blocker.close()


def test_counts_reach_the_store_on_flush_with_positions(fast_config: EngineConfig) -> None:
    store = MemoryStore()
    det = Detector(fast_config, store)
    det.process_many(sine_events("a", 120))
    assert store.size() == 0  # pending until flushed
    det.flush({"input.csv": 120})
    assert store.size() > 0 and store.positions() == {"input.csv": 120}
    assert store.get_meta(snapshot.META_NAME) is not None  # with the state they belong to
    n_streams = len(FixedEncoder(fast_config.fixed).streams)
    # every event (warm-up replays included) adds 1 to the "total" key of each stream
    n_keys_per_event = 8 * n_streams
    assert totals(store)[0] == 120 * n_keys_per_event
    det.flush()
    assert totals(store)[0] == 120 * n_keys_per_event  # nothing counted twice


def store_copy(src: PatternStore) -> MemoryStore:
    """A MemoryStore with the same counts, positions and meta blobs (the detector's state)."""
    copy = MemoryStore()
    merge_into(copy, src)
    copy.apply(np.zeros(0, np.uint64), np.zeros((0, 3)), src.positions(),
               {name: src.get_meta(name) or b"" for name in src.meta_names()})
    return copy


def test_save_and_load_give_identical_scores(
    tmp_path: Path, planted: Planted, fast_config: EngineConfig
) -> None:
    history = planted.events[: 3 * 1000]
    later = planted.events[3 * 1000 : 3 * 1600]  # includes the spike at step 1500
    whole = run(history + later, fast_config)
    path = tmp_path / "saved.db"
    with SQLiteStore(path) as store:
        run(history, fast_config, store)
    reference = MemoryStore()
    run(history, fast_config, reference)
    with SQLiteStore(path) as reopened:
        np.testing.assert_array_equal(totals(reopened), totals(reference))
        assert reopened.size() == reference.size()
        assert reopened.get_meta(snapshot.META_NAME) is not None
        prefilled = store_copy(reopened)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0

    want = whole.part(slice(len(history), None))  # as if the first detector had gone on
    assert want.flagged.any()
    run(later, fast_config, prefilled).assert_same(want)
    for preload_limit in (5_000_000, 0):  # read whole, or fetch missing keys lazily
        copy = tmp_path / f"copy{preload_limit}.db"
        shutil.copy(path, copy)
        with SQLiteStore(copy) as store:
            run(later, fast_config, store, preload_limit=preload_limit).assert_same(want)
    fresh = run(later, fast_config, MemoryStore())
    assert not np.array_equal(fresh.score, want.score)  # the saved counts and state do matter


@pytest.mark.parametrize("split", [60, 333, 500])  # during and after the warm-ups
def test_a_restarted_detector_continues_where_the_last_flush_left_off(
    fast_config: EngineConfig, staggered: list[Event], split: int
) -> None:
    whole = run(staggered, fast_config)
    store = MemoryStore()
    run(staggered[:split], fast_config, store)  # ends with close(): counts + state flushed
    run(staggered[split:], fast_config, store).assert_same(whole.part(slice(split, None)))


def test_from_state_continues_where_to_state_left_off(
    fast_config: EngineConfig, staggered: list[Event]
) -> None:
    """``to_state`` is the snapshot ``flush`` stores; ``from_state`` takes the state given,
    not the one the store holds, and continues from it with the store's counts."""
    whole = run(staggered, fast_config)
    store = MemoryStore()
    det = Detector(fast_config, store, flush_every=None)
    det.process_many(staggered[:333])
    det.flush()
    state = det.to_state()
    assert state == store.get_meta(snapshot.META_NAME)
    det.process_many(staggered[333:400])  # a later state, flushed over the first
    det.close()
    assert Detector.from_state(state, fast_config, store_copy(store)).events_seen == 333
    later = Detector.from_state(det.to_state(), fast_config, store_copy(store))
    assert later.events_seen == 400
    np.testing.assert_array_equal(later.process_many(staggered[400:]).score,
                                  whole.part(slice(400, None)).score)
    with pytest.raises(ValueError, match=r"warmup \(stored 50, now 60\)"):
        Detector.from_state(state, fast_config.replace(warmup=60))


def test_events_after_the_last_flush_are_redelivered_without_double_counting(
    fast_config: EngineConfig, staggered: list[Event]
) -> None:
    whole_store = MemoryStore()
    whole = run(staggered, fast_config, whole_store)
    store = MemoryStore()
    det = Detector(fast_config, store, flush_every=None)
    for start in range(0, 400, 100):
        det.process_many(staggered[start : start + 100])
        if start == 200:
            det.flush({"input": start + 100})
    # the process dies here: the 100 events after the flush never reached the store
    position = store.positions()["input"]
    assert position == 300
    resumed = run(staggered[position:], fast_config, store)
    resumed.assert_same(whole.part(slice(position, None)))
    np.testing.assert_array_equal(totals(store), totals(whole_store))
    assert store.size() == whole_store.size()


def test_saved_state_is_refused_under_another_configuration(
    tmp_path: Path, fast_config: EngineConfig
) -> None:
    with SQLiteStore(tmp_path / "p.db") as store:
        run(sine_events("a", 100), fast_config, store)
        with pytest.raises(ValueError, match=r"warmup \(stored 50, now 60\).*fresh store"):
            Detector(fast_config.replace(warmup=60), store)
        with pytest.raises(ValueError, match=r"fixed\.levels .*; neuronet\.enabled"):
            Detector(fast_config.replace(**{"fixed.levels": 5, "neuronet.enabled": True}),
                     store)
        Detector(fast_config, store)  # the same configuration resumes


@pytest.mark.parametrize(("name", "old", "message"), [
    ("evidence.sustained", 0.0, r"evidence\.sustained \(stored 0\.0, now 0\.01\)"),
    ("evidence.late_period", False, r"evidence\.late_period \(stored False, now True\)"),
    ("evidence.trend", False, r"evidence\.trend \(stored False, now True\)"),
    ("evidence.weekend", False, r"evidence\.weekend \(stored False, now True\)"),
])
def test_a_state_written_before_a_setting_existed_resumes_under_its_old_value(
    fast_config: EngineConfig, name: str, old: object, message: str
) -> None:
    """A header without a setting added later (an older engine) reads as the value that
    reproduces that engine, the behaviour it learned under: the refusal names the value, and
    setting it resumes."""
    blob = snapshot.dump(fast_config, 0, [], {})
    with np.load(io.BytesIO(blob)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    del header["settings"][name]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match=message):
        snapshot.load(buf.getvalue(), fast_config)
    snapshot.load(buf.getvalue(), fast_config.replace(**{name: old}))


def test_scoring_only_settings_may_change_on_a_saved_state(
    fast_config: EngineConfig, staggered: list[Event]
) -> None:
    """A restart with another threshold (or smoothing, top-k, ...) resumes the saved state: a new
    threshold gives the same scores with other flags; other scoring settings change scores,
    still computed from the saved counts (unlike a fresh detector's)."""
    saved = MemoryStore()
    run(staggered[:300], fast_config, saved)
    later = staggered[300:]
    same = run(later, fast_config, store_copy(saved))
    lower = run(later, fast_config.replace(threshold=0.5), store_copy(saved))
    np.testing.assert_array_equal(lower.score, same.score)
    assert lower.flagged.sum() > same.flagged.sum()
    changed = fast_config.replace(top_k=1, alpha=2.0, extreme_rule=False)
    resumed = run(later, changed, store_copy(saved))
    fresh = run(later, changed, MemoryStore())
    assert not np.array_equal(resumed.score, same.score)
    assert not np.array_equal(resumed.score, fresh.score)


# -- labels and records --------------------------------------------------------------------------


def labelled_events(n: int = 1200) -> tuple[list[Event], np.ndarray]:
    """A noisy sine whose every 50th step (from step 125) jumps by +3 and is labelled 1; other
    steps from 30 on are labelled 0 (the first 30 carry no label)."""
    rng = np.random.default_rng(0)
    events, labels = [], []
    for i in range(n):
        anomaly = i >= 100 and i % 50 == 25
        value = math.sin(i / 5) + rng.normal(0, 0.05) + (3.0 if anomaly else 0.0)
        label = int(anomaly) if i >= 30 else None
        events.append(Event("a", T0 + i * 60.0, (float(value),), label=label))
        labels.append(-1 if label is None else label)
    return events, np.array(labels)


def test_posterior_appears_once_both_labels_were_seen_and_favours_anomalies(
    fast_config: EngineConfig,
) -> None:
    events, labels = labelled_events()
    out = run(events, fast_config)
    first_anomaly = int(np.flatnonzero(labels == 1)[0])
    has_post = ~np.isnan(out.posterior)
    assert not has_post[: first_anomaly + 1].any()  # a label counts only after its event
    assert has_post[first_anomaly + 1 :].all()
    step = np.arange(len(events))
    late = step >= 600
    anomalous = out.posterior[late & (labels == 1)]
    normal = out.posterior[late & (labels == 0)]
    assert (anomalous > 0).all() and anomalous.mean() > normal.mean() + 20
    # events whose windows still hold the jump resemble it; the rest are clearly normal
    aftermath = (step % 50 > 25) & (step % 50 <= 30)
    assert anomalous.min() > out.posterior[late & (labels == 0) & ~aftermath].max()
    explained = [r for r in out.records if r.get("explanation")]
    assert explained and all(r["flagged"] for r in explained)
    assert all(len(r["explanation"]) == 2 for r in explained)  # one line per labelled class
    unlabelled = run([Event(e.source, e.ts, e.values) for e in events], fast_config)
    assert np.isnan(unlabelled.posterior).all()
    np.testing.assert_array_equal(unlabelled.score, out.score)  # labels never change scores


def test_result_records_have_the_documented_fields(fast_config: EngineConfig) -> None:
    events = sine_events("a", 120) + [Event("a", T0 + 120 * STEP, (100.0,), id="e-120")]
    events.append(BAD_EVENTS["nan"][0])
    out = run(events, fast_config)
    warming, scored, flagged, rejected = (out.records[i] for i in (0, 119, 120, 121))
    common = {"source", "ts", "id", "score", "flagged", "threshold", "status", "values", "time"}
    assert set(warming) == common | {"suppressed", "extreme", "model_version"}
    assert warming["status"] == "warming" and warming["score"] == 0
    assert set(scored) == common | {"suppressed", "extreme", "model_version"}
    assert set(flagged) == common | {"suppressed", "extreme", "model_version", "evidence",
                                     "families", "escalation"}
    assert flagged["escalation"] is False  # the first alert of its episode
    assert set(flagged["families"]) == {"patterns"}  # univariate, deviation off by default
    assert 0 <= flagged["families"]["patterns"]["p"] <= 1
    assert set(rejected) == common | {"reason"}
    assert flagged["id"] == "e-120" and flagged["ts"] == T0 + 120 * STEP
    assert flagged["threshold"] == fast_config.threshold
    assert flagged["model_version"].startswith("fixed:")
    assert flagged["values"] == {"value": 100.0}
    assert rejected["values"] == {"value": None}  # the NaN event: JSON has no NaN
    assert flagged["time"] == datetime.fromtimestamp(T0 + 120 * STEP, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    spec = [ev for ev in flagged["evidence"] if ev["stream"] == "value"]
    assert len(spec) == 1 and spec[0]["codes"][2] == spec[0]["vocab"] - 1  # above the range
    assert spec[0]["field"] == "value" and spec[0]["context_count"] >= spec[0]["count"]
    assert {ev["stream"] for ev in flagged["evidence"]} == {"value", "level", "change"}
    for ev in flagged["evidence"]:
        assert set(ev) == {"level", "channel", "encoder", "pattern", "count", "probability",
                           "surprise", "stream", "field", "dilation", "vocab", "codes",
                           "context_count", "range"}
        assert len(ev["pattern"]) == 16 and int(ev["pattern"], 16) > 0
        assert ev["count"] >= 0 and 0 <= ev["probability"] <= 1 and ev["surprise"] >= 0
    assert Detector(fast_config).process_one(Event("z", math.nan, (1.0,))).as_dict()["ts"] is None
    events, _ = labelled_events()
    post = next(r for r in run(events, fast_config).records if r.get("explanation"))
    assert {"posterior", "explanation"} <= set(post)


@pytest.mark.parametrize("enabled", [True, False])
def test_cycle_collector_waits_while_events_are_scored(
        fast_config: EngineConfig, monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    """The collector is off while a batch is scored (its full passes cost 7-40 % of the time),
    on while an encoder trains after it, and exactly as before afterwards, also on errors."""
    import gc

    from neurogate.engine.shadow import Lifecycle

    scoring: list[bool] = []
    after: list[bool] = []
    real_bank, real_after = Detector._process_bank, Lifecycle.after_batch

    def bank_spy(self: Detector, bank: object, batch: EventBatch, *args: object) -> None:
        scoring.append(gc.isenabled())
        if batch.sources[0] == "fail":
            raise RuntimeError("boom")
        real_bank(self, bank, batch, *args)  # type: ignore[arg-type]

    def after_spy(self: Lifecycle, *args: object) -> None:
        after.append(gc.isenabled())
        real_after(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Detector, "_process_bank", bank_spy)
    monkeypatch.setattr(Lifecycle, "after_batch", after_spy)
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        det = Detector(fast_config, flush_every=None)
        det.process_many(sine_events("a", 50))
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError, match="boom"):
            det.process_many([Event("fail", T0, (1.0,))])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
    assert scoring and not any(scoring)
    assert after == [enabled], "training (after the batch) runs with the collector as it was"


def test_an_empty_batch_is_a_no_op(fast_config: EngineConfig) -> None:
    det = Detector(fast_config, flush_every=None)
    assert len(det.process_many([])) == 0  # before any source exists
    det.process_many(sine_events("a", 30))
    out = det.process_many([])
    assert len(out) == 0 and det.events_seen == 30

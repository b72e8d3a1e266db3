"""CountTable (numba open addressing), mix64 and text_hash64 against plain-Python references."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.engine.counts import DELTA_MAX, MAX_LOAD, CountTable
from neurogate.engine.keys import EMPTY, NCOLS, mix64, text_hash64

MASK64 = (1 << 64) - 1

# Small keys collide on purpose: for keys < 2**29 the home slot is key & (capacity - 1), so
# 1, 17, 33, ... share a slot in a 16-slot table and exercise linear probing and wrap-around.
small_keys = st.integers(1, 64)
any_keys = st.integers(1, MASK64)
keys_strategy = st.one_of(small_keys, any_keys)
delta_rows = st.lists(st.integers(-5, 5), min_size=NCOLS, max_size=NCOLS)


def as_keys(keys: list[int]) -> np.ndarray:
    return np.array(keys, dtype=np.uint64)


def table_dict(table: CountTable) -> dict[int, tuple[int, ...]]:
    keys, vals = table.items()
    return {int(k): tuple(int(x) for x in v) for k, v in zip(keys, vals, strict=True)}


def splitmix64_reference(x: int) -> int:
    """The splitmix64 finaliser in plain Python integers (0 remapped to 1 as documented)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z or 1


# -- CountTable ----------------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(keys_strategy, delta_rows), max_size=40), max_size=8))
def test_count_table_matches_dict_reference(batches: list[list[tuple[int, list[int]]]]) -> None:
    table = CountTable(capacity=16)
    ref: dict[int, list[int]] = defaultdict(lambda: [0] * NCOLS)
    for batch in batches:
        if not batch:
            continue
        keys = [k for k, _ in batch]
        table.add(as_keys(keys), np.array([d for _, d in batch], dtype=np.int64))
        for k, d in batch:
            ref[k] = [a + b for a, b in zip(ref[k], d, strict=True)]
    assert len(table) == len(ref)
    assert table_dict(table) == {k: tuple(v) for k, v in ref.items()}
    probe = list(ref) + [123456789, 2**63 + 5]
    expect = [ref.get(k, [0] * NCOLS) for k in probe]
    np.testing.assert_array_equal(table.get(as_keys(probe)), np.array(expect))
    np.testing.assert_array_equal(table.contains(as_keys(probe)), [k in ref for k in probe])


def test_growth_past_capacity_keeps_every_count() -> None:
    table = CountTable(capacity=16)
    start = table.nbytes
    keys = mix64(np.arange(5000, dtype=np.uint64))
    for chunk in np.array_split(np.arange(keys.size), 10):  # grow over several doublings
        table.add(keys[chunk], np.tile([1, 0, 1], (chunk.size, 1)))
    table.add(keys[:100], np.tile([2, 2, 0], (100, 1)))
    assert len(table) == 5000
    assert table.nbytes > start
    got = table.get(keys)
    np.testing.assert_array_equal(got[:100], np.tile([3, 2, 1], (100, 1)))
    np.testing.assert_array_equal(got[100:], np.tile([1, 0, 1], (4900, 1)))


def test_capacity_is_a_power_of_two_and_load_stays_at_most_max_load() -> None:
    slot_bytes = 8 * (1 + NCOLS) + 1  # a uint64 key, NCOLS int64 counts, a used mark per slot
    table = CountTable(capacity=100)
    assert table.nbytes == 128 * slot_bytes
    full = int(MAX_LOAD * 128)
    table.add(np.arange(1, full + 1, dtype=np.uint64), np.ones((full, NCOLS)))
    assert table.nbytes == 128 * slot_bytes  # exactly at the load limit: no growth yet
    table.add(np.array([1000], dtype=np.uint64), np.ones((1, NCOLS)))
    assert table.nbytes == 256 * slot_bytes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "score", "stored", "evict"]),
                          st.lists(st.tuples(keys_strategy, delta_rows), max_size=30)),
                max_size=12))
def test_evict_drops_only_stored_unpinned_keys_and_keeps_lookups_right(
    steps: list[tuple[str, list[tuple[int, list[int]]]]]
) -> None:
    """Eviction (in place, probe runs repaired) against a dict: every key left reads its
    counts, no key with changes and no pinned key goes, and at most ``target`` keys remain
    when enough may go. Small colliding keys exercise runs that wrap around the table."""
    table = CountTable(capacity=16, track_changes=True)
    total: dict[int, list[int]] = defaultdict(lambda: [0] * NCOLS)
    dirty: set[int] = set()
    for op, rows in steps:
        if op == "stored":
            table.mark_stored()
            dirty.clear()
            continue
        if op == "evict":
            pinned = as_keys([k for k, _ in rows if k in total])
            before = len(table)
            target = before // 3
            dropped = table.evict(target, [pinned])
            keys, _ = table.items()
            left = {int(k) for k in keys}
            assert len(table) == before - dropped == len(left)
            gone = set(total) - left
            assert not gone & dirty and not gone & {int(k) for k in pinned}
            may_go = set(total) - dirty - {int(k) for k in pinned}
            assert len(table) <= max(target, before - len(may_go))
            for k in gone:
                del total[k]
            continue
        if not rows:
            continue
        keys, deltas = as_keys([k for k, _ in rows]), np.array([d for _, d in rows])
        if op == "add":
            table.add(keys, deltas)
        else:
            table.score_then_add(keys[:, None], deltas)
        for k, d in rows:
            total[k] = [a + b for a, b in zip(total[k], d, strict=True)]
            if any(d):
                dirty.add(k)
    assert table_dict(table) == {k: tuple(v) for k, v in total.items()}
    probe = list(total)
    np.testing.assert_array_equal(table.contains(as_keys(probe)), [True] * len(probe))


def test_evict_prefers_keys_not_used_since_the_last_eviction() -> None:
    table = CountTable(capacity=64, track_changes=True)
    keys = mix64(np.arange(1, 41, dtype=np.uint64))
    table.add(keys, np.ones((40, NCOLS)))
    table.mark_stored()
    table.evict(40)  # clears the used marks
    table.get(keys[:10])  # read: these are warm
    assert table.evict(10) == 30
    np.testing.assert_array_equal(table.contains(keys[:10]), [True] * 10)


def test_clear_empties_the_table() -> None:
    table = CountTable(capacity=16)
    table.add(as_keys([1, 17, 33]), np.ones((3, NCOLS)))
    table.clear()
    assert len(table) == 0
    assert table.items()[0].size == 0
    np.testing.assert_array_equal(table.get(as_keys([1, 17, 33])), np.zeros((3, NCOLS)))
    table.add(as_keys([17]), np.ones((1, NCOLS)))
    assert table_dict(table) == {17: (1, 1, 1)}


def test_add_checks_delta_shape() -> None:
    with pytest.raises(ValueError):
        CountTable().add(as_keys([1, 2]), np.ones((3, NCOLS)))


def score_then_add_reference(
    start: dict[int, list[int]], keys: list[list[int]], deltas: list[list[int]]
) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Event by event: read all its keys, then add its delta row once per key occurrence."""
    counts = defaultdict(lambda: [0] * NCOLS, {k: list(v) for k, v in start.items()})
    out = []
    for row, d in zip(keys, deltas, strict=True):
        out.append([list(counts[k]) if k in counts else [0] * NCOLS for k in row])
        for k in row:
            counts[k] = [a + b for a, b in zip(counts[k], d, strict=True)]
    return np.array(out, dtype=np.int64).reshape(len(keys), -1, NCOLS), dict(counts)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.lists(st.lists(keys_strategy, min_size=k, max_size=k), min_size=1, max_size=30),
            st.lists(st.tuples(small_keys, delta_rows), max_size=10),
        )
    ),
    st.data(),
)
def test_score_then_add_returns_counts_before_each_event(
    case: tuple[list[list[int]], list[tuple[int, list[int]]]], data: st.DataObject
) -> None:
    keys, preload = case
    deltas = data.draw(
        st.lists(delta_rows, min_size=len(keys), max_size=len(keys)), label="deltas"
    )
    table = CountTable(capacity=16)
    start: dict[int, list[int]] = {}
    if preload:
        table.add(as_keys([k for k, _ in preload]), np.array([d for _, d in preload]))
        start = {k: list(v) for k, v in table_dict(table).items()}
    got = table.score_then_add(as_keys(keys), np.array(deltas, dtype=np.int64))
    want, final = score_then_add_reference(start, keys, deltas)
    np.testing.assert_array_equal(got, want)
    assert table_dict(table) == {k: tuple(v) for k, v in final.items()}


def test_score_then_add_sees_earlier_events_and_duplicates_of_the_same_batch() -> None:
    table = CountTable(capacity=16)
    keys = as_keys([[5, 5], [5, 21], [21, 5]])  # 5 and 21 share a home slot in 16 slots
    deltas = np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0]])
    got = table.score_then_add(keys, deltas)
    np.testing.assert_array_equal(got[0], [[0, 0, 0], [0, 0, 0]])  # duplicate: both read "before"
    np.testing.assert_array_equal(got[1], [[2, 2, 0], [0, 0, 0]])  # event 0 counted key 5 twice
    np.testing.assert_array_equal(got[2], [[1, 0, 1], [3, 2, 1]])
    assert table_dict(table) == {5: (4, 2, 1), 21: (2, 0, 1)}


def test_score_then_add_grows_the_table() -> None:
    table = CountTable(capacity=16)
    keys = mix64(np.arange(3000, dtype=np.uint64)).reshape(1000, 3)
    first = table.score_then_add(keys, np.ones((1000, NCOLS), dtype=np.int64))
    again = table.score_then_add(keys, np.ones((1000, NCOLS), dtype=np.int64))
    assert len(table) == 3000
    assert not first.any()
    assert (again == 1).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["load", "add", "score", "stored"]),
                          st.lists(st.tuples(keys_strategy, delta_rows), max_size=30)),
                max_size=10))
def test_changes_are_what_was_added_since_the_last_mark_stored(
    steps: list[tuple[str, list[tuple[int, list[int]]]]]
) -> None:
    """A change-tracking table (growing from 16 slots) against two dicts: all counts, and the
    counts not yet stored; loaded counts are never changes."""
    table = CountTable(capacity=16, track_changes=True)
    total: dict[int, list[int]] = defaultdict(lambda: [0] * NCOLS)
    unstored: dict[int, list[int]] = defaultdict(lambda: [0] * NCOLS)
    for op, rows in steps:
        if op == "stored":
            table.mark_stored()
            unstored.clear()
            continue
        if not rows:
            continue
        keys, deltas = as_keys([k for k, _ in rows]), np.array([d for _, d in rows])
        if op == "load":
            table.load(keys, deltas)
        elif op == "add":
            table.add(keys, deltas)
        else:
            table.score_then_add(keys[:, None], deltas)
        for k, d in rows:
            total[k] = [a + b for a, b in zip(total[k], d, strict=True)]
            if op != "load":
                unstored[k] = [a + b for a, b in zip(unstored[k], d, strict=True)]
        ck, cd, new = table.changes()
        got = {int(k): tuple(int(x) for x in v) for k, v in zip(ck, cd, strict=True)}
        assert got == {k: tuple(v) for k, v in unstored.items() if any(v)}
        stored_n = {k: total[k][0] - unstored[k][0] for k in got}
        assert {int(k) for k in ck[new]} == {k for k, n in stored_n.items() if n == 0}
    assert table_dict(table) == {k: tuple(v) for k, v in total.items()}


def test_changes_need_a_tracking_table() -> None:
    with pytest.raises(ValueError, match="track_changes"):
        CountTable().changes()
    with pytest.raises(ValueError, match="track_changes"):
        CountTable().mark_stored()


def test_key_zero_is_refused_or_kept_apart() -> None:
    table = CountTable(capacity=16)
    try:
        table.add(as_keys([0]), np.array([[5, 0, 0]]))
    except ValueError:
        return
    assert len(table) == len(table.items()[0])
    table.add(as_keys([16]), np.array([[1, 0, 0]]))  # home slot 0, like key 0
    np.testing.assert_array_equal(table.get(as_keys([16])), [[1, 0, 0]])


# -- hashing -------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, MASK64), min_size=1, max_size=50))
def test_mix64_is_splitmix64_and_never_zero(xs: list[int]) -> None:
    got = mix64(as_keys(xs))
    assert got.dtype == np.uint64
    assert [int(v) for v in got] == [splitmix64_reference(x) for x in xs]
    assert (got != EMPTY).all()
    np.testing.assert_array_equal(got, mix64(as_keys(xs)))  # deterministic


def test_mix64_remaps_the_one_input_that_hashes_to_zero() -> None:
    # splitmix64's mixing maps 0 to 0, so x = -GOLDEN (mod 2**64) is the only pre-image of 0.
    zero_preimage = (-0x9E3779B97F4A7C15) & MASK64
    assert int(mix64(as_keys([zero_preimage]))[0]) == 1
    assert mix64(as_keys([])).size == 0


def test_mix64_known_values_and_shape() -> None:
    # Pinned values: pattern keys in stores depend on them across releases and platforms.
    assert [int(v) for v in mix64(as_keys([0, 1, 2**64 - 1]))] == [
        splitmix64_reference(0),
        splitmix64_reference(1),
        splitmix64_reference(2**64 - 1),
    ]
    assert int(mix64(as_keys([0]))[0]) == 0xE220A8397B1DCDAF
    grid = np.arange(12, dtype=np.uint64).reshape(3, 4)
    assert mix64(grid).shape == (3, 4)
    assert np.unique(mix64(np.arange(100_000, dtype=np.uint64))).size == 100_000


def test_text_hash64_is_stable_across_processes() -> None:
    here = {s: int(text_hash64(s)) for s in ("", "pump-7", "global:value", "ünïcode")}
    code = (
        "from neurogate.engine.keys import text_hash64;"
        "print([int(text_hash64(s)) for s in ('', 'pump-7', 'global:value', 'ünïcode')])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert ast.literal_eval(other.stdout.strip()) == list(here.values())
    assert len(set(here.values())) == 4
    assert isinstance(text_hash64("x"), np.uint64)
    assert text_hash64("pump-7") == text_hash64("pump-7")


def test_shrink_gives_back_the_slots_of_evicted_keys() -> None:
    table = CountTable(capacity=16, track_changes=True)
    keys = mix64(np.arange(1, 5001, dtype=np.uint64))
    table.add(keys, np.ones((5000, NCOLS)))
    table.mark_stored()
    table.add(keys[:100], np.ones((100, NCOLS)))  # unstored: these stay
    big = table.nbytes
    assert not table.shrink()  # full enough
    table.evict(300)
    assert table.shrink() and table.nbytes == big // 8  # 8192 -> 1024 slots
    assert len(table) == 300 and table.contains(keys[:100]).all()
    np.testing.assert_array_equal(table.get(keys[:100]), np.full((100, NCOLS), 2))
    assert table.changes()[0].size == 100


def test_a_tracking_slot_is_45_bytes() -> None:
    """A uint64 key, NCOLS int64 counts, NCOLS int32 deltas not stored yet, a used mark."""
    assert CountTable(capacity=100, track_changes=True).nbytes == 128 * 45


def test_deltas_widen_before_they_would_overflow_32_bits_and_narrow_after_a_flush() -> None:
    """The part not stored is kept in 32 bits: deltas that pass 2**31 - 1 between two
    ``mark_stored`` (added, scored, or put back by ``unstore``) stay exact, and are written
    whole by ``changes``; after ``mark_stored`` a slot is 45 bytes again."""
    table = CountTable(capacity=16, track_changes=True)
    keys = as_keys([7, 23])  # 23 collides with 7 in 16 slots
    table.load(keys, np.array([[5, 1, 1], [9, 0, 0]]))
    narrow = table.nbytes
    big = DELTA_MAX - 10
    table.add(keys[:1], np.array([[big, big, 0]]))
    assert table.nbytes == narrow  # still fits
    table.score_then_add(np.array([[7, 7, 23]], dtype=np.uint64), np.array([[8, 0, 1]]))
    want = {7: (big + 16, big, 2), 23: (8, 0, 1)}
    ck, cd, new = table.changes()
    assert {int(k): tuple(int(x) for x in d) for k, d in zip(ck, cd, strict=True)} == want
    assert not new.any()
    np.testing.assert_array_equal(table.get(keys), [[big + 21, big + 1, 3], [17, 0, 1]])
    assert table.evict(0) == 0  # keys with changes never go
    table.mark_stored()
    assert table.nbytes == narrow and table.changes()[0].size == 0
    table.unstore(keys, np.array([[big, 0, 0], [big, 0, 0]]))  # a failed write of two
    table.unstore(keys[:1], np.array([[big, 0, 0]]))
    ck, cd, _ = table.changes()
    assert dict(zip(ck.tolist(), cd[:, 0].tolist(), strict=True)) == {7: 2 * big, 23: big}
    table.mark_stored()
    assert table.evict(0) == 2 and len(table) == 0


def test_the_overflow_guard_measures_again_before_it_widens() -> None:
    """The guard's bound only grows between flushes; past 2**31 - 1 it reads the deltas
    again, so many additions that cancel out (or land on other keys) keep 32 bits."""
    table = CountTable(capacity=16, track_changes=True)
    narrow = table.nbytes
    third = DELTA_MAX // 3  # the bound passes DELTA_MAX at the 4th addition, the deltas never
    for sign in (1, -1) * 4:
        table.add(as_keys([3]), np.array([[sign * third, 0, 0]]))
    assert table.nbytes == narrow and table.changes()[0].size == 0
    table.add(as_keys([3]), np.array([[third, 0, 0]]))
    table.add(as_keys([3]), np.array([[third, 0, 0]]))
    table.add(as_keys([3]), np.array([[third + 2, 0, 0]]))  # now they do
    assert table.nbytes > narrow
    np.testing.assert_array_equal(table.changes()[1], [[DELTA_MAX + 1, 0, 0]])


def test_doubling_in_place_keeps_keys_whose_probe_wraps_around() -> None:
    """Keys 31, 63, ... share home 15 of 16 slots (their run wraps to slots 0-3) and home 31 of
    32: after the table doubles in place their run wraps again, past the last slot into the
    first ones. Every count and change is still found."""
    table = CountTable(capacity=16, track_changes=True)
    wrap = [31, 63, 95, 127, 159]
    others = [5, 6, 7, 8, 9, 10]  # 16 * 0.7 = 11.2: the table is full
    keys = as_keys(wrap + others)
    counts = np.arange(1, 34).reshape(11, 3)
    table.add(keys, counts)  # changes too (the deltas move with the keys)
    assert table.nbytes == 16 * 45
    table.add(as_keys([1000]), np.array([[7, 0, 0]]))
    assert table.nbytes == 32 * 45
    np.testing.assert_array_equal(table.get(keys), counts)
    np.testing.assert_array_equal(table.get(as_keys([1000, 1])), [[7, 0, 0], [0, 0, 0]])
    ck, cd, new = table.changes()
    assert dict(zip(ck.tolist(), cd.tolist(), strict=True)) == {
        **dict(zip(keys.tolist(), counts.tolist(), strict=True)), 1000: [7, 0, 0]}
    assert new.all()
    assert len(table) == 12 == len(table_dict(table))


def test_doubling_in_place_starts_from_an_empty_slot() -> None:
    """Keys 14, 30, 62, 78 share home 14 of 16 slots and sit in slots 14, 15, 0, 1; in 32 slots
    78 is at home 14 again and 30, 62 at 30. Rehashed from slot 0 (inside their run), 78 would
    skip slots 14 and 15 before 30 left slot 15, and a lookup would stop at that hole."""
    table = CountTable(capacity=16, track_changes=True)
    run = as_keys([14, 30, 62, 78])
    table.add(run, np.array([[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]]))
    assert table.nbytes == 16 * 45
    table.add(as_keys(list(range(3, 11))), np.ones((8, NCOLS)))  # 12 keys: doubles first
    assert table.nbytes == 32 * 45
    np.testing.assert_array_equal(table.get(run)[:, 0], [1, 2, 3, 4])
    assert table.contains(run).all() and len(table) == 12

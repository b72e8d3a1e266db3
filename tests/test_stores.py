"""Pattern stores: MemoryStore and SQLiteStore behave alike, SQLite persists, merges are exact."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.engine.keys import NCOLS
from neurogate.engine.stores import (
    MemoryStore,
    PatternStore,
    PositionsMoved,
    SQLiteStore,
    merge_into,
    open_store,
    totals,
)
from neurogate.engine.stores.sqlite import SCHEMA_VERSION, inspect_file
from tests.conftest import foreign_sqlite
from tests.pg_fixtures import contents as store_contents

KINDS = ("memory", "sqlite")
MASK64 = (1 << 64) - 1

# Keys over the whole uint64 range (SQLite stores them as signed int64: the high bit matters),
# mixed with a small pool so that batches repeat keys.
keys_st = st.one_of(st.integers(1, 20), st.integers(1, MASK64), st.integers(2**63, MASK64))
row_st = st.tuples(keys_st, st.lists(st.integers(-3, 1000), min_size=NCOLS, max_size=NCOLS))
count_set_st = st.lists(row_st, max_size=25)
Rows = list[tuple[int, list[int]]]


def arrays(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    keys = np.array([k for k, _ in rows], dtype=np.uint64)
    deltas = np.array([d for _, d in rows], dtype=np.int64).reshape(len(rows), NCOLS)
    return keys, deltas


def contents(store: PatternStore) -> dict[int, tuple[int, ...]]:
    """Every key's counts, in chunks of 7 keys so that chunking is exercised too."""
    return store_contents(store, chunk=7)


def reference(*count_sets: Rows) -> dict[int, tuple[int, ...]]:
    acc: dict[int, list[int]] = {}
    for rows in count_sets:
        for k, d in rows:
            cur = acc.setdefault(k, [0] * NCOLS)
            acc[k] = [a + b for a, b in zip(cur, d, strict=True)]
    return {k: tuple(v) for k, v in acc.items()}


class Stores:
    """Makes fresh stores of either kind in one directory and closes them afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[PatternStore] = []
        self.n = 0

    def new(self, kind: str) -> PatternStore:
        self.n += 1
        store = MemoryStore() if kind == "memory" else SQLiteStore(self.root / f"s{self.n}.db")
        self.opened.append(store)
        return store

    def filled(self, kind: str, *count_sets: Rows) -> PatternStore:
        store = self.new(kind)
        for rows in count_sets:
            if rows:
                store.apply(*arrays(rows))
        return store

    def close(self) -> None:
        for s in self.opened:
            s.close()


@contextmanager
def scratch_stores() -> Iterator[Stores]:
    """Stores in a fresh temporary directory (hypothesis examples can't share tmp_path)."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = Stores(Path(tmp))
        try:
            yield stores
        finally:
            stores.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s = Stores(tmp_path)
    yield s
    s.close()


# -- the two back-ends agree ---------------------------------------------------------------------


ops_st = st.lists(
    st.tuples(
        count_set_st,
        st.dictionaries(st.sampled_from(["f.csv", "topic/0", "topic/1"]), st.integers(0, 10**12)),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(ops_st, st.lists(keys_st, max_size=20))
def test_memory_and_sqlite_agree_on_identical_apply_sequences(
    ops: list[tuple[Rows, dict[str, int]]], probe: list[int]
) -> None:
    with scratch_stores() as stores:
        mem, sql = stores.new("memory"), stores.new("sqlite")
        positions: dict[str, int] = {}
        for n, (rows, pos) in enumerate(ops):
            for store in (mem, sql):
                store.apply(*arrays(rows), positions=pos, meta={"state": b"%d" % n})
            positions.update(pos)
        want = reference(*(rows for rows, _ in ops))
        probe_keys = np.array(probe + list(want)[:5] + probe[:3], dtype=np.uint64)
        expect = np.array(
            [want.get(k, (0,) * NCOLS) for k in probe_keys.tolist()], dtype=np.int64
        ).reshape(-1, NCOLS)
        for store in (mem, sql):
            assert contents(store) == want
            assert store.size() == len(want)
            assert store.positions() == positions
            assert store.get_meta("state") == b"%d" % (len(ops) - 1)
            np.testing.assert_array_equal(store.fetch(probe_keys), expect)
            want_totals = np.array(list(want.values()), dtype=np.int64).reshape(-1, NCOLS)
            np.testing.assert_array_equal(totals(store), want_totals.sum(axis=0))


@pytest.mark.parametrize("kind", KINDS)
def test_fetch_handles_unknown_duplicate_and_empty_keys(stores: Stores, kind: str) -> None:
    high = 2**64 - 2
    store = stores.filled(kind, [(5, [1, 2, 3]), (high, [4, 0, 4])])
    got = store.fetch(np.array([high, 6, 5, high], dtype=np.uint64))
    np.testing.assert_array_equal(got, [[4, 0, 4], [0, 0, 0], [1, 2, 3], [4, 0, 4]])
    assert store.fetch(np.array([], dtype=np.uint64)).shape == (0, NCOLS)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_rejects_mismatched_deltas_without_changing_anything(
    stores: Stores, kind: str
) -> None:
    store = stores.filled(kind, [(1, [1, 1, 0])])
    with pytest.raises(ValueError, match="deltas must be"):
        store.apply(np.array([1, 2], dtype=np.uint64), np.ones((3, NCOLS)), {"f": 9})
    assert contents(store) == {1: (1, 1, 0)}
    assert store.positions() == {}


@pytest.mark.parametrize("kind", KINDS)
def test_iter_counts_chunks_cover_every_key_once(stores: Stores, kind: str) -> None:
    rows = [(k, [k, 0, 1]) for k in range(1, 24)]
    store = stores.filled(kind, rows)
    chunks = list(store.iter_counts(chunk=5))
    assert [c[0].size for c in chunks] == [5, 5, 5, 5, 3]
    assert contents(store) == reference(rows)


@pytest.mark.parametrize("kind", KINDS)
def test_meta_blobs(stores: Stores, kind: str) -> None:
    store = stores.new(kind)
    assert store.get_meta("encoder/x/1") is None
    store.put_meta("encoder/x/1", b"\x00one")
    store.put_meta("encoder/x/2", b"two")
    store.put_meta("encoder/x/1", b"uno")  # overwrite
    store.put_meta("enc_other", b"3")
    assert store.get_meta("encoder/x/1") == b"uno"
    assert store.meta_names("encoder/") == ["encoder/x/1", "encoder/x/2"]
    assert store.meta_names("enc_") == ["enc_other"]  # '_' is literal, not a wildcard
    assert store.meta_names() == ["enc_other", "encoder/x/1", "encoder/x/2"]


# -- SQLite persistence and atomicity ------------------------------------------------------------


def test_sqlite_persists_counts_positions_and_meta_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    rows = [(1, [1, 0, 0]), (2**63 + 1, [5, 2, 3]), (1, [1, 1, 0])]
    with SQLiteStore(path) as store:
        store.apply(*arrays(rows), positions={"a.csv": 3})
        store.put_meta("encoder/fixed/1", b"blob")
    for url in (str(path), f"sqlite:///{path}"):
        with open_store(url) as again:
            assert isinstance(again, SQLiteStore)
            assert contents(again) == {1: (2, 1, 0), 2**63 + 1: (5, 2, 3)}
            assert again.positions() == {"a.csv": 3}
            assert again.get_meta("encoder/fixed/1") == b"blob"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sqlite_positions_land_with_their_counts_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SQLiteStore(path)
    store.apply(*arrays([(7, [1, 0, 0])]), positions={"topic/0": 10}, meta={"state": b"v1"})
    store.apply(*arrays([(7, [1, 0, 1])]), {"topic/0": 20, "topic/1": 5}, {"state": b"v2"})
    with pytest.raises((sqlite3.Error, OverflowError)):  # a position that can't be stored
        store.apply(
            *arrays([(7, [100, 0, 0]), (8, [1, 1, 1])]),
            positions={"topic/0": 2**70},
            meta={"state": b"v3"},
        )
    assert contents(store) == {7: (2, 0, 1)}
    assert store.positions() == {"topic/0": 20, "topic/1": 5}
    assert store.get_meta("state") == b"v2"
    store.apply(*arrays([(8, [1, 1, 0])]), positions={"topic/1": 6})  # still usable afterwards
    store.close()
    with SQLiteStore(path) as again:
        assert contents(again) == {7: (2, 0, 1), 8: (1, 1, 0)}
        assert again.positions() == {"topic/0": 20, "topic/1": 6}


def test_sqlite_store_is_visible_to_a_second_connection_after_each_apply(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with SQLiteStore(path) as writer, SQLiteStore(path) as reader:
        writer.apply(*arrays([(3, [1, 0, 1])]), positions={"f": 1})
        assert contents(reader) == {3: (1, 0, 1)}
        assert reader.positions() == {"f": 1}


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(count_set_st, count_set_st, st.data())
def test_a_new_keys_hint_never_changes_the_sums_even_when_wrong(
    first: Rows, second: Rows, data: st.DataObject
) -> None:
    """``apply(..., new=mask)`` lets SQLite insert instead of upsert; any mask, right or wrong
    (keys already stored, duplicates), must give the same counts as no hint."""
    with scratch_stores() as made:
        hinted, plain = made.new("sqlite"), made.new("sqlite")
        for rows in (first, second):
            if not rows:
                continue
            mask = data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
            hinted.apply(*arrays(rows), new=np.array(mask))
            plain.apply(*arrays(rows))
        assert contents(hinted) == contents(plain) == reference(first, second)


@pytest.mark.parametrize("hint", ["none", "right", "all"])
def test_large_applies_span_many_statements_exactly(tmp_path: Path, hint: str) -> None:
    """Thousands of rows (many multi-row statements, a partial last one, duplicate keys across
    statement boundaries) sum exactly, with no hint, a right one or an all-new one."""
    rng = np.random.default_rng(3)
    store, want = SQLiteStore(tmp_path / "p.db"), MemoryStore()
    for size in (1234, 4001, 200):
        keys = rng.choice(np.arange(1, 3000, dtype=np.uint64), size)
        keys[::7] = np.uint64(2**64 - 5)  # high bit set, repeated
        deltas = rng.integers(-2, 9, (size, NCOLS))
        held = np.isin(keys, np.array(list(contents(store)), dtype=np.uint64))
        new = {"none": None, "right": ~held, "all": np.ones(size, bool)}[hint]
        store.apply(keys, deltas, new=new)
        want.apply(keys, deltas)
    assert contents(store) == contents(want)
    store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_keys_hint_of_the_wrong_shape_is_refused(stores: Stores, kind: str) -> None:
    with pytest.raises(ValueError, match="new must be a mask"):
        stores.new(kind).apply(*arrays([(1, [1, 0, 0])]), new=np.array([True, False]))


@pytest.mark.parametrize("kind", KINDS)
def test_an_apply_expecting_other_positions_writes_nothing(stores: Stores, kind: str) -> None:
    store = stores.new(kind)
    store.apply(*arrays([(5, [1, 0, 0])]), positions={"t/0": 10})
    with pytest.raises(PositionsMoved, match="t/0"):
        store.apply(*arrays([(5, [1, 0, 0])]), {"t/0": 20}, {"m": b"x"}, expect={"t/0": 9})
    with pytest.raises(PositionsMoved, match="t/1"):
        store.apply(*arrays([(5, [1, 0, 0])]), {"t/1": 1}, expect={"t/0": 10, "t/1": 0})
    assert contents(store) == {5: (1, 0, 0)} and store.positions() == {"t/0": 10}
    assert store.get_meta("m") is None
    store.apply(*arrays([(5, [1, 0, 0])]), {"t/0": 20, "t/1": 1},
                expect={"t/0": 10, "t/1": None})
    assert contents(store) == {5: (2, 0, 0)} and store.positions() == {"t/0": 20, "t/1": 1}


# -- merging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dst_kind", KINDS)
def test_merge_into_is_exact(stores: Stores, dst_kind: str) -> None:
    a = [(1, [2, 1, 1]), (2**64 - 1, [1, 0, 0])]
    b = [(1, [3, 3, 0]), (9, [1, 0, 1])]
    base = [(9, [10, 10, 0])]
    dst = stores.filled(dst_kind, base)
    src_a, src_b = stores.filled("sqlite", a), stores.filled("memory", b)
    rows = merge_into(dst, src_a, src_b)
    assert rows == src_a.size() + src_b.size() == 4
    assert contents(dst) == reference(base, a, b)
    assert contents(src_a) == reference(a)  # sources are left alone
    np.testing.assert_array_equal(totals(dst), [17, 14, 2])


def merged(stores: Stores, kind: str, *parts: PatternStore) -> PatternStore:
    dst = stores.new(kind)
    merge_into(dst, *parts)
    return dst


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(count_set_st, count_set_st, count_set_st, st.sampled_from(KINDS))
def test_merge_is_associative_and_commutative(a: Rows, b: Rows, c: Rows, kind: str) -> None:
    """merge(a, merge(b, c)) == merge(merge(a, b), c) and merge(a, b) == merge(b, a); inputs and
    inner merges live in memory, the outer results in ``kind`` (SQLite files are slow to make)."""
    with scratch_stores() as stores:
        sa, sb, sc = (stores.filled("memory", rows) for rows in (a, b, c))
        left = merged(stores, kind, sa, merged(stores, "memory", sb, sc))
        right = merged(stores, kind, merged(stores, "memory", sa, sb), sc)
        assert contents(left) == contents(right) == reference(a, b, c)
        assert contents(merged(stores, kind, sa, sb)) == contents(merged(stores, kind, sb, sa))


def test_merged_totals_are_the_sum_of_totals(stores: Stores) -> None:
    rng = np.random.default_rng(3)
    parts = []
    for kind in ("sqlite", "memory", "sqlite"):
        keys = rng.integers(1, 500, size=300).astype(np.uint64)
        parts.append(stores.filled(kind, [(int(k), [1, int(k) % 2, 0]) for k in keys]))
    dst = merged(stores, "sqlite", *parts)
    np.testing.assert_array_equal(totals(dst), sum(totals(p) for p in parts))
    assert contents(dst) == reference(*(list(contents(p).items()) for p in parts))


# -- opening stores ------------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    for url, path in (
        (f"sqlite:///{tmp_path}/a.db", tmp_path / "a.db"),
        (str(tmp_path / "b.db"), tmp_path / "b.db"),
    ):
        with open_store(url) as store:
            assert isinstance(store, SQLiteStore)
            assert store.path == path
            assert store.url == f"sqlite:///{path}"
        assert path.is_file()


@pytest.mark.parametrize(
    ("make_url", "error", "message"),
    [
        (lambda d: "postgres://db/neurogate", ValueError, "unsupported store URL.*memory://"),
        (lambda d: "redis://localhost", ValueError, "unsupported store URL"),
        (lambda d: str(d / "no" / "such" / "p.db"), FileNotFoundError, "does not exist.*such"),
        (lambda d: f"sqlite:///{d}/missing/p.db", FileNotFoundError, "missing"),
    ],
    ids=["postgres", "redis", "missing-dir", "missing-dir-url"],
)
def test_open_store_errors_are_clear(
    tmp_path: Path, make_url: Callable[[Path], str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        open_store(make_url(tmp_path))


@pytest.mark.parametrize(
    "content",
    [b"timestamp,value\n1,2\n" * 100, bytes(range(256)) * 20],
    ids=["csv", "binary"],
)
def test_non_sqlite_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a usable neurogate SQLite store"):
        open_store(str(path))
    assert path.read_bytes() == content  # and left untouched


def test_another_applications_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite header is not enough: a database with other tables is never opened as a
    store (opening one used to add the store's tables to it, and count into it)."""
    path = tmp_path / "crm.db"
    before = foreign_sqlite(path)
    for url in (str(path), f"sqlite:///{path}"):
        with pytest.raises(ValueError, match=r"not a usable neurogate SQLite store.*customers"):
            open_store(url)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]  # no -wal/-shm left


def test_empty_files_and_databases_become_stores(tmp_path: Path) -> None:
    (tmp_path / "zero.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "blank.db").close()
    for name in ("zero.db", "blank.db"):
        assert inspect_file(tmp_path / name)[0] in ("empty", "missing")
        with SQLiteStore(tmp_path / name) as store:
            store.apply(*arrays([(1, [1, 0, 0])]))
        assert inspect_file(tmp_path / name) == ("store", "")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ValueError, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        SQLiteStore(path)


def test_reopening_does_not_rerun_migrations(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with SQLiteStore(path) as store:
        store.apply(*arrays([(1, [1, 0, 0])]))
    for _ in range(2):
        with SQLiteStore(path) as again:
            assert contents(again) == {1: (1, 0, 0)}

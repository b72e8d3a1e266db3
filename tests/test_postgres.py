"""PostgresStore against the real server: same behaviour as the other stores, migrations,
atomic applies under dropped connections and outages, merges across
back-ends and the ``db`` / ``patterns export|import`` commands."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from neurogate.cli import store as cli_store
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.keys import NCOLS
from neurogate.engine.stores import (
    MemoryStore,
    PositionsMoved,
    PostgresStore,
    SQLiteStore,
    StoreUnavailable,
    merge_into,
    open_store,
    totals,
)
from neurogate.engine.stores import postgres as pgmod
from neurogate.engine.stores.postgres import SCHEMA_VERSION, SchemaError
from tests import pg_fixtures as fx
from tests.pg_fixtures import Proxy, admin_connect, contents, terminate_backends, url_via

pg_db, pg_url, pg_proxy = fx.pg_db, fx.pg_url, fx.pg_proxy  # fixtures, by name

MASK64 = (1 << 64) - 1


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url, retry_seconds=10)
    yield s
    s.close()


def rand_batch(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys over the whole uint64 range (high bit set included) mixed with a small pool, so
    batches repeat keys; deltas include negatives."""
    pool = rng.integers(1, 30, size=size)
    wide = rng.integers(1, MASK64, size=size, dtype=np.uint64, endpoint=True)
    keys = np.where(rng.random(size) < 0.5, pool.astype(np.uint64), wide)
    return keys, rng.integers(-3, 1000, size=(size, NCOLS))


def reference(batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, tuple[int, ...]]:
    acc: dict[int, np.ndarray] = {}
    for keys, deltas in batches:
        for k, d in zip(keys.tolist(), deltas, strict=True):
            acc[k] = acc.get(k, np.zeros(NCOLS, np.int64)) + d
    return {k: tuple(int(x) for x in v) for k, v in acc.items()}


# -- the PatternStore contract -------------------------------------------------------------------


def test_agrees_with_the_memory_store_on_random_apply_sequences(store: PostgresStore) -> None:
    rng = np.random.default_rng(7)
    mem = MemoryStore()
    batches = []
    positions: dict[str, int] = {}
    for i in range(8):
        keys, deltas = rand_batch(rng, int(rng.integers(0, 60)))
        pos = {"topic/0": int(rng.integers(0, 10**12)), f"f{i % 3}.csv": i}
        for s in (store, mem):
            s.apply(keys, deltas, pos, {"detector/state": bytes([i]) * 5})
        batches.append((keys, deltas))
        positions.update(pos)
    want = reference(batches)
    assert contents(store) == contents(mem) == want
    assert store.size() == len(want)
    assert store.positions() == positions
    assert store.get_meta("detector/state") == bytes([7]) * 5
    probe = np.array([*list(want)[:6], 2**63, 12345678, *list(want)[:2]], dtype=np.uint64)
    np.testing.assert_array_equal(store.fetch(probe), mem.fetch(probe))
    np.testing.assert_array_equal(totals(store), totals(mem))


def test_fenced_applies_race_and_exactly_one_wins(pg_url: str) -> None:
    """Two writers (two clients, like a zombie worker and the partition's new owner) both
    expect the same position and apply at once, many times: each round exactly one lands."""
    stores = [PostgresStore(pg_url, retry_seconds=10) for _ in range(2)]
    key, delta = np.array([7], dtype=np.uint64), np.array([[1, 0, 0]])
    try:
        stores[0].apply(key[:0], delta[:0], {"t/0": 0})
        wins = []
        for rnd in range(20):
            barrier = threading.Barrier(2)
            landed: list[int] = []

            def write(i: int, rnd: int = rnd, barrier: threading.Barrier = barrier,
                      landed: list[int] = landed) -> None:
                barrier.wait()
                try:
                    stores[i].apply(key, delta, {"t/0": rnd + 1}, expect={"t/0": rnd})
                    landed.append(i)
                except PositionsMoved:
                    pass

            threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(landed) == 1, landed
            wins.append(landed[0])
        assert contents(stores[0]) == {7: (20, 0, 0)}
        assert stores[1].positions() == {"t/0": 20}
        with pytest.raises(PositionsMoved, match="t/0"):  # absent positions are fenced too
            stores[1].apply(key, delta, {"t/1": 5}, expect={"t/1": None, "t/0": 3})
        assert contents(stores[0]) == {7: (20, 0, 0)}
        stores[1].apply(key, delta, {"t/1": 5}, expect={"t/1": None, "t/0": 20})
        assert stores[0].positions() == {"t/0": 20, "t/1": 5}
    finally:
        for s in stores:
            s.close()


def test_fetch_handles_unknown_duplicate_and_empty_keys(store: PostgresStore) -> None:
    high = 2**64 - 2
    store.apply(np.array([5, high], np.uint64), np.array([[1, 2, 3], [4, 0, 4]]))
    got = store.fetch(np.array([high, 6, 5, high], dtype=np.uint64))
    np.testing.assert_array_equal(got, [[4, 0, 4], [0, 0, 0], [1, 2, 3], [4, 0, 4]])
    assert store.fetch(np.array([], dtype=np.uint64)).shape == (0, NCOLS)


def test_large_batches_are_chunked_in_one_transaction(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgmod, "_CHUNK", 7)  # many statements per apply and per fetch
    keys = np.arange(1, 100, dtype=np.uint64)
    store.apply(keys, np.ones((keys.size, NCOLS), np.int64), {"f": 1})
    np.testing.assert_array_equal(store.fetch(keys[::-1]), np.ones((keys.size, NCOLS)))
    with pytest.raises(psycopg.DataError):  # the last statement fails: none of the chunks stay
        store.apply(keys, np.ones((keys.size, NCOLS), np.int64), {"f": 2**70})
    assert contents(store) == {k: (1, 1, 1) for k in range(1, 100)}
    assert store.positions() == {"f": 1}


def test_iter_counts_covers_the_signed_range_in_chunks(store: PostgresStore) -> None:
    edge = [1, 2**63 - 1, 2**63, 2**64 - 1, 2**62]  # int64 max, int64 min, -1 as signed
    keys = np.array(edge + list(range(2, 20)), dtype=np.uint64)
    store.apply(keys, np.arange(keys.size * NCOLS).reshape(-1, NCOLS))
    chunks = list(store.iter_counts(chunk=5))
    assert [c[0].size for c in chunks] == [5, 5, 5, 5, 3]
    signed = np.concatenate([c[0] for c in chunks]).view(np.int64)
    assert (np.diff(signed) > 0).all()  # key order, each key once
    assert list(store.iter_counts(chunk=23))[0][0].size == 23
    assert len(list(store.iter_counts(chunk=23))) == 1
    with pytest.raises(ValueError, match="chunk"):
        next(store.iter_counts(chunk=0))


def test_meta_blobs(store: PostgresStore) -> None:
    assert store.get_meta("encoder/x/1") is None
    store.put_meta("encoder/x/1", b"\x00one")
    store.put_meta("encoder/x/2", b"two")
    store.put_meta("encoder/x/1", b"uno")
    store.put_meta("enc_other", b"3")
    store.put_meta("Zed", b"4")
    assert store.get_meta("encoder/x/1") == b"uno"
    assert store.meta_names("encoder/") == ["encoder/x/1", "encoder/x/2"]
    assert store.meta_names("enc_") == ["enc_other"]  # '_' is literal, not a wildcard
    assert store.meta_names() == sorted(["Zed", "enc_other", "encoder/x/1", "encoder/x/2"])


def test_persists_and_open_store_routes_postgresql_urls(pg_url: str) -> None:
    with open_store(pg_url) as s:
        assert isinstance(s, PostgresStore)
        s.apply(np.array([1, 2**63 + 1], np.uint64), np.array([[1, 0, 0], [5, 2, 3]]), {"a": 3})
    with open_store(pg_url) as again:
        assert contents(again) == {1: (1, 0, 0), 2**63 + 1: (5, 2, 3)}
        assert again.positions() == {"a": 3}
    for bad in ("postgres://db/neurogate", "redis://localhost", "mysql://x/y"):
        with pytest.raises(ValueError, match="unsupported store URL"):
            open_store(bad)


def test_passwords_never_reach_urls_or_errors(pg_url: str, pg_proxy: Proxy) -> None:
    url = url_via(pg_url, pg_proxy.port).replace("postgres@", "postgres:s3cret-pw@")
    with PostgresStore(url, retry_seconds=5) as s:  # trust auth ignores the password
        assert "s3cret" not in s.url + repr(s) and s.url.startswith("postgresql://postgres@")
        pg_proxy.stop()
        s.retry_seconds = 0.5
        with pytest.raises(StoreUnavailable) as err:
            s.positions()
        assert "s3cret" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_configuration_errors_fail_fast_and_clearly(pg_url: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="does not exist.*configuration error"):
        PostgresStore(pg_url + "_missing", retry_seconds=30)
    with pytest.raises(ValueError, match="invalid port"):
        open_store("postgresql://localhost:fivefourthreetwo/db")
    with pytest.raises(ValueError, match="invalid PostgreSQL connection string"):
        open_store("postgresql://u@[::1/db")
    assert time.monotonic() - t0 < 10


# -- migrations ----------------------------------------------------------------------------------


def test_migrations_are_versioned_idempotent_and_refuse_newer_schemas(pg_url: str) -> None:
    with pytest.raises(SchemaError, match="schema version 0.*db migrate"):
        PostgresStore(pg_url, migrate=False)
    with PostgresStore(pg_url, migrate=False, check_schema=False) as s:
        assert s.schema_version() == 0
        assert s.migrate() == [1, 2, 3]
        assert s.migrate() == []
        assert s.schema_version() == SCHEMA_VERSION
        s.apply(np.array([3], np.uint64), np.array([[1, 1, 0]]))
    with admin_connect(pg_url) as conn:
        rows = conn.execute("SELECT version, description FROM neurogate_schema").fetchall()
        assert [r[0] for r in rows] == [1, 2, 3] and all(r[1] for r in rows)
        conn.execute("DELETE FROM neurogate_schema WHERE version = %s",  # a lost record
                     (SCHEMA_VERSION,))
    with PostgresStore(pg_url) as s:  # re-running the last step finds its objects, keeps data
        assert s.schema_version() == SCHEMA_VERSION
        assert contents(s) == {3: (1, 1, 0)}
    with admin_connect(pg_url) as conn:
        conn.execute("INSERT INTO neurogate_schema VALUES (%s, 'from the future')",
                     (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaError, match="newer than this neurogate.*upgrade"):
        PostgresStore(pg_url)


def test_concurrent_first_opens_migrate_once(pg_url: str) -> None:
    results: list[Any] = []

    def open_one() -> None:
        try:
            with PostgresStore(pg_url, migrate=False, check_schema=False) as s:
                results.append(s.migrate())
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=len) == [[], [], [], [1, 2, 3]]


# -- atomicity, dropped connections, outages -----------------------------------------------------


def test_connections_killed_between_calls_are_replaced(store: PostgresStore, pg_url: str) -> None:
    store.apply(np.array([1], np.uint64), np.array([[1, 0, 0]]))
    assert terminate_backends(pg_url) >= 1
    store.apply(np.array([1], np.uint64), np.array([[1, 0, 0]]), {"f": 2})
    assert terminate_backends(pg_url) >= 1
    np.testing.assert_array_equal(store.fetch(np.array([1], np.uint64)), [[2, 0, 0]])
    assert terminate_backends(pg_url) >= 1
    assert len(list(store.iter_counts())) == 1
    assert store.stats["retries"] >= 3


@pytest.mark.slow
def test_unreachable_postgres_raises_store_unavailable_after_the_budget(
    pg_url: str, pg_proxy: Proxy
) -> None:
    with PostgresStore(url_via(pg_url, pg_proxy.port), retry_seconds=1.5,
                       connect_timeout=2) as s:
        s.apply(np.array([1], np.uint64), np.array([[1, 0, 0]]), {"f": 1})
        pg_proxy.stop()
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable: could not apply a batch"):
            s.apply(np.array([1, 2], np.uint64), np.array([[5, 0, 0], [1, 1, 1]]), {"f": 2})
        assert time.monotonic() - t0 < 6
        assert s.stats["retries"] >= 1
        pg_proxy.start()
        s.apply(np.array([2], np.uint64), np.array([[1, 0, 0]]), {"f": 3})
        assert contents(s) == {1: (1, 0, 0), 2: (1, 0, 0)}  # the failed batch never landed
        assert s.positions() == {"f": 3}


def test_an_outage_shorter_than_the_budget_is_bridged(pg_url: str, pg_proxy: Proxy) -> None:
    with PostgresStore(url_via(pg_url, pg_proxy.port), retry_seconds=20) as s:
        s.apply(np.array([1], np.uint64), np.array([[1, 0, 0]]))
        pg_proxy.stop()
        threading.Timer(1.0, pg_proxy.start).start()
        s.apply(np.array([1], np.uint64), np.array([[1, 0, 0]]), {"f": 1})
        assert contents(s) == {1: (2, 0, 0)}
        assert s.stats["retries"] >= 1


def test_detector_keeps_its_counts_while_postgres_is_down(
    pg_url: str, pg_proxy: Proxy, fast_config: EngineConfig
) -> None:
    events = [Event("s", 1_700_000_000.0 + 60 * i, (float(np.sin(i / 5)),)) for i in range(300)]
    ref = Detector(fast_config, MemoryStore(), flush_every=None)
    ref.process_many(events)
    ref.flush({"f": 300})
    with PostgresStore(url_via(pg_url, pg_proxy.port), retry_seconds=0.5) as s:
        det = Detector(fast_config, s, flush_every=None)
        det.process_many(events[:150])
        det.flush({"f": 150})
        det.process_many(events[150:])
        pg_proxy.stop()
        with pytest.raises(StoreUnavailable):
            det.flush({"f": 300})
        pg_proxy.start()
        det.flush({"f": 300})  # the pending counts were kept: nothing lost, nothing doubled
        assert contents(s) == contents(ref.store) and s.positions() == {"f": 300}


# -- merge and federation ------------------------------------------------------------------------


def test_merge_between_sqlite_and_postgres_is_exact(pg_db: Callable[[], str],
                                                    tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    parts = [rand_batch(rng, 200) for _ in range(3)]
    with SQLiteStore(tmp_path / "site1.db") as site1, PostgresStore(pg_db()) as site2, \
            PostgresStore(pg_db()) as central, SQLiteStore(tmp_path / "back.db") as back:
        site1.apply(*parts[0])
        site1.apply(*parts[1])
        site2.apply(*parts[2])
        assert merge_into(central, site1, site2) == site1.size() + site2.size()
        assert contents(central) == reference(parts)
        merge_into(back, central)
        assert contents(back) == contents(central)


# -- command line ----------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_store.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_db_migrate_and_status_commands(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "db", "status", "--store", pg_url)
    assert code == 0 and f"version 0 of {SCHEMA_VERSION}; pending [1, 2, 3]" in out
    code, out, _ = run_cli(capsys, "db", "migrate", "--store", pg_url)
    assert code == 0 and "applied migration(s) 1, 2, 3" in out
    code, out, _ = run_cli(capsys, "db", "migrate", "--store", pg_url)
    assert code == 0 and "schema up to date" in out
    with PostgresStore(pg_url) as s:
        s.apply(np.array([1, 2], np.uint64), np.array([[3, 1, 0], [1, 0, 1]]), {"file:/a": 4})
    code, out, _ = run_cli(capsys, "db", "status", "--store", pg_url)
    assert code == 0 and "2 keys; totals n=4 n0=1 n1=1" in out and "file:/a  4" in out
    code, out, _ = run_cli(capsys, "db", "status", "--store", pg_url, "--json")
    assert code == 0 and f'"schema_version": {SCHEMA_VERSION}' in out
    code, _, err = run_cli(capsys, "db", "migrate", "--store", "x.db")
    assert code == 2 and "db commands work on postgresql://" in err


def test_db_commands_fail_cleanly_when_postgres_is_unreachable(
    capsys: pytest.CaptureFixture[str], pg_proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUROGATE_STORE_RETRY_SECONDS", "1")
    pg_proxy.stop()
    url = f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/postgres"
    code, _, err = run_cli(capsys, "db", "status", "--store", url)
    assert code == 2 and "neurogate: error: PostgreSQL store" in err and "unavailable" in err


def test_export_import_sqlite_to_postgres_is_exactly_once(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    a, b = rand_batch(rng, 300), rand_batch(rng, 100)
    with SQLiteStore(tmp_path / "site.db") as site:
        site.apply(*a, positions={"file:/data/x.csv": 300})
    with PostgresStore(pg_url) as dst:
        dst.apply(*b)
    monkeypatch.setattr(cli_store, "CHUNK_ROWS", 50)
    export = tmp_path / "site.patterns.zip"
    code, out, _ = run_cli(capsys, "patterns", "export", str(tmp_path / "site.db"), str(export))
    assert code == 0 and "exported" in out and not list(tmp_path.glob("*.partial"))
    header, summary = cli_store.read_export(export)
    assert header["source_positions"] == {"file:/data/x.csv": 300}
    assert summary["chunks"] > 2

    # an import that dies after two chunks resumes, and a repeated one adds nothing
    class Crash(Exception):
        pass

    with PostgresStore(pg_url) as dst:
        real = dst.apply
        seen: list[int] = []

        def failing(*args: Any, **kwargs: Any) -> None:
            if len(seen) == 2:
                raise Crash
            seen.append(1)
            real(*args, **kwargs)

        dst.apply = failing  # type: ignore[method-assign]
        with pytest.raises(Crash):
            cli_store.import_counts(dst, export)
    code, out, _ = run_cli(capsys, "patterns", "import", pg_url, str(export))
    assert code == 0 and f"resumed after 2 of {summary['chunks']} chunks" in out
    with PostgresStore(pg_url) as dst:
        assert contents(dst) == reference([a, b])
    code, out, _ = run_cli(capsys, "patterns", "import", pg_url, str(export))
    assert code == 0 and "already imported" in out
    code, out, _ = run_cli(capsys, "patterns", "import", pg_url, str(export), "--again")
    assert code == 0
    with PostgresStore(pg_url) as dst:
        assert contents(dst) == reference([a, a, b])


def test_import_refuses_damaged_or_foreign_files(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MemoryStore() as src:
        src.apply(np.array([1, 2], np.uint64), np.array([[1, 0, 0], [2, 1, 1]]))
        cli_store.export_counts(src, tmp_path / "ok.zip")
    data = (tmp_path / "ok.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.zip").write_text("timestamp,value\n1,2\n")
    for name, message in (("cut.zip", "not a complete"), ("text.zip", "not a complete"),
                          ("none.zip", "file not found")):
        code, _, err = run_cli(capsys, "patterns", "import", pg_url, str(tmp_path / name))
        assert code == 2 and message in err
    with PostgresStore(pg_url) as dst:
        assert dst.size() == 0 and dst.positions() == {}

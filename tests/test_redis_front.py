"""CachedStore against the real Redis and PostgreSQL: reads agree with PostgreSQL under every
interleaving of fills and writes, Redis failures fall back to PostgreSQL and recover, memory
stays bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from neurogate.cli import store as cli_store
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.keys import NCOLS
from neurogate.engine.stores import (
    CachedStore,
    MemoryStore,
    PostgresStore,
    StoreUnavailable,
    open_store,
)
from tests import pg_fixtures as fx
from tests.conftest import seasonal_stream
from tests.pg_fixtures import (
    REDIS_URL,
    Proxy,
    RedisServer,
    admin_connect,
    contents,
    free_port,
    url_via,
)

# fixtures, by name
pg_db, pg_url, pg_proxy = fx.pg_db, fx.pg_url, fx.pg_proxy
redis_prefix, redis_server = fx.redis_prefix, fx.redis_server

Make = Callable[..., CachedStore]


@pytest.fixture
def make(pg_url: str, redis_prefix: str) -> Iterator[Make]:
    """CachedStores on one fresh database and one private prefix (so: workers sharing both)."""
    made: list[CachedStore] = []

    def new(redis_url: str = REDIS_URL, url: str | None = None, **kw: Any) -> CachedStore:
        kw.setdefault("prefix", redis_prefix)
        s = CachedStore(PostgresStore(url or pg_url, retry_seconds=5), redis_url, **kw)
        made.append(s)
        return s

    yield new
    for s in made:
        s.close()


def arr(*keys: int) -> np.ndarray:
    return np.array(keys, dtype=np.uint64)


def rows(*counts: tuple[int, int, int]) -> np.ndarray:
    return np.array(counts, dtype=np.int64).reshape(-1, NCOLS)


def test_reads_hit_after_a_fill_and_writes_invalidate(make: Make) -> None:
    s = make()
    s.apply(arr(5, 2**64 - 2), rows((1, 2, 3), (4, 0, 4)), {"f": 1})
    probe = arr(2**64 - 2, 6, 5, 2**64 - 2)
    want = [[4, 0, 4], [0, 0, 0], [1, 2, 3], [4, 0, 4]]
    np.testing.assert_array_equal(s.fetch(probe), want)
    assert (s.stats["hits"], s.stats["misses"], s.stats["fills"]) == (0, 3, 3)
    np.testing.assert_array_equal(s.fetch(probe), want)  # unknown key 6 is cached as zeros too
    assert (s.stats["hits"], s.stats["misses"]) == (3, 3)
    s.apply(arr(5), rows((1, 1, 1)))
    np.testing.assert_array_equal(s.fetch(arr(5, 6)), [[2, 3, 4], [0, 0, 0]])
    assert s.stats["misses"] == 4 and s.stats["invalidated"] == 3
    assert s.positions() == {"f": 1} and s.size() == 2
    assert s.stats["redis_errors"] == 0


def test_random_workload_of_two_workers_always_reads_what_postgres_holds(make: Make) -> None:
    a, b = make(), make()
    rng = np.random.default_rng(11)
    pool = np.arange(1, 400, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for step in range(60):
        w = (a, b)[step % 2]
        keys = rng.choice(pool, size=int(rng.integers(1, 80)))
        if rng.random() < 0.4:
            w.apply(keys, rng.integers(0, 5, size=(keys.size, NCOLS)))
        else:
            np.testing.assert_array_equal(w.fetch(keys), w.backend.fetch(keys))
    for w in (a, b):
        np.testing.assert_array_equal(w.fetch(pool), a.backend.fetch(pool))
    assert a.stats["hits"] > 0 and b.stats["hits"] > 0


def test_a_fill_that_raced_a_write_is_refused(make: Make) -> None:
    reader, writer = make(), make()
    writer.apply(arr(9), rows((1, 0, 0)))
    read_pg = reader.backend.fetch

    def fetch_then_write(keys: np.ndarray) -> np.ndarray:
        got = read_pg(keys)  # the reader now holds n=1 ...
        writer.apply(arr(9), rows((1, 0, 0)))  # ... and a write commits and invalidates
        return got

    reader.backend.fetch = fetch_then_write  # type: ignore[method-assign]
    np.testing.assert_array_equal(reader.fetch(arr(9)), [[1, 0, 0]])  # its read, not cached
    assert reader.stats["fills_skipped"] == 1 and reader.stats["fills"] == 0
    reader.backend.fetch = read_pg  # type: ignore[method-assign]
    np.testing.assert_array_equal(reader.fetch(arr(9)), [[2, 0, 0]])
    np.testing.assert_array_equal(reader.fetch(arr(9)), [[2, 0, 0]])
    assert reader.stats["hits"] == 1


def test_a_fill_between_commit_and_invalidation_is_not_counted_twice(make: Make) -> None:
    reader, writer = make(), make()
    writer.apply(arr(9), rows((5, 0, 0)))
    invalidate = writer._send_invalidations

    def read_first(keys: np.ndarray) -> None:
        # committed, not yet invalidated: the reader caches the new value (7) ...
        np.testing.assert_array_equal(reader.fetch(arr(9)), [[7, 0, 0]])
        invalidate(keys)  # ... and the invalidation drops it; it never becomes 7 + 2

    writer._send_invalidations = read_first  # type: ignore[method-assign]
    writer.apply(arr(9), rows((2, 0, 0)))
    for _ in range(2):
        np.testing.assert_array_equal(reader.fetch(arr(9)), [[7, 0, 0]])
    assert contents(reader) == {9: (7, 0, 0)}
    # a live writer's debt in flight does not keep readers off the cache
    assert reader.stats["fills"] == 2 and reader.stats["fallback_keys"] == 0


class Died(BaseException):
    """The writer's process ends here (nothing after this line of it runs)."""


def wait_for_sessions_to_end(pg_url: str) -> None:
    """Until the server processes of the writers that owe invalidations are gone: a client
    closing its connection ends its server process a moment later (longer on a loaded
    machine), and until then the reader rightly takes the writer for alive."""
    import psycopg

    deadline = time.monotonic() + 30
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM neurogate_cache_unconfirmed u WHERE u.pid IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM pg_stat_get_activity(u.pid))").fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the dead writer's server process did not end within 30 s")


def test_a_writer_dead_between_its_commit_and_its_invalidation(make: Make, pg_url: str) -> None:
    reader, writer = make(), make()
    writer.apply(arr(9), rows((1, 0, 0)))
    for _ in range(2):
        np.testing.assert_array_equal(reader.fetch(arr(9)), [[1, 0, 0]])  # cached: n=1

    def die(keys: np.ndarray) -> None:
        raise Died

    writer._send_invalidations = die  # type: ignore[method-assign]
    with pytest.raises(Died):
        writer.apply(arr(9), rows((1, 0, 0)))  # committed, never invalidated
    writer.backend.close()  # its PostgreSQL sessions end with the process
    writer._settle = lambda: False  # type: ignore[method-assign]  # (and close does nothing)
    wait_for_sessions_to_end(pg_url)
    np.testing.assert_array_equal(reader.fetch(arr(9)), [[2, 0, 0]])
    assert reader.stats["cache_clears"] == 1  # the dead writer's debt ended the epoch at once
    np.testing.assert_array_equal(reader.fetch(arr(9)), [[2, 0, 0]])
    assert reader.stats["hits"] == 2


def test_an_epoch_never_ends_between_a_write_and_its_commit(pg_url: str) -> None:
    with PostgresStore(pg_url) as writer, PostgresStore(pg_url) as other:
        real = writer._commit
        ended: list[int] = []
        waited: list[bool] = []

        def commit(cur: Any) -> None:
            t = threading.Thread(target=lambda: ended.append(other.new_cache_epoch()))
            t.start()
            t.join(0.5)
            waited.append(t.is_alive())  # the new epoch waits for this COMMIT ...
            real(cur)
            t.join()

        writer._commit = commit  # type: ignore[method-assign]
        epoch = writer.apply_unconfirmed("w", arr(1), rows((1, 0, 0)))
        assert waited == [True] and ended == [epoch + 1]  # ... and comes after it


def test_detector_on_the_cached_store_scores_like_on_memory(make: Make,
                                                          fast_config: EngineConfig) -> None:
    events = [Event(f"s{i % 3}", 1_700_000_000.0 + 60 * i, (float(np.sin(i / 7) + i % 3),))
              for i in range(900)]
    ref = Detector(fast_config, MemoryStore(), flush_every=300)
    want = ref.process_many(events).score
    cached = make()
    det = Detector(fast_config, cached, flush_every=300, preload_limit=-1)  # fetch path
    got = np.concatenate([det.process_many(events[i : i + 150]).score
                          for i in range(0, 900, 150)])
    np.testing.assert_array_equal(got, want)
    det.flush()
    ref.flush()
    assert contents(cached) == contents(ref.store)
    assert cached.stats["misses"] > 0


# -- Redis failures --------------------------------------------------------------------------------


def test_redis_stopped_serves_from_postgres_and_recovers(
    make: Make, redis_server: RedisServer
) -> None:
    s = make(redis_server.url, backoff_max=0.3)
    keys = arr(1, 2, 3)
    s.apply(keys, rows((1, 0, 0), (2, 0, 0), (3, 0, 0)))
    s.fetch(keys)
    redis_server.stop()
    np.testing.assert_array_equal(s.fetch(keys), rows((1, 0, 0), (2, 0, 0), (3, 0, 0)))
    assert s.stats["redis_errors"] == 1 and s.stats["fallback_keys"] == 3
    s.apply(keys, rows((1, 0, 0), (1, 0, 0), (1, 0, 0)))  # PostgreSQL alone; nothing lost
    np.testing.assert_array_equal(s.fetch(keys), rows((2, 0, 0), (3, 0, 0), (4, 0, 0)))
    assert s.stats["redis_errors"] <= 2  # backing off: not one timeout per call
    redis_server.start()
    time.sleep(0.35)
    for _ in range(2):
        np.testing.assert_array_equal(s.fetch(keys), rows((2, 0, 0), (3, 0, 0), (4, 0, 0)))
    assert s.stats["hits"] >= 3 and s.stats["pending_invalidations"] == 0


def test_invalidations_missed_while_cut_off_are_replayed_first(
    make: Make, redis_server: RedisServer
) -> None:
    proxy = Proxy("127.0.0.1", redis_server.port)
    try:
        via = f"redis://127.0.0.1:{proxy.port}/0"
        cut, other = make(via, backoff_max=0.3), make(redis_server.url)
        cut.apply(arr(7), rows((1, 0, 0)))
        cut.fetch(arr(7))  # cached: n=1
        proxy.stop()  # Redis keeps the entry, this worker can't reach it
        cut.apply(arr(7), rows((1, 0, 0)))
        assert cut.stats["pending_invalidations"] == 1
        # the entry is stale, and the debt recorded in PostgreSQL keeps readers off it
        np.testing.assert_array_equal(other.fetch(arr(7)), [[2, 0, 0]])
        assert other.stats["hits"] == 0 and other.stats["fallback_keys"] == 1
        proxy.start()
        time.sleep(0.35)
        np.testing.assert_array_equal(cut.fetch(arr(7)), [[2, 0, 0]])
        np.testing.assert_array_equal(other.fetch(arr(7)), [[2, 0, 0]])
        assert cut.stats["pending_invalidations"] == 0 and cut.stats["invalidated"] == 2
    finally:
        proxy.stop()


def test_a_writer_cut_off_from_redis_is_waited_for_until_the_grace_ends(
    make: Make, redis_server: RedisServer
) -> None:
    proxy = Proxy("127.0.0.1", redis_server.port)
    try:
        cut = make(f"redis://127.0.0.1:{proxy.port}/0", backoff_max=0.3)
        other = make(redis_server.url, pending_grace=0.5)
        cut.apply(arr(7), rows((1, 0, 0)))
        for _ in range(2):
            np.testing.assert_array_equal(other.fetch(arr(7)), [[1, 0, 0]])  # cached: n=1
        proxy.stop()
        cut.apply(arr(7), rows((1, 0, 0)))  # its invalidation fails, and that is recorded
        np.testing.assert_array_equal(other.fetch(arr(7)), [[2, 0, 0]])  # from PostgreSQL
        assert other.stats["fallback_keys"] == 1 and other.stats["cache_clears"] == 0
        time.sleep(0.6)
        for _ in range(2):  # the grace is over: a new epoch, served from Redis again
            np.testing.assert_array_equal(other.fetch(arr(7)), [[2, 0, 0]])
        assert other.stats["cache_clears"] == 1 and other.stats["hits"] == 2
        proxy.start()
        time.sleep(0.35)
        cut.apply(arr(7), rows((1, 0, 0)))  # in the new epoch; the old debt is moot
        assert cut.epoch == other.epoch and cut.stats["pending_invalidations"] == 0
        np.testing.assert_array_equal(other.fetch(arr(7)), [[3, 0, 0]])
    finally:
        proxy.stop()


def test_too_many_missed_invalidations_clear_the_cache(
    make: Make, redis_server: RedisServer
) -> None:
    proxy = Proxy("127.0.0.1", redis_server.port)
    try:
        cut = make(f"redis://127.0.0.1:{proxy.port}/0", backoff_max=0.3, max_pending=3)
        other = make(redis_server.url)
        cut.apply(arr(1, 2, 3, 4), rows(*[(1, 0, 0)] * 4))
        other.fetch(arr(1, 2, 3, 4))
        proxy.stop()
        cut.apply(arr(1, 2, 3, 4), rows(*[(1, 0, 0)] * 4))
        proxy.start()
        time.sleep(0.35)
        cut.fetch(arr(9))
        assert cut.stats["cache_clears"] == 1
        np.testing.assert_array_equal(other.fetch(arr(1, 2, 3, 4)), rows(*[(2, 0, 0)] * 4))
    finally:
        proxy.stop()


def test_redis_unreachable_from_the_start_is_not_fatal(make: Make) -> None:
    s = make(f"redis://127.0.0.1:{free_port()}/0")
    s.apply(arr(3), rows((1, 1, 0)))
    np.testing.assert_array_equal(s.fetch(arr(3, 4)), [[1, 1, 0], [0, 0, 0]])
    assert s.stats["redis_errors"] >= 1 and s.stats["hits"] == 0


@pytest.mark.slow
def test_postgres_down_keeps_serving_cached_reads_and_refuses_writes(
    pg_url: str, pg_proxy: Proxy, make: Make
) -> None:
    s = make(url=url_via(pg_url, pg_proxy.port))
    s.backend.retry_seconds = 0.5
    s.apply(arr(1, 2), rows((1, 0, 0), (2, 0, 0)), {"f": 1})
    s.fetch(arr(1, 2))
    pg_proxy.stop()
    np.testing.assert_array_equal(s.fetch(arr(1, 2)), rows((1, 0, 0), (2, 0, 0)))  # all hits
    with pytest.raises(StoreUnavailable):
        s.apply(arr(1), rows((5, 0, 0)), {"f": 2})
    with pytest.raises(StoreUnavailable):
        s.fetch(arr(3))  # a miss needs PostgreSQL
    assert s.stats["invalidated"] == 2  # the failed write never touched Redis
    pg_proxy.start()
    np.testing.assert_array_equal(s.fetch(arr(1, 2, 3)), rows((1, 0, 0), (2, 0, 0), (0, 0, 0)))
    assert s.positions() == {"f": 1}


# -- a writer killed while Redis is paused (issue 15, defect 1) ------------------------------------

DRILL_FLUSHED, DRILL_KILLED = 1500, 3000  # events committed before the pause, by the killed one


def drill_setup() -> tuple[EngineConfig, list[Event]]:
    """The configuration and stream of the drill, rebuilt identically in the killed process."""
    config = EngineConfig(warmup=50).replace(**{"neuronet.enabled": False})
    return config, seasonal_stream(sources=3, length=1400, seed=3, plant=False).events


def drill_writer(pg_url: str, redis_url: str, prefix: str) -> None:
    """The process killed in the drill: a detector reading through the Redis front (so the keys
    it meets are cached, most as zeros), one commit while Redis answers, then one more commit,
    after a line on stdin, while Redis is paused."""
    config, events = drill_setup()
    store = CachedStore(PostgresStore(pg_url, retry_seconds=10), redis_url, prefix=prefix)
    det = Detector(config, store, flush_every=None, preload_limit=-1)
    det.process_many(events[:DRILL_FLUSHED])
    det.flush({"in": DRILL_FLUSHED})
    det.process_many(events[DRILL_FLUSHED:DRILL_KILLED])
    print("ready", flush=True)
    sys.stdin.readline()
    det.flush({"in": DRILL_KILLED})  # commits; its invalidation cannot reach Redis
    print("committed", flush=True)
    time.sleep(600)


def stale_entries(redis_url: str, prefix: str, truth: dict[int, tuple[int, ...]]) -> int:
    """Counts cached under ``prefix`` (whatever the layout) that differ from ``truth``."""
    r = redis.Redis.from_url(redis_url)
    stale = 0
    for name in r.scan_iter(match=prefix + ":*"):
        if r.type(name) != b"hash":
            continue
        for field, value in r.hgetall(name).items():
            if len(field) == 8 and len(value) == 8 * NCOLS:
                key = int.from_bytes(field, "little")
                cached = tuple(np.frombuffer(value, dtype="<i8").tolist())
                stale += cached != truth.get(key, (0,) * NCOLS)
    r.close()
    return stale


@pytest.mark.slow
def test_a_writer_killed_while_redis_is_paused_leaves_no_stale_read(
    pg_url: str, redis_server: RedisServer
) -> None:
    """SIGSTOP Redis, SIGKILL a writer that committed meanwhile, SIGCONT: the invalidations it
    owed are gone with it, yet a new detector on the Redis front scores exactly like one on
    PostgreSQL alone, and the cache serves hits again."""
    config, events = drill_setup()
    prefix = "drill:{x}"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; from tests.test_redis_front import drill_writer; "
            "drill_writer(*sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, pg_url, redis_server.url, prefix],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    paused = False
    try:
        assert proc.stdout.readline() == "ready\n", "the writer failed before the pause"
        with CachedStore(PostgresStore(pg_url), redis_server.url, prefix=prefix) as other:
            keys = np.array(sorted(contents(other)), dtype=np.uint64)
            other.fetch(keys)  # another worker caches the committed counts as well
        redis_server.pause()
        paused = True
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while committed(pg_url) != DRILL_KILLED:
            assert time.monotonic() < deadline and proc.poll() is None, "no commit seen"
            time.sleep(0.01)
        proc.kill()  # committed, its invalidation not (or not yet) sent
        assert proc.wait(timeout=30) == -9
    finally:
        if paused:
            redis_server.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    with PostgresStore(pg_url) as pg_only, CachedStore(
        PostgresStore(pg_url), redis_server.url, prefix=prefix
    ) as front:
        truth = contents(pg_only)
        assert stale_entries(redis_server.url, prefix, truth) > 100  # the drill left them
        keys = np.array(sorted(truth), dtype=np.uint64)
        rest = events[DRILL_KILLED:]
        want = Detector(config, pg_only, flush_every=None, preload_limit=-1).process_many(rest)
        got = Detector(config, front, flush_every=None, preload_limit=-1).process_many(rest)
        np.testing.assert_array_equal(got.score, want.score)
        # its first read found the dead writer's debt and ended the epoch: the stale entries
        # are gone, and the new epoch is served from Redis
        assert front.stats["cache_clears"] == 1
        assert stale_entries(redis_server.url, prefix, truth) == 0
        for _ in range(2):
            np.testing.assert_array_equal(front.fetch(keys), pg_only.fetch(keys))
        assert front.stats["hits"] >= keys.size and front.stats["fallback_keys"] == 0


def committed(pg_url: str) -> int | None:
    """The drill's committed input position, as another session sees it."""
    with admin_connect(pg_url) as conn:
        row = conn.execute("SELECT position FROM neurogate_positions WHERE input = 'in'"
                           ).fetchone()
    return None if row is None else int(row[0])


# -- memory bounds, URLs, maintenance --------------------------------------------------------------


def test_buckets_expire_and_hold_at_most_their_share(make: Make, redis_prefix: str) -> None:
    keys = np.arange(1, 2001, dtype=np.uint64)
    r = redis.Redis.from_url(REDIS_URL)
    s = make(ttl=30, buckets=4)
    s.apply(keys, np.ones((keys.size, NCOLS), np.int64))
    s.fetch(keys[:1000])
    buckets = list(r.scan_iter(match=redis_prefix + ":*:b:*"))
    assert len(buckets) == 4
    ttl_before = {b: r.pttl(b) for b in buckets}
    assert all(0 < t <= 30_000 for t in ttl_before.values())
    time.sleep(0.05)
    s.fetch(keys[1000:])  # more fills do not extend a bucket's life (PEXPIRE NX)
    assert all(r.pttl(b) <= ttl_before[b] for b in buckets)
    capped = make(prefix=f"{redis_prefix}:cap", max_keys=64, buckets=4)
    for i in range(0, keys.size, 100):
        capped.fetch(keys[i : i + 100])
    for b in r.scan_iter(match=f"{redis_prefix}:cap:*:b:*"):
        assert r.hlen(b) <= 64 // 4 + 100  # its share, plus at most the fill that overflowed
    np.testing.assert_array_equal(capped.fetch(keys), np.ones((keys.size, NCOLS)))
    r.close()


def test_open_store_builds_a_redis_front(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    front_url = pg_url.replace("postgresql://", "redis+postgresql://")
    with open_store(front_url + f"?redis={REDIS_URL}") as s:
        assert isinstance(s, CachedStore)
        assert s.prefix == f"neurogate:{{{s.backend.store_id}}}"
        assert s.url == "redis+" + s.backend.url
        s.apply(arr(1), rows((1, 0, 0)))
        assert s.fetch(arr(1)).tolist() == [[1, 0, 0]]
        s.clear_cache()
        assert not list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{s.prefix}:*"))
    monkeypatch.setenv("NEUROGATE_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    with open_store(front_url) as s:  # Redis from the environment (here: nothing there)
        assert s.fetch(arr(1)).tolist() == [[1, 0, 0]]
        assert isinstance(s, CachedStore) and s.stats["redis_errors"] == 1


def test_clear_cache_after_a_restore_moves_past_every_cached_epoch(make: Make,
                                                                   pg_url: str) -> None:
    s = make()
    s.apply(arr(1), rows((5, 0, 0)))
    s.clear_cache()
    s.apply(arr(1), rows((1, 0, 0)))
    np.testing.assert_array_equal(s.fetch(arr(1)), [[6, 0, 0]])  # cached in epoch 2
    with admin_connect(pg_url) as conn:  # restored from a backup taken before all this
        conn.execute("UPDATE neurogate_patterns SET n = 5")
        conn.execute("UPDATE neurogate_cache_epoch SET epoch = 1")
    s.clear_cache()
    assert s.epoch == 3  # not 2: that namespace holds counts newer than the database
    np.testing.assert_array_equal(s.fetch(arr(1)), [[5, 0, 0]])


def test_clear_cache_command(make: Make, pg_url: str, capsys: pytest.CaptureFixture[str],
                             redis_prefix: str) -> None:
    s = make()
    s.apply(arr(1, 2), rows((1, 0, 0), (1, 0, 0)))
    s.fetch(arr(1, 2))
    assert s.clear_cache() >= 1
    s.fetch(arr(1, 2))
    assert s.stats["misses"] == 4
    url = pg_url.replace("postgresql://", "redis+postgresql://") + f"?redis={REDIS_URL}"
    assert cli_store.main(["db", "clear-cache", "--store", url]) == 0
    assert "cleared the Redis cache" in capsys.readouterr().out
    assert cli_store.main(["db", "clear-cache", "--store", pg_url]) == 2
    assert "not a Redis-fronted store" in capsys.readouterr().err
    r = redis.Redis.from_url(REDIS_URL)
    store_id = s.backend.store_id
    for key in r.scan_iter(match=f"neurogate:{{{store_id}}}:*"):
        r.delete(key)
    r.close()

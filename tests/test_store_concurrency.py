"""Concurrent writers: two processes upserting overlapping patterns at once end with exact sums,
no deadlocks and no lost updates; Redis-fronted workers racing each other never read stale
counts afterwards; a merge or export reads one snapshot while workers write.

Run as a script, this module is the worker process of the first test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neurogate.engine.keys import NCOLS
from neurogate.engine.stores import CachedStore, PostgresStore

REPO = Path(__file__).resolve().parents[1]

BATCHES, BATCH, POOL = 30, 3000, 4000


def batches(seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A worker's deterministic, shuffled, duplicate-laden batches over a shared key pool."""
    rng = np.random.default_rng(seed)
    pool = (np.arange(1, POOL + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    for _ in range(BATCHES):
        keys = rng.choice(pool, size=BATCH)
        yield keys, rng.integers(0, 4, size=(BATCH, NCOLS))


def worker(url: str, seed: int, start_at: float) -> None:
    """Apply this seed's batches as fast as possible from ``start_at``; print the store stats."""
    with PostgresStore(url) as store:
        todo = list(batches(seed))
        time.sleep(max(0.0, start_at - time.time()))
        for i, (keys, deltas) in enumerate(todo):
            store.apply(keys, deltas, positions={f"worker/{seed}": i + 1},
                        meta={"shared/state": f"{seed}:{i}".encode()})
        print(json.dumps(store.stats))


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
    sys.exit(0)

from tests import pg_fixtures as fx  # noqa: E402  (after the script part above)
from tests.pg_fixtures import REDIS_URL, contents  # noqa: E402

pg_db, pg_url, redis_prefix = fx.pg_db, fx.pg_url, fx.redis_prefix  # fixtures, by name


def expected(*seeds: int) -> dict[int, tuple[int, ...]]:
    acc: dict[int, np.ndarray] = {}
    for seed in seeds:
        for keys, deltas in batches(seed):
            for k, d in zip(keys.tolist(), deltas, strict=True):
                acc[k] = acc.get(k, np.zeros(NCOLS, np.int64)) + d
    return {k: tuple(int(x) for x in v) for k, v in acc.items()}


@pytest.mark.slow
def test_two_processes_upserting_overlapping_keys_end_with_exact_sums(pg_url: str) -> None:
    PostgresStore(pg_url).close()  # migrate once up front
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")},
           "PYTHONPATH": str(REPO)}
    start_at = time.time() + 2.0  # both start together, after their imports
    procs = [subprocess.Popen([sys.executable, __file__, pg_url, str(seed), str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for seed in (1, 2)]
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        stats.append(json.loads(out.strip().splitlines()[-1]))
    assert all(s["deadlocks"] == 0 for s in stats), stats  # sorted keys: no lock cycles
    assert all(s["applies"] == BATCHES for s in stats)
    with PostgresStore(pg_url) as store:
        assert contents(store) == expected(1, 2)  # no lost update, nothing twice
        assert store.positions() == {"worker/1": BATCHES, "worker/2": BATCHES}
        assert store.get_meta("shared/state") in (f"1:{BATCHES - 1}".encode(),
                                                  f"2:{BATCHES - 1}".encode())


def test_redis_fronted_workers_racing_leave_no_stale_cache(
    pg_url: str, redis_prefix: str
) -> None:
    fronts = [CachedStore(PostgresStore(pg_url), REDIS_URL, prefix=redis_prefix, buckets=4)
              for _ in range(3)]
    rng = np.random.default_rng(0)
    pool = np.arange(1, 300, dtype=np.uint64)
    errors: list[BaseException] = []

    def run(front: CachedStore, seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            for _ in range(60):
                keys = r.choice(pool, size=40)
                if r.random() < 0.5:
                    front.apply(keys, np.ones((keys.size, NCOLS), np.int64))
                else:
                    front.fetch(keys)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f, int(rng.integers(1 << 30))))
               for f in fronts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    truth = fronts[0].backend.fetch(pool)
    for f in fronts:
        np.testing.assert_array_equal(f.fetch(pool), truth)
        assert f.stats["hits"] > 0
    for f in fronts:
        f.close()


def test_a_merge_reads_one_snapshot_while_workers_write(pg_url: str) -> None:
    with PostgresStore(pg_url) as reader, PostgresStore(pg_url) as writer:
        keys = np.arange(1, 101, dtype=np.uint64)
        writer.apply(keys, np.ones((keys.size, NCOLS), np.int64))
        chunks = reader.iter_counts(chunk=10)
        first = next(chunks)
        writer.apply(keys, np.ones((keys.size, NCOLS), np.int64))  # lands mid-read
        writer.apply(np.array([1000], np.uint64), np.ones((1, NCOLS), np.int64))
        rest = list(chunks)
        seen = np.concatenate([first[1], *[c[1] for c in rest]])
        assert seen.shape == (100, NCOLS) and (seen == 1).all()
        assert len(contents(reader)) == 101


def test_threads_sharing_one_store_and_its_pool_add_up(pg_url: str) -> None:
    n = 2
    with PostgresStore(pg_url, pool_size=n) as store:
        keys = np.arange(1, 501, dtype=np.uint64)

        def run() -> None:
            for _ in range(10):
                store.apply(keys[::-1], np.ones((keys.size, NCOLS), np.int64))

        threads = [threading.Thread(target=run) for _ in range(2 * n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert contents(store) == {k: (4 * n * 5,) * NCOLS for k in range(1, 501)}
        assert store.stats["deadlocks"] == 0

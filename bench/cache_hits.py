"""Redis cache hit ratio of the Redis front with concurrent writers and no failure.

``--workers`` workers share one PostgreSQL database and one Redis prefix. Each is two store
clients, like a streaming worker's engine and commit threads: a reader that fetches batches of
keys (its own partition's keys and keys shared by all, each drawn with a Zipf-like skew), and a
committer that adds counts to some of them after every ``--fetches-per-commit`` fetches of its
reader, while the reader goes on. Every commit invalidates the keys it touched, so some misses
are inherent; the figure to compare between two versions of the front is the share of fetched
keys that Redis served (the same sequence of reads and writes in both).

Every ``fetch`` first reads the cache epoch and the writers' unconfirmed invalidations from
PostgreSQL (see engine/stores/redis_front.py).

Then, on one client and a warm cache, the cost of that read: the best of ``--rounds`` rounds of
warm lookups (``--check-batch`` keys each) with it, and with it replaced by the epoch already
known, rounds interleaved.

It creates and drops its own database ``neurogate_bench_<random>`` and Redis prefix.

    .venv/bin/python bench/cache_hits.py [--workers 2] [--commits 40] [--rounds 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np
import redis

from neurogate.engine.keys import NCOLS, mix64
from neurogate.engine.stores.postgres import (
    PostgresStore,
    create_database,
    drop_database,
    with_database,
)
from neurogate.engine.stores.redis_front import CachedStore


def skewed(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """``n`` keys of ``pool``, the first ones far more often (Zipf-like, exponent ~1)."""
    ranks = (rng.pareto(1.0, n) * 0.05 * pool.size).astype(np.int64) % pool.size
    return pool[ranks]


def check_cost(url: str, prefix: str, args: argparse.Namespace) -> dict[str, float]:
    """Best warm-lookup keys/s of one client with the epoch read and without it."""
    front = CachedStore(PostgresStore(url), args.redis_url, prefix=f"{prefix}:c",
                        max_keys=4 * args.check_keys)
    keys = mix64(np.arange(1, args.check_keys + 1, dtype=np.uint64) + np.uint64(1 << 50))
    batches = [keys[i : i + args.check_batch] for i in range(0, keys.size, args.check_batch)]
    best = {"with_epoch_read": 0.0, "without": 0.0}
    try:
        for b in batches:
            front.apply(b, np.ones((b.size, NCOLS), np.int64))
            front.fetch(b)
        readable = front._readable
        for _ in range(args.rounds):
            for name in best:
                front._readable = (  # type: ignore[method-assign]
                    readable if name == "with_epoch_read" else lambda: front.epoch)
                t0 = time.perf_counter()
                for b in batches:
                    front.fetch(b)
                best[name] = max(best[name], keys.size / (time.perf_counter() - t0))
    finally:
        front.close()
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = f"neurogate_bench_{uuid.uuid4().hex[:12]}"
    prefix = f"neurogate-bench:{{{uuid.uuid4().hex}}}"
    create_database(args.pg_url, db)
    url = with_database(args.pg_url, db)
    shared = mix64(np.arange(1, args.global_keys + 1, dtype=np.uint64))
    own = [mix64(np.arange(1, args.keys + 1, dtype=np.uint64) + np.uint64((w + 1) << 40))
           for w in range(args.workers)]
    readers = [CachedStore(PostgresStore(url), args.redis_url, prefix=prefix)
               for _ in range(args.workers)]
    committers = [CachedStore(PostgresStore(url), args.redis_url, prefix=prefix)
                  for _ in range(args.workers)]
    due: list[queue.Queue[bool]] = [queue.Queue() for _ in range(args.workers)]
    fetch_seconds = [0.0] * args.workers
    fetches = [0] * args.workers
    commits = [0] * args.workers
    errors: list[BaseException] = []

    def reader(w: int) -> None:
        rng = np.random.default_rng(100 + w)
        n_shared = int(args.batch * args.shared_share)
        try:
            for i in range(args.commits * args.fetches_per_commit):
                keys = np.concatenate([skewed(rng, own[w], args.batch - n_shared),
                                       skewed(rng, shared, n_shared)])
                t0 = time.perf_counter()
                readers[w].fetch(keys)
                fetch_seconds[w] += time.perf_counter() - t0
                fetches[w] += 1
                if (i + 1) % args.fetches_per_commit == 0:
                    due[w].put(True)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            due[w].put(False)

    def committer(w: int) -> None:
        rng = np.random.default_rng(200 + w)
        n_shared = int(args.commit_keys * args.shared_share)
        try:
            while due[w].get():
                keys = np.unique(np.concatenate([
                    skewed(rng, own[w], args.commit_keys - n_shared),
                    skewed(rng, shared, n_shared)]))
                committers[w].apply(keys, np.ones((keys.size, NCOLS), np.int64),
                                    {f"bench/{w}": commits[w]})
                commits[w] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    try:
        for w in range(args.workers):  # every key exists in PostgreSQL before the clock starts
            keys = np.concatenate([own[w], shared]) if w == 0 else own[w]
            committers[w].apply(keys, np.ones((keys.size, NCOLS), np.int64))
        threads = [threading.Thread(target=fn, args=(w,)) for w in range(args.workers)
                   for fn in (reader, committer)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        if errors:
            raise errors[0]
        total = {k: sum(r.stats[k] for r in readers)
                 for k in ("hits", "misses", "fallback_keys")}
        cost = check_cost(url, prefix, args) if args.rounds else {}
    finally:
        for s in readers + committers:
            s.close()
        r = redis.Redis.from_url(args.redis_url)
        for name in r.scan_iter(match=prefix + ":*", count=1000):
            r.unlink(name)
        r.close()
        drop_database(args.pg_url, db)
    read = sum(total.values())
    return {
        "workers": args.workers, "seconds": seconds, "commits": sum(commits),
        "fetches": sum(fetches), **total, "hit_ratio": total["hits"] / max(1, read),
        "keys_read_per_s": read / max(1e-9, sum(fetch_seconds)),
        "fetch_ms": 1000 * sum(fetch_seconds) / max(1, sum(fetches)),
        "warm_lookup_keys_per_s": cost,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--commits", type=int, default=40, help="commits of each worker")
    p.add_argument("--fetches-per-commit", type=int, default=25)
    p.add_argument("--keys", type=int, default=50_000, help="keys of each worker's partition")
    p.add_argument("--global-keys", type=int, default=10_000, help="keys shared by all")
    p.add_argument("--shared-share", type=float, default=0.2,
                   help="share of shared keys in each fetch and commit")
    p.add_argument("--batch", type=int, default=2000, help="keys per fetch")
    p.add_argument("--commit-keys", type=int, default=2000, help="keys per commit")
    p.add_argument("--rounds", type=int, default=15,
                   help="rounds of the epoch read's cost (0: not measured)")
    p.add_argument("--check-keys", type=int, default=200_000,
                   help="keys of the epoch read's cost, looked up --check-batch at a time")
    p.add_argument("--check-batch", type=int, default=20_000)
    p.add_argument("--pg-url", default=os.environ.get(
        "NEUROGATE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin connection used to create/drop the bench database (NEUROGATE_PG_URL)")
    p.add_argument("--redis-url", default=os.environ.get(
        "NEUROGATE_REDIS_URL", "redis://127.0.0.1:6379/0"), help="(NEUROGATE_REDIS_URL)")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['workers']} workers, {res['seconds']:.1f} s, {res['commits']} commits, "
              f"{res['fetches']} fetches: hit ratio {100 * res['hit_ratio']:.2f} % "
              f"(hits {res['hits']:,}, misses {res['misses']:,}, read from PostgreSQL while "
              f"not trusted or down {res['fallback_keys']:,}); {res['keys_read_per_s']:,.0f} "
              f"keys/s, {res['fetch_ms']:.2f} ms per fetch")
        if cost := res["warm_lookup_keys_per_s"]:
            print(f"warm lookups of {args.check_batch:,} keys, best of {args.rounds}: "
                  f"{cost['with_epoch_read']:,.0f} keys/s with the epoch read, "
                  f"{cost['without']:,.0f} without "
                  f"({100 * cost['with_epoch_read'] / cost['without']:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pattern-store throughput against the real servers, next to the raw ceilings of the same run.

Measures, on the same keys and batches:

- PostgreSQL upsert rows/s: ``PostgresStore.apply`` (counts + position + batch id in one
  transaction) vs the ceiling: a pre-built binary ``COPY`` into a temp table + ``INSERT ... ON
  CONFLICT DO UPDATE`` merge into an identical table, nothing else;
- PostgreSQL lookup keys/s: ``PostgresStore.fetch`` vs a plain ``key = ANY(%s)`` query;
- Redis front lookup keys/s on a warm cache: ``CachedStore.fetch`` vs raw pipelined ``HMGET``s
  of the same hashes and fields (pre-built arguments, replies not decoded);
- Redis front upsert rows/s: ``CachedStore.apply`` (PostgreSQL commit, then invalidation) vs the
  same COPY->merge ceiling; and cold lookups (miss -> PostgreSQL -> fill) for information.

Every figure is the best of ``--repeat`` rounds, ceilings and stores interleaved. It creates and
drops its own database ``neurogate_bench_<random>`` and Redis prefix ``neurogate-bench:{...}``.

    .venv/bin/python bench/store.py [--rows 200000] [--batch 20000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import redis

from neurogate.engine.keys import NCOLS, mix64
from neurogate.engine.stores.postgres import (
    PostgresStore,
    create_database,
    drop_database,
    with_database,
)
from neurogate.engine.stores.redis_front import CachedStore

TARGET = 0.70
_COPY_ROW = np.dtype([("cols", ">i2"), ("l0", ">i4"), ("key", ">i8"), ("l1", ">i4"),
                      ("n", ">i8"), ("l2", ">i4"), ("n0", ">i8"), ("l3", ">i4"), ("n1", ">i8")])


def copy_payload(keys: np.ndarray, deltas: np.ndarray) -> bytes:
    """A binary COPY stream of (key, n, n0, n1) rows, built before the clock starts."""
    rec = np.empty(keys.size, dtype=_COPY_ROW)
    rec["cols"] = 4
    for f in ("l0", "l1", "l2", "l3"):
        rec[f] = 8
    rec["key"] = keys.view(np.int64)
    rec["n"], rec["n0"], rec["n1"] = deltas[:, 0], deltas[:, 1], deltas[:, 2]
    return b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0) + rec.tobytes() + struct.pack(">h", -1)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Bench:
    """Holds the servers, the data and the best rate seen per measurement."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.db = f"neurogate_bench_{uuid.uuid4().hex[:12]}"
        self.prefix = f"neurogate-bench:{{{uuid.uuid4().hex}}}"
        rng = np.random.default_rng(args.seed)
        self.keys = mix64(rng.permutation(args.rows).astype(np.uint64) + np.uint64(1))
        self.batches = [self.keys[i : i + args.batch] for i in range(0, args.rows, args.batch)]
        self.deltas = [np.ones((b.size, NCOLS), dtype=np.int64) for b in self.batches]
        self.best: dict[str, float] = {}

    def record(self, name: str, items: int, seconds: float) -> None:
        self.best[name] = max(self.best.get(name, 0.0), items / seconds)

    # -- PostgreSQL ----------------------------------------------------------------------------

    def ceiling_upsert(self, conn: psycopg.Connection[Any], payloads: list[bytes]) -> float:
        def run() -> None:
            for payload in payloads:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy("COPY bench_stage FROM STDIN (FORMAT binary)") as cp:
                        cp.write(payload)
                    cur.execute(
                        "INSERT INTO bench_ceiling AS p SELECT * FROM bench_stage ORDER BY key"
                        " ON CONFLICT (key) DO UPDATE SET n = p.n + EXCLUDED.n,"
                        " n0 = p.n0 + EXCLUDED.n0, n1 = p.n1 + EXCLUDED.n1")
                    cur.execute("TRUNCATE bench_stage")

        return timed(run)

    def store_upsert(self, store: PostgresStore | CachedStore) -> float:
        def run() -> None:
            for i, (k, d) in enumerate(zip(self.batches, self.deltas, strict=True)):
                store.apply(k, d, positions={"bench/0": i})

        return timed(run)

    def ceiling_lookup(self, conn: psycopg.Connection[Any]) -> float:
        def run() -> None:
            for k in self.batches:
                rows = conn.execute(
                    "SELECT key, n, n0, n1 FROM neurogate_patterns WHERE key = ANY(%s)",
                    (k.view(np.int64).tolist(),)).fetchall()
                assert len(rows) == k.size

        return timed(run)

    def store_lookup(self, store: PostgresStore | CachedStore) -> float:
        def run() -> None:
            for k in self.batches:
                got = store.fetch(k)
                assert got.shape == (k.size, NCOLS)

        return timed(run)

    # -- Redis ---------------------------------------------------------------------------------

    def hmget_plan(self, front: CachedStore) -> list[list[tuple[bytes, list[bytes]]]]:
        """Per batch, the (hash, fields) HMGETs the front itself would send."""
        plan = []
        for k in self.batches:
            uniq = np.unique(k)
            _, runs, fields = front._groups(uniq)
            plan.append([(front._bucket_keys[b], fields[s:e]) for b, s, e in runs])
        return plan

    def ceiling_hmget(self, r: redis.Redis, plan: list[list[tuple[bytes, list[bytes]]]]) -> float:
        def run() -> None:
            for cmds in plan:
                pipe = r.pipeline(transaction=False)
                for key, fields in cmds:
                    pipe.hmget(key, fields)
                pipe.execute()

        return timed(run)

    def run(self) -> dict[str, Any]:
        a = self.args
        create_database(a.pg_url, self.db)
        url = with_database(a.pg_url, self.db)
        r = redis.Redis.from_url(a.redis_url)
        store = PostgresStore(url)
        front = CachedStore(PostgresStore(url), a.redis_url, prefix=self.prefix,
                            max_keys=4 * a.rows)
        conn = psycopg.connect(url, autocommit=True)
        try:
            conn.execute("CREATE TABLE bench_ceiling (LIKE neurogate_patterns INCLUDING ALL)"
                         " WITH (fillfactor = 80)")
            conn.execute("CREATE TEMP TABLE bench_stage (LIKE neurogate_patterns)")
            payloads = [copy_payload(k, d) for k, d in zip(self.batches, self.deltas,
                                                           strict=True)]
            n = a.rows
            # first passes insert every key; they are reported too, then updates are measured
            self.record("pg_ceiling_insert", n, self.ceiling_upsert(conn, payloads))
            self.record("pg_store_insert", n, self.store_upsert(store))
            for _ in range(a.repeat):
                self.record("pg_ceiling_update", n, self.ceiling_upsert(conn, payloads))
                self.record("pg_store_update", n, self.store_upsert(store))
                self.record("front_update", n, self.store_upsert(front))
            # settle the updates (as autovacuum would) so it does not steal the lookups' CPU
            conn.execute("VACUUM ANALYZE neurogate_patterns")
            conn.execute("VACUUM ANALYZE bench_ceiling")
            for _ in range(a.repeat):
                self.record("pg_ceiling_lookup", n, self.ceiling_lookup(conn))
                self.record("pg_store_lookup", n, self.store_lookup(store))
            for _ in range(a.repeat):
                front.clear_cache()
                self.record("front_lookup_cold", n, self.store_lookup(front))
            plan = self.hmget_plan(front)
            self.store_lookup(front)  # warm
            for _ in range(2 * a.repeat):  # short rounds: more of them
                self.record("redis_ceiling_hmget", n, self.ceiling_hmget(r, plan))
                self.record("front_lookup_warm", n, self.store_lookup(front))
            stats = dict(front.stats)
        finally:
            conn.close()
            try:
                front.clear_cache()
            finally:
                front.close()
                store.close()
                r.close()
                drop_database(a.pg_url, self.db)
        b = self.best
        return {
            "rows": n, "batch": a.batch, "repeat": a.repeat, "rates": b, "front_stats": stats,
            "ratios": {
                "pg_upsert": b["pg_store_update"] / b["pg_ceiling_update"],
                "pg_lookup": b["pg_store_lookup"] / b["pg_ceiling_lookup"],
                "front_upsert": b["front_update"] / b["pg_ceiling_update"],
                "front_lookup": b["front_lookup_warm"] / b["redis_ceiling_hmget"],
            },
        }


def report(res: dict[str, Any]) -> str:
    b, q = res["rates"], res["ratios"]

    def line(label: str, store: str, ceiling: str, ratio: str, unit: str) -> str:
        ok = "ok" if q[ratio] >= TARGET else "BELOW TARGET"
        return (f"{label:<34}{b[store]:>12,.0f} {unit}/s   ceiling {b[ceiling]:>12,.0f}   "
                f"{100 * q[ratio]:5.1f} %  {ok}")

    return "\n".join([
        f"rows {res['rows']:,}, batch {res['batch']:,}, best of {res['repeat']} rounds "
        f"(the short HMGET ceiling rounds: twice as many; target >= {100 * TARGET:.0f} % of "
        "each ceiling)",
        line("PostgreSQL upsert (updates)", "pg_store_update", "pg_ceiling_update",
             "pg_upsert", "rows"),
        line("PostgreSQL lookup", "pg_store_lookup", "pg_ceiling_lookup", "pg_lookup", "keys"),
        line("Redis front upsert (updates)", "front_update", "pg_ceiling_update",
             "front_upsert", "rows"),
        line("Redis front lookup (warm)", "front_lookup_warm", "redis_ceiling_hmget",
             "front_lookup", "keys"),
        f"{'PostgreSQL upsert (new keys)':<34}{b['pg_store_insert']:>12,.0f} rows/s   "
        f"ceiling {b['pg_ceiling_insert']:>12,.0f}",
        f"{'Redis front lookup (cold: fill)':<34}{b['front_lookup_cold']:>12,.0f} keys/s",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pg-url", default=os.environ.get(
        "NEUROGATE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin connection used to create/drop the bench database (NEUROGATE_PG_URL)")
    p.add_argument("--redis-url", default=os.environ.get(
        "NEUROGATE_REDIS_URL", "redis://127.0.0.1:6379/0"), help="(NEUROGATE_REDIS_URL)")
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = p.parse_args(argv)
    res = Bench(args).run()
    print(json.dumps(res, indent=2) if args.json else report(res))
    return 0 if min(res["ratios"].values()) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""PostgreSQL commit load of N workers on one server: rows/s, WAL bytes/s and commit latency
per worker, and the same per 100k events/s of worker load.

Each worker is a process running the worker's engine (``LocalEngine``: ``Processor`` and the
PostgreSQL store clients, exactly what ``neurogate worker`` runs behind faust) on its own
partition, fed messages of ``--per-message`` events of one source (``--sources`` per worker) at
``--rate`` events/s, committing every ``worker.commit_interval`` (5 s, the default) from its
commit thread. No Kafka: the commit path is what loads PostgreSQL.

Measured on the server, over the run: WAL bytes of this database (``pg_walinspect``: records
that touch its relations, and the commit records of their transactions) next to the
cluster-wide LSN difference (which includes other databases' traffic on a shared server), rows
written (``pg_stat_user_tables``), transactions (``pg_stat_database``); in the workers: events,
commits and each commit's duration (``PendingCommit.apply``), and RSS growth per source.

    .venv/bin/python bench/pg_load.py --workers 1,2,4 --seconds 40 [--rate 20000] [--json f]

Needs PostgreSQL (``NEUROGATE_PG_URL``, an admin URL that may create databases and the
``pg_walinspect`` extension; default postgresql://postgres@127.0.0.1:5432/postgres). Each run
creates and drops its own database ``neurogate_pgload_<random>``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg

from neurogate.engine.config import EngineConfig, from_mapping
from neurogate.engine.stores.postgres import create_database, drop_database, with_database
from neurogate.stream.settings import WorkerSettings

T0 = 1_700_006_400.0
STEP = 60.0
TOPIC = "pgload.events"


def messages(worker: int, sources: int, per_message: int, step0: int,
             rng: np.random.Generator) -> list[tuple[bytes, bytes]]:
    """One message per source: its next ``per_message`` steps of a noisy daily sine."""
    out = []
    steps = np.arange(step0, step0 + per_message)
    for s in range(sources):
        name = f"w{worker}-src-{s:05d}"
        values = np.sin(2 * math.pi * steps / 288 + s) + rng.normal(0, 0.05, per_message)
        items = [{"source": name, "ts": T0 + STEP * int(k), "value": round(float(v), 4)}
                 for k, v in zip(steps, values, strict=True)]
        out.append((name.encode(), orjson.dumps(items)))
    return out


def run_worker(i: int, n: int, url: str, args: argparse.Namespace, results: Any) -> None:
    """One worker: its own partition ``i`` of ``n``, paced at ``args.rate`` events/s."""
    from neurogate.stream import worker as worker_module
    from neurogate.stream.engine_process import LocalEngine

    durations: list[float] = []
    apply = worker_module.PendingCommit.apply

    def timed(self: Any) -> None:
        t = time.perf_counter()
        apply(self)
        durations.append(time.perf_counter() - t)

    worker_module.PendingCommit.apply = timed  # type: ignore[method-assign]
    config = from_mapping(EngineConfig, {"neuronet": {"enabled": False}, "warmup": 50},
                          base=EngineConfig())
    settings = WorkerSettings(store=url, events_topic=TOPIC, labels_topic="", partitions=n)
    engine = LocalEngine(config, settings)
    engine.assign([i])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = np.random.default_rng(i)
    offset = step = events = 0
    start = time.perf_counter()
    deadline = start + args.seconds
    while time.perf_counter() < deadline:
        batch = messages(i, args.sources, args.per_message, step, rng)
        step += args.per_message
        records = [(TOPIC, i, offset + j, k, v, time.time()) for j, (k, v) in enumerate(batch)]
        offset += len(batch)
        out = engine.process(records)
        events += out.events
        if out.due:
            engine.start_commit(False)
        ahead = start + events / args.rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    engine.close(commit=True)  # the last commit is part of the load
    seconds = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results.put({"worker": i, "events": events, "seconds": seconds, "commits": len(durations),
                 "commit_seconds": durations, "rss_growth_kib": rss1 - rss0})


def server_stats(conn: psycopg.Connection[Any], db: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT pg_current_wal_lsn(), xact_commit FROM pg_stat_database WHERE datname = %s",
        (db,)).fetchone()
    assert row is not None
    return {"lsn": row[0], "xact_commit": row[1]}


def table_rows(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return {name: int(n) for name, n in conn.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")}


def wal_of_database(conn: psycopg.Connection[Any], db: str, start: str, end: str,
                    ) -> tuple[int, int]:
    """(WAL bytes of records touching ``db``'s relations or committing their transactions,
    all WAL bytes) between two LSNs."""
    oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (db,)).fetchone()
    assert oid is not None
    pattern = f"%/{oid[0]}/%"
    row = conn.execute("""
        WITH r AS (SELECT xid, record_length, block_ref
                   FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)),
             ours AS (SELECT DISTINCT xid FROM r WHERE block_ref LIKE %s AND xid <> '0')
        SELECT coalesce(sum(record_length) FILTER (
                   WHERE block_ref LIKE %s OR xid IN (SELECT xid FROM ours)), 0),
               coalesce(sum(record_length), 0)
        FROM r""", (start, end, pattern, pattern)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(n: int, admin: str, args: argparse.Namespace) -> dict[str, Any]:
    db = f"neurogate_pgload_{uuid.uuid4().hex[:8]}"
    create_database(admin, db)
    url = with_database(admin, db)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        procs = [ctx.Process(target=run_worker, args=(i, n, url, args, results))
                 for i in range(n)]
        with psycopg.connect(admin, autocommit=True) as conn:
            # keeps the run's WAL from being recycled until it is read (dropped below)
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (db,))
            rows0 = table_rows(url)
            before = server_stats(conn, db)
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            workers = [results.get(timeout=args.seconds + 600) for _ in procs]
            for p in procs:
                p.join(60)
            wall = time.perf_counter() - t0
            time.sleep(1.0)  # statistics are flushed when a backend goes idle or exits
            conn.execute("SELECT pg_stat_clear_snapshot()")
            after = server_stats(conn, db)
            rows1 = table_rows(url)
        with psycopg.connect(url, autocommit=True) as conn:  # where pg_walinspect is
            wal_db, wal_all = wal_of_database(conn, db, before["lsn"], after["lsn"])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                         "pg_replication_slots WHERE slot_name = %s", (db,))
        drop_database(admin, db)
    rows = {t: rows1.get(t, 0) - rows0.get(t, 0) for t in rows1}
    events = sum(w["events"] for w in workers)
    busy = max(w["seconds"] for w in workers)
    lat = np.array([d for w in workers for d in w["commit_seconds"]])
    load = events / busy  # events/s of all workers together
    per100k = 100_000 / load
    total_rows = sum(rows.values())
    return {
        "workers": n, "events": events, "seconds": round(busy, 1), "wall": round(wall, 1),
        "events_per_s": round(load), "events_per_s_per_worker": round(load / n),
        "rows": rows, "rows_per_s": round(total_rows / busy),
        "rows_per_s_per_worker": round(total_rows / busy / n),
        "rows_per_s_per_100k_events": round(total_rows / busy * per100k),
        "wal_bytes_per_s": round(wal_db / busy),
        "wal_bytes_per_s_per_worker": round(wal_db / busy / n),
        "wal_bytes_per_s_per_100k_events": round(wal_db / busy * per100k),
        "wal_cluster_bytes_per_s": round(wal_all / busy),
        "transactions": after["xact_commit"] - before["xact_commit"],
        "commits": int(lat.size),
        "commit_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if lat.size else None,
        "commit_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if lat.size else None,
        "commit_max_ms": round(float(lat.max()) * 1000, 1) if lat.size else None,
        "rss_growth_kib_per_source": round(float(np.mean(
            [w["rss_growth_kib"] for w in workers])) / args.sources, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    p.add_argument("--seconds", type=float, default=40.0, help="load time per run")
    p.add_argument("--rate", type=float, default=20_000.0, help="events/s per worker (cap)")
    p.add_argument("--sources", type=int, default=200, help="sources per worker")
    p.add_argument("--per-message", type=int, default=100, help="events per message")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    admin = os.environ.get("NEUROGATE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    out = []
    print(f"{'N':>2} {'events/s':>9} {'per wkr':>8} {'rows/s/wkr':>10} {'WAL KiB/s/wkr':>13} "
          f"{'commits':>7} {'p50 ms':>7} {'p99 ms':>7} | per 100k ev/s: {'rows/s':>7} "
          f"{'WAL KiB/s':>9}", flush=True)
    for n in (int(x) for x in args.workers.split(",")):
        r = measure(n, admin, args)
        out.append(r)
        print(f"{n:>2} {r['events_per_s']:>9,} {r['events_per_s_per_worker']:>8,} "
              f"{r['rows_per_s_per_worker']:>10,} {r['wal_bytes_per_s_per_worker'] / 1024:>13,.0f}"
              f" {r['commits']:>7} {r['commit_p50_ms']!s:>7} {r['commit_p99_ms']!s:>7} | "
              f"{'':>15}{r['rows_per_s_per_100k_events']:>7,} "
              f"{r['wal_bytes_per_s_per_100k_events'] / 1024:>9,.0f}", flush=True)
    for r in out:
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

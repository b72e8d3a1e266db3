"""Resident memory per pattern key: peak RSS, keys held, bytes per key, bounded and unbounded.

Each case runs in its own process: a detector on a fresh SQLite store scores ``--sources``
sine-plus-noise sources of ``--events`` events each (interleaved, as a stream would bring
them, each joining over the first half of the run), flushing every ``--flush`` events.
Reported per case:

- keys: distinct pattern keys in the store; keys/source;
- held: the most keys the detector held after a batch (``len(detector.cache)``);
- table B/key: the count table's own arrays per key held (``CountTable.nbytes / held``);
- source state KB: the per-source arrays (windows, ranges, histories) per source;
- grown MB: peak RSS - RSS before the first event (after numba compiled);
- RSS B/key: (grown - source state) / most keys held: what a key costs the process, table
  growth, store reads and write buffers included;
- end RSS: RSS after the run (what stays resident);
- bounded / unbounded: peak RSS and held keys as ratios.

Ratios and bytes only, no timings asserted. Runs on whichever ``neurogate`` the interpreter
imports, so ``/work/.../main/.venv/bin/python bench/memory.py`` measures another tree (without
``max_patterns`` only the unbounded case runs).

    .venv/bin/python bench/memory.py [--sources 1000] [--events 600] [--bound 0.25] [--json]

``--bound 0`` runs the unbounded case only (the bounded one at 1,000 sources takes over 25
minutes on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def one(sources: int, events: int, flush: int, bound: int | None) -> dict[str, Any]:
    """One case in this process (called in a child)."""
    from neurogate.engine.config import EngineConfig
    from neurogate.engine.detector import Detector
    from neurogate.engine.events import Event
    from neurogate.engine.stores import SQLiteStore

    cfg = EngineConfig().replace(**{"neuronet.enabled": False})
    rng = np.random.default_rng(0)
    t = np.arange(events)
    series = (10 * np.sin(2 * np.pi * (t[None, :] / 288 + np.arange(sources)[:, None] / 7))
              + rng.normal(0, 0.4, (sources, events)))
    t0 = 1_700_000_000.0
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        options: dict[str, Any] = {"flush_every": flush}
        if bound is not None:
            options["max_patterns"] = bound
        det = Detector(cfg, store, **options)
        warm = [Event("warm", t0 + i * 300, (float(np.sin(i / 9)),)) for i in range(400)]
        det.process_many(warm)  # compile and allocate before the baseline
        base = rss_bytes()
        base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        held = 0
        # sources join over the first half of the run (their warm-ups end at different times,
        # as in a live system); each batch holds one event of every source that has begun
        begin = (np.arange(sources) * events // (2 * sources)).astype(np.int64)
        for step in range(int(begin.max()) + events):
            live = np.flatnonzero((begin <= step) & (step < begin + events))
            batch = [Event(f"s{j}", t0 + step * 300 + j, (float(series[j, step - begin[j]]),))
                     for j in live.tolist()]
            det.process_many(batch)
            held = max(held, len(det.cache))
        table = det.cache.nbytes
        state = sum(a.nbytes for bank in det.banks.values()
                    for a in bank.state.arrays.values())
        det.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        keys = store.size()
        store.close()
    grown = peak - max(base, base_peak)
    return {"bound": bound, "sources": sources, "events": sources * events, "keys": keys,
            "keys_per_source": round(keys / sources), "held": held,
            "table_bytes_per_key": round(table / max(held, 1), 1),
            "rss_bytes_per_key": round((grown - state) / max(held, 1), 1),
            "source_state_kb": round(state / sources / 1024, 1),
            "grown_mb": round(grown / 2**20, 1),
            "peak_rss_mb": round(peak / 2**20, 1), "end_rss_mb": round(rss_bytes() / 2**20, 1),
            "evicted": getattr(det, "evicted", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--events", type=int, default=600, help="events per source")
    ap.add_argument("--flush", type=int, default=5_000, help="events between flushes")
    ap.add_argument("--bound", type=float, default=0.25,
                    help="max_patterns of the bounded case, as a share of the unbounded keys "
                         "(0: no bounded case)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args()
    if args.one is not None:
        bound = None if args.one == "none" else int(args.one)
        print(json.dumps(one(args.sources, args.events, args.flush, bound)))
        return

    def case(bound: int | None) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--one", str(bound or "none"), "--sources",
               str(args.sources), "--events", str(args.events), "--flush", str(args.flush)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    from neurogate.engine.detector import Detector

    rows = [case(None)]
    if args.bound > 0 and "max_patterns" in inspect.signature(Detector).parameters:
        rows.append(case(max(1000, int(rows[0]["keys"] * args.bound))))
    if len(rows) == 2:
        free, bounded = rows
        ratios = {"peak_rss_bounded_over_unbounded": round(bounded["peak_rss_mb"]
                                                           / free["peak_rss_mb"], 3),
                  "grown_bounded_over_unbounded": round(bounded["grown_mb"]
                                                        / free["grown_mb"], 3),
                  "held_bounded_over_unbounded": round(bounded["held"] / free["held"], 3)}
    else:
        ratios = {}
    if args.json:
        print(json.dumps({"cases": rows, "ratios": ratios}, indent=2))
        return
    cols = ("bound", "keys", "keys_per_source", "held", "evicted", "table_bytes_per_key",
            "rss_bytes_per_key", "source_state_kb", "grown_mb", "peak_rss_mb", "end_rss_mb")
    print("  ".join(f"{c:>{len(c)}}" for c in cols))
    for r in rows:
        print("  ".join(f"{str(r[c]):>{len(c)}}" for c in cols))
    for name, value in ratios.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()

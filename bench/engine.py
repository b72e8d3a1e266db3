"""Benchmark: events/s of score+learn on CPU for 1 and 1,000 sources, and peak RSS, with River's
HalfSpaceTrees (score_one then learn_one per event) measured in the same run as the reference.

    python bench/engine.py                    # default suite (~1.5 min on 2 cores)
    python bench/engine.py --quick            # small version (~20 s; 1 and 100 sources)
    python bench/engine.py --with-neuronet    # also a run with NeuroNet training enabled
    python bench/engine.py --json out.json    # also dump every figure as JSON
    python bench/engine.py --sources 1000 --events 1000000   # 1,000 sources past warm-up (~3 min)

Every configuration runs in a fresh subprocess (``--one CONFIG``) so its peak RSS is its own.
Targets (issue): engine with the SQLite store >= 50,000 events/s, and >= 3x River's events/s.
They are printed, never asserted: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ENGINE_CONFIGS = ("sqlite", "memory")
NEURONET_CONFIG = "sqlite+neuronet"
RIVER_CONFIG = "river"
TARGET_EVENTS_PER_S = 50_000
TARGET_VS_RIVER = 3.0
T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC: timestamps carry a real calendar
STEP_SECONDS = 300.0  # one event per source every 5 minutes
PERIOD = 288  # daily season at 5-minute steps


# -- data --------------------------------------------------------------------------------------


def make_stream(n: int, sources: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic interleaved stream: (source index, ts, value) arrays of length ``n``.

    Each source: its own level, amplitude and phase of a daily sine, a weak weekly sine and
    Gaussian noise, in roughly [0, 1] (HalfSpaceTrees' default limits); a few spikes overall.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    src = i % sources
    step = i // sources
    level = rng.uniform(0.35, 0.65, sources)[src]
    amp = rng.uniform(0.1, 0.25, sources)[src]
    phase = rng.uniform(0.0, 2 * math.pi, sources)[src]
    season = np.sin(2 * math.pi * step / PERIOD + phase)
    weekly = 0.2 * np.sin(2 * math.pi * step / (7 * PERIOD) + phase)
    values = level + amp * (season + weekly) + rng.normal(0.0, 0.02, n)
    spikes = rng.choice(n, size=max(3, n // 5000), replace=False)
    values[spikes] += rng.choice([-1.0, 1.0], spikes.size) * rng.uniform(0.3, 0.5, spikes.size)
    return src, T0 + STEP_SECONDS * step, values


def source_names(sources: int) -> list[str]:
    return [f"host-{k:04d}/cpu" for k in range(sources)]


# -- one configuration (child process) ---------------------------------------------------------


def _rss_mb() -> float:
    """Current resident set size in MB."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _limit_torch_threads() -> None:
    """One intra-op thread for torch (NeuroNet training/encoding).

    In service the engine shares this 2-core machine with its consumers, the store and other
    workers; torch's default (one thread per core) would oversubscribe the cores and make the
    figure depend on whatever else runs. One thread is what a deployed worker gets.
    """
    import torch

    torch.set_num_threads(1)


def _jit_warmup() -> float:
    """Untimed warm-up: one small stream through a throw-away detector, so numba's compiled
    count-table loops are loaded (``cache=True`` keeps them in __pycache__ across runs; the very
    first run compiles them) before the clock starts. Returns its wall time."""
    from neurogate.engine.config import EngineConfig
    from neurogate.engine.detector import Detector
    from neurogate.engine.events import Event
    from neurogate.engine.stores import MemoryStore

    t0 = time.perf_counter()
    cfg = EngineConfig().replace(**{"neuronet.enabled": False})
    det = Detector(cfg, MemoryStore())
    n = cfg.warmup + 300
    det.process_many([Event("jit", T0 + STEP_SECONDS * k, (math.sin(k / 9),)) for k in range(n)])
    det.close()
    return time.perf_counter() - t0


def _time_writes(store: Any) -> list[float]:
    """Wrap ``store.apply`` (the detector's flushes) to add up its wall time: [seconds, calls].
    The detector flushes every ``flush_every`` events inside ``process_many`` and at close."""
    acc = [0.0, 0.0]
    inner = store.apply

    def apply(*a: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        try:
            inner(*a, **kw)
        finally:
            acc[0] += time.perf_counter() - t0
            acc[1] += 1

    store.apply = apply
    return acc


def run_engine(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time score+learn of the whole stream through ``Detector.process_many`` (plus ``close``)."""
    neuronet = config == NEURONET_CONFIG
    if neuronet:
        _limit_torch_threads()
    from neurogate.engine.config import EngineConfig
    from neurogate.engine.detector import Detector
    from neurogate.engine.events import Event
    from neurogate.engine.stores import MemoryStore, PatternStore, SQLiteStore

    jit_seconds = _jit_warmup()
    src, ts, values = make_stream(args.events, args.sources, args.seed)
    names = source_names(args.sources)
    t0 = time.perf_counter()
    events = [
        Event(names[s], t, (v,))
        for s, t, v in zip(src.tolist(), ts.tolist(), values.tolist(), strict=True)
    ]
    build_seconds = time.perf_counter() - t0
    bs = args.batch_size
    batches = [events[i : i + bs] for i in range(0, len(events), bs)]
    # The synthetic clock runs years past the wall clock (1 source x 1M events x 5 min = 9.5
    # years from T0): with the default one-day bound on future timestamps, 68 % of those events
    # were dead-lettered as `future_timestamp` and the 1-source rate was inflated ~3x.
    changes: dict[str, Any] = {"neuronet.enabled": neuronet, "max_future_skew": 1e12}
    if args.warmup is not None:
        changes["warmup"] = args.warmup
    cfg = EngineConfig().replace(**changes)

    with tempfile.TemporaryDirectory(prefix="neurogate-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        store: PatternStore = MemoryStore() if config == "memory" else SQLiteStore(db)
        writes = _time_writes(store)
        base_rss = _rss_mb()
        det = Detector(cfg, store)
        status = np.zeros(3, dtype=np.int64)  # scored, warming, rejected
        flagged = 0
        t0 = time.perf_counter()
        for batch in batches:
            out = det.process_many(batch)
            status += np.bincount(out.status, minlength=3)
            flagged += int(out.flagged.sum())
        t1 = time.perf_counter()
        det.close()  # flushes pending counts to the store: part of the cost
        t2 = time.perf_counter()
        patterns = store.size()
        db_mb = sum(f.stat().st_size for f in Path(tmp).glob("bench.db*")) / 2**20  # + WAL
        store.close()

    seconds = t2 - t0
    train = det.timings["train_seconds"]  # in a background process
    waited = det.timings["train_wait_seconds"]  # scoring blocked on it (job not done in time)
    result: dict[str, Any] = {
        "config": config,
        "sources": args.sources,
        "events": args.events,
        "batch_size": bs,
        "warmup": cfg.warmup,
        "scored": int(status[0]),
        "warming": int(status[1]),
        "rejected": int(status[2]),
        "flagged": flagged,
        "seconds": seconds,
        "close_seconds": t2 - t1,
        "store_write_seconds": writes[0],
        "store_writes": int(writes[1]),
        "events_per_s": args.events / seconds,
        "build_seconds": build_seconds,
        "jit_warmup_seconds": jit_seconds,
        "patterns": patterns,
        "db_mb": db_mb,
        "base_rss_mb": base_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if neuronet:
        streaming = seconds - waited
        result |= {
            "train_seconds": train,
            "train_wait_seconds": waited,
            "streaming_seconds": streaming,
            "events_per_s_excl_training": args.events / streaming,
            "model_version": det.model_version(),
        }
    return result


def run_river(args: argparse.Namespace) -> dict[str, Any]:
    """River's HalfSpaceTrees (default parameters, seed 42): score_one then learn_one per event,
    one model per source (created on the source's first event, as a per-source service would).

    ``--river-events`` (0 = all) measures a subset made of whole sources, taken in order, so every
    measured source sees as many events as in the engine run.
    """
    from river.anomaly import HalfSpaceTrees

    src, _, values = make_stream(args.events, args.sources, args.seed)
    names = source_names(args.sources)
    n = args.events
    if args.river_events and args.river_events < n:
        per_source = math.ceil(n / args.sources)
        keep_sources = max(1, math.ceil(args.river_events / per_source))
        sel = np.flatnonzero(src < keep_sources)[: args.river_events]
        src, values = src[sel], values[sel]
    # Inputs built before timing, as the engine's Event objects are.
    stream = [(names[s], {"value": v}) for s, v in zip(src.tolist(), values.tolist(), strict=True)]
    base_rss = _rss_mb()
    models: dict[str, HalfSpaceTrees] = {}
    scores = 0.0
    t0 = time.perf_counter()
    for name, x in stream:
        model = models.get(name)
        if model is None:
            model = models[name] = HalfSpaceTrees(seed=42)
        scores += model.score_one(x)
        model.learn_one(x)
    seconds = time.perf_counter() - t0
    return {
        "config": RIVER_CONFIG,
        "sources": args.sources,
        "events": len(stream),
        "stream_events": n,
        "river_sources": len(models),
        "subset": len(stream) < n,
        "seconds": seconds,
        "events_per_s": len(stream) / seconds,
        "mean_score": scores / max(len(stream), 1),
        "base_rss_mb": base_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_one(args: argparse.Namespace) -> None:
    """Child process: run one configuration and print its figures as one JSON line."""
    result = run_river(args) if args.one == RIVER_CONFIG else run_engine(args.one, args)
    print(json.dumps(result))


# -- suite (parent process) --------------------------------------------------------------------


def _child(config: str, sources: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; returns its JSON figures."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        config,
        "--sources",
        str(sources),
        "--events",
        str(args.events),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--river-events",
        str(args.river_events),
    ]
    if args.warmup is not None:
        cmd += ["--warmup", str(args.warmup)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # report and go on: one broken configuration shouldn't hide the rest
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        return {
            "config": config,
            "sources": sources,
            "error": lines[-1],
            "stderr": proc.stderr,
            "process_seconds": time.perf_counter() - t0,
        }
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def _load() -> str:
    """1/5/15-minute load averages: other work on the machine skews every figure."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine_facts() -> dict[str, Any]:
    """CPU count and library versions (read from package metadata: no torch import here)."""
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "load_at_start": _load(),
    }
    for pkg in ("numpy", "numba", "torch", "river"):
        try:
            facts[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            facts[pkg] = None
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per configuration."""
    head = (
        f"{'config':<16} {'sources':>7} {'events':>9} {'scored':>9} {'warming':>9} "
        f"{'seconds':>8} {'events/s':>10} {'vs River':>9} {'peak RSS MB':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r.get("vs_river")
        print(
            f"{r['config']:<16} {r['sources']:>7,} {r['events']:>9,} "
            f"{_fmt_int(r['scored']) if 'scored' in r else '-':>9} "
            f"{_fmt_int(r['warming']) if 'warming' in r else '-':>9} "
            f"{r['seconds']:>8.2f} {_fmt_int(r['events_per_s']):>10} "
            f"{f'{ratio:.2f}x' if ratio is not None else '-':>9} {r['peak_rss_mb']:>11.0f}"
        )


def print_details(rows: list[dict[str, Any]]) -> None:
    """Per-configuration side figures: event building, JIT warm-up, close, store, training."""
    for r in rows:
        tag = f"{r['config']} / {r['sources']} src:"
        if r["config"] == RIVER_CONFIG:
            sub = (
                f"subset of {r['events']:,} of {r['stream_events']:,} events "
                f"({r['river_sources']:,} whole sources)"
                if r["subset"]
                else "all events"
            )
            print(
                f"  {tag} {sub}; {r['river_sources']:,} models; "
                f"RSS before models {r['base_rss_mb']:.0f} MB"
            )
            continue
        print(
            f"  {tag} Event build {r['build_seconds']:.2f}s (untimed), JIT warm-up "
            f"{r['jit_warmup_seconds']:.2f}s (untimed), close() {r['close_seconds']:.3f}s "
            f"(timed), store writes {r['store_write_seconds']:.2f}s in {r['store_writes']} "
            f"flush(es) (timed), {r['patterns']:,} patterns, db {r['db_mb']:.1f} MB, "
            f"RSS before detector {r['base_rss_mb']:.0f} MB, flagged {r['flagged']:,}"
        )
        if "train_seconds" in r:
            print(
                f"    NeuroNet: training {r['train_seconds']:.2f}s in the background, scoring "
                f"waited {r['train_wait_seconds']:.2f}s for it; streaming "
                f"{r['streaming_seconds']:.2f}s -> {_fmt_int(r['events_per_s_excl_training'])} "
                f"ev/s excluding the wait; serving {r['model_version']}"
                f" (the table's events/s includes the wait)"
            )


def print_targets(rows: list[dict[str, Any]]) -> None:
    """The issue's target lines (printed, never asserted)."""
    for r in rows:
        if r["config"] not in ("sqlite", NEURONET_CONFIG):
            continue
        plural = "source" if r["sources"] == 1 else "sources"
        eps = r.get("events_per_s_excl_training", r["events_per_s"])
        ratio = r.get("vs_river_excl_training", r.get("vs_river"))
        what = "engine SQLite"
        if r["config"] == NEURONET_CONFIG:
            what += "+NeuroNet excl. training"
        ok = "OK" if eps >= TARGET_EVENTS_PER_S else "MISS"
        print(
            f"{what} {r['sources']:,} {plural}: {_fmt_int(eps)} ev/s "
            f"(target {TARGET_EVENTS_PER_S:,}: {ok})"
        )
        if ratio is not None:
            ok = "OK" if ratio >= TARGET_VS_RIVER else "MISS"
            print(
                f"  vs River ({r['sources']:,} {plural}): {ratio:.1f}x "
                f"(target {TARGET_VS_RIVER:g}x: {ok})"
            )


def print_notes(rows: list[dict[str, Any]]) -> None:
    """What a figure does not measure: no event scored, or events rejected."""
    for r in rows:
        if r["config"] != RIVER_CONFIG and r["scored"] == 0:
            per = r["events"] // r["sources"]
            what = (
                "warm-up buffering only, nothing counted"
                if per < r["warmup"]
                else "warm-up buffering + replay counting (learn, no scoring)"
            )
            print(
                f"note: {r['config']} / {r['sources']:,} sources scored no event: {per:,} events "
                f"per source vs warm-up {r['warmup']}, so the figure is {what}; for steady-state "
                f"scoring use more --events (e.g. --events {r['sources'] * 1000:,}) or --warmup"
            )
        if r["config"] != RIVER_CONFIG and r["rejected"]:
            print(f"WARNING: {r['config']} / {r['sources']:,} sources rejected {r['rejected']:,} "
                  "events: the figure includes them (a rejected event is cheap)")


def run_suite(args: argparse.Namespace) -> None:
    facts = machine_facts()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    if hasattr(os, "getloadavg") and os.getloadavg()[0] >= 0.5:
        print("warning: the machine is busy (load >= 0.5): figures will be low and noisy")
    print(
        f"stream: {args.events:,} events per run, sources {args.sources_list}, batch "
        f"{args.batch_size}, seed {args.seed}; River on "
        f"{'all events' if not args.river_events else f'<= {args.river_events:,} events'}"
    )
    print("each configuration runs in a fresh subprocess (peak RSS is its own)\n")
    configs = [c for c in args.configs if c != NEURONET_CONFIG]
    if args.with_neuronet:
        configs.append(NEURONET_CONFIG)
    t_suite = time.perf_counter()
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for sources in args.sources_list:
        for config in configs:
            runs = []
            for k in range(args.repeat):
                print(f"  running {config:<16} {sources:>5} sources ...", end="", flush=True)
                r = _child(config, sources, args)
                if "error" in r:
                    print(f" FAILED after {r['process_seconds']:.1f}s: {r['error']}")
                    failed.append(r)
                    break
                runs.append(r)
                print(
                    f" {_fmt_int(r['events_per_s']):>9} ev/s "
                    f"({r['process_seconds']:.1f}s total){f' [{k + 1}]' * (k > 0)}"
                )
            if not runs:
                continue
            best = max(runs, key=lambda x: x["events_per_s"])
            best["all_events_per_s"] = [x["events_per_s"] for x in runs]
            rows.append(best)
    for r in rows:
        ref = next(
            (x for x in rows if x["config"] == RIVER_CONFIG and x["sources"] == r["sources"]),
            None,
        )
        r["vs_river"] = r["events_per_s"] / ref["events_per_s"] if ref is not None else None
        if ref is not None and "events_per_s_excl_training" in r:
            r["vs_river_excl_training"] = r["events_per_s_excl_training"] / ref["events_per_s"]
    print()
    print_table(rows)
    print()
    print_details(rows)
    print()
    print_targets(rows)
    print_notes(rows)
    for r in failed:
        print(f"FAILED: {r['config']} / {r['sources']:,} sources: {r['error']}")
    if args.repeat > 1:
        print(f"best of {args.repeat} runs per configuration (all in --json output)")
    print(f"\nsuite wall time {time.perf_counter() - t_suite:.1f}s, load now {_load()}")
    if args.json:
        doc = {"machine": facts, "runs": rows, "failed": failed}
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=None, help="events per run (default 1,000,000)")
    p.add_argument("--sources", default=None, help="comma-separated source counts (1,1000)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=None, help="override EngineConfig.warmup")
    p.add_argument(
        "--river-events",
        type=int,
        default=None,
        help="measure River on at most this many events (whole sources); 0 = all "
        "(default 200,000)",
    )
    p.add_argument(
        "--configs",
        default=",".join((*ENGINE_CONFIGS, RIVER_CONFIG)),
        help=f"comma-separated subset of {', '.join((*ENGINE_CONFIGS, RIVER_CONFIG))}",
    )
    p.add_argument(
        "--with-neuronet",
        action="store_true",
        help="also run SQLite with NeuroNet training enabled (slow)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per configuration (fresh process each); the best is reported",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small version (~20 s): 40,000 events, 1 and 100 sources",
    )
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--one", metavar="CONFIG", help=argparse.SUPPRESS)  # child-process mode
    args = p.parse_args(argv)
    if args.events is None:
        # 1,000 events per source at 1,000 sources: 200 warm-up + 800 scored per source
        args.events = 40_000 if args.quick else 1_000_000
    if args.river_events is None:
        args.river_events = 20_000 if args.quick else 200_000
    if args.sources is None:
        args.sources = "1,100" if args.quick else "1,1000"
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.one is None:
        args.sources_list = [int(s) for s in str(args.sources).split(",")]
        args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
        known = {*ENGINE_CONFIGS, RIVER_CONFIG, NEURONET_CONFIG}
        if unknown := set(args.configs) - known:
            p.error(f"unknown configs {sorted(unknown)}; known: {sorted(known)}")
    else:
        args.sources = int(args.sources)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one is not None:
        run_one(args)
    else:
        run_suite(args)


if __name__ == "__main__":
    main()

"""The ``neurogate`` command line: embedded runs, explanations, pattern-store maintenance and
offline encoder training."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurogate.cli import evaluate as cli_eval
from neurogate.cli import reference as cli_reference
from neurogate.cli import report
from neurogate.cli import store as cli_store
from neurogate.cli import stream as cli_stream
from neurogate.cli.argtypes import positive_int
from neurogate.cli.boundary import (
    EXIT_FAILURE,
    EXIT_OK,
    Parser,
    UserError,
    main_of,
    print_error,
    user_errors,
)
from neurogate.cli.config import load_config
from neurogate.cli.options import (
    add_config_options,
    add_input_options,
    add_quiet,
    add_store,
    open_inputs,
    progress,
    store_from_positional,
)
from neurogate.engine.redaction import redact_url
from neurogate.evaluation import tune_cli

if TYPE_CHECKING:  # numpy: not loaded to start the command line (bench/startup.py)
    from neurogate.engine.events import Event

RESUME_HINT = ("neurogate: counts and input positions are kept up to the last committed flush; "
               "rerun with --append to resume")


# -- input ---------------------------------------------------------------------------------------


def _input_events(
    args: argparse.Namespace, bad: list[Any], positions: dict[str, int]
) -> tuple[Iterator[Event], int | None]:
    """Events from the files (bad records go to ``bad``) or the demo, plus a total if known.

    ``positions`` maps each input to the number of its records consumed so far; it is read
    for resuming (records up to it are skipped: they were counted before) and kept up to date
    as events are yielded.
    """
    from neurogate.cli.files import BadRecord

    def tracked(key: str, items: Iterable[Event | BadRecord]) -> Iterator[Event]:
        skip = positions.get(key, 0)
        for n, item in enumerate(items, 1):
            if n <= skip:
                continue
            if isinstance(item, BadRecord):
                bad.append(item)
                continue
            if key != "stdin":
                positions[key] = n
            yield item

    if not args.files:
        from neurogate.cli.demo import demo_events

        events, truth = demo_events(sources=args.demo_sources, length=args.demo_length,
                                    seed=args.seed)
        args.demo_truth = truth
        key = f"demo:seed={args.seed},sources={args.demo_sources},length={args.demo_length}"
        return tracked(key, events), len(events) - positions.get(key, 0)
    readers, total = open_inputs(args)
    return chain.from_iterable(tracked(key, reader) for key, reader in readers), total


def _batches(events: Iterator[Event], size: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for e in events:
        batch.append(e)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- output --------------------------------------------------------------------------------------


class Writer:
    """Writes result records as JSONL, CSV or TSV (by extension; ``-`` = stdout JSONL).

    CSV: the record's scalar fields, then one column per value field of the first record (named
    as in the input; ``value_`` prefixed where a name is taken), then JSON columns for what is
    nested: ``values`` (every value, whatever the source's fields), ``families``, ``evidence``
    and ``explanation`` (``neurogate explain`` reads them back)."""

    CSV_COLUMNS = ("source", "ts", "id", "score", "flagged", "status", "suppressed", "extreme",
                   "escalation", "posterior", "reason", "model_version", "threshold", "time")
    JSON_COLUMNS = ("values", "families", "evidence", "explanation")

    def __init__(self, target: str | None) -> None:
        self.csv = bool(target) and str(target).endswith((".csv", ".tsv"))
        self._delimiter = "\t" if str(target).endswith(".tsv") else ","
        self._csv: Any = None
        if not target:
            self._f = None
        elif target == "-":
            self._f = sys.stdout
        else:
            parent = Path(target).parent
            if not parent.exists():
                raise UserError(f"output directory does not exist: {parent}")
            self._f = open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115

    def _start_csv(self, fields: Iterable[str]) -> None:
        """The header, once the first record names the value fields (output is open)."""
        import csv

        assert self._f is not None

        taken = set(self.CSV_COLUMNS + self.JSON_COLUMNS)
        self._named = {f: f if f not in taken else f"value_{f}" for f in fields}
        columns = self.CSV_COLUMNS + tuple(self._named.values()) + self.JSON_COLUMNS
        self._csv = csv.DictWriter(self._f, columns, extrasaction="ignore",
                                   delimiter=self._delimiter)
        self._csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if self._f is None:
            return
        if not self.csv:
            self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
            return
        values = record.get("values") or {}
        if self._csv is None:
            self._start_csv(values)
        row = dict(record)
        for name, v in values.items():
            if name in self._named:
                row[self._named[name]] = v
        for col in self.JSON_COLUMNS:
            if col in record:
                row[col] = json.dumps(record[col], separators=(",", ":"))
        self._csv.writerow(row)

    def close(self) -> None:
        if self._f is not None and self.csv and self._csv is None:
            self._start_csv(())  # no record: the header alone
        if self._f is not None and self._f is not sys.stdout:
            self._f.close()


# -- golden files --------------------------------------------------------------------------------


def _golden_key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (str(r.get("source")), repr(r.get("ts")), str(r.get("id")))


def compare_golden(path: Path, flagged: list[dict[str, Any]], tol: float = 1e-6) -> list[str]:
    """Readable differences between a golden file of flagged events and this run's flags."""
    if not path.is_file():
        raise UserError(f"golden file not found: {path} (create one with --record)")
    want = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}:{n}: not a JSON line") from None
            want[_golden_key(rec)] = rec
    got = {_golden_key(r): r for r in flagged}
    diff = []
    for key in sorted(want.keys() - got.keys()):
        diff.append(f"- missing flag  source={key[0]} ts={key[1]} id={key[2]} "
                    f"(golden score {want[key]['score']})")
    for key in sorted(got.keys() - want.keys()):
        diff.append(f"+ new flag      source={key[0]} ts={key[1]} id={key[2]} "
                    f"(score {got[key]['score']})")
    for key in sorted(want.keys() & got.keys()):
        a, b = want[key]["score"], got[key]["score"]
        if abs(a - b) > tol:
            diff.append(f"~ score changed source={key[0]} ts={key[1]} id={key[2]}: {a} -> {b}")
    return diff


def _golden_record(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("source", "ts", "id", "score")}


# -- commands ------------------------------------------------------------------------------------


def _check_store(store: str, *, append: bool, fresh: bool) -> None:
    """Refuse what would lose data before anything is written: a plain run only creates a new
    store; an existing neurogate store needs --append (continue) or --fresh (replace it, which
    happens here); a file that is not a neurogate store is never used, whatever the flag."""
    if store == "memory://":
        return
    if store.startswith(("postgresql://", "redis")):
        if fresh or not append:
            raise UserError(f"{redact_url(store)}: server stores are never wiped; pass --append "
                           "to add to it (or use a new database)")
        return
    if "://" in store and not store.startswith("sqlite:///"):
        return  # not a store URL we know: open_store explains
    from neurogate.engine.stores.sqlite import inspect_file

    path = Path(store.removeprefix("sqlite:///"))
    if path.is_dir():
        raise UserError(f"--store {path} is a directory; give a file path such as {path}/run.db")
    kind, why = inspect_file(path)
    if kind == "foreign":
        raise UserError(f"--store {path} is not a neurogate pattern store ({why}); refusing to "
                       f"{'replace' if fresh else 'use'} it: give another --store path")
    if kind == "store" and not (append or fresh):
        raise UserError(f"--store {path} already holds a neurogate pattern store; pass --append "
                       "to continue from it, or --fresh to replace it")
    if kind == "store" and fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def cmd_run(args: argparse.Namespace) -> int:  # noqa: C901, PLR0912, PLR0915  (not split yet)
    from tqdm import tqdm

    from neurogate.engine.detector import Detector
    from neurogate.engine.stores import open_store

    cfg = load_config(args.config, args.set)
    if args.expect and not Path(args.expect).is_file():
        raise UserError(f"golden file not found: {args.expect} (create one with --record)")
    bad: list[Any] = []
    positions: dict[str, int] = {}
    events, total = _input_events(args, bad, positions)  # validates inputs before any write
    _check_store(args.store, append=args.append, fresh=args.fresh)
    try:
        store = open_store(args.store)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise UserError(f"cannot open store {redact_url(args.store)}: {exc}") from None
    if args.append:
        positions.update(store.positions())
    writer = Writer(args.out)
    if args.report and not Path(args.report).parent.exists():
        raise UserError(f"output directory does not exist: {Path(args.report).parent}")
    drawn = report.Report(f"neurogate run: {', '.join(args.files) or 'demo'}") \
        if args.report else None
    try:
        det = Detector(cfg, store, flush_every=None, progress=progress(args))
    except ValueError as exc:
        raise UserError(f"{redact_url(args.store)}: {exc}") from None
    since_flush = 0
    stats: Counter[str] = Counter()
    rejected: list[tuple[int, Event, str]] = []
    flagged_records: list[dict[str, Any]] = []
    seen = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="ev", disable=not progress(args), file=sys.stderr,
               smoothing=0.1)
    try:
        for batch in _batches(events, args.batch_size):
            out = det.process_many(batch)
            if drawn is not None:
                drawn.add_batch(batch, out)
            for i in range(len(batch)):
                st = out.STATUS[int(out.status[i])]
                stats[st] += 1
                if st == "rejected":
                    rejected.append((seen + i, batch[i], out.reasons[i]))
                if out.flagged[i] or args.all_scores:
                    rec = out.result(i).as_dict()
                    writer.write(rec)
                    if out.flagged[i]:
                        flagged_records.append(rec)
            stats["flagged"] += int(out.flagged.sum())
            seen += len(batch)
            since_flush += len(batch)
            if since_flush >= args.flush_every:
                # counts, positions and state in one transaction, written while scoring goes on
                det.flush(dict(positions), wait=False)
                since_flush = 0
            bar.update(len(batch))
        det.close(dict(positions))
    except ConnectionError as exc:  # StoreUnavailable: nothing after the last commit is lost
        raise UserError(f"{exc}\n{RESUME_HINT}") from None
    finally:
        bar.close()
        writer.close()
    elapsed = time.perf_counter() - t0
    _summary(args, det, stats, seen, elapsed, bad, rejected, flagged_records)
    store.close()
    if drawn is not None:
        report.write(drawn, Path(args.report))
        print(f"wrote       report to {args.report}", file=sys.stderr)
    if (bad or rejected) and not stats["scored"] + stats["warming"]:
        print_error(f"every input record was bad ({len(bad) + len(rejected):,}, listed above); "
                    "nothing was scored", args)
        return EXIT_FAILURE
    if args.record:
        Path(args.record).write_text(
            "".join(json.dumps(_golden_record(r)) + "\n" for r in flagged_records)
        )
        print(f"recorded {len(flagged_records)} flagged events to {args.record}", file=sys.stderr)
    if args.expect:
        diff = compare_golden(Path(args.expect), [_golden_record(r) for r in flagged_records])
        if diff:
            print(f"FLAGS DIFFER from {args.expect} ({len(diff)} differences):", file=sys.stderr)
            for line in diff[:50]:
                print("  " + line, file=sys.stderr)
            if len(diff) > 50:
                print(f"  ... and {len(diff) - 50} more", file=sys.stderr)
            return EXIT_FAILURE
        print(f"flags match {args.expect}", file=sys.stderr)
    return EXIT_OK


def _summary(args: argparse.Namespace, det: Any, stats: Counter[str], seen: int, elapsed: float,
             bad: list[Any], rejected: list[tuple[int, Event, str]],
             flagged: list[dict[str, Any]]) -> None:
    err = sys.stderr
    rate = seen / elapsed if elapsed > 0 else float("nan")
    train, waited = det.timings["train_seconds"], det.timings["train_wait_seconds"]
    training = (f"; NeuroNet training {train:.1f} s off the scoring path, scoring waited "
                f"{waited:.1f} s for it" if train else "")
    print(f"events      {seen:,} ({rate:,.0f} events/s, {elapsed:.1f} s{training})", file=err)
    print(f"scored      {stats['scored']:,}   warming {stats['warming']:,}   "
          f"flagged {stats['flagged']:,}", file=err)
    if bad or rejected:
        reasons = Counter(b.reason for b in bad) + Counter(r for _, _, r in rejected)
        print(f"bad input   {len(bad) + len(rejected):,} "
              f"({', '.join(f'{k} {v}' for k, v in reasons.most_common())})", file=err)
        for b in bad[:10]:
            print(f"  {b.path}:{b.line}: {b.reason}: {b.message}", file=err)
        for idx, e, reason in rejected[:10]:
            print(f"  event #{idx + 1} source={e.source} ts={e.ts}: {reason}", file=err)
        more = len(bad) + len(rejected) - min(len(bad), 10) - min(len(rejected), 10)
        if more > 0:
            print(f"  ... and {more} more", file=err)
    print(f"encoder     {det.model_version()}", file=err)
    status = det.status()
    _forecasts(status)
    interval = det.config.score_interval
    for fields, (faster, total) in status["interval"].items():
        if faster:
            print(f"interval    [{fields}] {faster:,} of {total:,} sources sampled faster than "
                  f"every {interval:g} s: their tail probabilities are read per {interval:g} s "
                  "(score_interval)", file=err)
    for fields, encoder in status["encoders"].items():
        for line in encoder["training"]:
            print(f"  [{fields}] {line}", file=err)
        for d in encoder["decisions"]:
            print(f"  [{fields}] shadow decision: {json.dumps(d['levels'])}", file=err)
        for version, net in encoder["neuronets"].items():
            if net["live_perplexity"] is not None:
                serving = ",".join(map(str, net["serving"])) or "no level"
                live = ", ".join(f"L{lv} {p:.1f}" for lv, p in zip(
                    net["levels"], net["live_perplexity"], strict=True))
                print(f"  [{fields}] neuronet {version} serving {serving}: live code "
                      f"perplexity {live}", file=err)
        if encoder["pending"] is not None:
            p = encoder["pending"]
            print(f"  [{fields}] NeuroNet training started at event {p['started_at']:,} was "
                  f"due at {p['due_at']:,}, after the input ended: not installed", file=err)
    truth = getattr(args, "demo_truth", None)
    if truth is not None:
        ev = truth.evaluate((r["source"], r["ts"]) for r in flagged)
        print(f"demo truth  incidents detected {ev['detected']}/{ev['incidents']} "
              f"(recall {ev['recall']:.2f}), precision of flags {ev['precision']:.2f}", file=err)
        print("            per kind: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                   ev["per_kind"].items()), file=err)
    if args.out:
        what = "scores" if args.all_scores else "flagged events"
        print(f"wrote       {what} to {args.out}", file=err)


def _forecasts(status: dict[str, Any]) -> None:
    """The summary's lines on how many sources the deviation family judges against a seasonal
    profile or a local trend (none: no line)."""
    for key, forecast in (("periodic", "a seasonal profile"), ("trending", "a local trend")):
        for fields, (judged, total) in status[key].items():
            if judged:
                print(f"{key:<11} [{fields}] {judged:,} of {total:,} sources judged against "
                      f"{forecast}", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> int:
    """Flagged events of a run's --out (.jsonl or .csv) with their evidence, in words."""
    from neurogate.cli.results import NotResults, describe, read_records, spacing

    path = Path(args.results)
    if not path.is_file():
        raise UserError(f"results file not found: {path}")
    try:
        steps = spacing(read_records(path))
        shown = 0
        for rec in read_records(path):
            if not rec.get("flagged") or (args.source and rec.get("source") != args.source):
                continue
            print("\n".join(describe(rec, steps.get(rec["source"]))))
            shown += 1
            if shown >= args.top:
                break
    except NotResults as exc:
        raise UserError(str(exc)) from None
    if not shown:
        suffix = f" for source {args.source}" if args.source else ""
        print(f"no flagged events in the file{suffix}")
    return EXIT_OK


@user_errors("ConnectionError")
def cmd_patterns_merge(args: argparse.Namespace) -> int:
    """``patterns merge --store DEST SOURCE...``: add the counts of stores into another."""
    from neurogate.engine.stores import merge_into, open_store, totals

    sources = list(args.sources)
    dest = store_from_positional(args, sources.pop(0) if args.store is None and sources
                                 else None)
    if not sources:
        raise UserError("patterns merge needs at least one source store")
    try:
        dst = open_store(dest)
        srcs = [open_store(s) for s in sources]
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    rows = merge_into(dst, *srcs)
    print(f"merged {rows:,} pattern rows from {len(srcs)} store(s) into {redact_url(dest)}; "
          f"totals now n={totals(dst)[0]:,}")
    for s in srcs:
        s.close()
    dst.close()
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train a NeuroNet offline, from files or (``--pretrain``) from the generated corpus the
    shipped NeuroNet comes from; ``--set neuronet.pretrained=PATH`` serves the artifact."""
    import numpy as np
    import torch  # noqa: F401  # training needs the neuronet extra: say so before reading input

    from neurogate.cli.files import BadRecord
    from neurogate.engine.bank import bins_range, robust_bounds
    from neurogate.engine.neuronet import NeuroNetConfig
    from neurogate.engine.neurotrain import fit
    from neurogate.engine.pretrain import pretrain

    cfg = load_config(args.config, args.set)
    if args.pretrain:
        if args.files:
            raise UserError("--pretrain trains on generated series only: give no input files")
        net, report = pretrain(progress=progress(args))
        net.save(args.out)
        print(report.summary())
        print(f"saved NeuroNet {net.version} (generated corpus) to {args.out}")
        return EXIT_OK
    if not args.files:
        raise UserError("give input files, or --pretrain for the generated corpus")
    by_source: dict[str, list[tuple[float, ...]]] = {}
    fields: tuple[str, ...] | None = None
    readers, _ = open_inputs(args)
    for item in chain.from_iterable(reader for _, reader in readers):
        if isinstance(item, BadRecord):
            continue
        if fields is None:
            fields = item.fields
        if item.fields == fields:
            by_source.setdefault(item.source, []).append(item.values)
    if not by_source or fields is None:
        raise UserError("no usable events in the input files")
    series = []
    for vals in by_source.values():  # normalised as the engine does: by the warm-up range
        arr = np.asarray(vals, dtype=np.float64)
        lo, hi = robust_bounds(arr[None, : cfg.warmup])
        low, width = bins_range(lo[0], hi[0], cfg.range_margin)
        series.append(((arr - low) / width).astype(np.float32))
    nn = cfg.neuronet
    window = max(4, NeuroNetConfig.reach(nn.levels, NeuroNetConfig.kernel))
    window = 1 << (window - 1).bit_length()
    config = NeuroNetConfig(channels=len(fields), window=window, levels=nn.levels,
                            hidden=nn.hidden)
    net, report = fit(series, config, steps=nn.steps, seed=cfg.seed, progress=progress(args))
    net.save(args.out)
    print(report.summary())
    print(f"saved NeuroNet {net.version} ({len(series)} sources, fields {','.join(fields)}) "
          f"to {args.out}")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------


class _Version(argparse.Action):
    """``--version``: prints ``neurogate <version>``, read only when asked (it costs an import)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from neurogate import __version__

        print(f"neurogate {__version__}")
        parser.exit()


def _register_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="score files or the built-in demo stream, no servers needed")
    r.add_argument("files", nargs="*", help="CSV/TSV/JSONL files ('-' = JSONL on stdin); "
                   "none = built-in demo stream")
    add_config_options(r)
    add_input_options(r)
    add_store(r, default="neurogate.db",
              help="pattern store: SQLite path, memory://, or a server URL (with --append); an "
              "existing store needs --append or --fresh (default: neurogate.db)")
    again = r.add_mutually_exclusive_group()
    again.add_argument("--append", action="store_true",
                       help="continue from the state and counts in --store; inputs resume "
                       "after the last committed record (nothing counts twice)")
    again.add_argument("--fresh", action="store_true",
                       help="replace the neurogate SQLite store at --store (never a file that "
                       "is not one, never a server store)")
    r.add_argument("--flush-every", type=positive_int, default=500_000, metavar="N",
                   help="commit counts, input positions and state every N events")
    r.add_argument("--out", help="write flagged events (or all scores) to .jsonl/.csv/.tsv, '-' "
                   "stdout (docs/records.md)")
    r.add_argument("--all-scores", action="store_true", help="write every event's score")
    r.add_argument("--report", metavar="HTML", help="draw the run as one self-contained HTML "
                   "page (values, score, threshold, flags, incidents per source)")
    r.add_argument("--batch-size", type=positive_int, default=4096, metavar="N",
                   help="events scored per call (default 4096)")
    r.add_argument("--record", metavar="GOLDEN", help="write this run's flags as a golden file")
    r.add_argument("--expect", metavar="GOLDEN", help="compare flags with a golden file; exit 1 "
                   "with a diff when they differ")
    r.add_argument("--demo-sources", type=positive_int, default=8, metavar="N",
                   help="sources of the built-in demo stream (default 8)")
    r.add_argument("--demo-length", type=positive_int, default=5000, metavar="N",
                   help="events per source of the built-in demo stream (default 5000)")
    r.add_argument("--seed", type=int, default=0, help="demo stream seed")
    add_quiet(r)
    r.set_defaults(func=cmd_run)


def _register_explain(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("explain", help="show flagged events of a run with their evidence")
    e.add_argument("results", help="a run's --out file (.jsonl, .csv or .tsv)")
    e.add_argument("--source", help="only this source's events")
    e.add_argument("--top", type=positive_int, default=20, metavar="N",
                   help="show at most N flagged events (default 20)")
    e.set_defaults(func=cmd_explain)


def _register_patterns(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pt = sub.add_parser("patterns", help="pattern-store maintenance: merge, export, import")
    pts = pt.add_subparsers(dest="action", required=True, metavar="ACTION")
    pm = pts.add_parser("merge", help="add the counts of stores into another (exact)")
    add_store(pm, help="the store to merge into (SQLite path or URL)")
    pm.add_argument("sources", nargs="*", help="stores whose counts are added")
    pm.set_defaults(func=cmd_patterns_merge)
    cli_store.register_patterns(pts)  # patterns export / patterns import


def _register_train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser("train", help="train a NeuroNet encoder offline from files")
    t.add_argument("files", nargs="*", help="CSV/TSV/JSONL training files")
    add_config_options(t)
    add_input_options(t)
    t.add_argument("--pretrain", action="store_true",
                   help="train on the generated corpus (the shipped engine/pretrained/ NeuroNet)")
    add_quiet(t)
    t.add_argument("--out", required=True, help="NeuroNet file to write (.npz); "
                   "--set neuronet.pretrained=FILE serves it")
    t.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    """The ``neurogate`` parser: every command, each registered by its module."""
    p = Parser(prog="neurogate", description=__doc__)
    p.add_argument("--version", action=_Version, nargs=0, default=argparse.SUPPRESS,
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    _register_run(sub)
    _register_explain(sub)
    _register_patterns(sub)
    cli_store.register(sub)  # db migrate / db status / db clear-cache
    cli_eval.register(sub)  # eval nab / creditcard / multivariate ...
    cli_stream.register(sub)  # worker / produce / replay / topics / tail
    report.register(sub)  # report RESULTS -o OUT.html
    tune_cli.register(sub)  # tune (evaluation/tune_cli.py)
    _register_train(sub)
    cli_reference.register(sub)  # config docs / config show
    return p


def main(argv: Iterable[str] | None = None) -> int:
    """Run ``neurogate`` with these arguments (default: the process's); the exit code."""
    return main_of(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

"""The command lines of the search: ``neurogate tune`` and ``neurogate eval tuned``.

    neurogate tune DATA... --metric f1 --trials 50 --out tuned.toml [--storage URL]
    neurogate eval tuned [--data NAB_ROOT] [--trials 30]

Only argparse is imported here (start-up time, bench/startup.py); the search and its extra
(optuna, ``pip install 'neurogate[tune]'``) load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from neurogate.cli.argtypes import positive_int
from neurogate.cli.boundary import EXIT_OK, user_errors
from neurogate.cli.options import add_config_options, add_input_options, add_quiet, csv_options

# user errors besides the shell's own: one line, exit code 2 (neurogate.cli.boundary)
TUNE_ERRORS = ("neurogate.evaluation.tune_space.TuneError",)
METRIC_HELP = ("pr-auc | f1 | recall | nab (labels) | injected (no labels); "
               "docs/tuning.md says what each optimises")


def _search_options(p: argparse.ArgumentParser, trials: int) -> None:
    """Options of the search that ``tune`` and ``eval tuned`` share."""
    p.add_argument("--trials", type=positive_int, default=trials,
                   help="finished trials the study should hold (a resumed or shared study "
                   "counts the trials it already has)")
    p.add_argument("--storage", help="study storage: sqlite:///PATH or postgresql://... "
                   "(several processes may share one)")
    p.add_argument("--space", type=Path, help="search space TOML ([space] table; "
                   "default: the built-in space, docs/tuning.md)")
    p.add_argument("--flag-budget", type=float, default=1.0, metavar="RATE",
                   help="false flags per 1,000 scored rows a configuration may raise (f1, "
                   "recall, injected)")
    p.add_argument("--profile", default="standard", help="NAB profile of --metric nab")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed (give each process "
                   "of a shared study its own)")
    p.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    p.add_argument("--select", choices=("search", "folds"), default="search",
                   help="choose the trial best on the whole search part (search), or best by "
                   "the mean out-of-sample value of its forward-chaining folds (folds)")
    add_config_options(p, after=" of the base configuration")
    p.add_argument("--report", type=Path, help="write every figure as JSON")
    add_quiet(p)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``neurogate tune``."""
    t = sub.add_parser("tune", help="search engine settings for your data (Optuna)")
    t.add_argument("data", nargs="+", type=Path,
                   help="CSV/TSV/JSONL files (as 'run' reads them) or NAB roots")
    t.add_argument("--metric", required=True, help=METRIC_HELP)
    t.add_argument("--out", type=Path, required=True, help="the tuned [engine] TOML")
    t.add_argument("--study", help="study name (default: --out's stem)")
    t.add_argument("--folds", type=positive_int, default=3,
                   help="forward-chaining folds: the rows after the warm-up are cut into "
                   "FOLDS + 1 time-ordered blocks, the last one held out")
    _search_options(t, 50)
    t.add_argument("--inject-seed", type=int, default=0,
                   help="where --metric injected plants its anomalies (part of the data: the "
                   "same for every process of a study)")
    add_input_options(t)  # the files are read as `run` reads them
    t.add_argument("--keep-worker", action="store_true",
                   help="copy --config's [worker] table into --out (default: --out holds only "
                   "[engine]; tune reads only [engine] and ignores [worker])")
    t.set_defaults(func=cmd_tune)


def register_eval(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``neurogate eval tuned``."""
    e = es.add_parser("tuned", help="tuned vs default out-of-sample: NAB nested (tune on half "
                      "the files, score the other half), the generated multivariate set and "
                      "GutenTAG (tune on half the series, score the other half)")
    e.add_argument("--data", type=Path, help="NAB root (without it no NAB part)")
    e.add_argument("--only", choices=("nab", "generated", "gutentag"), help="run one part")
    e.add_argument("--gutentag-corpus", type=Path,
                   help="GutenTAG corpus YAML (default: evaluation/gutentag.yaml)")
    e.add_argument("--metric", default="f1",
                   help="metric on the generated set and GutenTAG (NAB uses nab); "
                   + METRIC_HELP)
    e.add_argument("--sources", type=positive_int, default=6, metavar="N",
                   help="generated sources (default 6)")
    e.add_argument("--length", type=positive_int, default=6000, metavar="N",
                   help="rows per source (default 6000)")
    e.add_argument("--gen-seed", type=int, default=7,
                   help="the tuning set's seed; the held-out set uses the next one")
    _search_options(e, 30)
    e.set_defaults(func=cmd_eval_tuned)


def _base_config(args: argparse.Namespace, preset: dict[str, Any] | None = None) -> Any:
    """The base engine configuration: defaults <- preset <- --config <- NEUROGATE_* <- --set
    (``neurogate eval``'s loader)."""
    from neurogate.cli.evaluate import engine_config

    return engine_config(preset or {}, args)


def _space(args: argparse.Namespace) -> Any:
    from neurogate.evaluation.tune_space import DEFAULT_SPACE, load_space

    return load_space(args.space) if args.space else DEFAULT_SPACE


def _fmt(v: float | None) -> str:
    return "    -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:7.4f}"


def print_report(s: dict[str, Any]) -> None:
    """The figures of ``TuneResult.summary`` as a few lines."""
    print(f"study {s['study']}: {s['metric']}; trials {s['trials']}; search {s['seconds']} s "
          f"over {s['rows']:,} rows per trial")
    print(f"chosen: trial {s['best_trial']}"
          + ("" if s["feasible"] else " (NO trial met the false-flag budget)"))
    for k, v in s["params"].items():
        print(f"  {k} = {v}")
    print("forward-chaining folds (choose on blocks < k, score block k; out-of-sample):")
    print("  fold  trial  in-sample  out-of-sample  base out-of-sample")
    for f in s["forward_chaining"]:
        print(f"  {f['fold']:>4}  {f['trial']:>5}  {_fmt(f['in_sample'])}  "
              f"{_fmt(f['out_of_sample'])}        {_fmt(f['base_out_of_sample'])}")
    ins = s["in_sample"]
    print(f"search part (in-sample): tuned {_fmt(ins['tuned']['value'])}, "
          f"base {_fmt(ins['base']['value'])}")
    if "holdout" in s:
        h, o = s["holdout"], s["optimism"]
        print(f"holdout (last block, out-of-sample): tuned {_fmt(h['tuned']['value'])}, "
              f"base {_fmt(h['base']['value'])}")
        print(f"optimism (in-sample - holdout): tuned {_fmt(o['tuned'])}; the base "
              f"configuration's own difference {_fmt(o['base'])} (a harder or easier last "
              f"block, not tuning)")


@user_errors(*TUNE_ERRORS)
def cmd_tune(args: argparse.Namespace) -> int:
    """Search, report, write the TOML (and the JSON report)."""
    from neurogate.evaluation.presets import NAB
    from neurogate.evaluation.tune import run_search, write_toml
    from neurogate.evaluation.tune_data import inject, load_inputs, plan
    from neurogate.evaluation.tune_metrics import get_metric
    from neurogate.evaluation.tune_space import TuneError

    metric = get_metric(args.metric, args.flag_budget, args.profile)
    space = _space(args)
    # a NAB root runs as `eval nab` runs it: NAB's preset (machine_temperature's timestamps go
    # backwards once; without late_tolerance that row is rejected, not scored)
    nab = any(p.is_dir() for p in args.data)
    base = _base_config(args, NAB.engine if nab else None)
    worker = _worker_table(args) if args.keep_worker else None
    if not args.out.parent.is_dir():
        raise TuneError(f"output directory does not exist: {args.out.parent}")
    series, bad = load_inputs(args.data, fmt=args.format, csv=csv_options(args))
    warm_max = max([int(p.high) for p in space.params if p.name == "warmup"] + [base.warmup])
    corpus = plan(series, args.folds, True, warm_max)
    if metric.name == "injected":
        corpus = inject(corpus, args.inject_seed)
    storage = args.storage or f"sqlite:///{args.out.with_suffix('.db')}"
    print(("NAB root: base = NAB's preset (as `neurogate eval nab`); " if nab else "")
          + f"{len(corpus.series)} series, {corpus.rows():,} rows"
          + (f" ({bad} unreadable records left out)" if bad else "")
          + (f"; too short, left out: {', '.join(corpus.skipped)}" if corpus.skipped else "")
          + f"; study {args.study or args.out.stem} in {_redacted(storage)}")
    result = run_search(corpus, metric, space, base, trials=args.trials,
                        study_name=args.study or args.out.stem, storage=storage,
                        seed=args.seed, progress=None if not args.quiet else False,
                        pruning=not args.no_prune, select=args.select)
    s = result.summary()
    print_report(s)
    header = [f"neurogate tune: {s['metric']}, trial {s['best_trial']} of study {s['study']}",
              f"in-sample {_fmt(s['in_sample']['tuned']['value']).strip()}"
              + (f", holdout (out-of-sample) {_fmt(s['holdout']['tuned']['value']).strip()}, "
                 f"base configuration there {_fmt(s['holdout']['base']['value']).strip()}"
                 if "holdout" in s else "")]
    write_toml(args.out, result.config, header, worker)
    print(f"wrote {args.out} (neurogate run --config {args.out})")
    if args.report:
        args.report.write_text(json.dumps(s, indent=2, default=str) + "\n")
    return EXIT_OK


def _worker_table(args: argparse.Namespace) -> dict[str, Any]:
    """--config's [worker] table as written, after the worker's own checks (--keep-worker)."""
    from neurogate.cli.config import load_settings, read_config_file
    from neurogate.evaluation.tune_space import TuneError

    if args.config is None:
        raise TuneError("--keep-worker needs --config (the file whose [worker] table to keep)")
    load_settings(args.config, environ={})  # a ConfigError: one line, exit 2
    return dict(read_config_file(args.config).get("worker", {}))


def _redacted(url: str) -> str:
    from neurogate.engine.redaction import redact_url

    return redact_url(url)


@user_errors(*TUNE_ERRORS)
def cmd_eval_tuned(args: argparse.Namespace) -> int:
    """NAB nested, the generated set and GutenTAG: tuned vs default, in- and
    out-of-sample."""
    from neurogate.evaluation.tune_eval import generated, gutentag_halves, nab_nested

    out: dict[str, Any] = {}
    if args.only in (None, "nab"):
        if args.data is None:
            if args.only == "nab":
                from neurogate.evaluation.tune_space import TuneError

                raise TuneError("eval tuned --only nab needs --data NAB_ROOT")
        else:
            out["nab"] = nab_nested(args, _base_config, _space(args))
    if args.only in (None, "generated"):
        out["generated"] = generated(args, _base_config, _space(args))
    if args.only in (None, "gutentag"):
        out["gutentag"] = gutentag_halves(args, _base_config, _space(args))
    if args.report:
        args.report.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return EXIT_OK

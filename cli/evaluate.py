"""``neurogate eval``: the benchmarks (NAB, credit-card fraud, the generated multivariate set),
the baselines run through the same harness, and the report's figures.

    neurogate eval nab --data ../shared/data/nab --out results [--detector all] [--range given]
    neurogate eval creditcard --data creditcard.csv [--mode seed] [--delay 100]
    neurogate eval creditcard-generate --out synthetic.csv
    neurogate eval multivariate [--detector all] [--plot docs/img/pr_multivariate.png]
    neurogate eval gutentag --channels 1,8,40 --detector all --out results/gutentag.json
    neurogate eval plot-nab --data ../shared/data/nab --results results --out docs/img/x.png
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurogate.cli.argtypes import non_negative_int, positive_int
from neurogate.cli.boundary import EXIT_OK, UserError
from neurogate.cli.config import load_config
from neurogate.cli.options import add_config_options, add_quiet, progress
from neurogate.engine.config import EngineConfig
from neurogate.evaluation import tune_cli

# evaluation/sensors.py's VARIANTS and evaluation/single.py's CONDITIONS, named here so the
# command line starts without numpy
SENSOR_VARIANTS = ("logged", "setpoint", "units", "polled", "timed")
SINGLE_CONDITIONS = ("white", "ar", "counts", "trend", "daily", "weekly", "gaps",
                     "minutely")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``eval`` command and its sub-commands to the ``neurogate`` parser."""
    ev = sub.add_parser("eval", help="benchmarks and baselines: NAB, credit card, multivariate, "
                        "GutenTAG")
    es = ev.add_subparsers(dest="eval_command", required=True)
    _register_nab(es)
    _register_creditcard(es)
    _register_creditcard_generate(es)
    _register_multivariate(es)
    _register_gutentag(es)
    _register_nab_grid(es)
    _register_plot_nab(es)
    tune_cli.register_eval(es)  # eval tuned (evaluation/tune_cli.py)
    _register_detectors(es)


def _benchmark_options(sp: argparse.ArgumentParser, default: str,
                       beside_default: bool = True) -> None:
    """Options every benchmark command shares (``--detector``, configuration, batch size)."""
    sp.add_argument("--detector", default=default,
                    help="detector name, comma-separated names or 'all' "
                    "(see 'neurogate eval detectors')")
    add_config_options(sp, after=" (after the benchmark's preset)")
    sp.add_argument("--batch-size", type=positive_int, default=1000, metavar="N",
                    help="events scored per call (default 1000)")
    add_quiet(sp)
    if beside_default:
        sp.add_argument("--no-default", action="store_true",
                        help="do not add 'neurogate-default' (the engine's defaults) "
                        "beside 'neurogate' when the configuration differs from them")


def _register_nab(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    nab = es.add_parser("nab", help="prequential NAB run, scored with our NAB scorer")
    nab.add_argument("--data", type=Path, required=True, help="NAB root (data/, labels/, config/)")
    nab.add_argument("--out", type=Path, required=True,
                     help="results directory (NAB layout: <detector>/<category>/...)")
    _benchmark_options(nab, "neurogate")
    nab.add_argument("--range", choices=("warmup", "given"), default="warmup",
                     help="value range from each file's warm-up (deployable, default) or the "
                     "file's min/max given up front (NAB-comparable: NAB's inputMin/inputMax)")
    nab.add_argument("--interleave", action="store_true",
                     help="feed all files at once, a batch of each in turn (concurrent sources)"
                     " instead of one file after the other")
    nab.add_argument("--name", help="name in the results layout (one detector only)")
    nab.add_argument("--only", help="only files whose name contains this text")
    nab.set_defaults(func=cmd_nab)


def _register_creditcard(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cc = es.add_parser("creditcard", help="credit-card fraud file (Time,V1..V28,Amount,Class)")
    cc.add_argument("--data", type=Path, required=True, help="the credit-card CSV file")
    _benchmark_options(cc, "neurogate")
    cc.add_argument("--mode", choices=("stream", "seed"), default="stream",
                    help="stream: all rows in time order; seed: the seed's 80/20 split "
                    "(seed 42), training rows then the first 20,000 test rows")
    cc.add_argument("--delay", type=non_negative_int, default=0,
                    help="rows between a row's scoring and its label reaching the detector")
    cc.add_argument("--warmup", type=positive_int, default=1000, metavar="N",
                    help="rows before the first one scored in the figures (default 1000)")
    cc.add_argument("--test-labels", action="store_true",
                    help="seed mode: feed the test rows' labels after scoring them too")
    cc.add_argument("--top", type=non_negative_int, default=5,
                    help="flagged rows shown with their explanation lines")
    cc.add_argument("--out", type=Path, help="write all figures as JSON")
    cc.add_argument("--plot", type=Path, help="write PR curves (PNG)")
    cc.set_defaults(func=cmd_creditcard)


def _register_creditcard_generate(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gen = es.add_parser("creditcard-generate",
                        help="write a generated file of the credit-card schema with frauds")
    gen.add_argument("--out", type=Path, required=True, help="CSV file to write")
    gen.add_argument("--rows", type=positive_int, default=30_000, metavar="N",
                     help="rows to write (default 30000)")
    gen.add_argument("--fraud-rate", type=float, default=0.003, metavar="SHARE",
                     help="share of fraud rows, in (0, 1) (default 0.003)")
    gen.add_argument("--seed", type=int, default=0, help="generator seed")
    gen.set_defaults(func=cmd_generate)


def _register_multivariate(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mv = es.add_parser("multivariate", help="generated labelled multivariate benchmark")
    _benchmark_options(mv, "neurogate")
    mv.add_argument("--corpus", default="factor",
                    choices=("factor", "sensors", *(f"sensors-{v}" for v in SENSOR_VARIANTS),
                             "single", *(f"single-{c}" for c in SINGLE_CONDITIONS), "daily"),
                    help="factor: sources whose channels follow one factor (default); sensors: "
                    "30 short noisy 8-sensor files, one long incident each; sensors-logged, "
                    "-setpoint, -units, -polled, -timed: the same files as a plant's export "
                    "may have them (evaluation/sensors.py); single: 36 single-metric files (noise, "
                    "AR(1), counts, a trend) with a shift, a spike or a variance burst; "
                    "single-white, -ar, -counts, -trend: files of one of them; single-daily: "
                    "a daily cycle at 5-minute sampling, ten days; single-weekly: the same with "
                    "weekends, four weeks; single-gaps: those with outages and jittered times; "
                    "single-minutely: the weekly cycle at 1-minute sampling, two weeks "
                    "(evaluation/single.py); daily: "
                    "24 files of four channels of one daily cycle (evaluation/daily.py)")
    mv.add_argument("--seed", type=int,
                    help="generator seed (default 7; sensors, single, daily 1)")
    mv.add_argument("--sources", type=positive_int, metavar="N",
                    help="generated sources (default 6; sensors 30 files, single 36, daily 24)")
    mv.add_argument("--length", type=positive_int, metavar="N",
                    help="rows per source (default 6000; not for sensors, single or daily)")
    mv.add_argument("--no-labels", action="store_true",
                    help="do not feed labels back (default: after each row is scored)")
    mv.add_argument("--out", type=Path, help="write all figures as JSON")
    mv.add_argument("--plot", type=Path, help="write PR curves (PNG)")
    mv.set_defaults(func=cmd_multivariate)


def _register_gutentag(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gt = es.add_parser("gutentag", help="GutenTAG corpus (1, 8 and 40 channels, every anomaly "
                       "kind), generated from a committed YAML at evaluation time")
    _benchmark_options(gt, "neurogate")
    gt.add_argument("--corpus", type=Path, help="corpus YAML (default: evaluation/gutentag.yaml)")
    gt.add_argument("--channels", help="comma-separated channel counts to run (default: all)")
    gt.add_argument("--cache", type=Path,
                    help="where generated series are kept (default: ~/.cache/neurogate/gutentag)")
    gt.add_argument("--no-cache", action="store_true", help="generate in memory only")
    gt.add_argument("--no-labels", action="store_true",
                    help="do not feed labels back (default: after each row is scored)")
    gt.add_argument("--out", type=Path, help="write all figures as JSON")
    gt.set_defaults(func=cmd_gutentag)


def _register_nab_grid(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gr = es.add_parser("nab-grid", help="NAB scores of several engine settings, and how much "
                       "choosing among them on NAB's labels flatters the best (2-fold)")
    gr.add_argument("--data", type=Path, required=True, help="NAB root")
    _benchmark_options(gr, "neurogate-fixed", beside_default=False)
    gr.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                    help="an engine setting and its values; several --vary make a grid")
    gr.add_argument("--range", choices=("warmup", "given"), default="warmup",
                    help="as for 'eval nab'")
    gr.add_argument("--interleave", action="store_true", help="as for 'eval nab'")
    gr.add_argument("--out", type=Path, help="write the grid's figures as JSON")
    gr.set_defaults(func=cmd_nab_grid)


def _register_plot_nab(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pl = es.add_parser("plot-nab", help="score timelines of NAB files from results directories")
    pl.add_argument("--data", type=Path, required=True, help="NAB root")
    pl.add_argument("--results", type=Path, required=True, help="an 'eval nab --out' directory")
    pl.add_argument("--detectors", required=True, help="comma-separated names in the results")
    pl.add_argument("--files", required=True,
                    help="comma-separated file names (category/name.csv) or name fragments")
    pl.add_argument("--out", type=Path, required=True, help="PNG path")
    pl.set_defaults(func=cmd_plot_nab)


def _register_detectors(es: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ls = es.add_parser("detectors", help="list the detectors the harness can run")
    ls.set_defaults(func=cmd_detectors)


# -- helpers -----------------------------------------------------------------------------------


def engine_config(preset: dict[str, Any], args: argparse.Namespace) -> EngineConfig:
    """Defaults <- the benchmark's preset <- --config's [engine] table <- NEUROGATE_* <- --set."""
    return load_config(args.config, args.set, preset=preset)


def _detectors(text: str, supervised_ok: bool = True) -> list[str]:
    """Detector names from --detector, or a one-line error."""
    from neurogate.evaluation.registry import parse_detectors

    try:
        return parse_detectors(text, supervised_ok)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None


def _names(args: argparse.Namespace, cfg: EngineConfig, supervised_ok: bool = True) -> list[str]:
    """--detector's names, with ``neurogate-default`` beside ``neurogate`` where ``cfg`` is not
    the engine's default (unless --no-default)."""
    from neurogate.evaluation.registry import with_default

    names = _detectors(args.detector, supervised_ok)
    return names if args.no_default else with_default(names, cfg)


def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a harness function, turning data problems into one-line user errors."""
    try:
        return func(*args, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None


# -- commands ----------------------------------------------------------------------------------


def cmd_nab(args: argparse.Namespace) -> int:
    """Run detectors over the NAB corpus, write NAB's results layout, print the scores."""
    from neurogate.evaluation.nab import load_corpus, load_profiles
    from neurogate.evaluation.nab_eval import format_scores, run_nab, write_nab
    from neurogate.evaluation.presets import NAB
    from neurogate.evaluation.registry import DETECTORS, build_detector

    cfg = engine_config(NAB.engine, args)
    names = _detectors(args.detector) if args.name else _names(args, cfg)
    if args.name and len(names) > 1:
        raise UserError("--name needs exactly one --detector")
    corpus = _run(load_corpus, args.data)
    profiles = _run(load_profiles, args.data)
    if args.only:
        corpus = [f for f in corpus if args.only in f.name]
        if not corpus:
            raise UserError(f"no NAB file name contains {args.only!r}")
    given = args.range == "given"
    summary = {}
    print(f"{'detector':<22} standard / low_FP / low_FN   detector time   throughput")
    for name in names:
        det = build_detector(name, cfg, NAB.baselines)
        det.name = args.name or (name + ("-given" if given else "")
                                 + ("-interleaved" if args.interleave else ""))
        run = _run(run_nab, corpus, det, given_range=given, batch_size=args.batch_size,
                   profiles=profiles, feed_labels=DETECTORS[name].supervised,
                   interleave=args.interleave, progress=progress(args))
        write_nab(args.out, run, corpus, {"engine_config": _config_dict(cfg),
                                          "files": len(corpus)})
        print(format_scores(run), flush=True)
        summary[run.detector] = run.summary()
    path = args.out / "summary.json"
    if path.is_file():  # runs of other detectors into the same directory stay listed
        summary = {**json.loads(path.read_text()), **summary}
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return EXIT_OK


def cmd_nab_grid(args: argparse.Namespace) -> int:
    """Score every combination of the --vary values on NAB, then the 2-fold selection check."""
    import itertools

    from neurogate.engine.config import from_mapping
    from neurogate.evaluation.nab import load_corpus
    from neurogate.evaluation.nab_eval import PROFILE_NAMES, cross_validated_selection, run_nab
    from neurogate.evaluation.presets import NAB
    from neurogate.evaluation.registry import build_detector

    names = _detectors(args.detector)
    if len(names) != 1:
        raise UserError("nab-grid runs one --detector")
    axes = []
    for item in args.vary:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise UserError(f"--vary expects KEY=V1,V2,..., got {item!r}")
        axes.append([(key.strip(), v.strip()) for v in values.split(",")])
    base = engine_config(NAB.engine, args)
    corpus = _run(load_corpus, args.data)
    runs, table = {}, {}
    for combo in itertools.product(*axes) if axes else [()]:
        cfg = from_mapping(EngineConfig, dict(combo), base=base)
        label = ",".join(f"{k}={v}" for k, v in combo) or "preset"
        run = _run(run_nab, corpus, build_detector(names[0], cfg, NAB.baselines),
                   given_range=args.range == "given", batch_size=args.batch_size,
                   interleave=args.interleave, progress=progress(args))
        runs[label] = run.scores
        table[label] = {p: round(run.results[p]["score"], 2) for p in PROFILE_NAMES}
        print(f"{label:<50} " + " / ".join(f"{table[label][p]:6.2f}" for p in PROFILE_NAMES),
              flush=True)
    sel = cross_validated_selection(runs, corpus)
    for pick in sel["picks"]:
        print(f"fold {pick['fold']}: chose {pick['chosen']} on the other fold, scores "
              f"{pick['held_out_score']:.2f} here (best here {pick['best_possible']:.2f})")
    print(f"chosen on all files: {sel['chosen_on_all']} ({sel['full'][sel['chosen_on_all']]:.2f});"
          f" mean per-fold score when chosen in-sample {sel['mean_chosen_in_sample']:.2f}, "
          f"chosen out-of-sample {sel['mean_held_out']:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"detector": names[0], "range": args.range,
                                        "interleave": args.interleave, "scores": table,
                                        "selection": sel}, indent=2) + "\n")
    return EXIT_OK


def cmd_creditcard(args: argparse.Namespace) -> int:
    """Run detectors over a credit-card file; print figures and top flagged explanations."""
    from neurogate.evaluation import creditcard
    from neurogate.evaluation.presets import CREDITCARD
    from neurogate.evaluation.registry import build_detector

    cfg = engine_config(CREDITCARD.engine, args)
    names = _names(args, cfg)
    data = _run(creditcard.load, args.data)
    runs = []
    for name in names:
        det = build_detector(name, cfg, CREDITCARD.baselines)
        run = _run(creditcard.evaluate, data, det, mode=args.mode, delay=args.delay,
                   warmup=args.warmup, test_labels=args.test_labels, top=args.top,
                   batch_size=args.batch_size, progress=progress(args))
        runs.append(run)
    print(_cc_table(runs))
    for run in runs:
        for row in run.top:
            print(f"\n{run.detector}: row {row['row']} class {row['class']} "
                  f"score {row['score']} posterior {row['posterior']}")
            for line in row["explanation"]:
                print(f"  {line}")
    if args.out:
        args.out.write_text(json.dumps({
            "mode": args.mode, "delay": args.delay, "runs": [r.summary() for r in runs],
            "seed_figures": creditcard.SEED_FIGURES, "engine_config": _config_dict(cfg),
        }, indent=2) + "\n")
    if args.plot:
        from neurogate.evaluation.plots import pr_curves

        curves = {(r.detector if k == "score" else f"{r.detector} posterior"): c
                  for r in runs for k, c in r.curves.items()}
        pr_curves(curves, f"credit card ({args.data.name}, {args.mode})", args.plot)
    return EXIT_OK


def _cc_table(runs: list[Any]) -> str:
    """The credit-card figures as a fixed-width table."""
    lines = [f"{'detector':<30} {'prec':>6} {'recall':>6} {'F1':>6} {'PR-AUC':>7} "
             f"{'ROC-AUC':>7} {'bestF1*':>7}  {'TN':>7} {'FP':>6} {'FN':>5} {'TP':>5}  ev/s"]
    for run in runs:
        for kind, r in run.reports.items():
            c = r["confusion"]
            label = run.detector if kind == "score" else f"{run.detector} (posterior>0)"
            eps = run.rows / run.seconds if run.seconds else float("nan")
            lines.append(
                f"{label:<30} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
                f"{r['pr_auc']:7.3f} {r['roc_auc']:7.3f} {r['best_f1']:7.3f}  {c['tn']:7d} "
                f"{c['fp']:6d} {c['fn']:5d} {c['tp']:5d}  {eps:,.0f}")
    lines.append("* bestF1 = best F1 over all thresholds (an oracle that reads the labels)")
    return "\n".join(lines)


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a generated credit-card file."""
    from neurogate.evaluation.creditcard import generate

    if not 0 < args.fraud_rate < 1:
        raise UserError(f"--fraud-rate must be in (0, 1), got {args.fraud_rate}")
    path = generate(args.out, rows=args.rows, fraud_rate=args.fraud_rate, seed=args.seed)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_multivariate(args: argparse.Namespace) -> int:
    """Run detectors over the generated multivariate benchmark; print its figures."""
    from neurogate.evaluation import daily, multivariate, sensors, single
    from neurogate.evaluation.presets import MULTIVARIATE
    from neurogate.evaluation.registry import build_detector

    cfg = engine_config(MULTIVARIATE.engine, args)
    names = _names(args, cfg)
    corpus: Any
    if args.corpus != "factor" and args.length is not None:
        raise UserError(f"--length does not apply to --corpus {args.corpus} (its files have "
                        "their own lengths)")
    if args.corpus.startswith("single"):
        args.seed = 1 if args.seed is None else args.seed
        args.sources = single.SingleSettings.files if args.sources is None else args.sources
        corpus = single
        condition = args.corpus.removeprefix("single").removeprefix("-") or None
        streams = single.generate(single.SingleSettings(files=args.sources, seed=args.seed,
                                                        condition=condition))
    elif args.corpus == "daily":
        args.seed = 1 if args.seed is None else args.seed
        args.sources = daily.DailySettings.files if args.sources is None else args.sources
        corpus = daily
        streams = daily.generate(daily.DailySettings(files=args.sources, seed=args.seed))
    elif args.corpus.startswith("sensors"):
        args.seed = 1 if args.seed is None else args.seed
        args.sources = sensors.SensorSettings.files if args.sources is None else args.sources
        corpus = sensors
        variant = args.corpus.removeprefix("sensors").removeprefix("-") or None
        streams = sensors.generate(sensors.SensorSettings(
            files=args.sources, seed=args.seed, variant=variant))
    else:
        args.seed = 7 if args.seed is None else args.seed
        args.sources = 6 if args.sources is None else args.sources
        args.length = 6000 if args.length is None else args.length
        corpus = multivariate
        streams = multivariate.generate(multivariate.MvSettings(
            sources=args.sources, length=args.length, seed=args.seed))
    results = []
    for name in names:
        det = build_detector(name, cfg, MULTIVARIATE.baselines)
        results.append(_run(corpus.evaluate, streams, det,
                            feed_labels=not args.no_labels, batch_size=args.batch_size,
                            progress=progress(args)))
    print(_corpus_tables(results, corpus.KINDS))
    if args.out:
        args.out.write_text(json.dumps({
            "corpus": args.corpus, "seed": args.seed, "sources": args.sources,
            "length": args.length,
            "labels_fed": not args.no_labels, "results": [r.summary() for r in results],
            "engine_config": _config_dict(cfg),
        }, indent=2) + "\n")
    if args.plot:
        from neurogate.evaluation.plots import pr_curves

        curves = {}
        for r in results:
            curves[r.detector] = (r.curves["labels"], r.curves["scores"])
            if "posterior" in r.curves:
                curves[f"{r.detector} posterior"] = (r.curves["labels"], r.curves["posterior"])
        pr_curves(curves, f"generated {args.corpus} benchmark (seed {args.seed})", args.plot)
    return EXIT_OK


def _corpus_tables(results: list[Any], kinds: Sequence[str]) -> str:
    """Figures of ``neurogate.evaluation.labelled`` results: one line per detector (row-level at its
    threshold and ranking, range-based, incidents), then ROC-AUC, PR-AUC and incident recall
    per kind."""
    lines = [f"{'detector':<20} {'prec':>5} {'rec':>5} {'F1':>5} {'ROC':>5} {'PR':>5} | range "
             f"{'P':>5} {'R':>5} {'F1':>5} {'PR':>5} | incid. flagP fl/inc |  ev/s"]
    for r in results:
        s, g = r.summary(), r.range_report
        lines.append(
            f"{r.detector:<20} {s['precision']:5.3f} {s['recall']:5.3f} {s['f1']:5.3f} "
            f"{s['roc_auc']:5.3f} {s['pr_auc']:5.3f} |       {g['precision']:5.3f} "
            f"{g['recall']:5.3f} {g['f1']:5.3f} {g['pr_auc']:5.3f} | "
            f"{r.incident_recall['all']:6.2f} {r.flag_precision:5.3f} "
            f"{r.flags_per_incident:6.1f} | "
            f"{s['events_per_s'] or 0:6,.0f}")
        p = r.posterior_report
        if p is not None:
            lines.append(f"{'  (posterior>0)':<20} {p['precision']:5.3f} {p['recall']:5.3f} "
                         f"{p['f1']:5.3f} {p['roc_auc']:5.3f} {p['pr_auc']:5.3f} |")
    present = [k for k in kinds if any(k in r.kinds for r in results)]
    head = " ".join(f"{k[:9]:>9}" for k in present)
    for title, get in (("ROC-AUC", lambda r, k: r.kinds[k]["roc_auc"]),
                       ("PR-AUC", lambda r, k: r.kinds[k]["pr_auc"]),
                       ("incidents found", lambda r, k: r.incident_recall[k])):
        lines += ["", f"{title + ' per kind':<24} {head}"]
        for r in results:
            cells = " ".join(f"{get(r, k):9.3f}" if k in r.kinds else f"{'-':>9}"
                             for k in present)
            lines.append(f"{r.detector:<24} {cells}")
    return "\n".join(lines)


def cmd_gutentag(args: argparse.Namespace) -> int:
    """Generate (or read from the cache) the GutenTAG corpus, run the detectors on each channel
    count separately, print per-channel-count and per-kind figures and a summary."""
    import time

    from neurogate.evaluation import gutentag, labelled
    from neurogate.evaluation.presets import GUTENTAG
    from neurogate.evaluation.registry import build_detector

    t_start = time.perf_counter()
    cfg = engine_config(GUTENTAG.engine, args)
    names = _names(args, cfg)
    corpus_path = args.corpus or gutentag.DEFAULT_CORPUS
    corpus = _run(gutentag.load_corpus, corpus_path)
    channels = None
    if args.channels:
        try:
            channels = [int(c) for c in args.channels.split(",") if c.strip()] or None
        except ValueError:
            raise UserError(f"--channels expects comma-separated integers, got "
                            f"{args.channels!r}") from None
    cache = None if args.no_cache else (args.cache or gutentag.default_cache())
    groups = _run(gutentag.streams, corpus, channels, cache)
    print(f"GutenTAG corpus {corpus_path} (seed {corpus.seed}, normal start "
          f"{corpus.normal_start} rows); generated in {time.perf_counter() - t_start:.1f} s",
          flush=True)
    out: dict[str, Any] = {}
    for ch, streams in groups.items():
        results, walls = [], {}
        for name in names:
            t0 = time.perf_counter()
            det = build_detector(name, cfg, GUTENTAG.baselines)
            results.append(_run(labelled.evaluate, streams, det, gutentag.KINDS,
                                feed_labels=not args.no_labels, batch_size=args.batch_size,
                                progress=progress(args), desc=f"gutentag {ch}ch"))
            walls[name] = time.perf_counter() - t0
        rows = sum(len(s.ts) for s in streams)
        print(f"\n== {ch} channel{'s' if ch > 1 else ''}: {len(streams)} series, {rows:,} rows "
              f"({sum(walls.values()):.0f} s) ==")
        print(_corpus_tables(results, gutentag.KINDS), flush=True)
        out[str(ch)] = {"series": [s.name for s in streams], "rows": rows,
                        "results": [{**r.summary(), "wall_seconds": round(walls[r.detector], 1)}
                                    for r in results]}
    print("\n" + _gutentag_summary(out))
    wall = time.perf_counter() - t_start
    print(f"wall time {wall:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({
            "corpus": str(corpus_path), "seed": corpus.seed, "normal_start": corpus.normal_start,
            "labels_fed": not args.no_labels, "channels": out, "wall_seconds": round(wall, 1),
            "engine_config": _config_dict(cfg),
        }, indent=2, default=str) + "\n")
    return EXIT_OK


def _gutentag_summary(out: dict[str, Any]) -> str:
    """ROC-AUC and PR-AUC of every detector at each channel count, and their means."""
    counts = list(out)
    detectors = [r["detector"] for r in out[counts[0]]["results"]]
    head = " ".join(f"{c + 'ch':>6}" for c in counts)
    lines = []
    for metric in ("roc_auc", "pr_auc"):
        lines.append(f"{metric.replace('_', '-').upper():<20} {head}   mean")
        for d in detectors:
            vals = [next(r[metric] for r in out[c]["results"] if r["detector"] == d)
                    for c in counts]
            lines.append(f"{d:<20} " + " ".join(f"{v:6.3f}" for v in vals)
                         + f" {sum(vals) / len(vals):6.3f}")
        lines.append("")
    return "\n".join(lines).rstrip()


def cmd_plot_nab(args: argparse.Namespace) -> int:
    """Draw score timelines of chosen NAB files from results directories."""
    from neurogate.evaluation.nab import load_corpus
    from neurogate.evaluation.plots import nab_timelines

    corpus = _run(load_corpus, args.data)
    files = []
    for part in (p.strip() for p in args.files.split(",") if p.strip()):
        hits = [f.name for f in corpus if part in f.name]
        if len(hits) != 1:
            raise UserError(f"--files: {part!r} matches {len(hits)} NAB files, expected one")
        files.append(hits[0])
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    path = _run(nab_timelines, args.results, corpus, detectors, files, args.out)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_detectors(_args: argparse.Namespace) -> int:
    """List the registry."""
    from neurogate.evaluation.registry import DETECTORS

    for name, d in DETECTORS.items():
        print(f"{name:<18} {'(labels) ' if d.supervised else ''}{d.description}")
    return EXIT_OK


def _config_dict(cfg: EngineConfig) -> dict[str, Any]:
    """The engine configuration as a JSON-ready dict (recorded with the results)."""
    import dataclasses

    return dataclasses.asdict(cfg)

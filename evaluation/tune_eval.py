"""``neurogate eval tuned``: what tuning buys out-of-sample, and how much the in-sample figure
flatters it (docs/tuning.md).

* **NAB nested**: the files are cut into two halves (``nab_eval.folds``: files dealt in turn
  within each category); a search on one half chooses a configuration, which is then scored on
  the other half with NAB's protocol, beside the base configuration (NAB preset, fixed codes);
  then the halves swap.
* **Generated**: a search on the generated multivariate set (``evaluation/multivariate.py``,
  one seed), scored on a set generated with the next seed, beside the base configuration.
* **GutenTAG**: the series of the GutenTAG corpus (``evaluation/gutentag.yaml``) dealt into two
  halves; a search on one half, scored on the other half's series (held out: never searched
  on), beside the base configuration (GutenTAG preset, fixed codes); then the halves swap.

Optimism = the tuned configuration's in-sample value minus its out-of-sample value; the base
configuration's own difference is printed beside it (one half or set can be harder).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from neurogate.engine.config import EngineConfig
from neurogate.evaluation.tune import run_search
from neurogate.evaluation.tune_data import Series, nab_series, plan
from neurogate.evaluation.tune_metrics import get_metric
from neurogate.evaluation.tune_space import SearchSpace, TuneError

SEARCH_BLOCKS = 3  # prefixes the pruner compares trials at (no holdout: the other data is)


def _row(name: str, tuned_in: float, tuned_out: float, base_in: float, base_out: float
         ) -> dict[str, Any]:
    """One line of the table, printed and returned."""
    d = {"part": name, "tuned_in_sample": round(tuned_in, 4),
         "tuned_out_of_sample": round(tuned_out, 4), "base_in_sample": round(base_in, 4),
         "base_out_of_sample": round(base_out, 4),
         "optimism": round(tuned_in - tuned_out, 4),
         "base_difference": round(base_in - base_out, 4),
         "gain_out_of_sample": round(tuned_out - base_out, 4)}
    print(f"{name:<28} {tuned_in:8.3f} {tuned_out:8.3f} {base_in:8.3f} {base_out:8.3f} "
          f"{d['optimism']:9.3f} {d['base_difference']:9.3f} {d['gain_out_of_sample']:9.3f}",
          flush=True)
    return d


HEADER = (f"{'':<28} {'tuned':>8} {'tuned':>8} {'base':>8} {'base':>8} {'optimism':>9} "
          f"{'base':>9} {'gain':>9}\n{'':<28} {'in':>8} {'out':>8} {'in':>8} {'out':>8} "
          f"{'':>9} {'in-out':>9} {'out':>9}")


def nab_nested(args: argparse.Namespace, base_of: Callable[..., EngineConfig],
               space: SearchSpace) -> dict[str, Any]:
    """Two-fold NAB nesting (module docstring); figures are NAB standard scores."""
    from neurogate.evaluation.engine_adapter import NeurogateDetector
    from neurogate.evaluation.nab import load_corpus
    from neurogate.evaluation.nab_eval import folds, run_nab
    from neurogate.evaluation.presets import NAB

    try:
        files = load_corpus(args.data)
    except (FileNotFoundError, ValueError) as exc:
        raise TuneError(str(exc)) from None
    base = base_of(args, {**NAB.engine, "neuronet.enabled": False})
    metric = get_metric("nab", profile=args.profile)
    halves = folds(files, 2)
    print(f"NAB nested: {len(files)} files in two halves of {len(halves[0])} and "
          f"{len(halves[1])}; {args.trials} trials per half; NAB {args.profile} scores")

    def nab(cfg: EngineConfig, part: list[Any]) -> float:
        run = run_nab(part, NeurogateDetector(cfg, name="tuned"), progress=False)
        return float(run.results[args.profile]["score"])

    rows, runs = [], []
    for i in (0, 1):
        tune_on, held = halves[i], halves[1 - i]
        corpus = plan(nab_series(tune_on), SEARCH_BLOCKS, False, 0)
        res = run_search(corpus, metric, space, base, trials=args.trials,
                         study_name=f"eval-tuned-nab-half{i}", storage=args.storage,
                         seed=args.seed, progress=None if not args.quiet else False,
                         pruning=not args.no_prune, select=args.select,
                         out=lambda _: None)
        runs.append({"half": i, "best_trial": res.best_trial, "params": res.params,
                     "trials": res.trials, "select": args.select,
                     "seconds": round(res.seconds, 1)})
        if i == 0:
            print(HEADER)
        rows.append(_row(f"tuned on half {i}, scored {1 - i}", nab(res.config, tune_on),
                         nab(res.config, held), nab(base, tune_on), nab(base, held)))
    mean = {k: sum(r[k] for r in rows) / 2 for k in rows[0] if k != "part"}
    rows.append(_row("mean of the two", mean["tuned_in_sample"], mean["tuned_out_of_sample"],
                     mean["base_in_sample"], mean["base_out_of_sample"]))
    return {"profile": args.profile, "rows": rows, "searches": runs}


def _generated_series(args: argparse.Namespace, seed: int) -> list[Series]:
    """The generated multivariate set as series (warm-up = its probation, as in its
    benchmark)."""
    from neurogate.evaluation.multivariate import MvSettings, generate

    streams = generate(MvSettings(sources=args.sources, length=args.length, seed=seed))
    return [Series(st.name, st.ts, st.values, tuple(f"c{i:03d}" for i in range(st.channels)),
                   st.has_calendar, tuple((i.start, i.end) for i in st.incidents),
                   labelled=True, warmup=st.warmup) for st in streams]


def _tuned_vs_base(args: argparse.Namespace, metric: Any, base: EngineConfig,
                   space: SearchSpace, tune_on: list[Series], held: list[Series], study: str,
                   name: str) -> dict[str, Any]:
    """Search on ``tune_on``; the chosen and the base configuration's metric over all rows
    after the warm-up of ``tune_on`` (in-sample) and ``held`` (out-of-sample): one row."""
    from neurogate.evaluation.tune import evaluate_config

    tune_corpus = plan(tune_on, SEARCH_BLOCKS, False, 0)
    held_corpus = plan(held, SEARCH_BLOCKS, False, 0)
    res = run_search(tune_corpus, metric, space, base, trials=args.trials, study_name=study,
                     storage=args.storage, seed=args.seed,
                     progress=None if not args.quiet else False, pruning=not args.no_prune,
                     select=args.select, out=lambda _: None)
    over: list[str] = []

    def value(cfg: EngineConfig, corpus: Any, which: str) -> float:
        fig = evaluate_config(cfg, corpus, metric, holdout=False).search
        if not fig.feasible(metric.budget):
            over.append(f"{which}: {fig.false_rate:.2f} false flags per 1,000 rows")
        return fig.value

    row = _row(name, value(res.config, tune_corpus, "tuned in"),
               value(res.config, held_corpus, "tuned out"), value(base, tune_corpus, "base in"),
               value(base, held_corpus, "base out"))
    if over:
        print(f"  over the false-flag budget: {'; '.join(over)}")
    return {"row": row, "over_budget": over, "best_trial": res.best_trial,
            "params": res.params, "trials": res.trials, "select": args.select,
            "seconds": round(res.seconds, 1)}


def generated(args: argparse.Namespace, base_of: Callable[..., EngineConfig],
              space: SearchSpace) -> dict[str, Any]:
    """Tune on one generated set, score on the next seed's (module docstring)."""
    metric = get_metric(args.metric, args.flag_budget, args.profile)
    base = base_of(args, {"neuronet.enabled": False})
    print(f"\ngenerated multivariate: {args.sources} sources x {args.length} rows, tuned on "
          f"seed {args.gen_seed}, scored on seed {args.gen_seed + 1}; {metric.describe()}; "
          f"{args.trials} trials")
    print(HEADER)
    out = _tuned_vs_base(args, metric, base, space, _generated_series(args, args.gen_seed),
                         _generated_series(args, args.gen_seed + 1),
                         f"eval-tuned-generated-{metric.name}",
                         f"seed {args.gen_seed} -> {args.gen_seed + 1}")
    return {"metric": metric.describe(), **out}


def gutentag_halves(args: argparse.Namespace, base_of: Callable[..., EngineConfig],
                    space: SearchSpace) -> dict[str, Any]:
    """GutenTAG: the series dealt in turn into two halves (a running count over the channel
    counts: 8 and 8 series of the committed corpus); a search on one half, scored on the
    other's series; then the halves swap (module docstring)."""
    from neurogate.evaluation import gutentag as gt
    from neurogate.evaluation.presets import GUTENTAG

    metric = get_metric(args.metric, args.flag_budget, args.profile)
    base = base_of(args, {**GUTENTAG.engine, "neuronet.enabled": False})
    path = args.gutentag_corpus or gt.DEFAULT_CORPUS
    try:
        corpus = gt.load_corpus(path)
        groups = gt.streams(corpus, None, gt.default_cache())
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise TuneError(f"GutenTAG corpus: {exc}") from None
    halves: tuple[list[Series], list[Series]] = ([], [])
    dealt = 0
    for streams in groups.values():
        for st in streams:
            halves[dealt % 2].append(Series(
                st.name, st.ts, st.values, tuple(f"c{i:03d}" for i in range(st.channels)),
                st.has_calendar, tuple((i.start, i.end) for i in st.incidents), labelled=True,
                warmup=st.warmup))
            dealt += 1
    print(f"\nGutenTAG {path.name}: {dealt} series ({', '.join(map(str, groups))} channels) in "
          f"two halves of {len(halves[0])} and {len(halves[1])}, normal start "
          f"{corpus.normal_start} rows as the warm-up; {metric.describe()}; {args.trials} "
          f"trials per half")
    print(HEADER)
    runs = [_tuned_vs_base(args, metric, base, space, halves[i], halves[1 - i],
                           f"eval-tuned-gutentag-{metric.name}-half{i}",
                           f"tuned on half {i}, scored {1 - i}") for i in (0, 1)]
    rows = [r["row"] for r in runs]
    mean = {k: sum(r[k] for r in rows) / 2 for k in rows[0] if k != "part"}
    rows.append(_row("mean of the two", mean["tuned_in_sample"], mean["tuned_out_of_sample"],
                     mean["base_in_sample"], mean["base_out_of_sample"]))
    return {"metric": metric.describe(), "halves": [[s.name for s in h] for h in halves],
            "rows": rows, "searches": runs}

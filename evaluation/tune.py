"""``neurogate tune``: an Optuna search (TPE sampler, median pruning on partial streams) for
one engine configuration for a whole corpus, with time-ordered out-of-sample figures.

Each trial runs the engine in-process over every series, block by block (``tune_data``): after
each search block it reports the metric on the blocks so far, so a trial that trails the
median of earlier trials at the same point is pruned before it has read the rest. It never
runs the holdout block. The study lives in Optuna's storage (SQLite or PostgreSQL URL), so a
search can be resumed or shared by several processes; the data, metric, space and base
configuration are stored with it and a resume with other ones is refused.

Figures (all but the one marked in-sample are out-of-sample):

* forward-chaining folds: fold ``k`` takes the finished trial that is best on blocks ``< k``
  and scores it on block ``k`` (the last fold's block is the holdout);
* the chosen configuration (best on the whole search part) on the holdout, beside the base
  configuration there; its in-sample value minus its holdout value is the optimism, printed
  beside the base configuration's own difference (a later block can simply be harder).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurogate.engine.config import ConfigError, EngineConfig
from neurogate.evaluation.engine_adapter import NeurogateDetector
from neurogate.evaluation.protocol import Batch, Feedback, SourceInfo
from neurogate.evaluation.tune_data import Corpus
from neurogate.evaluation.tune_metrics import Figure, Metric, Segment
from neurogate.evaluation.tune_space import Scalar, SearchSpace, TuneError

__all__ = ["Outcome", "TuneResult", "evaluate_config", "open_study", "run_search",
           "toml_text", "write_toml"]

BATCH = 1000  # rows per process call (the harness's default)
SELECT = ("search", "folds")  # how the chosen trial is picked (run_search, docs/tuning.md)
PRUNE_STARTUP = 5  # finished trials before the pruner may stop one


@dataclass
class Outcome:
    """One configuration's figures: the search part (in-sample when chosen there) per
    search-block prefix, and each fold ``k``'s (fit on blocks < k, score on block k)."""

    prefix: list[Figure] = field(default_factory=list)  # blocks 0..j for j = 0..search-1
    folds: dict[int, tuple[Figure, Figure]] = field(default_factory=dict)

    @property
    def search(self) -> Figure:
        """The value on the whole search part (the objective)."""
        return self.prefix[-1]


class Pruned(Exception):
    """Raised by ``on_block`` to stop a run early."""


def evaluate_config(cfg: EngineConfig, corpus: Corpus, metric: Metric, *, holdout: bool,
                    on_block: Callable[[int, Figure], None] | None = None) -> Outcome:
    """Run ``cfg`` over every series block by block (all series' block 0, then block 1, ...)
    and compute its figures; ``holdout`` also runs the last block. ``on_block(j, figure)``
    after each search block may raise ``Pruned``."""
    # no label is fed to the engine here (labels only score), so it keeps none for late
    # labels: 6 % of a NAB trial's time (cProfile)
    det = NeurogateDetector(cfg.replace(label_memory=0), name="tune")
    n_blocks = corpus.blocks if holdout else corpus.search_blocks
    outs = []
    for s in corpus.series:
        det.begin_source(SourceInfo(s.name, s.values.shape[1],
                                    s.warmup if s.warmup is not None else cfg.warmup,
                                    has_calendar=s.has_calendar))
        outs.append((np.zeros(s.n), np.zeros(s.n), np.zeros(s.n, dtype=bool)))
    res = Outcome()
    fits: list[Figure] = []
    try:
        for j in range(n_blocks):
            for s, (score, raw, flagged) in zip(corpus.series, outs, strict=True):
                lo = 0 if j == 0 else int(s.bounds[j])
                for a in range(lo, int(s.bounds[j + 1]), BATCH):
                    b = min(a + BATCH, int(s.bounds[j + 1]))
                    out = det.process(Batch(s.name, a, s.ts[a:b], s.values[a:b]),
                                      Feedback.empty())
                    score[a:b], flagged[a:b] = out.score, out.flagged
                    raw[a:b] = out.score if out.raw is None else out.raw

            def segs(first: int, last: int) -> list[Segment]:
                """Blocks first..last of every series."""
                return [Segment(s, int(s.bounds[first]), int(s.bounds[last + 1]), *o)
                        for s, o in zip(corpus.series, outs, strict=True)]

            if j < corpus.search_blocks:
                fits.append(metric.fit(segs(0, j)))
                res.prefix.append(fits[-1])
            if j >= 1:
                res.folds[j] = (fits[j - 1], metric.score(segs(j, j), fits[j - 1]))
            if on_block is not None and j < corpus.search_blocks:
                on_block(j, fits[-1])
    finally:
        det.close()
    return res


def _ranked(f: Figure, budget: float) -> tuple[bool, float, float]:
    """Sort key of a figure: feasible first, then value, then fewer false flags."""
    value = -math.inf if math.isnan(f.value) else f.value
    rate = 0.0 if math.isnan(f.false_rate) else f.false_rate
    return f.feasible(budget), value, -rate


def _figure(d: dict[str, Any]) -> Figure:
    return Figure(d["value"], d["false_rate"], d["chosen"])


# -- the study ---------------------------------------------------------------------------------


def storage_url(url: str) -> str:
    """SQLAlchemy's URL for a store URL: PostgreSQL goes through psycopg 3 (the postgres
    extra's driver), not psycopg2."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///") or url.startswith("postgresql+"):
        return url
    raise TuneError(f"--storage must be sqlite:///PATH or postgresql://..., got "
                    f"{url.split('://')[0]}://...")


def open_study(name: str, storage: str | None, meta: dict[str, Any], seed: int | None,
               pruning: bool = True) -> Any:
    """Create or load the study; a loaded study must have been made for the same ``meta``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store: Any = None
    if storage is not None:
        from optuna.storages import RDBStorage

        # a trial whose process died stops being RUNNING after grace_period seconds. Processes
        # started together race to create the schema ("table ... already exists" in one of
        # them): a second attempt finds it made.
        for attempt in range(4):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    # SQLite: wait up to 60 s for another process's write lock (sqlite3's
                    # default 5 s failed one of two processes on this loaded machine)
                    kwargs = ({"connect_args": {"timeout": 60}}
                              if storage.startswith("sqlite") else {})
                    store = RDBStorage(storage_url(storage), heartbeat_interval=30,
                                       grace_period=120, engine_kwargs=kwargs)
                break
            except Exception as exc:  # SQLAlchemy's and the drivers' errors
                if attempt == 3:
                    raise TuneError(f"cannot open the study storage: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0]}") from None
                time.sleep(0.5 * (attempt + 1))

    with warnings.catch_warnings():  # multivariate TPE and heartbeats are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # infeasible trials (trial.set_constraint > 0) rank below every feasible one
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP, n_warmup_steps=0)
              if pruning else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=name, storage=store, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    saved = study.user_attrs.get("neurogate")
    if saved is None:
        study.set_user_attr("neurogate", meta)
    elif saved != json.loads(json.dumps(meta)):
        diff = sorted(k for k in set(saved) | set(meta) if saved.get(k) != meta.get(k))
        raise TuneError(f"study {name!r} was made with other {', '.join(diff)}; resume it with "
                        f"the same ones or give another --study name")
    return study


@dataclass
class TuneResult:
    """A finished search: the chosen configuration and every figure of the report."""

    study: str
    metric: str
    trials: dict[str, int]
    best_trial: int
    params: dict[str, Scalar]
    config: EngineConfig
    tuned: Outcome
    base: Outcome
    folds: list[dict[str, Any]]
    feasible: bool
    seconds: float
    corpus_rows: int
    holdout: bool

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        def fig(f: Figure) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in dataclasses.asdict(f).items()}

        last = max(self.tuned.folds) if self.holdout else None
        out: dict[str, Any] = {
            "study": self.study, "metric": self.metric, "trials": self.trials,
            "best_trial": self.best_trial, "params": self.params, "feasible": self.feasible,
            "seconds": round(self.seconds, 1), "rows": self.corpus_rows,
            "in_sample": {"tuned": fig(self.tuned.search), "base": fig(self.base.search)},
            "forward_chaining": self.folds,
        }
        if last is not None:
            out["holdout"] = {"tuned": fig(self.tuned.folds[last][1]),
                              "base": fig(self.base.folds[last][1])}
            out["optimism"] = {"tuned": self.optimism("tuned"), "base": self.optimism("base")}
        return out

    def optimism(self, which: str) -> float | None:
        """In-sample (search part) minus holdout value."""
        o = self.tuned if which == "tuned" else self.base
        if not self.holdout:
            return None
        d = o.search.value - o.folds[max(o.folds)][1].value
        return None if math.isnan(d) else round(d, 4)


def run_search(corpus: Corpus, metric: Metric, space: SearchSpace, base: EngineConfig, *,  # noqa: C901, PLR0913, PLR0915  (options; the search loop)
               trials: int, study_name: str, storage: str | None, seed: int | None = 0,
               progress: bool | None = None, pruning: bool = True, select: str = "search",
               out: Callable[[str], None] = print) -> TuneResult:
    """Run the study up to ``trials`` finished trials (others' included), then evaluate the
    chosen and the base configuration on every block. ``progress`` None = a bar only when
    stderr is a terminal. ``select``: ``search`` chooses the trial best on the whole search
    part, ``folds`` the one best by the mean of its forward-chaining folds' out-of-sample
    values (``_fold_mean``)."""
    import optuna
    from tqdm import tqdm

    if select not in SELECT:
        raise TuneError(f"--select must be one of {', '.join(SELECT)}, got {select!r}")
    if select == "folds" and corpus.search_blocks < 2:
        raise TuneError("--select folds needs at least 2 search blocks (--folds 2 or more)")

    if metric.needs_labels and not corpus.labelled:
        raise TuneError(f"metric {metric.name} needs labels (a 0/1 label column, or a NAB "
                        f"root); without labels use --metric injected")
    if corpus.fixed_warmup and "warmup" in space.names:
        space = space.without("warmup")  # NAB fixes each file's warm-up (its probation)
    for name in metric.blind_to:  # the metric cannot see them: they would drift at random
        space = space.without(name)
    if not space.params:
        raise TuneError("the search space is empty")
    if not any(s.spans for s in corpus.series):
        raise TuneError("no anomaly (labelled or injected) after the warm-up: nothing to score")
    if not any(a >= s.bounds[0] for s in corpus.series for a, _ in s.spans):
        # scoring starts after the largest warm-up the space may try: a 1,200-row file whose
        # one incident began at row 800 printed "-" for every figure and wrote the base
        # settings as "tuned"
        starts = ", ".join(f"{s.name} at row {int(s.bounds[0])}" for s in corpus.series[:5])
        raise TuneError(
            "every labelled or injected anomaly begins before the scored rows, which start "
            f"after the largest warm-up the search may try ({starts}"
            f"{', ...' if len(corpus.series) > 5 else ''}); give more data, or a --space whose "
            "warmup range ends before the anomalies")
    meta = {"metric": metric.describe(), "space": space.fingerprint(),
            "data": corpus.fingerprint(), "blocks": [corpus.search_blocks, corpus.holdout],
            "base": dataclasses.asdict(base)}
    study = open_study(study_name, storage, meta, seed, pruning)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def done() -> int:
        return len(study.get_trials(deepcopy=False, states=finished_states))

    if not study.trials:  # the base configuration is the first point (where it is in range)
        start = {p.name: getattr_dotted(base, p.name) for p in space.params}
        if all(p.contains(start[p.name]) for p in space.params):
            study.enqueue_trial(start, skip_if_exists=True)

    def objective(trial: Any) -> float:
        params = space.suggest(trial)
        try:
            cfg = base.replace(**params)
        except ConfigError as exc:  # a combination the engine refuses
            raise optuna.TrialPruned(str(exc)) from None

        def on_block(j: int, fig: Figure) -> None:
            if j == corpus.search_blocks - 1 and not math.isnan(fig.false_rate):
                trial.set_constraint("false_flags", fig.false_rate - metric.budget)
            if not math.isnan(fig.value) and j < corpus.search_blocks - 1:
                trial.report(fig.value, j)
                if trial.should_prune():
                    raise Pruned

        try:
            res = evaluate_config(cfg, corpus, metric, holdout=False, on_block=on_block)
        except Pruned:
            raise optuna.TrialPruned() from None
        trial.set_user_attr("folds", {str(k): [dataclasses.asdict(a), dataclasses.asdict(b)]
                                      for k, (a, b) in res.folds.items()})
        trial.set_user_attr("search", dataclasses.asdict(res.search))
        return res.search.value if not math.isnan(res.search.value) else -math.inf

    t0 = time.perf_counter()
    remaining = max(0, trials - done())
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=trials, initial=trials - remaining, disable=not show, unit="trial",
              desc=f"tune {metric.name}", file=sys.stderr, **_bar_size()) as bar:
        def tick(study: Any, trial: Any) -> None:  # noqa: ARG001  (optuna's callback signature)
            bar.n = min(done(), trials)
            feasible = [t for t in _complete(study) if _figure(t.user_attrs["search"])
                        .feasible(metric.budget)]
            if feasible:
                bar.set_postfix(best=f"{max(t.value for t in feasible):.4f}")
            bar.refresh()

        if remaining:
            study.optimize(objective, n_trials=remaining, callbacks=[
                optuna.study.MaxTrialsCallback(trials, states=finished_states), tick])
    seconds = time.perf_counter() - t0
    complete = _complete(study)
    if not complete:
        raise TuneError(f"study {study_name!r} has no finished trial (all pruned or failed)")

    def rank(t: Any) -> tuple[Any, ...]:
        feasible, value, rate = _ranked(_figure(t.user_attrs["search"]), metric.budget)
        return (feasible, _fold_mean(t), value, rate) if select == "folds" else \
            (feasible, value, rate)

    best = max(complete, key=rank)
    params = {p.name: best.params[p.name] for p in space.params}
    chosen = _figure(best.user_attrs["search"]).chosen
    if chosen is not None and 0 < chosen <= 1:
        # NAB's threshold, swept on the search part: the engine's flags at it (score >=
        # threshold, repeats suppressed) are the detections NAB scored
        params["threshold"] = chosen
    cfg = base.replace(**params)
    out(f"evaluating the chosen (trial {best.number}) and the base configuration on every "
        f"block, holdout included")
    tuned = evaluate_config(cfg, corpus, metric, holdout=True)
    base_res = evaluate_config(base, corpus, metric, holdout=True)
    folds = _forward_chaining(complete, corpus, metric.budget, tuned, base_res, best.number)
    states = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in optuna.trial.TrialState}
    return TuneResult(study_name, metric.describe(), {k: v for k, v in states.items() if v},
                      best.number, params, cfg, tuned, base_res, folds,
                      _figure(best.user_attrs["search"]).feasible(metric.budget), seconds,
                      corpus.rows(), corpus.holdout)


def _fold_mean(trial: Any) -> float:
    """Mean out-of-sample value of a trial's forward-chaining folds inside the search part
    (fold k: fitted on blocks < k, scored on block k; NaN folds left out, -inf if all are)."""
    held = [d[1]["value"] for d in trial.user_attrs["folds"].values()]
    values = [v for v in held if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else -math.inf


def _bar_size() -> dict[str, int]:
    """tqdm prints nothing on a terminal that reports 0 rows or columns (a pseudo-terminal
    nobody sized: ``docker exec -t``, ``os.openpty()``): 80 x 24 there."""
    try:
        cols, rows = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):  # not a terminal (or no stderr): the bar is off anyway
        return {}
    return {} if cols and rows else {"ncols": cols or 80, "nrows": rows or 24}


def _complete(study: Any) -> list[Any]:
    """Finished trials with their figures (not pruned, not failed)."""
    import optuna

    return [t for t in study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
            if "search" in t.user_attrs]


def _forward_chaining(complete: Sequence[Any], corpus: Corpus, budget: float, tuned: Outcome,
                      base: Outcome, best: int) -> list[dict[str, Any]]:
    """Per fold k: the trial best on blocks < k, its value there and on block k, and the base
    configuration on block k. The last fold's block is the holdout: its trial is the chosen
    one, scored by the full run."""
    rows = []
    for k in range(1, corpus.blocks):
        if k < corpus.search_blocks:
            pick = max(complete, key=lambda t: _ranked(
                _figure(t.user_attrs["folds"][str(k)][0]), budget))
            fit, held = (_figure(d) for d in pick.user_attrs["folds"][str(k)])
            number = pick.number
        else:
            fit, held = tuned.folds[k]
            number = best
        rows.append({"fold": k, "trial": number, "in_sample": _clean(fit.value),
                     "out_of_sample": _clean(held.value), "base_out_of_sample":
                     _clean(base.folds[k][1].value), "false_rate": _clean(held.false_rate)})
    return rows


def _clean(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 4)


def getattr_dotted(cfg: Any, name: str) -> Any:
    """``cfg.fixed.levels`` for ``"fixed.levels"``."""
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


# -- the TOML ----------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    """A TOML literal of a setting (bool, int, float, str, tuple)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else
                                                 ("inf" if v > 0 else "-inf"))
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def toml_text(cfg: EngineConfig, header: Sequence[str] = (),
              worker: dict[str, Any] | None = None) -> str:
    """An ``[engine]`` table (with sub-tables) of every setting that differs from the engine's
    defaults: ``neurogate run --config`` and the worker's ``--config`` read it back; and
    ``worker`` (a ``[worker]`` table as read, flat) after it when given."""
    default = EngineConfig()
    top, subs = [], []
    for f in dataclasses.fields(cfg):
        value, dflt = getattr(cfg, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            lines = [f"{g.name} = {_toml_value(getattr(value, g.name))}"
                     for g in dataclasses.fields(value)
                     if getattr(value, g.name) != getattr(dflt, g.name)]
            if lines:
                subs += ["", f"[engine.{f.name}]", *lines]
        elif value != dflt:
            top.append(f"{f.name} = {_toml_value(value)}")
    head = [f"# {line}" for line in header]
    tail = ([] if worker is None else
            ["", "[worker]", *(f"{k} = {_toml_value(tuple(v) if isinstance(v, list) else v)}"
                               for k, v in worker.items())])
    return "\n".join([*head, "[engine]", *top, *subs, *tail]) + "\n"


def write_toml(path: Path, cfg: EngineConfig, header: Sequence[str] = (),
               worker: dict[str, Any] | None = None) -> None:
    """Write ``toml_text`` to ``path``."""
    if not path.parent.exists():
        raise TuneError(f"output directory does not exist: {path.parent}")
    path.write_text(toml_text(cfg, header, worker))

"""``neurogate tune``: the search finds a planted optimum, a study resumes from its storage
(SQLite and PostgreSQL), bad spaces and metrics are one-line errors (exit 2), and the TOML it
writes loads back into the same configuration (``run`` and the worker's loader)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from neurogate.cli.config import load_settings
from neurogate.cli.main import main
from neurogate.engine.config import EngineConfig
from neurogate.evaluation.tune import evaluate_config, run_search, toml_text
from neurogate.evaluation.tune_data import Series, plan
from neurogate.evaluation.tune_metrics import get_metric
from neurogate.evaluation.tune_space import (
    DEFAULT_SPACE,
    Param,
    SearchSpace,
    TuneError,
    load_space,
)
from tests.pg_fixtures import pg_db, pg_url  # noqa: F401  # fixtures

FIXED = EngineConfig().replace(**{"neuronet.enabled": False})


def _values(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, list[int]]:
    """A seasonal series with t(4) noise and a spike every 230 rows, each above every value
    before it (a new extreme: score 1.0), so the best thresholds are those above the noise's
    scores."""
    t = np.arange(n)
    x = 10 + np.sin(2 * np.pi * t / 96) + 0.3 * rng.standard_t(4, n)
    at = list(range(700 + 13 * k, n - 20, 230))
    for i, a in enumerate(at):
        x[a] = x[:a].max() + 2 + i
    return x, at


def _series(seed: int = 0, n: int = 2400) -> list[Series]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(2):
        x, at = _values(rng, n, k)
        out.append(Series(f"s{k}", 1.7e9 + 300.0 * np.arange(n), x[:, None], ("value",), True,
                          tuple((a, a) for a in at), labelled=True))
    return out


def _csv(path: Path, labels: bool = True, n: int = 2400) -> Path:
    rng = np.random.default_rng(3)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "source", "value", *(["label"] if labels else [])])
        for k in range(2):
            x, at = _values(rng, n, k)
            spikes = set(at)
            for i in range(n):
                w.writerow([1_700_000_000 + 300 * i, f"s{k}", round(float(x[i]), 4),
                            *([int(i in spikes)] if labels else [])])
    return path


@pytest.mark.slow
def test_search_finds_the_planted_optimum() -> None:
    corpus = plan(_series(), 2, True, 200)
    metric = get_metric("f1", budget=5.0)
    space = SearchSpace((Param("threshold", "float", 0.6, 1.0),))
    grid = {thr: evaluate_config(FIXED.replace(threshold=thr), corpus, metric,
                                 holdout=False).search.value
            for thr in (0.6, 0.8, 0.9, 0.95, 0.99, 1.0)}
    best = max(grid.values())
    assert grid[0.9] < best and grid[0.6] < best  # the default threshold is not the optimum
    res = run_search(corpus, metric, space, FIXED, trials=14, study_name="planted",
                     storage=None, seed=1, progress=False, out=lambda _: None)
    assert res.tuned.search.value == pytest.approx(best)
    assert res.params["threshold"] >= min(t for t, v in grid.items() if v == best) - 0.06
    s = res.summary()
    assert s["in_sample"]["tuned"]["value"] > s["in_sample"]["base"]["value"]
    assert [f["fold"] for f in s["forward_chaining"]] == [1, 2]  # the last one: the holdout
    assert s["forward_chaining"][-1]["trial"] == res.best_trial
    assert s["holdout"]["tuned"]["value"] == s["forward_chaining"][-1]["out_of_sample"]


def _study(url: str, name: str) -> optuna.Study:
    from neurogate.evaluation.tune import storage_url

    return optuna.load_study(study_name=name, storage=storage_url(url))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_resuming_continues_the_same_study(tmp_path: Path, backend: str,
                                           request: pytest.FixtureRequest) -> None:
    data = _csv(tmp_path / "data.csv")
    url = (f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    args = [ "tune", str(data), "--metric", "recall", "--out", str(tmp_path / "t.toml"),
            "--storage", url, "--study", "s1", "--folds", "1", "--set",
            "neuronet.enabled=false", "-q"]
    assert main([*args, "--trials", "3"]) == 0
    first = _study(url, "s1").get_trials(deepcopy=False)
    assert len(first) == 3
    assert main([*args, "--trials", "5", "--seed", "2"]) == 0
    study = _study(url, "s1")
    again = study.get_trials(deepcopy=False)
    assert study.study_name == "s1" and len(again) == 5
    assert [t.params for t in again[:3]] == [t.params for t in first]
    assert [t.number for t in again] == list(range(5))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_share_one_study(tmp_path: Path, backend: str,
                                       request: pytest.FixtureRequest) -> None:
    import os
    import subprocess
    import sys

    data = _csv(tmp_path / "data.csv", n=1500)
    url = (f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    exe = Path(sys.executable).with_name("neurogate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}
    procs = [subprocess.Popen(
        [str(exe), "tune", str(data), "--metric", "recall", "--out", str(tmp_path / f"{i}.toml"),
         "--storage", url, "--study", "shared", "--folds", "1", "--trials", "6", "--seed",
         str(i), "--set", "neuronet.enabled=false", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in (1, 2)]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    trials = _study(url, "shared").get_trials(deepcopy=False)
    # each stops once the study holds 6 finished trials; one may be running in the other then
    assert 6 <= len(trials) <= 7
    assert all(t.state.is_finished() for t in trials)
    assert [t.number for t in trials] == list(range(len(trials)))


@pytest.mark.slow
def test_a_resume_with_another_metric_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _csv(tmp_path / "data.csv")
    args = ["tune", str(data), "--out", str(tmp_path / "t.toml"), "--folds", "1",
            "--trials", "2", "--set", "neuronet.enabled=false"]
    assert main([*args, "--metric", "recall"]) == 0
    assert "tune recall" not in capsys.readouterr().err  # no progress bar: not a terminal
    assert main([*args, "--metric", "f1"]) == 2
    err = capsys.readouterr().err
    assert "study 't' was made with other metric" in err and "Traceback" not in err


def test_anomalies_all_before_the_scored_rows_are_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 1,200-row file whose one incident begins at row 800: the default space may try a
    warm-up of 1,000, so scoring starts at row 1,000 and the incident is never scored (every
    figure was "-" and the base settings were written as tuned). A space whose warm-up ends
    before it tunes."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=1200)
    x[800:950] += 4.0
    path = tmp_path / "short.csv"
    path.write_text("timestamp;value;anomaly\n" + "".join(
        f"{1.7e9 + 60 * i:.0f};{v:.4f};{int(800 <= i < 950)}\n" for i, v in enumerate(x)))
    args = ["tune", str(path), "--metric", "f1", "--trials", "2", "-q",
            "--set", "neuronet.enabled=false", "--out"]
    assert main([*args, str(tmp_path / "t.toml")]) == 2
    err = capsys.readouterr().err
    assert "begins before the scored rows" in err and "short at row 1000" in err
    assert not (tmp_path / "t.db").exists()
    space = tmp_path / "space.toml"
    space.write_text('[space]\nthreshold = {low = 0.85, high = 0.98}\n'
                     'warmup = {low = 100, high = 300}\n')
    assert main([*args, str(tmp_path / "u.toml"), "--space", str(space)]) == 0
    assert re.search(r"search part \(in-sample\): tuned +[01]\.\d{4}", capsys.readouterr().out)


@pytest.mark.parametrize(("space", "message"), [
    ('[space]\nthreshhold = {low = 0.8, high = 0.9}', "'threshhold' is not an engine setting"),
    ('[space]\nthreshold = {low = 0.8, high = 1.5}', "threshold = 1.5 is out of range"),
    ('[space]\nthreshold = {low = 0.9, high = 0.8}', "low (0.9) must be below high (0.8)"),
    ('[space]\n"fixed.levels" = {low = 3.5, high = 8}', "integer setting"),
    ('[space]\ncalendar = {low = 0, high = 1}', "not a number: give a list of choices"),
    ('[space]\nscope = ["source", "galaxy"]', "choice 'galaxy' is not one of"),
    ('[space]\nalpha = {low = 0, high = 2, log = true}', "a log range needs low > 0"),
    ('[space]\nfixed = {levels = 3}', "fixed.levels must be {low"),
    ('[spaces]\nalpha = [1.0]', "expected one non-empty [space] table"),
])
def test_a_bad_space_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         space: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(space + "\n")
    with pytest.raises(TuneError, match="space"):
        load_space(path)
    data = _csv(tmp_path / "data.csv", n=1500)
    code = main(["tune", str(data), "--metric", "f1", "--out", str(tmp_path / "t.toml"),
                 "--space", str(path), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "t.db").exists()  # refused before any study is made


@pytest.mark.parametrize(("argv", "message"), [
    (["--metric", "f2"], "unknown metric 'f2'; known: pr-auc, f1, recall, nab, injected"),
    (["--metric", "f1", "--flag-budget", "-1"], "--flag-budget must be a number >= 0"),
    (["--metric", "nab", "--profile", "lenient"], "--profile must be one of"),
    pytest.param(["--metric", "f1", "--storage", "mysql://db/x"],
                 "--storage must be sqlite:///PATH or", marks=pytest.mark.slow),
])
def test_a_bad_metric_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    data = _csv(tmp_path / "data.csv", n=1500)
    code = main(["tune", str(data), "--out", str(tmp_path / "t.toml"), "-q", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_labelled_metrics_need_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _csv(tmp_path / "data.csv", labels=False, n=1500)
    code = main(["tune", str(data), "--metric", "pr-auc", "--out", str(tmp_path / "t.toml"),
                 "-q"])
    assert code == 2 and "needs labels" in capsys.readouterr().err


def test_the_default_space_is_valid_and_holds_the_defaults() -> None:
    cfg = EngineConfig()
    for p in DEFAULT_SPACE.params:
        value = cfg
        for part in p.name.split("."):
            value = getattr(value, part)
        assert p.contains(value), p.name
        if p.kind != "choice":
            cfg.replace(**{p.name: int(p.low) if p.kind == "int" else p.low})
            cfg.replace(**{p.name: int(p.high) if p.kind == "int" else p.high})


def test_the_toml_loads_back_into_the_same_configuration(tmp_path: Path) -> None:
    cfg = EngineConfig().replace(**{
        "threshold": 0.9371234567891234, "suppress_window": 0, "alpha": 1e-05,
        "calendar": False, "scope": "global", "max_future_skew": float("inf"),
        "fixed.levels": 5, "fixed.trend_step": 0.123, "neuronet.enabled": False,
        "evidence.deviation": True})
    path = tmp_path / "tuned.toml"
    path.write_text(toml_text(cfg, ["a comment"]))
    engine, _ = load_settings(path, environ={})
    assert engine == cfg
    path.write_text(toml_text(EngineConfig()))
    assert load_settings(path, environ={})[0] == EngineConfig()


@pytest.mark.slow
def test_tune_without_labels_writes_a_config_run_takes(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = _csv(tmp_path / "data.csv", labels=False)
    out = tmp_path / "tuned.toml"
    report = tmp_path / "report.json"
    argv = ["tune", str(data), "--metric", "injected", "--out", str(out), "--folds", "2",
            "--set", "neuronet.enabled=false", "-q", "--report", str(report)]
    assert main([*argv, "--trials", "3"]) == 0
    assert main([*argv, "--trials", "4", "--seed", "5"]) == 0  # another sampler, same data
    printed = capsys.readouterr().out
    assert "holdout (last block, out-of-sample)" in printed and "optimism" in printed
    import json

    s = json.loads(report.read_text())
    engine, _ = load_settings(out, environ={})
    assert engine == FIXED.replace(**s["params"])
    assert main(["run", str(data), "--config", str(out), "--store", "memory://", "-q"]) == 0


@pytest.mark.slow
def test_eval_tuned_reports_tuned_against_default(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.eval_cli import cli

    assert cli("eval", "tuned", "--only", "generated", "--sources", "2", "--length", "2000",
               "--trials", "3", "--metric", "recall", "-q") == 0
    out = capsys.readouterr().out
    assert "seed 7 -> 8" in out and "optimism" in out


@pytest.mark.slow
def test_the_nab_metric_writes_the_threshold_its_sweep_chose(tmp_path: Path) -> None:
    import json

    data = _csv(tmp_path / "data.csv")
    out, report = tmp_path / "nab.toml", tmp_path / "nab.json"
    assert main(["tune", str(data), "--metric", "nab", "--trials", "2", "--out", str(out),
                 "--folds", "1", "--set", "neuronet.enabled=false", "-q",
                 "--report", str(report)]) == 0
    s = json.loads(report.read_text())
    engine, _ = load_settings(out, environ={})
    assert "threshold" in s["params"]  # not searched, but chosen by NAB's sweep
    assert engine.threshold == s["in_sample"]["tuned"]["chosen"] == s["params"]["threshold"]


def test_settings_a_metric_cannot_see_are_not_searched() -> None:
    corpus = plan(_series(n=1500), 1, True, 200)
    res = run_search(corpus, get_metric("pr-auc"), DEFAULT_SPACE, FIXED, trials=1,
                     study_name="blind", storage=None, progress=False, out=lambda _: None)
    assert "threshold" not in res.params and "suppress_window" not in res.params
    assert "top_k" in res.params


def test_blocks_never_split_an_anomaly_and_injection_stays_inside_its_block() -> None:
    from neurogate.evaluation.tune_data import inject

    series = _series(n=3000)
    long = Series("long", series[0].ts, series[0].values, ("value",), True,
                  ((1600, 1800),), labelled=True)  # across the cut at 1725
    corpus = plan([*series, long], 3, True, 200)
    for s in corpus.series:
        assert s.bounds[0] == 450 and s.bounds[-1] == s.n and len(s.bounds) == 5
        for a, e in s.spans:
            assert not any(a < c <= e for c in s.bounds[1:-1])
    assert 1600 in corpus.series[2].bounds  # the cut moved to the anomaly's start
    injected = inject(corpus, seed=0)
    for before, after in zip(corpus.series, injected.series, strict=True):
        changed = np.flatnonzero((before.values != after.values).any(axis=1))
        inside = np.zeros(before.n, dtype=bool)
        for a, e in after.spans:
            inside[a : e + 1] = True
            block = np.searchsorted(after.bounds, a, side="right") - 1
            assert after.bounds[block] <= e < after.bounds[block + 1]
        assert len(after.spans) >= 4 and inside[changed].all()


def _nab_root(tmp_path: Path) -> Path:
    """A NAB root of one file whose spike row's timestamp goes 150 s backwards (as one of
    machine_temperature's does), inside its label window."""
    import json

    n, spike = 1200, 400
    stamps = [1_396_310_400 + 300 * i for i in range(n)]
    stamps[spike - 1] = stamps[spike] + 150
    x, _ = _values(np.random.default_rng(5), n, 0)
    x[spike] = x.max() + 5
    text = [str(np.datetime64(s, "s")).replace("T", " ") for s in stamps]
    path = tmp_path / "nab" / "data" / "realKnownCause" / "m.csv"
    path.parent.mkdir(parents=True)
    path.write_text("timestamp,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in zip(
        text, x, strict=True)))
    (tmp_path / "nab" / "labels").mkdir()
    (tmp_path / "nab" / "labels" / "combined_windows.json").write_text(json.dumps(
        {"realKnownCause/m.csv": [[f"{text[spike - 20]}.000000", f"{text[spike + 20]}.000000"]]}))
    return tmp_path / "nab"


@pytest.mark.slow
def test_a_nab_root_is_tuned_with_the_nab_preset(tmp_path: Path) -> None:
    import json

    from neurogate.evaluation.presets import NAB

    space, out, report = tmp_path / "space.toml", tmp_path / "t.toml", tmp_path / "t.json"
    space.write_text("[space]\nsuppress_window = {low = 0, high = 120}\n")
    assert main(["tune", str(_nab_root(tmp_path)), "--metric", "recall", "--folds", "1",
                 "--trials", "1", "--space", str(space), "--out", str(out), "--report",
                 str(report), "--set", "neuronet.enabled=false", "-q"]) == 0
    engine, _ = load_settings(out, environ={})
    assert engine == FIXED.replace(**NAB.engine, **json.loads(report.read_text())["params"])
    # the spike row (a backwards timestamp) is scored and found, not rejected
    assert json.loads(report.read_text())["in_sample"]["base"]["value"] == 1.0


def test_tune_takes_a_deployed_config_and_keeps_its_worker_table_only_when_asked(
        tmp_path: Path) -> None:
    config = tmp_path / "deployed.toml"
    config.write_text('[engine]\nthreshold = 0.95\n"neuronet" = {enabled = false}\n\n'
                      '[worker]\ngroup = "prod"\nbatch_size = 500\ncommit_interval = 2.5\n'
                      'labels_topic = ""\n')
    data = _csv(tmp_path / "data.csv", n=1500)
    space = tmp_path / "space.toml"
    space.write_text("[space]\nsuppress_window = {low = 0, high = 120}\n")
    argv = ["tune", str(data), "--metric", "recall", "--folds", "1", "--trials", "1",
            "--space", str(space), "--config", str(config), "-q"]
    assert main([*argv, "--out", str(tmp_path / "a.toml")]) == 0
    assert "[worker]" not in (tmp_path / "a.toml").read_text()
    engine, worker = load_settings(tmp_path / "a.toml", environ={})
    deployed, deployed_worker = load_settings(config, environ={})
    assert engine.threshold == 0.95 and not engine.neuronet.enabled
    assert worker != deployed_worker
    assert main([*argv, "--out", str(tmp_path / "b.toml"), "--keep-worker"]) == 0
    engine_b, worker_b = load_settings(tmp_path / "b.toml", environ={})
    assert worker_b == deployed_worker and engine_b == engine


def _stderr_of_tune(tmp_path: Path, terminal: tuple[int, int] | None) -> str:
    """``neurogate tune`` as a subprocess, its stderr on a pseudo-terminal of ``terminal``
    (rows, columns; (0, 0): never sized) or, for None, a pipe."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    data = _csv(tmp_path / "data.csv", n=1500)
    exe = Path(sys.executable).with_name("neurogate")
    argv = [str(exe), "tune", str(data), "--metric", "recall", "--folds", "1", "--trials", "2",
            "--out", str(tmp_path / f"{terminal}.toml"), "--set", "neuronet.enabled=false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}
    if terminal is None:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                              text=True, timeout=240, check=True)
        return done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *terminal, 0, 0))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)  # the child holds it: reading the master ends (EIO) when the child exits
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 240)
            if not ready:
                raise TimeoutError("no output from tune for 240 s")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every holder of the slave closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_the_progress_bar_shows_on_a_terminal_only(tmp_path: Path) -> None:
    # an unsized pseudo-terminal (docker exec -t) once showed nothing: tqdm draws no bar in 0 rows
    for size in ((24, 100), (0, 0)):
        shown = _stderr_of_tune(tmp_path, size)
        assert "tune recall" in shown and "2/2" in shown and "trial/s" in shown, (size, shown)
    hidden = _stderr_of_tune(tmp_path, None)
    assert "tune recall" not in hidden and "2/2" not in hidden, hidden


@pytest.mark.slow
def test_select_folds_chooses_by_the_mean_out_of_sample_fold(tmp_path: Path) -> None:
    from neurogate.evaluation.tune import _fold_mean

    corpus = plan(_series(n=3000), 3, True, 200)
    metric = get_metric("f1", budget=5.0)
    space = SearchSpace((Param("threshold", "float", 0.6, 1.0),
                         Param("suppress_window", "int", 0, 120)))
    url = f"sqlite:///{tmp_path / 's.db'}"
    kw = {"trials": 8, "study_name": "sel", "storage": url, "seed": 3, "progress": False,
          "out": lambda _: None}
    run_search(corpus, metric, space, FIXED, **kw)  # the trials
    by_folds = run_search(corpus, metric, space, FIXED, select="folds", **kw)  # no new trial
    complete = [t for t in _study(url, "sel").get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert len({round(_fold_mean(t), 6) for t in complete}) > 1  # the rule has a choice
    best = max(_fold_mean(t) for t in complete)
    assert _fold_mean(next(t for t in complete if t.number == by_folds.best_trial)) == best
    with pytest.raises(TuneError, match="--select folds needs"):
        run_search(plan(_series(n=1500), 1, True, 200), metric, space, FIXED,
                   **{**kw, "study_name": "one"}, select="folds")


@pytest.mark.slow
def test_eval_tuned_gutentag_scores_series_the_search_never_saw(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tests.eval_cli import cli
    from tests.test_eval_gutentag import TINY

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus, report, url = tmp_path / "tiny.yaml", tmp_path / "r.json", f"sqlite:///{tmp_path}/s.db"
    corpus.write_text(TINY)
    assert cli("eval", "tuned", "--only", "gutentag", "--gutentag-corpus", str(corpus),
               "--trials", "3", "--metric", "recall", "--storage", url, "--report",
               str(report), "-q") == 0
    out = capsys.readouterr().out
    assert "tuned on half 1, scored 0" in out and "mean of the two" in out
    saved = json.loads(report.read_text())["gutentag"]
    assert saved["halves"] == [["one"], ["three"]] and len(saved["rows"]) == 3
    for i, held in ((0, "three"), (1, "one")):
        data = _study(url, f"eval-tuned-gutentag-recall-half{i}").user_attrs["neurogate"]["data"]
        assert [d[0] for d in data] == [saved["halves"][i][0]] and held not in str(data)
        assert 0.0 <= saved["rows"][i]["tuned_out_of_sample"] <= 1.0

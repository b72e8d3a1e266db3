"""`neurogate eval nab` and `eval plot-nab` on a tiny generated corpus in NAB's layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.evaluation.baselines import BaselineSettings
from neurogate.evaluation.nab import load_corpus
from neurogate.evaluation.nab_eval import run_nab, source_info, window_labels, write_nab
from neurogate.evaluation.registry import build_detector
from tests.eval_cli import cli

PROFILES_JSON = {
    "standard": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0,
                                "tnWeight": 1.0}},
    "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0,
                                          "tnWeight": 1.0}},
    "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0,
                                          "tnWeight": 1.0}},
}
N = 1000
SPIKE = 700


def stamp(i: int) -> str:
    return str(np.datetime64("2014-04-01T00:00:00") + np.timedelta64(300 * i, "s")).replace(
        "T", " ")


@pytest.fixture
def nab_root(tmp_path: Path) -> Path:
    """Three files: two with a spike inside a label window, one without anomalies."""
    root = tmp_path / "nab"
    windows = {}
    rng = np.random.default_rng(3)
    for k, name in enumerate(("artificialWithAnomaly/a_spike.csv", "realX/b_spike.csv",
                              "artificialNoAnomaly/c_quiet.csv")):
        x = 10 + np.sin(np.arange(N) * 2 * np.pi / 96) + rng.normal(0, 0.05, N)
        if "spike" in name:
            x[SPIKE + k] += 12.0
            windows[name] = [[f"{stamp(650)}.000000", f"{stamp(749)}.000000"]]
        else:
            windows[name] = []
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["timestamp", "value"])
            w.writerows((stamp(i), f"{v:.4f}") for i, v in enumerate(x))
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    (root / "config" / "profiles.json").write_text(json.dumps(PROFILES_JSON))
    return root


FAST = ("--set", "neuronet.enabled=false", "-q")


def test_run_nab_scores_every_file_and_writes_nab_layout(nab_root: Path, tmp_path: Path) -> None:
    corpus = load_corpus(nab_root)
    cfg = EngineConfig().replace(**{"neuronet.enabled": False, "late_tolerance": 1e12})
    run = run_nab(corpus, build_detector("neurogate-fixed", cfg, BaselineSettings()),
                  progress=False)
    assert set(run.scores) == {f.name for f in corpus}
    assert run.results["standard"]["score"] > 90  # both spikes found early, nothing else
    assert run.results["standard"]["missed_windows"] == 0
    assert run.rows == 3 * N and run.events_per_s > 0
    write_nab(tmp_path / "out", run, corpus)
    path = tmp_path / "out" / "neurogate-fixed" / "realX" / "neurogate-fixed_b_spike.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == N and rows[0]["timestamp"] == stamp(0)
    assert sum(int(r["label"]) for r in rows) == 100
    saved = json.loads((tmp_path / "out" / "neurogate-fixed_scores.json").read_text())
    assert set(saved) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}


def test_source_info_gives_probation_as_warmup_and_range_only_when_asked(nab_root: Path) -> None:
    f = load_corpus(nab_root)[0]
    assert source_info(f, False).warmup == 150 and source_info(f, False).value_range is None
    lo, hi = source_info(f, True).value_range  # type: ignore[misc]
    assert lo[0] == f.values.min() and hi[0] == f.values.max()
    assert window_labels(f).sum() == sum(r - left + 1 for left, r in f.windows)


@pytest.mark.slow
def test_cli_eval_nab_prints_scores_and_writes_results(nab_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert cli("eval", "nab", "--data", str(nab_root), "--out", str(out),
               "--detector", "neurogate-fixed,iforest,supervised", *FAST) == 0
    text = capsys.readouterr().out
    assert "neurogate-fixed" in text and "iforest" in text and "supervised" in text
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"neurogate-fixed", "iforest", "supervised"}
    assert summary["neurogate-fixed"]["scores"]["standard"] > 90
    run = json.loads((out / "iforest_run.json").read_text())
    assert run["range"] == "warmup" and run["files"] == 3 and run["events_per_s"] > 0
    # NAB-comparable mode is named apart; --only narrows the corpus
    assert cli("eval", "nab", "--data", str(nab_root), "--out", str(out), "--range", "given",
               "--only", "spike", "--detector", "neurogate-fixed", *FAST) == 0
    given = json.loads((out / "neurogate-fixed-given_run.json").read_text())
    assert given["range"] == "given" and given["files"] == 2
    # plots from the results directory
    png = tmp_path / "img" / "timelines.png"
    assert cli("eval", "plot-nab", "--data", str(nab_root), "--results", str(out),
               "--detectors", "neurogate-fixed,iforest", "--files", "a_spike,b_spike",
               "--out", str(png)) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_eval_nab_runs_the_new_baselines(nab_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert cli("eval", "nab", "--data", str(nab_root), "--out", str(out), "--detector",
               "pysad-loda,zscore,t2", "-q") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"pysad-loda", "zscore", "t2"}
    assert all(s["scores"]["standard"] > 0 for s in summary.values())  # the spikes are found


def test_cli_eval_nab_errors_are_one_line(nab_root: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("eval", "nab", "--data", str(tmp_path / "missing"), "--out", str(tmp_path),
               *FAST) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli("eval", "nab", "--data", str(nab_root), "--out", str(tmp_path), "--detector",
               "nope", *FAST) == 2
    assert "unknown detector" in capsys.readouterr().err
    assert cli("eval", "nab", "--data", str(nab_root), "--out", str(tmp_path), "--set",
               "threshold", *FAST) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert cli("eval", "detectors") == 0
    assert "hst" in capsys.readouterr().out

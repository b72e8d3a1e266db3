"""The credit-card benchmark on a generated file of the real schema with planted frauds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from neurogate.engine.config import EngineConfig
from neurogate.evaluation import creditcard
from neurogate.evaluation.presets import CREDITCARD
from neurogate.evaluation.protocol import Batch, Feedback, Output, SourceInfo
from neurogate.evaluation.registry import build_detector
from tests.eval_cli import cli

ROWS = 4000


@pytest.fixture(scope="module")
def card_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cc") / "creditcard.csv"
    return creditcard.generate(path, rows=ROWS, fraud_rate=0.02, seed=1)


class Probe:
    """A detector that records, per call, the rows it scores and the labels it receives."""

    name = "probe"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, Feedback]] = []

    def begin_source(self, info: SourceInfo) -> None:
        self.channels = info.channels

    def process(self, batch: Batch, feedback: Feedback) -> Output:
        self.calls.append((batch.start, batch.start + len(batch), feedback))
        return Output(np.zeros(len(batch)), np.zeros(len(batch), dtype=bool))

    def close(self) -> None:
        pass


def test_generated_file_has_the_real_schema_and_is_deterministic(card_file: Path,
                                                                 tmp_path: Path) -> None:
    header = card_file.read_text().splitlines()[0]
    assert header == ",".join(f'"{c}"' for c in creditcard.COLUMNS)
    data = creditcard.load(card_file)
    assert data.features.shape == (ROWS, 29)
    assert np.all(np.diff(data.time) >= 0) and data.time.max() < 172_800
    assert 40 <= data.labels.sum() <= 120  # ~2 % planted frauds
    # the planted frauds sit low on V14 (the real data's strongest fraud component)
    v14 = data.features[:, 13]
    assert v14[data.labels == 1].mean() < v14[data.labels == 0].mean() - 2
    again = creditcard.generate(tmp_path / "again.csv", rows=ROWS, fraud_rate=0.02, seed=1)
    assert again.read_bytes() == card_file.read_bytes()


def test_load_rejects_other_schemas(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Time,V1,Class\n0,1.0,0\n")
    with pytest.raises(ValueError, match="expected columns"):
        creditcard.load(bad)
    cols = ",".join(creditcard.COLUMNS)
    bad.write_text(cols + "\n" + ",".join(["0"] * 30) + ",2\n")
    with pytest.raises(ValueError, match="Class must be 0 or 1"):
        creditcard.load(bad)
    with pytest.raises(FileNotFoundError):
        creditcard.load(tmp_path / "missing.csv")


@pytest.mark.parametrize(("mode", "delay"), [("stream", 0), ("stream", 37), ("seed", 0)])
def test_labels_reach_a_detector_only_after_their_row_is_scored(card_file: Path, mode: str,
                                                                delay: int) -> None:
    data = creditcard.load(card_file)
    probe = Probe()
    creditcard.evaluate(data, probe, mode=mode, delay=delay, progress=False)  # type: ignore[arg-type]
    scored_upto = 0
    revealed: list[int] = []
    for start, stop, fb in probe.calls:
        assert start == scored_upto  # rows arrive in order, each once
        scored_upto = stop
        assert np.all(fb.rows < stop) and np.all(fb.reveal_at == fb.rows + delay)
        assert np.all((fb.reveal_at >= start) & (fb.reveal_at < stop))  # never ahead
        revealed += fb.rows.tolist()
    n_stream = scored_upto
    if mode == "stream":
        assert revealed == list(range(n_stream - delay))
    else:  # the seed's test rows are scored without their labels
        train, _ = creditcard.seed_split(ROWS)
        assert revealed == list(range(len(train)))


def test_seed_split_is_scikit_learns_with_seed_42() -> None:
    train, test = creditcard.seed_split(1000)
    tr, te = train_test_split(np.arange(1000), test_size=0.2, random_state=42)
    assert train.tolist() == sorted(tr.tolist()) and test.tolist() == te.tolist()


@pytest.mark.slow
def test_neurogate_finds_planted_frauds_with_explanations(card_file: Path) -> None:
    data = creditcard.load(card_file)
    cfg = EngineConfig().replace(**CREDITCARD.engine, **{"neuronet.enabled": False})
    run = creditcard.evaluate(data, build_detector("neurogate", cfg, CREDITCARD.baselines),
                              warmup=500, top=3, progress=False)
    rate = data.labels[500:].mean()
    post = run.reports["posterior"]
    assert post["pr_auc"] > 5 * rate and post["roc_auc"] > 0.8
    assert set(post["confusion"]) == {"tn", "fp", "fn", "tp"}
    assert run.top and all(r["explanation"] for r in run.top)
    assert any("prior_v(1)" in line for r in run.top for line in r["explanation"])
    sup = creditcard.evaluate(data, build_detector("supervised", cfg, CREDITCARD.baselines),
                              warmup=500, delay=200, progress=False)
    assert sup.reports["score"]["roc_auc"] > 0.8 and "posterior" not in sup.reports


@pytest.mark.slow
def test_cli_creditcard_prints_table_and_writes_json_and_plot(
        card_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "cc.json", tmp_path / "pr.png"
    assert cli("eval", "creditcard", "--data", str(card_file), "--detector",
               "neurogate,iforest", "--set", "neuronet.enabled=false", "--mode", "seed",
               "--out", str(out), "--plot", str(png), "--top", "2", "-q") == 0
    text = capsys.readouterr().out
    assert "neurogate (posterior>0)" in text and "iforest" in text and "pid(" in text
    saved = json.loads(out.read_text())
    # the preset and --set change the engine, so its defaults run beside it
    assert saved["mode"] == "seed" and [r["detector"] for r in saved["runs"]] == [
        "neurogate", "neurogate-default", "iforest"]
    assert saved["runs"][0]["reports"]["score"]["rows"] == ROWS // 5
    assert png.read_bytes()[:4] == b"\x89PNG"
    # delayed labels reach the engine through its late-label API
    delayed = tmp_path / "delayed.json"
    assert cli("eval", "creditcard", "--data", str(card_file), "--detector", "neurogate",
               "--set", "neuronet.enabled=false", "--delay", "10", "--out", str(delayed),
               "--no-default", "-q") == 0
    run = json.loads(delayed.read_text())["runs"][0]
    assert run["reports"]["posterior"]["pr_auc"] > 0
    gen = tmp_path / "gen.csv"
    assert cli("eval", "creditcard-generate", "--out", str(gen), "--rows", "50") == 0
    assert len(gen.read_text().splitlines()) == 51


@pytest.mark.parametrize("name", ["t2", "zscore", "pysad-loda"])
def test_the_references_and_pysad_run_on_the_card_file(card_file: Path, name: str) -> None:
    data = creditcard.load(card_file)
    run = creditcard.evaluate(data, build_detector(name, EngineConfig(), CREDITCARD.baselines),
                              warmup=500, progress=False)
    # frauds shift several components (z-score: its 10-row smoothing dilutes single rows)
    assert run.reports["score"]["roc_auc"] > 0.6

"""The GutenTAG corpus: the committed YAML, generation and its cache, the `eval gutentag` CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurogate.evaluation import gutentag as gt
from tests.eval_cli import cli

TINY = """
neurogate: {seed: 3, normal-start: 200}
timeseries:
  - name: one
    length: 600
    base-oscillations: [{kind: sine, frequency: 2.0, variance: 0.05}]
    anomalies:
      - {exact-position: 300, length: 1, channel: 0,
         kinds: [{kind: extremum, min: false, local: false}]}
      - {exact-position: 400, length: 50, channel: 0, kinds: [{kind: mean, offset: 1.0}]}
  - name: three
    length: 600
    base-oscillations:
      - {kind: sine, frequency: 2.0, variance: 0.05}
      - {kind: random-mode-jump, frequency: 12, random-seed: 7, variance: 0.05}
      - {kind: random-mode-jump, frequency: 12, random-seed: 7, variance: 0.05}
    anomalies:
      - {exact-position: 300, length: 50, channel: 2, kinds: [{kind: mode-correlation}]}
      - {exact-position: 450, length: 50, channel: 0, kinds: [{kind: variance, variance: 0.5}]}
"""


@pytest.fixture(scope="module")
def corpus() -> gt.Corpus:
    return gt.load_corpus()


def test_the_committed_yaml_covers_every_kind_at_every_channel_count(corpus: gt.Corpus) -> None:
    assert corpus.channel_counts() == [1, 8, 40]
    for ch in (1, 8, 40):
        kinds = Counter(i.kind for s in corpus.series if s.channels == ch for i in s.incidents)
        # mode correlation needs several channels; every other kind twice per channel count
        expected = set(gt.KINDS) - ({"mode-correlation"} if ch == 1 else set())
        assert set(kinds) == expected and set(kinds.values()) == {2}
    for s in corpus.series:
        assert all(i.start >= corpus.normal_start for i in s.incidents)
        assert s.length == 2400 and s.config["name"] == s.name


@pytest.mark.slow
def test_generated_series_match_the_yaml(corpus: gt.Corpus, tmp_path: Path) -> None:
    groups = gt.streams(corpus, [1, 8], cache=tmp_path)
    assert [len(groups[1]), len(groups[8])] == [6, 5]
    for ch, sts in groups.items():
        for st in sts:
            assert st.values.shape == (2400, ch) and np.isfinite(st.values).all()
            assert st.warmup == corpus.normal_start and not st.labels[: st.warmup].any()
            want = np.zeros(2400, dtype=np.int8)
            for i in st.incidents:
                want[i.start : i.end + 1] = 1
            assert np.array_equal(st.labels, want)
    # a mode-correlation anomaly breaks its channel's relation to the other mode-jump channel
    st = next(s for s in groups[8] if any(i.kind == "mode-correlation" for i in s.incidents))
    inc = next(i for i in st.incidents if i.kind == "mode-correlation")
    other = 13 - inc.channel  # channels 6 and 7 are the random-mode-jump pair
    seg = slice(inc.start, inc.end + 1)
    assert np.corrcoef(st.values[: st.warmup, 6], st.values[: st.warmup, 7])[0, 1] > 0.9
    assert np.corrcoef(st.values[seg, inc.channel], st.values[seg, other])[0, 1] < 0.5
    # cached: the same arrays come back without GutenTAG
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 11
    again = gt.streams(corpus, [1], cache=tmp_path)[1][0]
    assert np.array_equal(again.values, groups[1][0].values)
    # a cache file cut short is generated again and replaced
    first = next(f for f in files if f.name.startswith(again.name))
    first.write_bytes(first.read_bytes()[:100])
    assert np.array_equal(gt.streams(corpus, [1], cache=tmp_path)[1][0].values, again.values)
    assert np.load(first)["values"].shape == (2400, 1)


def test_same_seed_same_data_and_the_cache_key_follows_the_config(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    corpus = gt.load_corpus(path)
    a = gt.streams(corpus, [1], cache=None)[1][0]
    b = gt.streams(corpus, [1], cache=None)[1][0]
    assert np.array_equal(a.values, b.values)
    data = yaml.safe_load(TINY)
    data["neurogate"]["seed"] = 4
    path.write_text(yaml.safe_dump(data))
    other = gt.load_corpus(path)
    assert not np.array_equal(gt.streams(other, [1], cache=None)[1][0].values, a.values)
    assert gt._digest(other.series[0], 4) != gt._digest(corpus.series[0], 3)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["timeseries"][0]["anomalies"][0].update({"exact-position": 100}),
     "normal start"),
    (lambda d: d["timeseries"][0]["anomalies"][0].update({"length": 5}), "1 row long"),
    (lambda d: d["timeseries"][0]["anomalies"][1].update({"exact-position": 300}), "overlap"),
    (lambda d: d["timeseries"][0]["anomalies"][1].update({"channel": 1}), "channel 1"),
    (lambda d: d["timeseries"][0]["anomalies"][1].update({"exact-position": 590}), "end"),
    (lambda d: d["timeseries"][1]["anomalies"][0]["kinds"].append({"kind": "mean"}),
     "exactly one kind"),
    (lambda d: d.pop("neurogate"), "neurogate"),
    (lambda d: d["timeseries"][1].update({"name": "one"}), "unique name"),
])
def test_bad_corpora_are_refused(tmp_path: Path, change: object, message: str) -> None:
    data = yaml.safe_load(TINY)
    change(data)  # type: ignore[operator]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message):
        gt.load_corpus(path)


def test_cli_end_to_end_on_a_tiny_corpus(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "tiny.yaml", tmp_path / "gt.json"
    path.write_text(TINY)
    assert cli("eval", "gutentag", "--corpus", str(path), "--cache", str(tmp_path / "cache"),
               "--detector", "neurogate,zscore,t2,pysad-loda", "--set", "top_k=3",
               "--out", str(out), "-q") == 0
    text = capsys.readouterr().out
    assert "== 3 channels" in text and "ROC-AUC per kind" in text
    saved = json.loads(out.read_text())
    assert set(saved["channels"]) == {"1", "3"}
    for group in saved["channels"].values():
        # the engine's defaults run beside the --set configuration
        assert [r["detector"] for r in group["results"]] == [
            "neurogate", "neurogate-default", "zscore", "t2", "pysad-loda"]
        for r in group["results"]:
            assert 0.0 <= r["roc_auc"] <= 1.0 and set(r["range"]) == {"precision", "recall",
                                                                       "f1", "pr_auc"}
    kinds = {r["detector"]: r["kinds"] for r in saved["channels"]["3"]["results"]}
    assert set(kinds["t2"]) == {"mode-correlation", "variance"}
    assert kinds["t2"]["mode-correlation"]["incidents"] == 1
    assert saved["engine_config"]["top_k"] == 3
    assert cli("eval", "gutentag", "--corpus", str(path), "--channels", "2", "--no-cache",
               "--detector", "zscore", "-q") == 2
    assert "no series with 2 channels" in capsys.readouterr().err

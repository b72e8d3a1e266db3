"""Validation of neurogate.evaluation.nab against NAB's scoring rules (SCORING.md) and
published numbers.

Hand-made NabFile objects cover the rules; a literal port of NAB's Sweeper checks the fast sweep;
the staged corpus (NEUROGATE_NAB_DIR, default /work/shared/data/nab) checks the published facts.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.evaluation.nab import (
    NO_DETECTION_THRESHOLD,
    PROFILES,
    NabFile,
    Profile,
    load_corpus,
    load_profiles,
    normalise,
    optimize_threshold,
    probation_length,
    reference_raws,
    scaled_sigmoid,
    score_corpus,
    score_file,
    threshold_curve,
    write_results,
)

NAB_DIR = Path(os.environ.get("NEUROGATE_NAB_DIR", "/work/shared/data/nab"))
needs_corpus = pytest.mark.skipif(
    not (NAB_DIR / "labels" / "combined_windows.json").is_file(),
    reason=f"NAB corpus not staged at {NAB_DIR} (set NEUROGATE_NAB_DIR to a NAB root)",
)
STD, LOW_FP, LOW_FN = (
    PROFILES[k] for k in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
)


def make_file(n: int, windows: list[tuple[int, int]], name: str = "cat/file.csv") -> NabFile:
    """A synthetic file sampled every 5 minutes from 2014-01-01."""
    epoch = 1388534400.0 + 300.0 * np.arange(n)
    stamps = np.array(epoch, dtype="datetime64[s]")
    timestamps = [str(t).replace("T", " ") for t in stamps]
    return NabFile(name, timestamps, epoch, np.sin(np.arange(n) / 7.0), windows)


def detections(n: int, rows: list[int], value: float = 1.0) -> np.ndarray:
    scores = np.zeros(n)
    scores[rows] = value
    return scores


def perfect_scores(corpus: list[NabFile]) -> dict[str, np.ndarray]:
    """NAB's perfect detector: fires at the first row of every window and nowhere else."""
    return {f.name: detections(len(f.values), [left for left, _ in f.windows]) for f in corpus}


def tanh_reward(y: float) -> float:
    """Independent form of the scaled sigmoid: 2*sigmoid(-5y) - 1 == tanh(-2.5y)."""
    return -1.0 if y > 3 else math.tanh(-2.5 * y)


# --- rules of SCORING.md sections 3-5, by hand -------------------------------------------------


@pytest.mark.parametrize(
    ("y", "expected"), [(-1.0, 0.98661), (-0.5, 0.84828), (0.0, 0.0), (1.0, -0.98661)]
)
def test_scaled_sigmoid_reference_values(y: float, expected: float) -> None:
    assert float(scaled_sigmoid(y)) == pytest.approx(expected, abs=5e-6)


def test_scaled_sigmoid_clamps_only_beyond_three() -> None:
    ys = np.linspace(-1.0, 3.0, 401)
    np.testing.assert_allclose(scaled_sigmoid(ys), [tanh_reward(y) for y in ys], atol=1e-15)
    assert float(scaled_sigmoid(3.0)) == pytest.approx(-0.9999993882, abs=1e-10)
    assert float(scaled_sigmoid(3.0001)) == -1.0
    assert float(scaled_sigmoid(1e6)) == -1.0


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (19, 2), (20, 3), (100, 15), (4032, 604), (5000, 750), (22695, 750)]
)
def test_probation_length(n: int, expected: int) -> None:
    assert probation_length(n) == expected


# One file of 100 rows: probation 15 rows, one 10-row window on rows 40..49.
N, WINDOW = 100, (40, 49)


def one_window() -> NabFile:
    return make_file(N, [WINDOW])


def test_detection_at_first_row_of_window_gives_a_tp() -> None:
    for profile in PROFILES.values():
        fs = score_file(detections(N, [40]), one_window(), 0.5, profile)
        assert fs.raw == profile.tp_weight
    fs = score_file(detections(N, [40]), one_window(), 0.5, STD)
    assert (fs.tp, fs.fn, fs.fp, fs.tn, fs.missed_windows) == (1, 9, 0, 75, 0)


def test_detection_later_in_window_earns_less() -> None:
    last = score_file(detections(N, [49]), one_window(), 0.5, STD).raw
    assert last == pytest.approx(tanh_reward(-0.1) / tanh_reward(-1.0), abs=1e-12)
    assert last == pytest.approx(0.2483, abs=1e-4)
    middle = score_file(detections(N, [45]), one_window(), 0.5, STD).raw
    assert middle == pytest.approx(0.84828 / 0.98661, abs=1e-5)


def test_fp_cost_grows_with_distance_from_previous_window() -> None:
    def fp_cost(row: int) -> float:
        return score_file(detections(N, [row]), one_window(), 0.5, STD).raw + STD.fn_weight

    assert fp_cost(50) == pytest.approx(0.11 * tanh_reward(1 / 9), abs=1e-12)
    assert fp_cost(60) == pytest.approx(0.11 * tanh_reward(11 / 9), abs=1e-12)
    assert fp_cost(99) == pytest.approx(-0.11, abs=1e-15)  # y = 50/9 > 3
    assert 0 > fp_cost(50) > fp_cost(60) > fp_cost(99)
    assert score_file(detections(N, [50]), one_window(), 0.5, LOW_FP).raw == pytest.approx(
        -1.0 + 0.22 * tanh_reward(1 / 9), abs=1e-12
    )


def test_fp_before_any_window_costs_full_a_fp() -> None:
    for profile in PROFILES.values():
        fs = score_file(detections(N, [20]), one_window(), 0.5, profile)
        assert fs.raw == pytest.approx(-profile.fn_weight - profile.fp_weight, abs=1e-15)
        assert (fs.fp, fs.tn, fs.missed_windows) == (1, 74, 1)


def test_fp_between_windows_measured_from_previous_window() -> None:
    f = make_file(N, [(30, 39), (70, 79)])
    fs = score_file(detections(N, [30, 45, 70]), f, 0.5, STD)
    assert fs.raw == pytest.approx(2.0 + 0.11 * tanh_reward(6 / 9), abs=1e-12)


def test_adjacent_windows_are_scored_separately() -> None:
    f = make_file(N, [(30, 39), (40, 49)])
    assert score_file(detections(N, [30, 40]), f, 0.5, STD).raw == 2.0
    assert score_file(detections(N, [39]), f, 0.5, STD).raw == pytest.approx(
        tanh_reward(-0.1) / tanh_reward(-1.0) - 1.0, abs=1e-12
    )


def test_several_detections_in_a_window_count_once() -> None:
    single = score_file(detections(N, [42]), one_window(), 0.5, STD)
    double = score_file(detections(N, [42, 47]), one_window(), 0.5, STD)
    assert double.raw == single.raw
    assert (double.tp, double.fn) == (2, 8)


def test_probationary_detections_are_ignored() -> None:
    fs = score_file(detections(N, [0, 5, 14]), one_window(), 0.5, STD)
    assert fs.raw == -1.0
    assert (fs.fp, fs.tn) == (0, 75)
    assert score_file(detections(N, [15]), one_window(), 0.5, STD).fp == 1


def test_missed_window_costs_a_fn() -> None:
    nothing = np.zeros(N)
    assert score_file(nothing, one_window(), 0.5, STD).raw == -1.0
    assert score_file(nothing, one_window(), 0.5, LOW_FP).raw == -1.0
    assert score_file(nothing, one_window(), 0.5, LOW_FN).raw == -2.0
    assert score_file(nothing, make_file(N, []), 0.5, STD).raw == 0.0


def test_threshold_is_inclusive() -> None:
    scores = detections(N, [40], 0.7)
    assert score_file(scores, one_window(), 0.7, STD).raw == 1.0
    assert score_file(scores, one_window(), np.nextafter(0.7, 1.0), STD).raw == -1.0


def test_optimizer_prefers_highest_threshold_on_ties() -> None:
    scores = detections(N, [40], 0.9) + detections(N, [45], 0.8)
    corpus = [one_window()]
    assert optimize_threshold({corpus[0].name: scores}, corpus, STD) == (0.9, 1.0)
    only_fps = detections(N, [20, 60], 0.9)
    assert optimize_threshold({corpus[0].name: only_fps}, corpus, STD) == (
        NO_DETECTION_THRESHOLD,
        -1.0,
    )


def test_normalise() -> None:
    assert normalise(116.0, -116.0, 116.0) == 100.0
    assert normalise(-116.0, -116.0, 116.0) == 0.0
    assert normalise(0.0, -232.0, 116.0) == pytest.approx(100 * 232 / 348)
    with pytest.raises(ValueError, match="no windows"):
        normalise(0.0, 0.0, 0.0)


def synthetic_corpus() -> list[NabFile]:
    """Windows covering ~10 % of each file, as NAB's labeller makes them; one file without."""
    return [
        make_file(400, [(100, 139)], "a/one.csv"),
        make_file(1000, [(300, 349), (700, 749)], "a/two.csv"),
        make_file(300, [], "b/none.csv"),
        make_file(6000, [(1000, 1199), (3000, 3199), (5790, 5999)], "b/long.csv"),
    ]


def test_perfect_is_100_and_null_is_0_on_synthetic_corpus() -> None:
    corpus = synthetic_corpus()
    perfect = score_corpus(perfect_scores(corpus), corpus)
    zeros = score_corpus({f.name: np.zeros(len(f.values)) for f in corpus}, corpus)
    for name in PROFILES:
        assert perfect[name]["score"] == 100.0
        assert perfect[name]["missed_windows"] == 0
        assert perfect[name]["fp"] == 0
        assert zeros[name]["score"] == 0.0
        assert zeros[name]["threshold"] == NO_DETECTION_THRESHOLD
    assert reference_raws(corpus, LOW_FN) == (-12.0, 6.0)


# --- the fast sweep against a literal port of NAB's Sweeper ------------------------------------


def nab_sweeper(
    corpus: list[NabFile], all_scores: dict[str, np.ndarray], profile: Profile
) -> list[tuple[float, float, int, int, int, int]]:
    """nab/sweeper.py calcSweepScore over every file, then calcScoreByThreshold on the union:
    (threshold, score, tp, tn, fp, fn) for every threshold, descending."""

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    def scaled(y: float) -> float:
        return -1.0 if y > 3.0 else 2 * sigmoid(-5 * y) - 1.0

    max_tp = scaled(-1.0)
    points: list[tuple[float, float, str | None]] = []
    for f in corpus:
        limits = list(f.windows)
        probation = min(math.floor(0.15 * len(f.values)), 0.15 * 5000)
        cur: tuple[int, int] | None = None
        prev_right: int | None = None
        right, width, prev_width = 0, 0.0, 0.0
        for i, anomaly in enumerate(all_scores[f.name]):
            if limits and i == limits[0][0]:
                cur = limits.pop(0)
                right, width = cur[1], float(cur[1] - cur[0] + 1)
            if cur is not None:
                weighted = scaled(-(right - i + 1) / width) * profile.tp_weight / max_tp
            elif prev_right is None:
                weighted = -1.0 * profile.fp_weight
            else:
                weighted = scaled(abs(prev_right - i) / float(prev_width - 1)) * profile.fp_weight
            window = None if cur is None else f"{f.name}|{cur[0]}"
            points.append((float(anomaly), weighted, window if i >= probation else "probationary"))
            if cur is not None and i == cur[1]:
                prev_right, prev_width, cur = i, width, None

    scorable = sorted((p for p in points if p[2] != "probationary"), key=lambda p: -p[0])
    parts: dict[str | None, float] = {"fp": 0.0}
    parts.update({p[2]: -profile.fn_weight for p in scorable if p[2] is not None})
    tn = sum(p[2] is None for p in scorable)
    fn = len(scorable) - tn
    tp = fp = 0
    rows = []
    threshold = 1.1
    for anomaly, weighted, window in scorable:
        if anomaly != threshold:
            rows.append((threshold, sum(parts.values()), tp, tn, fp, fn))
            threshold = anomaly
        if window is None:
            fp, tn = fp + 1, tn - 1
            parts["fp"] += weighted
        else:
            tp, fn = tp + 1, fn - 1
            parts[window] = max(parts[window], weighted)
    rows.append((threshold, sum(parts.values()), tp, tn, fp, fn))
    return rows


@st.composite
def nab_cases(draw: st.DrawFn) -> tuple[list[NabFile], dict[str, np.ndarray], Profile]:
    corpus, all_scores = [], {}
    levels = draw(st.sampled_from([3, 10, 1000]))
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(8, 120))
        windows: list[tuple[int, int]] = []
        first_free = probation_length(n)
        for _ in range(draw(st.integers(0, 3))):
            if first_free > n - 2:
                break
            left = draw(st.integers(first_free, n - 2))
            right = draw(st.integers(left + 1, min(n - 1, left + 25)))
            windows.append((left, right))
            first_free = right + draw(st.integers(1, 3))
        f = make_file(n, windows, f"cat{k}/f{k}.csv")
        corpus.append(f)
        ints = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
        all_scores[f.name] = np.array(ints) / levels
    return corpus, all_scores, draw(st.sampled_from(list(PROFILES.values())))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(nab_cases())
def test_fast_sweep_equals_nab_sweeper_and_brute_force(
    case: tuple[list[NabFile], dict[str, np.ndarray], Profile],
) -> None:
    corpus, all_scores, profile = case
    reference = nab_sweeper(corpus, all_scores, profile)
    thresholds, totals = threshold_curve(all_scores, corpus, profile)
    assert thresholds.tolist() == [row[0] for row in reference]
    np.testing.assert_allclose(totals, [row[1] for row in reference], rtol=0, atol=1e-9)
    for threshold, total, tp, tn, fp, fn in reference:
        files = [score_file(all_scores[f.name], f, threshold, profile) for f in corpus]
        assert sum(fs.raw for fs in files) == pytest.approx(total, abs=1e-9)
        assert [sum(getattr(fs, c) for fs in files) for c in ("tp", "tn", "fp", "fn")] == [
            tp,
            tn,
            fp,
            fn,
        ]
    best = sorted(reference, key=lambda row: row[1], reverse=True)[0]
    threshold, total = optimize_threshold(all_scores, corpus, profile)
    assert threshold == best[0]
    assert total == pytest.approx(best[1], abs=1e-9)


# --- input validation and the loader --------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([(10, 20)], "starts before row 15"),
        ([(30, 40), (40, 50)], "starts before row 41"),
        ([(50, 60), (30, 40)], "starts before row 61"),
        ([(30, 30)], ">= 2 rows"),
        ([(90, 100)], ">= 2 rows"),
    ],
)
def test_nabfile_rejects_windows_nab_never_produces(
    windows: list[tuple[int, int]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_file(N, windows)


def test_scores_are_checked() -> None:
    f = one_window()
    for bad in (np.zeros(N - 1), np.full(N, np.nan), np.full(N, 1.5), np.full(N, -0.1)):
        with pytest.raises(ValueError, match="cat/file.csv"):
            score_file(bad, f, 0.5, STD)
    with pytest.raises(ValueError, match="missing for \\['cat/file.csv'\\]"):
        score_corpus({}, [f])
    with pytest.raises(ValueError, match="unknown files \\['x.csv'\\]"):
        score_corpus({f.name: np.zeros(N), "x.csv": np.zeros(3)}, [f])


def write_nab_root(root: Path, rows: list[str], windows: dict[str, list[list[str]]]) -> None:
    (root / "data" / "cat").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data" / "cat" / "f.csv").write_text("\n".join(rows) + "\n")
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def mini_rows(n: int = 40) -> list[str]:
    f = make_file(n, [])
    return ["timestamp,value", *(f"{t},{i}" for i, t in enumerate(f.timestamps))]


def test_load_corpus_maps_window_timestamps_to_rows(tmp_path: Path) -> None:
    rows = mini_rows()
    start, end = rows[21].split(",")[0], rows[26].split(",")[0]
    write_nab_root(tmp_path, rows, {"cat/f.csv": [[f"{start}.000000", f"{end}.000000"]]})
    (f,) = load_corpus(tmp_path)
    assert (f.name, f.windows, f.probation, len(f.values)) == ("cat/f.csv", [(20, 25)], 6, 40)
    assert f.timestamps[0] == "2014-01-01 00:00:00"
    assert f.epoch[1] - f.epoch[0] == 300.0
    assert f.epoch[0] == 1388534400.0
    assert f.values[39] == 39.0
    assert load_profiles(tmp_path) == dict(PROFILES)


@pytest.mark.parametrize(
    ("relative", "content", "error", "message"),
    [
        ("labels/combined_windows.json", None, FileNotFoundError, "combined_windows.json not"),
        ("data/cat/f.csv", None, FileNotFoundError, "f.csv not found"),
        ("data/cat/g.csv", "x", ValueError, "no entry for data files \\['cat/g.csv'\\]"),
        ("data/cat/f.csv", "t,v\n", ValueError, "header must be 'timestamp,value'"),
        ("data/cat/f.csv", "timestamp,value\nyesterday,1\n", ValueError, "YYYY-MM-DD"),
        ("data/cat/f.csv", "timestamp,value\n2014-01-01 00:00:00\n", ValueError, "line 2 has 1"),
        ("labels/combined_windows.json", '{"cat/f.csv": [1]}', ValueError, "list of \\[start"),
        (
            "labels/combined_windows.json",
            '{"cat/f.csv": [["2014-01-01 00:02:00", "2014-01-01 01:00:00"]]}',
            ValueError,
            "'2014-01-01 00:02:00' matches 0 rows",
        ),
    ],
)
def test_load_corpus_reports_bad_layouts(
    tmp_path: Path, relative: str, content: str | None, error: type[Exception], message: str
) -> None:
    write_nab_root(tmp_path, mini_rows(), {"cat/f.csv": []})
    if content is None:
        (tmp_path / relative).unlink()
    else:
        (tmp_path / relative).write_text(content)
    with pytest.raises(error, match=message):
        load_corpus(tmp_path)


def test_load_corpus_requires_a_nab_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing is not a directory"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_corpus(tmp_path)


def test_load_profiles_reads_and_checks_config(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "profiles.json"
    path.write_text('{"p": {"CostMatrix": {"tpWeight": 2, "fpWeight": 0.5, "fnWeight": 3}}}')
    assert load_profiles(tmp_path) == {"p": Profile(tp_weight=2.0, fp_weight=0.5, fn_weight=3.0)}
    path.write_text('{"p": {"CostMatrix": {"tpWeight": 2}}}')
    with pytest.raises(ValueError, match="profiles.json"):
        load_profiles(tmp_path)


def test_write_results_uses_nab_layout(tmp_path: Path) -> None:
    corpus = synthetic_corpus()
    scores = perfect_scores(corpus)
    results = score_corpus(scores, corpus)
    write_results(tmp_path, "ng", scores, corpus, results)
    with (tmp_path / "ng" / "a" / "ng_two.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == 1001
    assert [r[3] for r in rows[1:]].count("1") == 100
    assert rows[301][0] == corpus[1].timestamps[300]
    assert (float(rows[301][2]), rows[301][3], rows[300][3]) == (1.0, "1", "0")
    assert float(rows[5][1]) == corpus[1].values[4]
    summary = json.loads((tmp_path / "ng_scores.json").read_text())
    assert {k: (v["score"], v["threshold"]) for k, v in summary.items()} == {
        k: (100.0, 1.0) for k in PROFILES
    }
    with pytest.raises(ValueError, match="plain"):
        write_results(tmp_path, "../x", scores, corpus, results)


# --- the staged NAB corpus --------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[NabFile]:
    return load_corpus(NAB_DIR)


@needs_corpus
def test_corpus_matches_its_readme(corpus: list[NabFile]) -> None:
    per_category: dict[str, list[int]] = {}
    for f in corpus:
        files_rows = per_category.setdefault(f.name.split("/")[0], [0, 0])
        files_rows[0] += 1
        files_rows[1] += len(f.values)
    assert per_category == {
        "artificialNoAnomaly": [5, 20160],
        "artificialWithAnomaly": [6, 24192],
        "realAWSCloudwatch": [17, 67740],
        "realAdExchange": [6, 9610],
        "realKnownCause": [7, 69561],
        "realTraffic": [7, 15664],
        "realTweets": [10, 158631],
    }
    assert sum(len(f.windows) for f in corpus) == 116
    assert sum(not f.windows for f in corpus) == 6
    taxi = next(f for f in corpus if f.name == "realKnownCause/nyc_taxi.csv")
    assert (len(taxi.values), taxi.probation, taxi.timestamps[0]) == (
        10320,
        750,
        "2014-07-01 00:00:00",
    )
    assert taxi.values[0] == 10844.0


@needs_corpus
def test_builtin_profiles_equal_config() -> None:
    assert load_profiles(NAB_DIR) == dict(PROFILES)


@needs_corpus
def test_null_and_perfect_reproduce_published_raw_totals(corpus: list[NabFile]) -> None:
    expected_null = {"standard": -116.0, "reward_low_FP_rate": -116.0, "reward_low_FN_rate": -232.0}
    perfect = score_corpus(perfect_scores(corpus), corpus)
    zeros = score_corpus({f.name: np.zeros(len(f.values)) for f in corpus}, corpus)
    # NAB's null detector emits a constant 0.5; its optimiser then chooses to detect nothing.
    constant = score_corpus({f.name: np.full(len(f.values), 0.5) for f in corpus}, corpus)
    for name, profile in PROFILES.items():
        assert reference_raws(corpus, profile) == (expected_null[name], 116.0)
        assert (perfect[name]["raw"], perfect[name]["score"]) == (116.0, 100.0)
        for null in (zeros, constant):
            assert (null[name]["raw"], null[name]["score"]) == (expected_null[name], 0.0)
            assert null[name]["threshold"] == NO_DETECTION_THRESHOLD


# thresholds.json keeps each detector's optimised raw total; for these detectors it is the run
# behind final_results.json (for htmjava, knncad, random, twitterADVec and windowedGaussian the
# two files come from different runs, see SCOREBOARD.md, so they cannot be cross-checked).
CONSISTENT = ["ARTime", "contextOSE", "earthgeckoSkyline", "expose", "null", "numenta"]
CONSISTENT += ["numentaTM", "randomCutForest", "relativeEntropy", "skyline"]


@needs_corpus
def test_normalisation_reproduces_published_scores(corpus: list[NabFile]) -> None:
    raws = json.loads((NAB_DIR / "config" / "thresholds.json").read_text())
    published = json.loads((NAB_DIR / "results" / "final_results.json").read_text())
    for name, profile in PROFILES.items():
        bounds = reference_raws(corpus, profile)
        for detector in CONSISTENT:
            score = normalise(raws[detector][name]["score"], *bounds)
            assert score == pytest.approx(published[detector][name], abs=1e-8), detector
    bayes = {"standard": 17.71, "reward_low_FP_rate": 3.21, "reward_low_FN_rate": 32.26}
    for name, profile in PROFILES.items():
        score = normalise(raws["bayesChangePt"][name]["score"], *reference_raws(corpus, profile))
        assert score == pytest.approx(bayes[name], abs=0.005)


@needs_corpus
def test_full_corpus_sweep_is_fast_and_agrees_with_score_file(corpus: list[NabFile]) -> None:
    rng = np.random.default_rng(7)
    scores = {f.name: rng.random(len(f.values)).round(3) for f in corpus}
    start = time.perf_counter()
    results = score_corpus(scores, corpus)
    assert time.perf_counter() - start < 5.0
    for name, profile in PROFILES.items():
        thresholds, totals = threshold_curve(scores, corpus, profile)
        assert len(thresholds) == 1002
        for k in (0, 1, 10, 500, 1001):
            raw = sum(score_file(scores[f.name], f, thresholds[k], profile).raw for f in corpus)
            assert raw == pytest.approx(totals[k], rel=1e-11)
        assert results[name]["raw"] == pytest.approx(totals.max(), rel=1e-11)

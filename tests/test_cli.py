"""The ``neurogate`` command line end to end: run (files, demo, outputs, golden files, bad
input, errors), explain, patterns merge; in-process through ``main`` and as a real process."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from neurogate.cli.main import Writer, build_parser, main
from neurogate.engine.stores import SQLiteStore, totals
from tests.conftest import foreign_sqlite

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000
STEP = 300
N = 400
SPIKE = 300
FAST = ("--set", "neuronet.enabled=false", "--set", "warmup=50", "-q")


@dataclass
class Outcome:
    code: int
    out: str
    err: str


Cli = Callable[..., Outcome]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path (the default store is ./neurogate.db) with no NEUROGATE_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEUROGATE_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def call(*args: str) -> Outcome:
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return call


def ts(step: int) -> int:
    return T0 + STEP * step


def series_values(spike: int | None = SPIKE, n: int = N) -> list[float]:
    values = [round(10 * math.sin(2 * math.pi * i / 48) + 0.3 * math.sin(i * 1.7), 4)
              for i in range(n)]
    if spike is not None:
        values[spike] += 60
    return values


def write_csv(
    path: Path,
    values: Sequence[float],
    labels: Sequence[int] | None = None,
    extra: dict[int, str] | None = None,
) -> Path:
    """timestamp,value[,is_anomaly] rows; ``extra`` maps a row index to raw lines written before
    that row (malformed input)."""
    lines = ["timestamp,value" + (",is_anomaly" if labels is not None else "")]
    for i, v in enumerate(values):
        if extra and i in extra:
            lines.append(extra[i])
        lines.append(f"{ts(i)},{v}" + (f",{labels[i]}" if labels is not None else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def series(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "series.csv", series_values())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def store_contents(path: Path) -> dict[int, tuple[int, ...]]:
    with SQLiteStore(path) as store:
        return {
            k: tuple(c)
            for keys, counts in store.iter_counts()
            for k, c in zip(keys.tolist(), counts.tolist(), strict=True)
        }


# -- run: outputs ---------------------------------------------------------------------------------


def test_run_writes_flagged_events_as_jsonl(cli: Cli, tmp_path: Path, series: Path) -> None:
    res = cli("run", str(series), "--store", "p.db", "--out", "flags.jsonl", *FAST)
    assert res.code == 0, res.err
    flags = read_jsonl(tmp_path / "flags.jsonl")
    assert flags and all(r["flagged"] and r["status"] == "scored" for r in flags)
    spike = next(r for r in flags if r["ts"] == ts(SPIKE))
    assert spike["source"] == "series" and spike["score"] == 1.0 and spike["extreme"]
    assert spike["evidence"] and spike["model_version"].startswith("fixed:")
    assert f"events      {N}" in res.err
    assert f"flagged {len(flags)}" in res.err
    assert "wrote       flagged events to flags.jsonl" in res.err
    assert (tmp_path / "p.db").is_file() and not (tmp_path / "neurogate.db").exists()


def test_the_summary_says_which_sources_are_read_per_score_interval(cli: Cli,
                                                                    tmp_path: Path) -> None:
    """A source sampled every minute has its tail probabilities read per 5 minutes, and the
    summary says so; at 5-minute steps, or with ``score_interval = 0``, it says nothing."""
    values = [round(math.sin(i * 1.7), 4) for i in range(400)]
    lines = ["timestamp,value"] + [f"{T0 + 60 * i},{v}" for i, v in enumerate(values)]
    (tmp_path / "minute.csv").write_text("\n".join(lines) + "\n")
    write_csv(tmp_path / "five.csv", values)
    fast = ("--store", "memory://", "--set", "neuronet.enabled=false", "-q")
    res = cli("run", "minute.csv", *fast)
    assert res.code == 0, res.err
    assert ("interval    [value] 1 of 1 sources sampled faster than every 300 s: their tail "
            "probabilities are read per 300 s (score_interval)") in res.err
    for args in (("five.csv",), ("minute.csv", "--set", "score_interval=0")):
        res = cli("run", *args, *fast)
        assert res.code == 0 and "interval" not in res.err, res.err


def test_the_summary_says_which_sources_have_a_seasonal_profile(cli: Cli, tmp_path: Path) -> None:
    """A daily cycle at 5-minute sampling is found by the late look for a period (after 864
    events; a default warm-up shows periods up to 66): the summary says so. Before the look,
    and for a source with no period, it says nothing."""
    day = [round(3 * math.sin(2 * math.pi * i / 288) + 0.5 * math.sin(i * 1.7), 4)
           for i in range(1000)]
    write_csv(tmp_path / "daily.csv", day)
    fast = ("--set", "neuronet.enabled=false", "-q")
    res = cli("run", "daily.csv", "--store", "memory://", *fast)
    assert res.code == 0, res.err
    assert "periodic    [value] 1 of 1 sources judged against a seasonal profile" in res.err
    write_csv(tmp_path / "short.csv", day[:800])
    res = cli("run", "short.csv", "--store", "memory://", *fast)
    assert res.code == 0 and "periodic" not in res.err


def test_the_summary_says_which_sources_follow_a_local_trend(cli: Cli, tmp_path: Path) -> None:
    """A noisy series that rises through its warm-up is judged against a local trend
    (``evidence.trend``): the summary says so, and says nothing with the setting off."""
    rise = [round(i * 0.01 + math.sin(i * 2.3), 4) for i in range(600)]
    write_csv(tmp_path / "rise.csv", rise)
    fast = ("--set", "neuronet.enabled=false", "-q")
    res = cli("run", "rise.csv", "--store", "memory://", *fast)
    assert res.code == 0, res.err
    assert "trending    [value] 1 of 1 sources judged against a local trend" in res.err
    res = cli("run", "rise.csv", "--store", "memory://", "--set", "evidence.trend=false", *fast)
    assert res.code == 0 and "trending" not in res.err


def test_all_scores_as_csv_and_jsonl_agree(cli: Cli, tmp_path: Path, series: Path) -> None:
    for out in ("scores.csv", "scores.jsonl"):
        res = cli("run", str(series), "--store", "memory://", "--all-scores", "--out", out, *FAST)
        assert res.code == 0, res.err
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    records = read_jsonl(tmp_path / "scores.jsonl")
    assert list(rows[0]) == [*Writer.CSV_COLUMNS, "value", *Writer.JSON_COLUMNS]
    assert len(rows) == len(records) == N
    values = series_values()
    assert [float(r["value"]) for r in rows] == [r["values"]["value"] for r in records] == values
    assert rows[SPIKE]["time"] == records[SPIKE]["time"] == datetime.fromtimestamp(
        ts(SPIKE), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(rows[SPIKE]["evidence"]) == records[SPIKE]["evidence"]
    assert [r["status"] for r in rows[:50]] == ["warming"] * 50
    assert all(float(r["score"]) == 0.0 for r in rows[:50])
    assert [float(r["score"]) for r in rows] == [r["score"] for r in records]
    assert [r["flagged"] == "True" for r in rows] == [r["flagged"] for r in records]
    assert rows[SPIKE]["flagged"] == "True" and float(rows[SPIKE]["ts"]) == ts(SPIKE)


def test_tsv_output_holds_the_csv_rows_and_reads_back(cli: Cli, tmp_path: Path,
                                                      series: Path) -> None:
    for out in ("scores.csv", "scores.tsv"):
        res = cli("run", str(series), "--store", "memory://", "--all-scores", "--out", out, *FAST)
        assert res.code == 0, res.err
    with open(tmp_path / "scores.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    with open(tmp_path / "scores.tsv", newline="") as f:
        assert "\t" in f.readline()
        f.seek(0)
        tsv_rows = list(csv.DictReader(f, delimiter="\t"))
    assert tsv_rows == csv_rows
    res = cli("explain", "scores.tsv")
    assert res.code == 0, res.err
    assert res.out and res.out == cli("explain", "scores.csv").out


def test_label_column_gives_posteriors_and_explanations(cli: Cli, tmp_path: Path) -> None:
    values = series_values(spike=None)
    labels = [0] * N
    for k in range(120, N, 40):  # a recurring labelled anomaly
        values[k] += 25
        labels[k] = 1
    path = write_csv(tmp_path / "labelled.csv", values, labels)
    res = cli("run", str(path), "--label-column", "is_anomaly", "--store", "memory://",
              "--all-scores", "--out", "scores.jsonl", *FAST)
    assert res.code == 0, res.err
    records = read_jsonl(tmp_path / "scores.jsonl")
    assert len(records) == N
    assert "posterior" not in records[120] and "posterior" in records[121]
    assert records[-40]["posterior"] > 0 > records[-41]["posterior"]  # -40 is labelled 1
    explained = [r for r in records if r.get("explanation")]
    assert explained and all("prior st(" in line for r in explained for line in r["explanation"])
    # without the option the label-like column is found and read the same way, never scored
    # (as a value column its 0 -> 1 steps drove the flags), and the run says so
    res = cli("run", str(path), "--store", "memory://", "--all-scores", "--out", "plain.jsonl",
              *FAST)
    assert res.code == 0
    assert "labels from 'is_anomaly'" in res.err
    assert read_jsonl(tmp_path / "plain.jsonl") == records


# -- run: golden files ---------------------------------------------------------------------------


@pytest.mark.slow
def test_record_then_expect(cli: Cli, tmp_path: Path, series: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    res = cli("run", str(series), "--store", "p.db", "--record", str(golden), *FAST)
    assert res.code == 0
    recorded = read_jsonl(golden)
    assert f"recorded {len(recorded)} flagged events" in res.err
    assert {tuple(r) for r in recorded} == {("source", "ts", "id", "score")}
    assert ts(SPIKE) in [r["ts"] for r in recorded]

    same = cli("run", str(series), "--store", "p.db", "--fresh", "--expect", str(golden), *FAST)
    assert same.code == 0 and "flags match" in same.err

    write_csv(series, series_values(spike=SPIKE + 20))
    moved = cli("run", str(series), "--store", "p.db", "--fresh", "--expect", str(golden), *FAST)
    assert moved.code == 1
    assert "FLAGS DIFFER from" in moved.err
    assert f"- missing flag  source=series ts={float(ts(SPIKE))!r} id=None" in moved.err
    assert f"+ new flag      source=series ts={float(ts(SPIKE + 20))!r} id=None" in moved.err


def test_expect_reports_changed_scores(cli: Cli, tmp_path: Path, series: Path) -> None:
    golden = tmp_path / "golden.jsonl"
    assert cli("run", str(series), "--store", "memory://", "--record", str(golden), *FAST).code == 0
    edited = read_jsonl(golden)
    edited[0]["score"] = round(edited[0]["score"] - 0.01, 6)
    golden.write_text("".join(json.dumps(r) + "\n" for r in edited))
    res = cli("run", str(series), "--store", "memory://", "--expect", str(golden), *FAST)
    assert res.code == 1
    assert "(1 differences)" in res.err and "~ score changed source=series" in res.err
    assert f"{edited[0]['score']} -> " in res.err


# -- run: bad input and user errors --------------------------------------------------------------


def test_malformed_rows_are_reported_with_line_numbers(cli: Cli, tmp_path: Path) -> None:
    extra = {
        10: f"{ts(10)},abc",  # file line 12: header is line 1, row i is line i + 2
        100: f"{ts(100)},",  # line 103 (after one extra line before it)
        200: f"{ts(200)},1.0,7",  # line 204
        250: "yesterday,3.0",  # line 255
    }
    path = write_csv(tmp_path / "messy.csv", series_values(), extra=extra)
    res = cli("run", str(path), "--store", "memory://", "--all-scores", "--out", "s.jsonl", *FAST)
    assert res.code == 0, res.err
    for line, reason in ((12, "bad_type"), (103, "missing_field"), (204, "schema_mismatch"),
                         (255, "bad_timestamp")):
        assert f"{path}:{line}: {reason}: " in res.err
    assert "bad input   4 (" in res.err
    records = read_jsonl(tmp_path / "s.jsonl")
    assert len(records) == N  # every good row was scored
    assert next(r for r in records if r["ts"] == ts(SPIKE))["flagged"]
    clean = cli("run", str(write_csv(tmp_path / "clean.csv", series_values())), "--store",
                "memory://", "--all-scores", "--out", "c.jsonl", *FAST)
    assert clean.code == 0
    assert [r["score"] for r in records] == [r["score"] for r in read_jsonl(tmp_path / "c.jsonl")]


def test_a_run_where_every_record_is_bad_exits_1(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"source,timestamp,value\ncaf\xe9,1,1\ncaf\xe8,2,2\nx,3,oops\n")
    res = cli("run", str(path), "--store", "memory://", *FAST)
    assert res.code == 1
    assert "bad input   3 (bad_encoding 2, bad_type 1)" in res.err
    assert res.err.strip().splitlines()[-1] == (
        "neurogate: error: every input record was bad (3, listed above); nothing was scored")
    empty = write_csv(tmp_path / "empty.csv", [])  # no record at all is not a bad run
    assert cli("run", str(empty), "--store", "memory://", *FAST).code == 0


def test_out_of_order_rows_are_listed_as_rejected_events(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "late.csv", series_values(), extra={120: f"{ts(5)},1.0"})
    res = cli("run", str(path), "--store", "memory://", *FAST)
    assert res.code == 0
    assert f"event #121 source=late ts={float(ts(5))}: out_of_order" in res.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.csv"], "input file not found: missing.csv"),
        (["run", "{dir}"], "input is a directory, not a file: "),
        (["train", "{dir}", "--out", "x.pt"], "input is a directory, not a file: "),
        (["run", "{series}", "--set", "threshold=abc"], "threshold must be float, got 'abc'"),
        (["run", "{series}", "--set", "no_such=1"], "unknown setting 'no_such'"),
        (["run", "{series}", "--set", "threshold"], "--set expects KEY=VALUE"),
        (["run", "{series}", "--value-columns", "nope"], "'nope' is not a column"),
        (["run", "{series}", "--label-column", "nope"], "'nope' is not a column"),
        (["run", "{series}", "--out", "no/dir/x.jsonl"], "output directory does not exist"),
        (["run", "{series}", "--store", "no/dir/p.db"], "does not exist"),
        (["run", "{series}", "--store", "postgres://x"], "unsupported store URL"),
        (["run", "{series}", "--store", "{series}", "--append"], "not a neurogate pattern store"),
        (["run", "{series}", "--store", "{series}", "--fresh"], "refusing to replace it"),
        (["run", "{series}", "--store", "postgresql://u@h/db", "--fresh"], "never wiped"),
        (["run", "{series}", "--expect", "absent.jsonl"], "golden file not found"),
        (["explain", "absent.jsonl"], "results file not found"),
        (["explain", "{series}"], "not a neurogate results file"),
        (["patterns", "merge", "all.db"], "needs at least one source store"),
        (["patterns", "merge", "--store", "all.db"], "needs at least one source store"),
        (["patterns", "merge", "--store", "all.db", "no/dir/x.db"], "does not exist"),
        (["patterns", "export", "x.zip"], "give the store with --store"),
    ],
)
def test_user_errors_exit_2_with_one_clear_line(
    cli: Cli, series: Path, args: list[str], message: str
) -> None:
    (series.parent / "inputs").mkdir(exist_ok=True)
    argv = [a.replace("{series}", str(series)).replace("{dir}", str(series.parent / "inputs"))
            for a in args]
    if argv[0] == "run" and "--store" not in argv:
        argv += ["--store", "memory://"]
    res = cli(*argv, *(FAST if argv[0] == "run" else ()))
    assert res.code == 2
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("neurogate: error: ") and message in last
    assert "Traceback" not in res.err


def test_missing_golden_file_fails_before_scoring(cli: Cli, series: Path) -> None:
    res = cli("run", str(series), "--store", "memory://", "--expect", "absent.jsonl", *FAST)
    assert res.code == 2
    assert res.err.startswith("neurogate: error: golden file not found")


def test_failed_run_leaves_an_existing_store_alone(cli: Cli, tmp_path: Path, series: Path) -> None:
    assert cli("run", str(series), "--store", "p.db", *FAST).code == 0
    before = store_contents(tmp_path / "p.db")
    assert before
    assert cli("run", "missing.csv", "--store", "p.db", *FAST).code == 2
    assert store_contents(tmp_path / "p.db") == before


def test_store_that_is_a_directory_is_a_clear_error(cli: Cli, tmp_path: Path, series: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    try:
        res = cli("run", str(series), "--store", "dir.db", *FAST)
    except OSError as exc:
        pytest.fail(f"uncaught {exc!r}")
    assert res.code == 2 and "dir.db" in res.err


def test_file_errors_name_the_file_once(cli: Cli, series: Path) -> None:
    res = cli("run", str(series), "--value-columns", "nope", "--store", "memory://", *FAST)
    assert res.code == 2
    assert res.err.count(str(series)) == 1


# -- explain, merge, demo ------------------------------------------------------------------------


@pytest.mark.parametrize("out", ["flags.jsonl", "scores.csv"])
def test_explain_says_in_words_why_events_were_flagged(
        cli: Cli, tmp_path: Path, series: Path, out: str) -> None:
    """On a real run's output, JSONL (flags) and CSV (every score): the level and its time
    scale, the code as a band of the warm-up range in the value's units (and trend), how often
    the pattern and its context were seen, the channel by name, the change stream named."""
    extra = ["--all-scores"] if out.endswith(".csv") else []
    assert cli("run", str(series), "--store", "memory://", "--out", out, *extra, *FAST).code == 0
    assert cli("run", str(series), "--store", "memory://", "--out", "flags.jsonl",
               *FAST).code == 0
    flags = read_jsonl(tmp_path / "flags.jsonl")
    spike = next(r for r in flags if r["ts"] == ts(SPIKE))
    res = cli("explain", out)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(f"series  {spike['time']}  ts={float(ts(SPIKE))}"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
               len(lines))
    block = "\n".join(lines[start:end])
    assert block.startswith(f"series  {spike['time']}  ts={float(ts(SPIKE))}  id=None  "
                            "score=1.0000  NEW EXTREME")
    assert f"  values: value={series_values()[SPIKE]}" in block
    assert "  why: a value outside everything seen so far" in block
    value = next(ev for ev in spike["evidence"] if ev["stream"] == "value")
    lo, hi = value["range"]
    assert value["codes"][2] == value["vocab"] - 1  # the spike is above the warm-up range
    # each event is STEP seconds apart: the CSV holds every event, so the scale is known
    scale = f", {STEP // 60} min" if out.endswith(".csv") else ""
    assert (f"  value, level 0 (each event{scale}): value above the warm-up range "
            f"(> {hi:.4g}), after [") in block
    surprising = [ev for ev in spike["evidence"] if ev["surprise"] >= 1.0]
    for ev in surprising:
        if ev["stream"] == "level":
            assert f"  value, level {ev['level']} (means of {ev['dilation']} events" in block
    usual = len(spike["evidence"]) - len(surprising)
    assert f"  {usual} other code streams as usual (surprise below 1 nat each)" in block
    level0 = next(ev for ev in spike["evidence"] if ev["stream"] == "value")
    seen = ("never seen before" if level0["count"] == 0 else f"seen {level0['count']} time")
    assert f"{seen} in the {level0['context_count']} time" in block
    assert cli("explain", out, "--top", "1").out.count("score=") == 1
    other = cli("explain", out, "--source", "elsewhere")
    assert other.code == 0 and "no flagged events in the file for source elsewhere" in other.out


def test_explain_names_channels_the_change_stream_and_the_relation(
        cli: Cli, tmp_path: Path) -> None:
    """Two fields that move together; one of them (rpm) freezes for 40 events: the relation
    family names it as repeating one value. rpm has a little noise: a noiseless sine repeats a
    value at each peak, 4 % of its pairs, and a channel that repeats in more than 2 % is not
    judged for being stuck."""
    lines = ["timestamp,temp,rpm"]
    for i in range(800):
        wave = math.sin(2 * math.pi * i / 50)
        rpm = 1500.0 if 600 <= i < 640 else 1500 + 100 * wave + 0.5 * math.sin(i * 1.3)
        lines.append(f"{ts(i)},{20 + 5 * wave:.3f},{rpm:.3f}")
    (tmp_path / "mv.csv").write_text("\n".join(lines) + "\n")
    assert cli("run", "mv.csv", "--store", "memory://", "--out", "scores.csv",
               "--all-scores", *FAST).code == 0
    res = cli("explain", "scores.csv", "--top", "100")
    assert res.code == 0, res.err
    assert "  values: rpm=1500.0, temp=" in res.out
    assert "rpm repeats one value (tail probability" in res.out
    assert ("  rpm, change stream (did the value change from the event before): unchanged, "
            "after [") in res.out
    assert f"  rpm, level 1 (means of 2 events, {2 * STEP // 60} min): mean in band" in res.out


def test_explain_shows_posterior_lines(cli: Cli, tmp_path: Path) -> None:
    values = series_values(spike=None)
    labels = [0] * N
    for k in range(120, N, 40):
        values[k] += 25 + k / 10  # growing jumps: each one is a new extreme and flags
        labels[k] = 1
    path = write_csv(tmp_path / "labelled.csv", values, labels)
    assert cli("run", str(path), "--label-column", "is_anomaly", "--store", "memory://",
               "--out", "flags.jsonl", *FAST).code == 0
    res = cli("explain", "flags.jsonl")
    assert "log-odds anomaly vs normal: " in res.out
    assert "prior_v(1) posterior(" in res.out and "prior_v(0) posterior(" in res.out


@pytest.mark.slow
def test_patterns_merge_adds_the_counts_of_two_runs(cli: Cli, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", series_values())
    b = write_csv(tmp_path / "b.csv", series_values(spike=100))
    for path, store in ((a, "a.db"), (b, "b.db")):
        assert cli("run", str(path), "--store", store, *FAST).code == 0
    first, second = store_contents(tmp_path / "a.db"), store_contents(tmp_path / "b.db")
    res = cli("patterns", "merge", "--store", "all.db", "a.db",
              "sqlite:///" + str(tmp_path / "b.db"))
    assert res.code == 0 and "deprecated" not in res.err
    assert f"merged {len(first) + len(second):,} pattern rows from 2 store(s)" in res.out
    merged = store_contents(tmp_path / "all.db")
    assert merged.keys() == first.keys() | second.keys()
    zero = (0, 0, 0)
    for k, c in merged.items():
        assert c == tuple(x + y for x, y in zip(first.get(k, zero), second.get(k, zero),
                                                strict=True))
    with SQLiteStore(tmp_path / "all.db") as store:
        assert f"totals now n={totals(store)[0]:,}" in res.out
    old = cli("patterns", "merge", "old.db", "a.db")  # the store as the first argument
    assert old.code == 0 and "deprecated; use --store" in old.err
    assert store_contents(tmp_path / "old.db") == first


def test_append_resumes_after_the_last_committed_record(cli: Cli, tmp_path: Path) -> None:
    values = series_values()
    grow = write_csv(tmp_path / "grow.csv", values[:250])
    assert cli("run", str(grow), "--store", "p.db", *FAST).code == 0
    write_csv(grow, values)  # 150 more rows arrive
    res = cli("run", str(grow), "--store", "p.db", "--append", "--all-scores", "--out",
              "tail.jsonl", "--flush-every", "64", "--batch-size", "32", *FAST)
    assert res.code == 0, res.err
    assert "events      150 " in res.err
    tail = read_jsonl(tmp_path / "tail.jsonl")
    # one uninterrupted run over the whole file gives the same counts and scores
    (tmp_path / "once").mkdir()
    full = write_csv(tmp_path / "once" / "grow.csv", values)  # same name: same source
    assert cli("run", str(full), "--store", "full.db", "--all-scores", "--out", "full.jsonl",
               *FAST).code == 0
    whole = read_jsonl(tmp_path / "full.jsonl")
    assert [r["ts"] for r in tail] == [ts(i) for i in range(250, N)]
    assert [r["score"] for r in tail] == [r["score"] for r in whole[250:]]
    assert store_contents(tmp_path / "p.db") == store_contents(tmp_path / "full.db")
    # nothing new: nothing is counted twice
    again = cli("run", str(grow), "--store", "p.db", "--append", *FAST)
    assert again.code == 0 and "events      0 " in again.err
    assert store_contents(tmp_path / "p.db") == store_contents(tmp_path / "full.db")


@pytest.mark.slow
def test_an_existing_store_needs_append_or_fresh(cli: Cli, tmp_path: Path, series: Path) -> None:
    """A plain run never replaces a store, the default ./neurogate.db included: it says which
    flag to pass; --fresh replaces it."""
    for store in ("p.db", None):
        where = ("--store", store) if store else ()
        path = tmp_path / (store or "neurogate.db")
        assert cli("run", str(series), *where, *FAST).code == 0
        once = store_contents(path)
        assert once
        again = cli("run", str(series), *where, *FAST)
        assert again.code == 2 and "Traceback" not in again.err
        assert again.err.strip().splitlines() == [
            f"neurogate: error: --store {path.name} already holds a neurogate pattern store; "
            "pass --append to continue from it, or --fresh to replace it"]
        assert store_contents(path) == once
        assert cli("run", str(series), *where, "--fresh", *FAST).code == 0
        assert store_contents(path) == once  # recreated: the same counts, not twice them
    with pytest.raises(SystemExit) as both:
        main(["run", str(series), "--append", "--fresh"])
    assert both.value.code == 2


@pytest.mark.parametrize("flags", [(), ("--fresh",), ("--append",)], ids=["plain", "fresh",
                                                                          "append"])
def test_another_applications_database_is_never_used(
    cli: Cli, tmp_path: Path, series: Path, flags: tuple[str, ...]
) -> None:
    """A SQLite file that is not a neurogate store (here a customers table) is refused with
    one clear line, whatever the flag, and left byte for byte as it was."""
    crm = tmp_path / "crm.db"
    before = foreign_sqlite(crm)
    res = cli("run", str(series), "--store", str(crm), *flags, *FAST)
    assert res.code == 2 and "Traceback" not in res.err
    (line,) = res.err.strip().splitlines()
    assert line.startswith(f"neurogate: error: --store {crm} is not a neurogate pattern store "
                           "(another SQLite database (tables: ['customers']))")
    assert crm.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db", "series.csv"]


def test_append_with_another_configuration_is_refused(
    cli: Cli, tmp_path: Path, series: Path
) -> None:
    assert cli("run", str(series), "--store", "p.db", *FAST).code == 0
    res = cli("run", str(series), "--store", "p.db", "--append", *FAST, "--set", "warmup=60")
    assert res.code == 2
    last = res.err.strip().splitlines()[-1]
    assert "other settings: warmup (stored" in last and "now 60" in last
    res = cli("run", str(series), "--store", "p.db", "--append", *FAST, "--set", "threshold=0.5")
    assert res.code == 0, res.err  # a scoring-only setting may change


@pytest.mark.slow
def test_demo_run_prints_the_truth_summary(cli: Cli) -> None:
    res = cli("run", "--demo-length", "1500", "--demo-sources", "3", "--store", "memory://",
              "--set", "neuronet.enabled=false", "-q")
    assert res.code == 0, res.err
    assert "events      4,500" in res.err
    assert "demo truth  incidents detected " in res.err
    assert "per kind: spike " in res.err
    detected = res.err.split("incidents detected ")[1].split(" ")[0]
    hit, total = map(int, detected.split("/"))
    assert total > 0 and hit > 0


# -- real processes ------------------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}


@pytest.mark.slow
def test_console_script_matches_the_in_process_run(cli: Cli, tmp_path: Path, series: Path) -> None:
    assert cli("run", str(series), "--store", "memory://", "--all-scores", "--out",
               "inproc.jsonl", *FAST).code == 0
    exe = Path(sys.executable).with_name("neurogate")
    proc = subprocess.run(
        [str(exe), "run", str(series), "--store", str(tmp_path / "p.db"), "--all-scores",
         "--out", "proc.jsonl", *FAST],
        cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "proc.jsonl").read_text() == (tmp_path / "inproc.jsonl").read_text()
    assert "scored      350   warming 50" in proc.stderr


@pytest.mark.slow
def test_make_demo_runs_twice_in_a_row(tmp_path: Path) -> None:
    """The Makefile's demo command (on a shorter demo) succeeds again on its own store, and
    leaves a user's ./neurogate.db alone."""
    recipe = (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    (command,) = [line.strip() for line in recipe.splitlines()[1:] if "neurogate run" in line]
    exe = Path(sys.executable).with_name("neurogate")
    argv = [str(exe), *command.split()[1:], "--demo-length", "300", "--demo-sources", "2", *FAST]
    (tmp_path / "neurogate.db").write_bytes(b"the user's own store")
    for _ in range(2):
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                              env=subprocess_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "neurogate.db").read_bytes() == b"the user's own store"


@pytest.mark.slow
def test_module_reads_jsonl_from_stdin_and_fails_cleanly(tmp_path: Path) -> None:
    lines = [json.dumps({"source": "pump", "ts": ts(i), "value": v})
             for i, v in enumerate(series_values())]
    lines.insert(5, '{"source": "pump", "ts": 1, "value": "x"}')
    base = [sys.executable, "-m", "neurogate.cli.main", "run"]
    proc = subprocess.run(
        [*base, "-", "--store", "memory://", "--out", "-", *FAST],
        input="\n".join(lines) + "\n", cwd=REPO, capture_output=True, text=True,
        env=subprocess_env(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    flags = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ts(SPIKE) in [r["ts"] for r in flags]
    assert "-:6: bad_type: value must be a number" in proc.stderr
    failed = subprocess.run(
        [*base, str(tmp_path / "nothing.csv"), "--store", "memory://"],
        cwd=REPO, capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"neurogate: error: input file not found: {tmp_path / 'nothing.csv'}"
    ]
    assert np.isfinite([r["score"] for r in flags]).all()


@pytest.mark.slow
def test_train_a_neuronet_then_serve_it_from_the_first_event(cli: Cli, tmp_path: Path,
                                                             series: Path) -> None:
    """`neurogate train` writes an artifact that `run` serves with neuronet.pretrained; the
    summary names it and its code perplexity per level."""
    small = ("--set", "neuronet.levels=3", "--set", "neuronet.steps=20", "-q")
    trained = cli("train", str(series), "--out", "net.npz", "--set", "warmup=50", *small)
    assert trained.code == 0, trained.err
    assert "level 3" in trained.out and "code perplexity" in trained.out
    run = cli("run", str(series), "--store", "memory://", "--set", "warmup=50",
              "--set", f"neuronet.pretrained={tmp_path / 'net.npz'}", *small)
    assert run.code == 0, run.err
    version = trained.out.split("saved NeuroNet ")[1].split()[0]
    assert f"neuronet:{version}[1,2,3]" in run.err
    assert f"neuronet {version} serving 1,2,3: live code perplexity L1 " in run.err
    assert cli("train", str(series), "--pretrain", "--out", "x.npz").code == 2
    assert cli("train", "--out", "x.npz").code == 2


# -- the shell: help, configuration, progress --------------------------------------------------


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_and_argument_has_help() -> None:
    found = list(_options(build_parser(), "neurogate"))
    assert len(found) > 150  # the walk reached the sub-commands
    missing = [f"{path} {action.option_strings or action.dest}" for path, action in found
               if not action.help]
    assert missing == []
    for path, action in found:  # every format list offers tsv
        if "--format" in action.option_strings:
            assert "tsv" in action.choices, path


@pytest.mark.parametrize("argv", [
    ["run", "--store", "memory://"],
    ["eval", "multivariate", "--length", "300"],
    ["worker", "--no-preflight"],
    ["produce", "{series}"],
    ["topics", "list"],
    ["tail", "--max", "1"],
])
def test_neurogate_config_is_read_by_every_command(
    cli: Cli, tmp_path: Path, series: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nthreshold = 2.0\n")
    monkeypatch.setenv("NEUROGATE_CONFIG", str(bad))
    res = cli(*(a.replace("{series}", str(series)) for a in argv))
    assert res.code == 2
    assert res.err.strip().splitlines()[-1] == \
        f"neurogate: error: {bad}: threshold must be in (0, 1], got 2.0"


def test_a_misspelt_environment_setting_names_the_nearest(
    cli: Cli, series: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEUROGATE_TRESHOLD", "0.95")
    res = cli("run", str(series), "--store", "memory://", *FAST)
    assert res.code == 2
    assert res.err.strip() == ("neurogate: error: unknown setting in environment variable "
                               "NEUROGATE_TRESHOLD; did you mean NEUROGATE_THRESHOLD?")


def test_progress_bars_only_on_a_terminal(tmp_path: Path, series: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "neurogate.cli.main", "run", str(series), "--store", "memory://",
         "--set", "neuronet.enabled=false"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "ev/s" not in done.stderr  # no tqdm bar in a pipe
    assert done.stderr.startswith("events      ")  # the summary still is there


def test_config_show_prints_the_settings_in_effect(
    cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEUROGATE_WORKER__STORE", "postgresql://u:s3cret@db/ng")
    res = cli("config", "show", "--set", "threshold=0.95", "--set", "neuronet.levels=3")
    assert res.code == 0
    assert "[engine]\n" in res.out and "\nthreshold = 0.95\n" in res.out
    assert "[engine.neuronet]\n" in res.out and "\nlevels = 3\n" in res.out
    assert 'store = "postgresql://u:***@db/ng"' in res.out and "s3cret" not in res.out


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}
    proc = subprocess.Popen([sys.executable, "-m", "neurogate.cli.main", "config", "show"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                            bufsize=0)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head -1` does, here before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "Exception ignored" not in err, err

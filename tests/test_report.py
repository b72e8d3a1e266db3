"""The HTML report of a run (cli/report.py): what the page holds, read as HTML and as a
real headless browser draws it, and its bounded memory."""

from __future__ import annotations

import json
import math
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from neurogate.cli import report
from neurogate.cli.main import main

T0, STEP, N = 1_700_000_000, 60, 500
SPIKES = {"pump": 300, "fan": 420}
FAST = ("--set", "neuronet.enabled=false", "--set", "warmup=50", "-q")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two sources, a spike each, run with --all-scores, --report and a CSV out as well."""
    monkeypatch.chdir(tmp_path)
    lines = ["timestamp,source,temp,rpm"]
    for i in range(N):
        for src, spike in SPIKES.items():
            temp = 20 + 5 * math.sin(2 * math.pi * i / 50) + (40 if i == spike else 0)
            lines.append(f"{T0 + STEP * i},{src},{temp:.4f},{1500 + 10 * math.cos(i / 7):.3f}")
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    for out in ("all.jsonl", "all.csv"):
        assert main(["run", "in.csv", "--source-column", "source", "--store", "memory://",
                     "--all-scores", "--out", out, "--report", "run.html", *FAST]) == 0
    assert main(["run", "in.csv", "--source-column", "source", "--store", "memory://",
                 "--out", "flags.jsonl", *FAST]) == 0
    return tmp_path


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(path: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tags


def has_class(attrs: dict[str, str | None], name: str) -> bool:
    return name in (attrs.get("class") or "").split()


def flagged(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[rec["source"]] = out.get(rec["source"], 0) + bool(rec["flagged"])
    return out


def test_report_has_a_section_per_source_with_charts_flags_and_incidents(run: Path) -> None:
    assert main(["report", "all.jsonl", "-o", "rep.html"]) == 0
    assert main(["report", "all.csv", "-o", "csv.html"]) == 0
    want = flagged(run / "all.jsonl")
    assert set(want) == set(SPIKES) and all(want.values())
    for page in ("run.html", "rep.html", "csv.html"):  # run --report and report agree
        found = tags(run / page)
        sections = [a["data-source"] for t, a in found if t == "section"]
        assert sorted(sections) == sorted(SPIKES), page
        # per source: a values chart per field, a score chart; one flag marker per flag on each
        charts = [a for t, a in found if t == "svg"]
        assert sum(has_class(a, "values") for a in charts) == 2 * len(SPIKES)
        assert sum(has_class(a, "score") for a in charts) == len(SPIKES)
        marks = sum(t == "circle" and has_class(a, "flag") for t, a in found)
        assert marks == 3 * sum(want.values()), page
        assert sum(t == "line" and has_class(a, "threshold") for t, a in found) == len(SPIKES)
        assert any(t == "rect" and has_class(a, "incident") for t, a in found)
        assert sum(t == "polyline" for t, a in found) == 3 * len(SPIKES)
        # one file: nothing is loaded from elsewhere
        assert not [a for t, a in found if t in ("script", "link", "img", "iframe")]
    html = (run / "rep.html").read_text()
    when = report._when(T0 + STEP * SPIKES["pump"], True)
    assert f"<td>{when}</td>" in html and "a value outside everything seen so far" in html


def test_report_of_flags_only_draws_markers_and_says_so(run: Path) -> None:
    assert main(["report", "flags.jsonl", "-o", "flags.html"]) == 0
    found = tags(run / "flags.html")
    assert sorted(a["data-source"] for t, a in found if t == "section") == sorted(SPIKES)
    assert sum(t == "circle" for t, _ in found) == 3 * sum(flagged(run / "flags.jsonl").values())
    assert not [a for t, a in found if t == "polyline"]  # no series to draw
    assert "flagged events only" in (run / "flags.html").read_text()


def test_report_refuses_what_is_not_a_results_file(run: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    assert main(["report", "in.csv", "-o", "x.html"]) == 2
    assert main(["report", "absent.jsonl"]) == 2
    assert main(["report", "all.jsonl", "-o", "no/dir/x.html"]) == 2
    err = capsys.readouterr().err
    assert "not a neurogate results file" in err and "results file not found" in err
    assert "output directory does not exist" in err
    assert not (run / "x.html").exists()


def test_report_memory_is_bounded_per_source() -> None:
    rep = report.Report("long")
    n = 5 * report.MAX_POINTS
    for i in range(n):
        rep.add("s", float(i), ("v",), (float(i % 7),), 0.1, i % 997 == 0, 0.9, False, "why")
    for k in range(report.MAX_SOURCES + 5):
        rep.add(f"other-{k}", 0.0, ("v",), (0.0,), 0.0, False, 0.9, False)
    s = rep.sources["s"]
    assert s.events == n and len(s.points) < report.MAX_POINTS and s.stride == 8
    assert s.flagged == len(s.flags) == len(s.incidents) == len(range(0, n, 997))
    assert len(rep.sources) == report.MAX_SOURCES and len(rep.dropped_sources) == 6
    assert "6 more sources not drawn" in rep.html()


# -- in a real browser ---------------------------------------------------------------------------

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def browser() -> Any:
    """Selenium driving Debian's chromium headless (``make tools`` installs it); skips when it
    is absent, except in CI, where the test must run."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", DRIVER))
               if path is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (the dev extra)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test; missing: {', '.join(missing)}")
        pytest.skip(f"no {', '.join(missing)} (make tools installs chromium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=str(DRIVER)))


def test_report_renders_its_charts_in_a_headless_browser(run: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.get((run / "run.html").as_uri())
        find = driver.find_elements
        sections = find(By.CSS_SELECTOR, "section.source")
        assert sorted(s.get_attribute("data-source") for s in sections) == sorted(SPIKES)
        want = flagged(run / "all.jsonl")
        for sec in sections:
            src = sec.get_attribute("data-source")
            charts = sec.find_elements(By.CSS_SELECTOR, "svg.chart")
            assert len(charts) == 3  # temp, rpm, score
            for chart in charts:
                assert chart.size["width"] > 400 and chart.size["height"] > 50
            lines = sec.find_elements(By.CSS_SELECTOR, "polyline")
            assert len(lines) == 3 and all(p.size["width"] > 100 for p in lines)
            marks = sec.find_elements(By.CSS_SELECTOR, "svg.score circle.flag")
            assert len(marks) == want[src]
            assert all(m.is_displayed() and m.size["width"] > 0 for m in marks)
            score = sec.find_element(By.CSS_SELECTOR, "svg.score")
            top = score.location["y"]
            bottom = top + score.size["height"]
            assert all(top <= m.location["y"] <= bottom for m in marks)  # inside the chart
            threshold = sec.find_element(By.CSS_SELECTOR, "svg.score line.threshold")
            assert threshold.size["width"] > 400
            assert sec.find_elements(By.CSS_SELECTOR, "rect.incident")
            assert sec.find_elements(By.CSS_SELECTOR, "table.incidents tbody tr")
        # nothing was fetched: the page is one file
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched == []
    finally:
        driver.quit()

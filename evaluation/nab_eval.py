"""Prequential NAB runs: every file of the corpus through one detector, one parameter set,
scored with our NAB scorer (``neurogate.evaluation.nab``) and written in NAB's results layout.

Each file is one source (id = its file name), fed in file order. Its probationary period is
the source's warm-up (NAB lets detectors learn there). ``given_range`` hands every detector the
file's min/max up front, as NAB hands inputMin/inputMax to its detectors ("NAB-comparable");
without it the range must come from the warm-up rows ("deployable").
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from neurogate.evaluation.nab import (
    PROFILES,
    NabFile,
    Profile,
    ProfileResult,
    score_corpus,
    write_results,
)
from neurogate.evaluation.protocol import SourceInfo, Stream, StreamDetector, run_streams

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass
class NabRun:
    """One detector's scores on a corpus, their NAB results and its time."""

    detector: str
    given_range: bool
    scores: dict[str, np.ndarray]
    results: dict[str, ProfileResult]
    seconds: float  # time spent inside the detector
    wall_seconds: float
    rows: int
    status: dict[str, Any]
    interleaved: bool = False

    @property
    def events_per_s(self) -> float:
        """Rows per second of detector time (score + learn)."""
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-ready results and timing."""
        return {
            "detector": self.detector,
            "range": "given" if self.given_range else "warmup",
            "order": "interleaved" if self.interleaved else "file by file",
            "scores": {p: round(r["score"], 2) for p, r in self.results.items()},
            "results": {p: dict(r) for p, r in self.results.items()},
            "rows": self.rows,
            "detector_seconds": round(self.seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
            "events_per_s": round(self.events_per_s, 1),
            "status": self.status,
        }


def source_info(f: NabFile, given_range: bool) -> SourceInfo:
    """The stream description of one NAB file: warm-up = its probationary period."""
    rng = None
    if given_range:
        rng = (np.array([f.values.min()]), np.array([f.values.max()]))
    return SourceInfo(f.name, channels=1, warmup=f.probation, value_range=rng)


def window_labels(f: NabFile) -> np.ndarray:
    """1 on rows inside a label window, else 0."""
    y = np.zeros(len(f.values), dtype=np.int8)
    for left, right in f.windows:
        y[left : right + 1] = 1
    return y


def run_nab(
    corpus: Sequence[NabFile],
    detector: StreamDetector,
    *,
    given_range: bool = False,
    batch_size: int = 1000,
    profiles: dict[str, Profile] | None = None,
    feed_labels: bool = False,
    interleave: bool = False,
    progress: bool = True,
) -> NabRun:
    """Run ``detector`` over every file (one pass, file order) and score the corpus; with
    ``feed_labels`` (the supervised reference only) each row's window membership is revealed
    after the row is scored. ``interleave`` feeds all files at once, a batch of each in turn
    (concurrent sources, as in production) instead of one file after the other."""
    t0 = time.perf_counter()
    rows = sum(len(f.values) for f in corpus)
    streams = [Stream(source_info(f, given_range), f.epoch, f.values,
                      window_labels(f) if feed_labels else None) for f in corpus]
    with tqdm(total=rows, disable=not progress, desc=f"nab {detector.name}", unit="row",
              unit_scale=True, leave=False) as bar:
        runs = run_streams(detector, streams, batch_size=batch_size, interleave=interleave,
                           bar=bar)
    scores = {f.name: r.score for f, r in zip(corpus, runs, strict=True)}
    seconds = sum(r.seconds for r in runs)
    status_fn = getattr(detector, "status", None)
    status = status_fn() if callable(status_fn) else {}
    detector.close()
    results = score_corpus(scores, corpus, profiles or PROFILES)
    return NabRun(detector.name, given_range, scores, results, seconds,
                  time.perf_counter() - t0, rows, status, interleave)


def write_nab(out_dir: Path, run: NabRun, corpus: Sequence[NabFile],
              extra: dict[str, Any] | None = None) -> Path:
    """NAB's layout under ``out_dir`` (``<detector>/<category>/<detector>_<file>.csv`` and
    ``<detector>_scores.json``) plus ``<detector>_run.json`` with timing and settings."""
    write_results(out_dir, run.detector, run.scores, corpus, run.results)
    path = Path(out_dir) / f"{run.detector}_run.json"
    path.write_text(json.dumps({**run.summary(), **(extra or {})}, indent=2, default=str) + "\n")
    return path


def format_scores(run: NabRun) -> str:
    """One line: the three normalised scores, time and throughput."""
    s = [f"{run.results[p]['score']:6.2f}" for p in PROFILE_NAMES if p in run.results]
    return (f"{run.detector:<22} {' / '.join(s)}   {run.seconds:7.1f} s   "
            f"{run.events_per_s:9.0f} ev/s")


def folds(corpus: Sequence[NabFile], k: int = 2) -> list[list[NabFile]]:
    """``k`` folds of the corpus: files dealt in turn within each category (sorted by name)."""
    out: list[list[NabFile]] = [[] for _ in range(k)]
    by_category: dict[str, list[NabFile]] = {}
    for f in sorted(corpus, key=lambda f: f.name):
        by_category.setdefault(f.name.split("/")[0], []).append(f)
    for files in by_category.values():
        for i, f in enumerate(files):
            out[i % k].append(f)
    return out


def cross_validated_selection(
    runs: dict[str, dict[str, np.ndarray]], corpus: Sequence[NabFile],
    profile: str = "standard", k: int = 2,
) -> dict[str, Any]:
    """How much choosing a configuration on NAB's own labels flatters it: for each fold, pick
    the configuration with the best score on the other folds and score it on this one (each
    subset gets its own NAB threshold and normalisation, as a corpus would)."""
    parts = folds(corpus, k)
    prof = {profile: PROFILES[profile]}

    def score(label: str, files: Sequence[NabFile]) -> float:
        """Normalised score of one configuration on a subset of files."""
        scores = {f.name: runs[label][f.name] for f in files}
        return score_corpus(scores, files, prof)[profile]["score"]

    per_fold = {label: [score(label, part) for part in parts] for label in runs}
    full = {label: score(label, corpus) for label in runs}
    picks = []
    for i in range(len(parts)):
        rest = [f for j, p in enumerate(parts) if j != i for f in p]
        rest_scores = {label: score(label, rest) for label in runs}
        best = max(rest_scores, key=rest_scores.__getitem__)
        picks.append({"fold": i, "chosen": best, "held_out_score": per_fold[best][i],
                      "best_possible": max(v[i] for v in per_fold.values())})
    best_full = max(full, key=full.__getitem__)
    return {
        "profile": profile,
        "full": full,
        "per_fold": per_fold,
        "picks": picks,
        "chosen_on_all": best_full,
        "mean_held_out": float(np.mean([p["held_out_score"] for p in picks])),
        "mean_chosen_in_sample": float(np.mean([per_fold[best_full][i]
                                                for i in range(len(parts))])),
    }

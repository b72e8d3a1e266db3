"""Report figures (matplotlib, headless): NAB score timelines with their label windows, read
back from NAB results directories, and precision-recall curves of labelled benchmarks."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from neurogate.evaluation.metrics import average_precision, pr_curve
from neurogate.evaluation.nab import NabFile


def _pyplot():  # type: ignore[no-untyped-def]
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_nab_scores(results_dir: Path, detector: str, name: str) -> np.ndarray:
    """The anomaly_score column of ``<results>/<detector>/<category>/<detector>_<file>``."""
    rel = PurePosixPath(name)
    path = Path(results_dir) / detector / rel.parent / f"{detector}_{rel.name}"
    with path.open(newline="") as fh:
        return np.array([float(r["anomaly_score"]) for r in csv.DictReader(fh)])


def read_threshold(results_dir: Path, detector: str, profile: str = "standard") -> float | None:
    """The corpus threshold NAB's optimiser chose for a detector and profile, if written."""
    path = Path(results_dir) / f"{detector}_scores.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())[profile]["threshold"])


def nab_timelines(
    results_dir: Path, corpus: Sequence[NabFile], detectors: Sequence[str],
    files: Sequence[str], out: Path,
) -> Path:
    """One panel per file: the values, then each detector's emitted score with the standard
    profile's threshold (red triangles: rows at or above it); label windows shaded red, the
    probationary period grey."""
    plt = _pyplot()
    by_name = {f.name: f for f in corpus}
    chosen = [by_name[n] for n in files]
    rows = len(chosen) * (1 + len(detectors))
    fig, axes = plt.subplots(rows, 1, figsize=(11, 1.45 * rows), sharex=False)
    axes = np.atleast_1d(axes)
    k = 0
    for f in chosen:
        x = np.arange(len(f.values))
        panels: list[tuple[np.ndarray, str, float | None]] = [(f.values, "value", None)]
        for d in detectors:
            panels.append((read_nab_scores(results_dir, d, f.name), d,
                           read_threshold(results_dir, d)))
        for j, (y, label, thr) in enumerate(panels):
            ax = axes[k]
            k += 1
            ax.plot(x, y, lw=0.6, color="black" if j == 0 else f"C{j - 1}")
            for left, right in f.windows:
                ax.axvspan(left, right, color="red", alpha=0.15, lw=0)
            ax.axvspan(0, f.probation, color="grey", alpha=0.15, lw=0)
            if thr is not None:  # the threshold and the rows it detects (after probation)
                ax.axhline(thr, color="red", lw=0.6, ls="--")
                hit = (y >= thr) & (x >= f.probation)
                ax.plot(x[hit], np.full(int(hit.sum()), 1.04), "v", color="red", ms=3)
            ax.set_xlim(0, len(x) - 1)
            ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_title(f.name, fontsize=8, loc="left")
            else:
                ax.set_ylim(-0.05, 1.1)
    fig.tight_layout(h_pad=0.3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
              out: Path) -> Path:
    """Precision-recall curves, one per detector (legend with its PR-AUC; detectors with
    identical scores share one curve), and the positive rate as the chance level."""
    plt = _pyplot()
    merged: dict[bytes, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for name, (y, s) in curves.items():
        y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
        key = y.tobytes() + np.nan_to_num(s, nan=-np.inf).tobytes()
        merged.setdefault(key, ([], y, s))[0].append(name)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    base = None
    for i, (names, y, s) in enumerate(merged.values()):
        precision, recall, _ = pr_curve(y, s)
        ap = average_precision(y, s)
        ax.step(np.r_[0.0, recall], np.r_[precision[:1], precision], where="post",
                color=f"C{i % 10}", lw=1.2, ls="-" if i < 10 else "--",
                label=f"{' = '.join(names)} (PR-AUC {ap:.3f})")
        base = float(np.mean(y))
    if base is not None:
        ax.axhline(base, color="grey", lw=0.8, ls=":", label=f"chance ({base:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, loc="upper right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

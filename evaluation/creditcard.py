"""The credit-card fraud benchmark (ULB / Kaggle ``creditcard.csv``: ``Time,V1..V28,Amount,
Class``): loading, a generated stand-in of the same schema, and the two protocols.

* ``stream``: every row in time order as one multivariate source (29 channels: V1..V28,
  Amount); a row's label reaches the detector only after the row is scored, optionally
  ``delay`` rows later. Rows after the warm-up are evaluated.
* ``seed``: comparable to the seed's setup: ``train_test_split(test_size=0.2,
  random_state=42)``; the training rows stream first (time order, labels after scoring), then
  the first 20,000 test rows in the split's order, scored without their labels (as the seed
  predicted them) unless ``test_labels``; only those test rows are evaluated.

The real file is not on this machine (users bring their own); ``generate`` writes a file of
the same schema with planted frauds for the tests and for a measured figure of the harness.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from neurogate.evaluation.metrics import binary_report
from neurogate.evaluation.protocol import SourceInfo, StreamDetector, run_stream

FEATURES = tuple(f"V{i}" for i in range(1, 29)) + ("Amount",)
COLUMNS = ("Time", *FEATURES, "Class")
SEED_TEST_ROWS = 20_000
SEED_FIGURES = {  # docs/background.md section 1, standard definitions of precision and recall
    "seed pattern inference (20k test rows)": {"precision": 0.852, "recall": 0.676, "f1": 0.754},
    "seed pattern inference (whole test split)": {"precision": 0.760, "recall": 0.388,
                                                  "f1": 0.51},
    "seed Keras autoencoder (20k test rows)": {"precision": 0.056, "recall": 0.794, "f1": 0.105},
}


@dataclass(frozen=True)
class CreditCard:
    """The file's rows: Time, features [n, 29] (V1..V28, Amount) and Class (0/1)."""

    time: np.ndarray
    features: np.ndarray
    labels: np.ndarray


def load(path: Path) -> CreditCard:
    """Read a ``Time,V1..V28,Amount,Class`` CSV (quoted or not) and sort it by Time (stable)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"credit-card file not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = tuple(h.strip() for h in next(reader, []))
        if header != COLUMNS:
            raise ValueError(f"{path}: expected columns {','.join(COLUMNS)}, got {header}")
        try:
            data = np.array([[float(v) for v in row] for row in reader], dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}: non-numeric value ({exc})") from None
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] != len(COLUMNS):
        raise ValueError(f"{path}: no rows, or rows without {len(COLUMNS)} fields")
    labels = data[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError(f"{path}: Class must be 0 or 1")
    order = np.argsort(data[:, 0], kind="stable")
    data = data[order]
    return CreditCard(data[:, 0], data[:, 1:-1], data[:, -1].astype(np.int8))


def generate(path: Path, rows: int = 30_000, fraud_rate: float = 0.003, seed: int = 0) -> Path:
    """Write a file of the real schema: 48 hours of transactions (fewer at night), V1..V28
    heavy-tailed with falling spread as PCA components have, log-normal amounts, and frauds
    that shift a few components (V14, V12, V10, V17 down, V4, V11 up, as in the real data) by a
    random strength, some barely. Deterministic for a seed; quoted like the Kaggle file."""
    rng = np.random.default_rng(seed)
    hours = np.arange(48)
    rate = 0.25 + 0.75 * np.clip(np.sin(np.pi * ((hours % 24) - 6) / 18), 0, None)
    hour = rng.choice(48, rows, p=rate / rate.sum())
    time = np.sort(np.floor((hour + rng.uniform(size=rows)) * 3600.0))
    spread = np.linspace(1.9, 0.3, 28)
    v = rng.standard_t(5, size=(rows, 28)) * spread / np.sqrt(5 / 3)
    amount = np.round(np.exp(rng.normal(3.0, 1.3, rows)), 2)
    fraud = rng.uniform(size=rows) < fraud_rate
    k = int(fraud.sum())
    signature = {14: -7.0, 12: -5.5, 10: -5.0, 17: -5.0, 4: 3.5, 11: 3.0, 3: -4.0}
    strength = rng.uniform(0.2, 1.2, k)
    for comp, shift in signature.items():
        v[fraud, comp - 1] += shift * strength * spread[comp - 1] / 1.9 * 1.5
        v[fraud, comp - 1] += rng.normal(0, 0.5 * spread[comp - 1], k)
    amount[fraud] = np.round(np.where(rng.uniform(size=k) < 0.5, rng.uniform(0, 5, k),
                                      np.exp(rng.normal(4.5, 1.0, k))), 2)
    path = Path(path)
    with path.open("w", newline="") as fh:
        fh.write(",".join(f'"{c}"' for c in COLUMNS) + "\n")
        for i in range(rows):
            feats = ",".join(f"{x:.6f}" for x in v[i])
            fh.write(f'{time[i]:.0f},{feats},{amount[i]:.2f},"{int(fraud[i])}"\n')
    return path


@dataclass
class CcRun:
    """One detector on the benchmark: figures, top flagged rows and time."""

    detector: str
    mode: str
    reports: dict[str, dict[str, Any]]  # "score" and, for neurogate, "posterior"
    top: list[dict[str, Any]]
    seconds: float
    rows: int
    curves: dict[str, tuple[np.ndarray, np.ndarray]]

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "detector": self.detector,
            "mode": self.mode,
            "reports": self.reports,
            "top_flagged": self.top,
            "detector_seconds": round(self.seconds, 2),
            "events_per_s": round(self.rows / self.seconds, 1) if self.seconds else None,
        }


def seed_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the seed's split: (train, first 20,000 test rows), as
    ``train_test_split(..., test_size=0.2, random_state=42)`` orders them."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n), test_size=0.2, random_state=42)
    return np.sort(train), test[:SEED_TEST_ROWS]


def evaluate(  # noqa: PLR0913  (keyword-only options with defaults)
    data: CreditCard, detector: StreamDetector, *, mode: str = "stream", delay: int = 0,
    warmup: int = 1000, test_labels: bool = False, top: int = 5, batch_size: int = 1000,
    progress: bool = True,
) -> CcRun:
    """Run one detector under the ``stream`` or ``seed`` protocol (module docstring)."""
    n = len(data.labels)
    if mode == "stream":
        order = np.arange(n)
        fed = data.labels.astype(np.int8)
        evaluated = np.arange(min(warmup, n), n)
    elif mode == "seed":
        train, test = seed_split(n)
        order = np.concatenate([train, test])
        fed = data.labels[order].astype(np.int8)
        if not test_labels:
            fed[len(train) :] = -1
        evaluated = np.arange(len(train), len(order))
    else:
        raise ValueError(f"mode must be 'stream' or 'seed', got {mode!r}")
    info = SourceInfo("creditcard", len(FEATURES), min(warmup, len(order)), has_calendar=False)
    with tqdm(total=len(order), disable=not progress, desc=f"creditcard {detector.name}",
              unit="row", unit_scale=True, leave=False) as bar:
        run = run_stream(detector, info, np.arange(len(order), dtype=np.float64),
                         data.features[order], fed, delay=delay, batch_size=batch_size, bar=bar)
    detector.close()
    y = data.labels[order][evaluated]
    reports = {"score": binary_report(y, run.raw[evaluated], run.flagged[evaluated]).as_dict()}
    curves = {"score": (y, run.raw[evaluated])}
    if run.posterior is not None:
        post = run.posterior[evaluated]
        reports["posterior"] = binary_report(y, post, np.nan_to_num(post, nan=-1.0) > 0).as_dict()
        curves["posterior"] = (y, post)
    return CcRun(detector.name, mode, reports, _top_flagged(run, order, evaluated, data, top),
                 run.seconds, len(order), curves)


def _top_flagged(run: Any, order: np.ndarray, evaluated: np.ndarray, data: CreditCard,
                 top: int) -> list[dict[str, Any]]:
    """The evaluated rows flagged with the highest scores, with their explanation lines."""
    rows = evaluated[run.flagged[evaluated]]
    post = run.posterior if run.posterior is not None else np.zeros(len(run.score))
    key = np.lexsort((-np.nan_to_num(post[rows], nan=-np.inf), -run.score[rows]))
    out = []
    for r in rows[key][:top].tolist():
        p = None if run.posterior is None or np.isnan(post[r]) else round(float(post[r]), 4)
        out.append({
            "row": int(order[r]), "time": float(data.time[order[r]]),
            "class": int(data.labels[order[r]]), "score": round(float(run.score[r]), 4),
            "posterior": p, "explanation": run.notes.get(r, []),
        })
    return out


def run_all(data: CreditCard, detectors: Sequence[StreamDetector], **kwargs: Any
            ) -> list[CcRun]:
    """``evaluate`` for each detector with the same protocol."""
    return [evaluate(data, d, **kwargs) for d in detectors]

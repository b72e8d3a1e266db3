"""Scoring a detector on labelled streams with planted incidents (the generated multivariate
benchmark, GutenTAG): every stream runs prequentially, then the rows after each stream's
warm-up are pooled.

Reported per detector:

* row-level precision / recall / F1 at the detector's operating threshold, ROC-AUC and PR-AUC
  of its score before alert suppression (and of neurogate's label posterior, if any);
* range-based precision / recall / F1 of its flags and a range PR-AUC of its score
  (``neurogate.evaluation.range_pr``, Tatbul et al.);
* incident recall (share of incidents with a flag between their start and ``TOLERANCE`` rows
  after their end), flag precision (share of flags in such a span) and flags per incident
  found (the flags in those spans over the incidents they found: how many alerts one incident
  sends its operator; 1 is one message per incident);
* per incident kind: ROC-AUC and PR-AUC of the kind's rows against every normal row (rows of
  other kinds left out), incident recall and range recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from neurogate.evaluation.metrics import average_precision, binary_report, roc_auc
from neurogate.evaluation.protocol import SourceInfo, StreamDetector, run_stream
from neurogate.evaluation.range_pr import range_pr_auc, range_scores, recall_of_ranges

TOLERANCE = 12  # rows after an incident in which a flag still counts as its detection


@dataclass(frozen=True)
class Incident:
    """One planted anomaly: kind, channel and rows ``start .. end`` (inclusive)."""

    kind: str
    channel: int
    start: int
    end: int


@dataclass(frozen=True)
class LabelledStream:
    """One labelled source: timestamps, values [n, channels], 0/1 labels, its incidents and
    the rows at its start that are free of anomalies (the detectors' warm-up)."""

    name: str
    ts: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    incidents: tuple[Incident, ...]
    warmup: int
    has_calendar: bool = True

    @property
    def channels(self) -> int:
        """Number of value columns."""
        return int(self.values.shape[1])


@dataclass
class CorpusResult:
    """One detector's figures on a set of labelled streams."""

    detector: str
    report: dict[str, Any]
    posterior_report: dict[str, Any] | None
    range_report: dict[str, float]
    incident_recall: dict[str, float]
    flag_precision: float
    flags_per_incident: float
    kinds: dict[str, dict[str, float]]
    seconds: float
    rows: int
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "detector": self.detector,
            **self.report,
            "posterior": self.posterior_report,
            "range": self.range_report,
            "incident_recall": self.incident_recall,
            "flag_precision": self.flag_precision,
            "flags_per_incident": self.flags_per_incident,
            "kinds": self.kinds,
            "detector_seconds": round(self.seconds, 2),
            "events_per_s": round(self.rows / self.seconds, 1) if self.seconds else None,
        }


def incident_figures(streams: Sequence[LabelledStream], flags: Sequence[np.ndarray],
                     kinds: Sequence[str]) -> tuple[dict[str, float], float, float]:
    """Share of incidents per kind (and "all") with a flag in [start, end + TOLERANCE], the
    share of post-warm-up flags that fall in such a span (flag precision), and those flags per
    incident found (NaN when none was found)."""
    hit: dict[str, list[bool]] = {k: [] for k in kinds}
    good = total = 0
    for st, fl in zip(streams, flags, strict=True):
        near = np.zeros(len(fl), dtype=bool)
        for inc in st.incidents:
            stop = min(inc.end + TOLERANCE, len(fl) - 1)
            hit.setdefault(inc.kind, []).append(bool(fl[inc.start : stop + 1].any()))
            near[inc.start : stop + 1] = True
        post = fl[st.warmup :]
        total += int(post.sum())
        good += int((post & near[st.warmup :]).sum())
    recall = {k: float(np.mean(v)) if v else float("nan") for k, v in hit.items()}
    every = [x for v in hit.values() for x in v]
    recall["all"] = float(np.mean(every)) if every else float("nan")
    found = sum(every)
    return recall, good / total if total else 0.0, good / found if found else float("nan")


def kind_figures(streams: Sequence[LabelledStream], scores: Sequence[np.ndarray],
                 flags: Sequence[np.ndarray], kinds: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per kind: ROC-AUC and PR-AUC of the kind's rows against all normal rows after the
    warm-ups (other kinds' rows left out), its incidents' range recall and their count."""
    normal = np.concatenate([s[st.warmup :][st.labels[st.warmup :] == 0]
                             for st, s in zip(streams, scores, strict=True)])
    out = {}
    for kind in kinds:
        pos, rec = [], []
        for st, s, fl in zip(streams, scores, flags, strict=True):
            mine = [i for i in st.incidents if i.kind == kind]
            if not mine:
                continue
            mask = np.zeros(len(s), dtype=bool)
            for i in mine:
                mask[i.start : i.end + 1] = True
            pos.append(s[mask])
            rec.append(recall_of_ranges(np.array([[i.start, i.end + 1] for i in mine]), fl))
        if not pos:
            continue
        p = np.concatenate(pos)
        y = np.r_[np.ones(len(p), dtype=np.int8), np.zeros(len(normal), dtype=np.int8)]
        both = np.r_[p, normal]
        out[kind] = {"roc_auc": roc_auc(y, both), "pr_auc": average_precision(y, both),
                     "range_recall": float(np.concatenate(rec).mean()),
                     "incidents": int(sum(len(r) for r in rec))}
    return out


def evaluate(
    streams: Sequence[LabelledStream], detector: StreamDetector, kinds: Sequence[str], *,
    feed_labels: bool = True, batch_size: int = 1000, progress: bool = True,
    desc: str = "labelled",
) -> CorpusResult:
    """Run a detector over every stream (labels after scoring when ``feed_labels``) and score
    the rows after each stream's warm-up, pooled over streams (module docstring)."""
    ys, ss, fs, ps, flags, raws = [], [], [], [], [], []
    seconds = 0.0
    rows = sum(len(s.ts) for s in streams)
    with tqdm(total=rows, disable=not progress, desc=f"{desc} {detector.name}",
              unit="row", unit_scale=True, leave=False) as bar:
        for st in streams:
            info = SourceInfo(st.name, st.channels, st.warmup, has_calendar=st.has_calendar)
            run = run_stream(detector, info, st.ts, st.values,
                             st.labels if feed_labels else None, batch_size=batch_size,
                             bar=bar)
            seconds += run.seconds
            w = st.warmup
            ys.append(st.labels[w:])
            ss.append(run.raw[w:])
            fs.append(run.flagged[w:])
            flags.append(run.flagged)
            raws.append(run.raw)
            if run.posterior is not None:
                ps.append(run.posterior[w:])
    detector.close()
    y, s, f = np.concatenate(ys), np.concatenate(ss), np.concatenate(fs)
    report = binary_report(y, s, f).as_dict()
    post_report = None
    curves = {"labels": y, "scores": s}
    if len(ps) == len(streams):  # label log-odds, flag where > 0 (NaN until both labels seen)
        curves["posterior"] = p = np.concatenate(ps)
        post_report = binary_report(y, p, np.nan_to_num(p, nan=-1.0) > 0).as_dict()
    rs = range_scores(list(zip(ys, fs, strict=True)))
    range_report = {"precision": rs.precision, "recall": rs.recall, "f1": rs.f1,
                    "pr_auc": range_pr_auc(list(zip(ys, ss, strict=True)))}
    recall, precision, per_incident = incident_figures(streams, flags, kinds)
    per_kind = kind_figures(streams, raws, flags, kinds)
    return CorpusResult(detector.name, report, post_report, range_report, recall, precision,
                        per_incident, per_kind, seconds, rows, curves)

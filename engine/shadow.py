"""Encoder lifecycle of one field set: which encoder serves each level, and how a NeuroNet is
trained, installed, shadow-scored and takes over a level.

1. **Serving from the first event.** Fixed codes serve every level; with
   ``neuronet.pretrained`` a NeuroNet trained beforehand (the one shipped in the package,
   ``engine/pretrained/neuronet.npz``, or a file) serves its levels 1..L from the first event.
2. **Training off the scoring path.** After ``train_after`` events (and every ``retrain_every``
   after that), a job (``neurogate.engine.background``) trains a candidate from the reservoirs of
   up to ``max_sources`` sources, fine-tuning the serving NeuroNet if there is one, in a separate
   process while scoring goes on. The job also measures every encoder on planted anomalies.
3. **Installed at a fixed event count.** The job started at event N is installed when
   ``N + train_events`` events have been seen, whatever the training took (the batch that
   reaches that count waits for the job if it is not done), so scores never depend on the
   machine's speed. The candidate's pattern namespace is warmed by re-counting the reservoirs,
   and it is shadow-scored: every event counts its codes, the serving encoders score.
4. **Decision** after ``shadow_events``, per level. When the shadow period saw labels of both
   kinds (at least MIN_POSITIVES anomalies): the level's separation d' = (mean surprise on
   anomalies - mean on normals) / std on normals. Without labels: the level's ROC-AUC on
   anomalies planted into the reservoirs (``neurogate.engine.planted``), which measures what the
   score uses, a stream's ranking of unusual events within its source. The candidate takes over a
   level where it beats the serving encoder by ``neuronet.margin``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from neurogate.engine.config import EngineConfig
from neurogate.engine.encoder import Encoder, FixedEncoder, StreamSpec
from neurogate.engine.encoders import load_pretrained, restore
from neurogate.engine.extras import neuronet_usable
from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig
from neurogate.engine.patterns import MAX_VOCAB, NO_CALENDAR, pattern_keys, stream_bases
from neurogate.engine.planted import compare

if TYPE_CHECKING:
    from neurogate.engine.background import Job
    from neurogate.engine.bank import Bank

log = logging.getLogger("neurogate.shadow")

MIN_POSITIVES = 5  # labelled anomalies needed in the shadow period to judge by separation


class Host(Protocol):
    """What a lifecycle needs from the detector it serves, and nothing more."""

    @property
    def events_seen(self) -> int:
        """Events the detector has processed (all sources): lifecycle steps are due at counts."""
        ...

    timings: dict[str, float]  # adds "train_seconds" and "train_wait_seconds"

    def save_encoder(self, encoder: Encoder) -> None:
        """Keep an encoder's artifact in the store's registry."""
        ...

    def count_only(self, keys: np.ndarray, labels: np.ndarray) -> None:
        """Count pattern keys without scoring them (warming a new encoder's namespace)."""
        ...


@dataclass
class EncoderSlot:
    """An active encoder, its pattern-key bases and its first column in the key array."""

    encoder: Encoder
    bases: np.ndarray
    offset: int
    trained_at: int = 0  # events seen when it was installed (0 for fixed and pretrained)
    # per label y in (normal, anomaly): [streams, 3] = count, sum, sum of squares of surprise
    by_label: np.ndarray = field(default_factory=lambda: np.zeros(0))
    uni_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [streams] unigram nats
    shadowed: int = 0  # events observed since it became active

    @property
    def columns(self) -> range:
        return range(self.offset, self.offset + len(self.encoder.streams))


@dataclass
class Pending:
    """A training job between its start and its installation."""

    started_at: int
    due_at: int
    rows: np.ndarray  # bank rows of the sources it trains on (re-counted at installation)
    payload: bytes
    job: Job


class Lifecycle:
    """Which encoders are active for a field set and which one serves each level."""

    def __init__(self, config: EngineConfig, fixed: FixedEncoder, channels: int, *,
                 fresh: bool = True) -> None:
        """``fresh``: a new field set (the pretrained NeuroNet, if any, starts serving); a
        restored one (``from_state``) gets its slots from the saved state."""
        self.config = config
        self.channels = channels
        nn = config.neuronet
        self.pretrained = load_pretrained(nn.pretrained, channels) if nn.enabled else None
        # without torch a pretrained NeuroNet still serves (numba), but nothing is trained
        self.trains = neuronet_usable(nn.enabled)
        self.window = fixed.window
        if nn.enabled:
            self.window = max(self.window, self.train_config().window)
        self.slots: list[EncoderSlot] = []
        self._add_slot(fixed)
        self.serving = {spec.level: 0 for spec in fixed.streams}
        if fresh and self.pretrained is not None:
            chosen = self.pretrained.meta.get("serve_levels")
            levels = [s.level for s in self.pretrained.streams  # levels the fixed codes have
                      if s.level in self.serving and (not isinstance(chosen, list)
                                                      or s.level in chosen)]
            if levels:  # only the serving levels are computed and counted
                idx = self._add_slot(self.pretrained.view(levels))
                self.serving.update(dict.fromkeys(levels, idx))
        self.candidate: int | None = None
        self.pending: Pending | None = None
        self.last_train = 0
        self.reports: list[str] = []
        self.perplexity: dict[str, list[float]] = {}  # NeuroNet version -> held-out, per level
        # encoder version -> level -> ROC-AUC per planted anomaly, from the latest job that
        # measured it (a job measures the candidate and the serving encoders together)
        self.aucs: dict[str, dict[int, np.ndarray]] = {}
        self.decisions: list[dict[str, Any]] = []
        self._saved: set[str] = set()

    def train_config(self) -> NeuroNetConfig:
        """The architecture a training run uses: the pretrained NeuroNet's, or the settings'."""
        if self.pretrained is not None:
            return self.pretrained.config
        nn = self.config.neuronet
        window = 4
        while window < NeuroNetConfig.reach(nn.levels, NeuroNetConfig.kernel):
            window *= 2
        return NeuroNetConfig(channels=self.channels, window=window, levels=nn.levels,
                              hidden=nn.hidden)

    # -- state -------------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The lifecycle's part of a detector state (engine/snapshot.py): a JSON-able header
        (encoders by name and version, serving levels, decisions, a pending job) and arrays
        (shadow statistics, a pending job's payload); ``from_state`` reads them back."""
        arrays: dict[str, np.ndarray] = {}
        slots = []
        for s, slot in enumerate(self.slots):
            arrays[f"slot{s}/uni_sum"] = slot.uni_sum
            arrays[f"slot{s}/by_label"] = slot.by_label
            slots.append({"name": slot.encoder.name, "version": slot.encoder.version,
                          "trained_at": slot.trained_at, "shadowed": slot.shadowed,
                          "levels": list(getattr(slot.encoder, "levels", []))})
        pending = None
        if self.pending is not None:  # a job in flight: its payload restarts it on resume
            arrays["pending"] = np.frombuffer(self.pending.payload, dtype=np.uint8)
            arrays["pending_rows"] = self.pending.rows
            pending = {"started_at": self.pending.started_at, "due_at": self.pending.due_at}
        meta = {
            "slots": slots, "serving": {str(k): v for k, v in self.serving.items()},
            "candidate": self.candidate, "last_train": self.last_train, "reports": self.reports,
            "decisions": self.decisions, "perplexity": self.perplexity, "pending": pending,
            "aucs": {v: {str(lv): a.tolist() for lv, a in levels.items()}
                     for v, levels in self.aucs.items()},
        }
        return meta, arrays

    @classmethod
    def from_state(cls, config: EngineConfig, channels: int, meta: dict[str, Any],
                   arrays: dict[str, np.ndarray], artifact: Callable[[str], bytes | None]
                   ) -> Lifecycle:
        """A lifecycle as ``to_state`` saved it; NeuroNet artifacts are read with ``artifact``
        (the store's ``get_meta``)."""
        slots = meta["slots"]
        encoders = [restore(s, config, channels, artifact) for s in slots]
        fixed = encoders[0]
        assert isinstance(fixed, FixedEncoder)
        lc = cls(config, fixed, channels, fresh=False)
        for enc, s in zip(encoders[1:], slots[1:], strict=True):
            lc._add_slot(enc, int(s["trained_at"]))
        for s, (slot, info) in enumerate(zip(lc.slots, slots, strict=True)):
            slot.uni_sum = arrays[f"slot{s}/uni_sum"]
            slot.by_label = arrays[f"slot{s}/by_label"]
            slot.shadowed = int(info["shadowed"])
        lc.serving = {int(k): int(v) for k, v in meta["serving"].items()}
        lc.candidate = meta["candidate"]
        lc.last_train = int(meta["last_train"])
        lc.reports = list(meta["reports"])
        lc.decisions = list(meta["decisions"])
        lc.perplexity = dict(meta["perplexity"])
        lc.aucs = {v: {int(lv): np.array(a, dtype=np.float64) for lv, a in levels.items()}
                   for v, levels in meta["aucs"].items()}
        if meta["pending"] is not None:
            lc._resume_job(int(meta["pending"]["started_at"]), int(meta["pending"]["due_at"]),
                           arrays["pending_rows"], arrays["pending"].tobytes())
        return lc

    # -- streams -------------------------------------------------------------------------------

    def _add_slot(self, enc: Encoder, trained_at: int = 0) -> int:
        if any(s.vocab >= MAX_VOCAB for s in enc.streams):
            raise ValueError(f"encoder {enc.name}: vocabulary must be < {MAX_VOCAB}")
        offset = sum(len(s.encoder.streams) for s in self.slots)
        k = len(enc.streams)
        namespace = getattr(enc, "namespace", f"{enc.name}:{enc.version}")
        slot = EncoderSlot(enc, stream_bases(namespace, k), offset,
                           trained_at, np.zeros((2, k, 3)), np.zeros(k))
        self.slots.append(slot)
        self._refresh()
        return len(self.slots) - 1

    def _refresh(self) -> None:
        self.vocab = np.array(
            [s.vocab for slot in self.slots for s in slot.encoder.streams], dtype=np.float64
        )

    def serving_specs(self) -> list[tuple[int, StreamSpec, str]]:
        """(column, stream, encoder name) of every stream that serves the score."""
        out = []
        for i, slot in enumerate(self.slots):
            for j, spec in enumerate(slot.encoder.streams):
                if self.serving.get(spec.level) == i:
                    out.append((slot.offset + j, spec, slot.encoder.name))
        return out

    def serving_columns(self) -> np.ndarray:
        return np.array([c for c, _, _ in self.serving_specs()], dtype=np.int64)

    def observe(self, surprise: np.ndarray, uni_surprise: np.ndarray, labels: np.ndarray) -> None:
        """Accumulate shadow statistics (every active stream, every scored event); ``labels``
        are the events' own labels (-1 unknown), known only now that they have been scored."""
        for slot in self.slots:
            s = surprise[:, slot.columns.start : slot.columns.stop]
            slot.uni_sum += uni_surprise[:, slot.columns.start : slot.columns.stop].sum(axis=0)
            for y in (0, 1):
                sy = s[labels == y]
                slot.by_label[y] += np.stack(
                    [np.full(s.shape[1], sy.shape[0]), sy.sum(axis=0), (sy**2).sum(axis=0)], 1
                )
            slot.shadowed += surprise.shape[0]

    # -- lifecycle -----------------------------------------------------------------------------

    def after_batch(self, det: Host, bank: Bank) -> None:
        """Start, install or decide when their event count has come (after every batch)."""
        nn = self.config.neuronet
        if not nn.enabled:
            return
        for slot in self.slots:  # the registry keeps every NeuroNet that ever served
            if isinstance(slot.encoder, NeuroNet) and slot.encoder.version not in self._saved:
                det.save_encoder(slot.encoder)
                self._saved.add(slot.encoder.version)
        if not self.trains:
            return
        seen = det.events_seen
        if self.pending is not None:
            if seen >= self.pending.due_at:
                self._install(det, bank)
        elif self.candidate is not None:
            if self.slots[self.candidate].shadowed >= nn.shadow_events:
                self._decide()
        else:
            first = self.last_train == 0 and seen >= nn.train_after
            again = (self.last_train > 0 and nn.retrain_every > 0
                     and seen - self.last_train >= nn.retrain_every)
            if first or again:
                self._start(det, bank)

    def _start(self, det: Host, bank: Bank) -> None:
        from neurogate.engine import background

        nn = self.config.neuronet
        ready = np.flatnonzero(bank.state.res_n[: bank.state.size] >= self.window // 4)
        if not ready.size:  # every source still warming up (many sources): try again later
            return
        seen = det.events_seen
        self.last_train = seen
        pick = np.unique(ready[np.linspace(0, ready.size - 1,
                                           min(nn.max_sources, ready.size)).astype(int)])
        serving = [self.slots[i].encoder for i in sorted(set(self.serving.values()))]
        nets = [e for e in serving if isinstance(e, NeuroNet)]
        payload = background.payload(
            bank.reservoir_series(pick), self.train_config(), steps=nn.steps,
            seed=self.config.seed + len(self.reports),
            init=nets[-1] if nets else self.pretrained,
            serving=serving, alpha=self.config.alpha, alpha0=self.config.alpha0)
        self.pending = Pending(seen, seen + nn.train_events, pick, payload,
                               background.Job(payload, background=nn.background))

    def _resume_job(self, started_at: int, due_at: int, rows: np.ndarray, payload: bytes
                   ) -> None:
        """Restart a job from a snapshot's payload (same payload, same result); without torch
        the job is dropped (nothing is trained, as the NeuroNet-off warning said)."""
        from neurogate.engine import background

        if not self.trains:
            return

        job = background.Job(payload, background=self.config.neuronet.background)
        self.pending = Pending(started_at, due_at, rows, payload, job)

    def _install(self, det: Host, bank: Bank) -> None:
        assert self.pending is not None
        t0 = time.perf_counter()
        result = self.pending.job.result()
        det.timings["train_wait_seconds"] += time.perf_counter() - t0
        det.timings["train_seconds"] += float(result.report["seconds"])
        net = result.candidate
        self.aucs.update(result.aucs)
        self.perplexity[net.version] = [round(p, 2) for p in result.report["code_perplexity"]]
        report = _summary(result.report)
        self.reports.append(f"neuronet {net.version}: {report}")
        rows = self.pending.rows
        self.pending = None
        idx = self._add_slot(net, det.events_seen)
        self.candidate = idx
        det.save_encoder(net)
        self._saved.add(net.version)
        self._warm(det, bank, self.slots[idx], rows)

    def _warm(self, det: Host, bank: Bank, slot: EncoderSlot, rows: np.ndarray) -> None:
        """Count the reservoir through a new encoder so it starts with history, not cold."""
        w = self.window
        for row, series in zip(rows, bank.reservoir_series(rows), strict=True):
            padded = np.concatenate([np.repeat(series[:1], w - 1, axis=0), series])
            idx = np.arange(series.shape[0])[:, None] + np.arange(w)[None, :]
            windows = padded[idx].astype(np.float32)
            codes = slot.encoder.encode(windows[:, w - slot.encoder.window :])
            scope = np.full(series.shape[0], bank.state.scope[row], dtype=np.uint64)
            bucket = np.full(series.shape[0], NO_CALENDAR, dtype=np.uint64)
            keys = pattern_keys(slot.bases, scope, codes, bucket)
            det.count_only(keys, np.full(series.shape[0], -1, dtype=np.int8))

    def _decide(self) -> None:
        """Per level: the candidate takes over where it beats the serving encoder."""
        assert self.candidate is not None
        cand = self.slots[self.candidate]
        margin = self.config.neuronet.margin
        decision: dict[str, Any] = {"candidate": cand.encoder.version, "levels": {}}
        for j, spec in enumerate(cand.encoder.streams):
            cur = self.slots[self.serving.get(spec.level, 0)]
            cur_cols = [k for k, s in enumerate(cur.encoder.streams) if s.level == spec.level]
            if not cur_cols:
                continue
            if cand.by_label[1, j, 0] >= MIN_POSITIVES and cand.by_label[0, j, 0] > 0:
                rule = "separation"
                cur_v = float(np.mean([_separation(cur.by_label[:, c]) for c in cur_cols]))
                new_v = _separation(cand.by_label[:, j])
                wins = new_v > cur_v + margin
            else:
                rule = "planted"
                empty = np.zeros(0)
                cur_a = self.aucs.get(cur.encoder.version, {}).get(spec.level, empty)
                new_a = self.aucs.get(cand.encoder.version, {}).get(spec.level, empty)
                wins, _ = compare(new_a, cur_a, margin)
                cur_v = float(cur_a.mean()) if cur_a.size else math.nan
                new_v = float(new_a.mean()) if new_a.size else math.nan
            decision["levels"][spec.level] = {
                "rule": rule, "serving": round(cur_v, 4), "candidate": round(new_v, 4),
                "takes_over": bool(wins),
            }
            if wins:
                self.serving[spec.level] = self.candidate
        self.decisions.append(decision)
        self.candidate = None
        used = set(self.serving.values()) | {0}
        if len(used) < len(self.slots):  # drop encoders that serve nothing (keep fixed)
            keep = [i for i in range(len(self.slots)) if i in used]
            remap = {old: new for new, old in enumerate(keep)}
            slots = [self.slots[i] for i in keep]
            self.slots = []
            offset = 0
            for s in slots:
                s.offset = offset
                offset += len(s.encoder.streams)
                self.slots.append(s)
            self.serving = {lvl: remap[i] for lvl, i in self.serving.items()}
            self._refresh()

    def close(self) -> None:
        """Stop a background job still running (a snapshot keeps its payload)."""
        if self.pending is not None:
            self.pending.job.cancel()

    def describe(self) -> str:
        parts = []
        for i, slot in enumerate(self.slots):
            levels = sorted(lvl for lvl, s in self.serving.items() if s == i)
            role = "shadow" if i == self.candidate else ",".join(map(str, levels))
            parts.append(f"{slot.encoder.name}:{slot.encoder.version}[{role}]")
        return "+".join(parts)

    def status(self) -> dict[str, Any]:
        """Serving encoders, decisions, training reports, and per active NeuroNet its code
        perplexity per level: held-out at training (``perplexity``) and on the events it has
        seen here (``live_perplexity``: exp of the mean unigram surprise of its codes)."""
        nets = {}
        for i, slot in enumerate(self.slots):
            enc = slot.encoder
            if isinstance(enc, NeuroNet):
                live = np.exp(slot.uni_sum / max(slot.shadowed, 1)) if slot.shadowed else None
                nets[enc.version] = {
                    "levels": list(enc.levels),
                    "serving": sorted(lv for lv, s in self.serving.items() if s == i),
                    "perplexity": self.perplexity.get(enc.version),
                    "live_perplexity": None if live is None else [round(float(p), 2)
                                                                  for p in live],
                    "planted_auc": {lv: round(float(a.mean()), 4) for lv, a in
                                    self.aucs.get(enc.version, {}).items() if a.size},
                }
        pending = None
        if self.pending is not None:
            pending = {"started_at": self.pending.started_at, "due_at": self.pending.due_at,
                       "done": self.pending.job.done}
        return {
            "serving": self.describe(),
            "decisions": self.decisions,
            "training": self.reports,
            "neuronets": nets,
            "pending": pending,
        }


def _summary(report: dict[str, Any]) -> str:
    """A TrainReport (as a dict) on one line."""
    levels = ", ".join(
        f"L{i + 1} acc {a:.2f} ppl {p:.1f}"
        for i, (a, p) in enumerate(zip(report["level_accuracy"], report["code_perplexity"],
                                       strict=True)))
    extra = f"; re-initialised {report['reinitialised']}" if report["reinitialised"] else ""
    return (f"{levels}{extra}; {report['steps']} steps on {report['train_samples']} windows, "
            f"{report['seconds']:.1f} s")


def _separation(stats: np.ndarray) -> float:
    """d' of one stream from per-label [count, sum, sum of squares] rows (normal, anomaly)."""
    (n0, s0, q0), (n1, s1, _) = stats
    mean0, mean1 = s0 / n0, s1 / n1
    std0 = math.sqrt(max(q0 / n0 - mean0**2, 1e-12))
    return float((mean1 - mean0) / std0)

"""Encoder lifecycle of one field set: fixed codes serve from the start; a NeuroNet is trained
from the sources' reservoirs, warmed by re-counting them in its own pattern namespace,
shadow-scored, and takes over a level only where it proves better on recent data.

"Better", when the shadow period saw labels of both kinds (at least MIN_POSITIVES anomalies):
the level's separation d' = (mean surprise on anomalies - mean on normals) / std on normals;
the candidate must beat the serving encoder's d' by ``neuronet.margin``.
Without labels: the level's normalised conditional surprise
rho = sum(-ln p(code | context)) / sum(-ln p(code)), i.e. how much of the code stream's entropy
its context explains; lower is better, by ``neuronet.margin``, and the candidate must use its
codes (mean unigram surprise >= 0.5 nat, so a collapsed code book cannot win by being constant).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from neurogate.engine.config import EngineConfig
from neurogate.engine.encoder import Encoder, FixedEncoder, StreamSpec
from neurogate.engine.extras import neuronet_usable
from neurogate.engine.patterns import MAX_VOCAB, NO_CALENDAR, pattern_keys, stream_bases

if TYPE_CHECKING:
    from neurogate.engine.bank import Bank
    from neurogate.engine.detector import Detector

MIN_CODE_ENTROPY = 0.5  # nats of unigram surprise a candidate level must show
MIN_POSITIVES = 5  # labelled anomalies needed in the shadow period to judge by separation


@dataclass
class EncoderSlot:
    """An active encoder, its pattern-key bases and its first column in the key array."""

    encoder: Encoder
    bases: np.ndarray
    offset: int
    trained_at: int = 0  # events seen when it was trained (0 for fixed)
    sums: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [streams, 2] shadow sums
    # per label y in (normal, anomaly): [streams, 3] = count, sum, sum of squares of surprise
    by_label: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shadowed: int = 0  # events observed since it became active

    @property
    def columns(self) -> range:
        return range(self.offset, self.offset + len(self.encoder.streams))


class Lifecycle:
    """Which encoders are active for a field set and which one serves each level."""

    def __init__(self, config: EngineConfig, fixed: FixedEncoder, channels: int) -> None:
        self.config = config
        self.channels = channels
        nn = config.neuronet
        self.window = max(fixed.window, 4 << nn.levels) if nn.enabled else fixed.window
        self.trains = neuronet_usable(nn.enabled)  # without torch: fixed codes, one warning
        self.slots: list[EncoderSlot] = []
        self._add_slot(fixed)
        self.serving = {spec.level: 0 for spec in fixed.streams}
        self.candidate: int | None = None
        self.last_train = 0
        self.reports: list[str] = []
        self.decisions: list[dict[str, Any]] = []

    # -- streams -------------------------------------------------------------------------------

    def _add_slot(self, enc: Encoder, trained_at: int = 0) -> int:
        if any(s.vocab >= MAX_VOCAB for s in enc.streams):
            raise ValueError(f"encoder {enc.name}: vocabulary must be < {MAX_VOCAB}")
        offset = sum(len(s.encoder.streams) for s in self.slots)
        k = len(enc.streams)
        slot = EncoderSlot(enc, stream_bases(f"{enc.name}:{enc.version}", k), offset,
                           trained_at, np.zeros((k, 2)), np.zeros((2, k, 3)))
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
            slot.sums[:, 0] += s.sum(axis=0)
            slot.sums[:, 1] += uni_surprise[:, slot.columns.start : slot.columns.stop].sum(axis=0)
            for y in (0, 1):
                sy = s[labels == y]
                slot.by_label[y] += np.stack(
                    [np.full(s.shape[1], sy.shape[0]), sy.sum(axis=0), (sy**2).sum(axis=0)], 1
                )
            slot.shadowed += surprise.shape[0]

    # -- lifecycle -----------------------------------------------------------------------------

    def after_batch(self, det: Detector, bank: Bank) -> None:
        """Train, warm or decide when their moment has come (called after every batch)."""
        nn = self.config.neuronet
        if not self.trains:
            return
        seen = det.events_seen
        if self.candidate is None:
            first = self.last_train == 0 and seen >= nn.train_after
            again = (
                self.last_train > 0
                and nn.retrain_every > 0
                and seen - self.last_train >= nn.retrain_every
            )
            if first or again:
                self._train(det, bank)
        elif self.slots[self.candidate].shadowed >= nn.shadow_events:
            self._decide(det)

    def _train(self, det: Detector, bank: Bank) -> None:
        from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig

        nn = self.config.neuronet
        ready = np.flatnonzero(bank.state.res_n[: bank.state.size] >= self.window // 4)
        if not ready.size:  # every source still warming up (many sources): try again later
            return
        self.last_train = det.events_seen
        pick = ready[np.linspace(0, ready.size - 1, min(nn.max_sources, ready.size)).astype(int)]
        series = bank.reservoir_series(np.unique(pick))
        net = NeuroNet(
            NeuroNetConfig(channels=self.channels, window=self.window, levels=nn.levels,
                           hidden=nn.hidden),
            seed=self.config.seed,
        )
        t0 = time.perf_counter()
        report = net.fit(series, levelhold=nn.levelhold, tunehold=nn.tunehold,
                         max_steps_per_level=nn.max_steps_per_level, seed=self.config.seed,
                         progress=det.progress)
        det.timings["train_seconds"] += time.perf_counter() - t0
        self.reports.append(f"neuronet {net.version}: " + report.summary().replace("\n", "; "))
        idx = self._add_slot(net, det.events_seen)
        self.candidate = idx
        det.save_encoder(net)
        self._warm(det, bank, self.slots[idx], np.unique(pick))

    def _warm(self, det: Detector, bank: Bank, slot: EncoderSlot, rows: np.ndarray) -> None:
        """Count the reservoir through a new encoder so it starts with history, not cold."""
        w = self.window
        for row, series in zip(rows, bank.reservoir_series(rows), strict=True):
            padded = np.concatenate([np.repeat(series[:1], w - 1, axis=0), series])
            idx = np.arange(series.shape[0])[:, None] + np.arange(w)[None, :]
            windows = padded[idx].astype(np.float32)
            codes = slot.encoder.encode(windows)
            scope = np.full(series.shape[0], bank.state.scope[row], dtype=np.uint64)
            bucket = np.full(series.shape[0], NO_CALENDAR, dtype=np.uint64)
            keys = pattern_keys(slot.bases, scope, codes, bucket)
            det.count_only(keys, np.full(series.shape[0], -1, dtype=np.int8))

    def _decide(self, det: Detector) -> None:
        """Per level: the candidate takes over where its rho beats the serving encoder's."""
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
                rule = "rho"
                cur_v, new_v = _rho(cur.sums[cur_cols]), _rho(cand.sums[[j]])
                uni = cand.sums[j, 1] / max(cand.shadowed, 1)
                wins = new_v < cur_v - margin and uni >= MIN_CODE_ENTROPY
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

    def describe(self) -> str:
        parts = []
        for i, slot in enumerate(self.slots):
            levels = sorted(lvl for lvl, s in self.serving.items() if s == i)
            role = "shadow" if i == self.candidate else ",".join(map(str, levels))
            parts.append(f"{slot.encoder.name}:{slot.encoder.version}[{role}]")
        return "+".join(parts)

    def status(self) -> dict[str, Any]:
        return {
            "serving": self.describe(),
            "decisions": self.decisions,
            "training": self.reports,
        }


def _separation(stats: np.ndarray) -> float:
    """d' of one stream from per-label [count, sum, sum of squares] rows (normal, anomaly)."""
    (n0, s0, q0), (n1, s1, _) = stats
    mean0, mean1 = s0 / n0, s1 / n1
    std0 = math.sqrt(max(q0 / n0 - mean0**2, 1e-12))
    return float((mean1 - mean0) / std0)


def _rho(sums: np.ndarray) -> float:
    """Normalised conditional surprise of summed [s_context, s_unigram] rows."""
    total = sums.sum(axis=0)
    return float(total[0] / total[1]) if total[1] > 0 else 1.0

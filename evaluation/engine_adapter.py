"""neurogate's engine behind the harness protocol (``StreamDetector``).

Two things the benchmarks need are not engine settings yet, so they live here:

* **Per-source warm-up.** The engine has one ``warmup`` for all sources; NAB gives each file
  its own probationary period (15 %, at most 750 rows). The adapter keeps one engine per
  distinct warm-up length and routes each source to its engine. With ``scope = "source"``
  sources never share counts, so this equals one engine per source; a NeuroNet is shared by the
  sources of one engine, as it is in production.
* **A range given up front** (NAB's inputMin/inputMax, the "NAB-comparable" mode): the source's
  range is set to the given min/max instead of the warm-up's when its warm-up ends. This hooks
  the engine's private ``Bank._freeze``; see docs/evaluation.md for the engine change that
  would replace it.

The emitted score is the engine's score, or 0 where the engine suppressed it (a repeat of an
alert already raised) or rejected the event.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurogate.engine.bank import Bank
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.labels import Label
from neurogate.evaluation.protocol import Batch, Feedback, Output, SourceInfo


class _GivenRangeBank(Bank):
    """A bank whose sources may have their range given up front instead of frozen from the
    warm-up (margin 0: bins span exactly the given min..max)."""

    given: dict[str, tuple[np.ndarray, np.ndarray]]

    def _freeze(self, rows: np.ndarray) -> None:
        """The engine's freeze, then the given ranges override the warm-up ones."""
        super()._freeze(rows)
        st = self.state
        changed = []
        for r in rows.tolist():
            rng = self.given.get(self.sources[r])
            if rng is None:
                continue
            lo, hi = rng
            span = hi - lo
            st.lo[r] = lo
            st.scale[r] = np.where(span > 0, span, np.maximum(np.abs(hi), 1.0) * 0.1)
            changed.append(r)
        if changed and "res" in st.arrays:  # the NeuroNet reservoir holds normalised values
            idx = np.array(changed)
            norm = (st.warm[idx] - st.lo[idx][:, None]) / st.scale[idx][:, None]
            keep = min(norm.shape[1], st.res.shape[1])
            st.res[idx, :keep] = norm[:, -keep:]


class _RangeDetector(Detector):
    """The engine's Detector (with late-label memory) with banks that honour given ranges."""

    def __init__(self, config: EngineConfig, given: dict[str, tuple[np.ndarray, np.ndarray]],
                 **kwargs: Any) -> None:
        self._given = given
        super().__init__(config, **kwargs)

    def _add_source(self, source: str, fields: tuple[str, ...]) -> tuple[Bank, int]:
        """The engine's source registration, with the bank switched to honour given ranges."""
        bank, row = super()._add_source(source, fields)
        if type(bank) is Bank:
            bank.__class__ = _GivenRangeBank
            bank.given = self._given  # type: ignore[attr-defined]
        return bank, row


class NeurogateDetector:
    """The engine, one instance per distinct warm-up length (see the module docstring)."""

    def __init__(self, config: EngineConfig, name: str = "neurogate") -> None:
        self.name = name
        self.config = config
        self.threshold = config.threshold
        self._engines: dict[int, _RangeDetector] = {}
        self._of_source: dict[str, _RangeDetector] = {}
        self._calendar: dict[str, bool] = {}
        self._fields: dict[str, tuple[str, ...]] = {}
        self._given: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def begin_source(self, info: SourceInfo) -> None:
        """Route the source to the engine of its warm-up length (created on first use)."""
        engine = self._engines.get(info.warmup)
        if engine is None:
            engine = _RangeDetector(self.config.replace(warmup=info.warmup), self._given,
                                    label_memory=self.config.label_memory)
            self._engines[info.warmup] = engine
        if info.value_range is not None:
            lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in info.value_range)
            self._given[info.name] = (lo, hi)
        self._of_source[info.name] = engine
        self._calendar[info.name] = info.has_calendar
        # the engine's field names are sorted; zero-padded channel numbers keep column order
        self._fields[info.name] = (
            ("value",) if info.channels == 1 else tuple(f"c{i:03d}" for i in range(info.channels))
        )

    def process(self, batch: Batch, feedback: Feedback) -> Output:
        """One ``process_many`` call. A label revealed at its own row rides on its event (the
        engine reads it only after scoring the event); a delayed label is applied after this
        batch was scored, through the engine's late-label API (events carry ``source:row``
        ids for that)."""
        engine = self._of_source[batch.source]
        labels: list[int | None] = [None] * len(batch)
        late = []
        for r, y, at in zip(feedback.rows.tolist(), feedback.labels.tolist(),
                            feedback.reveal_at.tolist(), strict=True):
            if at == r and batch.start <= r < batch.start + len(batch):
                labels[r - batch.start] = int(y)
            else:
                late.append(Label(batch.source, int(y), id=f"{batch.source}:{r}"))
        cal, fields = self._calendar[batch.source], self._fields[batch.source]
        events = [
            Event(batch.source, t, tuple(v), fields, id=f"{batch.source}:{batch.start + j}",
                  label=y, has_calendar=cal)
            for j, (t, v, y) in enumerate(
                zip(batch.ts.tolist(), batch.values.tolist(), labels, strict=True))
        ]
        out = engine.process_many(events)
        if late:
            engine.learn_labels(late)
        quiet = out.suppressed | (out.status == 2)
        score = np.clip(np.nan_to_num(np.where(quiet, 0.0, out.score)), 0.0, 1.0)
        notes = {i: [line.line() for line in lines] for i, lines in out.explanation.items()}
        raw = np.clip(np.nan_to_num(np.where(out.status == 2, 0.0, out.score)), 0.0, 1.0)
        return Output(score=score, flagged=out.flagged.copy(), posterior=out.posterior.copy(),
                      notes=notes, raw=raw)

    def status(self) -> dict[str, Any]:
        """Engine status per warm-up length (encoders serving each level, training time)."""
        return {str(w): e.status() for w, e in self._engines.items()}

    def close(self) -> None:
        """Flush and drop the engines."""
        for e in self._engines.values():
            e.close()
        self._engines.clear()
        self._of_source.clear()

"""neurogate's engine behind the harness protocol (``StreamDetector``).

Two things the benchmarks need are not engine settings yet, so they live here:

* **Per-source warm-up.** The engine has one ``warmup`` for all sources; NAB gives each file
  its own probationary period (15 %, at most 750 rows). The adapter keeps one engine per
  distinct warm-up length and routes each source to its engine. With ``scope = "source"``
  sources never share counts, so this equals one engine per source; a NeuroNet is shared by the
  sources of one engine, as it is in production.
* **A range given up front** (NAB's inputMin/inputMax, the "NAB-comparable" mode): the
  engine's ``Detector.set_range`` (the source's bins then span exactly the given min..max).

The emitted score is the engine's score, or 0 where the engine suppressed it (a repeat of an
alert already raised) or rejected the event.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event
from neurogate.engine.labels import Label
from neurogate.evaluation.protocol import Batch, Feedback, Output, SourceInfo


class NeurogateDetector:
    """The engine, one instance per distinct warm-up length (see the module docstring)."""

    def __init__(self, config: EngineConfig, name: str = "neurogate") -> None:
        self.name = name
        self.config = config
        self.threshold = config.threshold
        self._engines: dict[int, Detector] = {}
        self._of_source: dict[str, Detector] = {}
        self._calendar: dict[str, bool] = {}
        self._fields: dict[str, tuple[str, ...]] = {}

    def begin_source(self, info: SourceInfo) -> None:
        """Route the source to the engine of its warm-up length (created on first use)."""
        engine = self._engines.get(info.warmup)
        if engine is None:
            engine = Detector(self.config.replace(warmup=info.warmup),
                              label_memory=self.config.label_memory)
            self._engines[info.warmup] = engine
        if info.value_range is not None:
            lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1).tolist()
                      for v in info.value_range)
            engine.set_range(info.name, lo, hi)
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

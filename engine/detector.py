"""The detector: routes a batch of events to per-source state, encodes windows into codes,
scores each event from the pattern counts of the events before it, then learns from it.

Prequential by construction: ``process_many`` scores every event before its patterns (and its
label, if it carries one) are counted, event by event, even inside one batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from neurogate.engine import rules, snapshot
from neurogate.engine.bank import Bank, Prepared
from neurogate.engine.config import EngineConfig, time_zone
from neurogate.engine.counts import CountTable, release_free_memory
from neurogate.engine.encoder import Encoder, FixedEncoder
from neurogate.engine.events import Event, EventBatch
from neurogate.engine.evidence import (
    FAMILIES,
    FORECAST_NAMES,
    MIN_HISTORY,
    NFAM,
    PATTERNS,
    SEASONAL,
    STUCK,
    TREND,
)
from neurogate.engine.gcpause import collector_paused
from neurogate.engine.keys import NCOLS
from neurogate.engine.labels import Label, LabelMemory, learn_labels
from neurogate.engine.patterns import (
    TRI,
    TRICTX,
    calendar_bucket,
    calendar_times,
    pattern_keys,
    wall_clock,
)
from neurogate.engine.posterior import ClassEvidence, explain, log_odds
from neurogate.engine.scoring import stream_probabilities, top_k_mean
from neurogate.engine.shadow import Lifecycle
from neurogate.engine.stores import MemoryStore, OutcomeUnknown, PatternStore

log = logging.getLogger("neurogate.detector")


def iso_time(ts: float) -> str | None:
    """ISO-8601 UTC of epoch seconds (None when unknown or out of the calendar's range).

    >>> iso_time(1_700_000_000.0), iso_time(0.25)
    ('2023-11-14T22:13:20Z', '1970-01-01T00:00:00.250000Z')
    """
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


@dataclass
class Evidence:
    """One code stream's share of an event's score."""

    level: int
    channel: int
    encoder: str
    pattern: int  # 64-bit key of the (context -> code) pattern
    count: int  # times that pattern was seen before this event
    probability: float
    surprise: float
    # what the stream's codes mean, so a reader can decode them (cli/results.py)
    stream: str = "learned"  # StreamSpec.kind: value, level, change or learned
    field: str = ""  # the channel's field name ("" = joint over channels)
    dilation: int = 1  # events per step of the stream
    vocab: int = 0
    codes: tuple[int, int, int] = (0, 0, 0)  # the codes at t-2d, t-d, t
    context_count: int = 0  # times the context (codes at t-2d, t-d) was seen before
    value_range: tuple[float, float] | None = None  # the warm-up range the bins span

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level,
            "channel": self.channel,
            "encoder": self.encoder,
            "pattern": f"{self.pattern:016x}",
            "count": self.count,
            "probability": round(self.probability, 6),
            "surprise": round(self.surprise, 4),
            "stream": self.stream,
            "field": self.field,
            "dilation": self.dilation,
            "vocab": self.vocab,
            "codes": list(self.codes),
            "context_count": self.context_count,
        }
        if self.value_range is not None:
            out["range"] = [float(f"{v:.6g}") for v in self.value_range]
        return out


@dataclass
class Result:
    """The outcome for one input event."""

    event: Event
    score: float  # 0..1; 0 while the source warms up
    flagged: bool
    threshold: float
    status: str  # "scored", "warming" or "rejected"
    suppressed: bool = False
    extreme: bool = False
    posterior: float | None = None  # ln P(anomaly|x) - ln P(normal|x), once labels exist
    reason: str | None = None  # why a rejected event was rejected
    evidence: list[Evidence] = field(default_factory=list)
    explanation: list[ClassEvidence] = field(default_factory=list)
    model_version: str = ""
    # flagged events: tail probability of each evidence family (engine/evidence.py) and, for
    # deviation and relation, the channel that drove it; empty when the score is not calibrated
    families: dict[str, float] = field(default_factory=dict)
    family_channels: dict[str, str] = field(default_factory=dict)
    # what the deviation family's channel was judged against (evidence.FORECAST_NAMES)
    forecast: str = ""
    # the source's events in ``score_interval`` its families' p was read over (1: per event)
    interval_events: float = 1.0
    stuck: bool = False  # the relation family's channel repeated one value (it drove the family)
    # flagged inside the source's open episode: the same incident got worse (rules.Suppression);
    # False on a flag that opens an episode (a new incident)
    escalation: bool = False

    def as_dict(self) -> dict[str, Any]:
        e = self.event
        out: dict[str, Any] = {
            "source": e.source,
            "ts": None if math.isnan(e.ts) else e.ts,
            "id": e.id,
            "score": None if math.isnan(self.score) else round(self.score, 6),
            "flagged": self.flagged,
            "threshold": self.threshold,
            "status": self.status,
            "values": {k: v if math.isfinite(v) else None  # JSON has no NaN
                       for k, v in zip(e.fields, e.values, strict=True)},
            "time": iso_time(e.ts) if e.has_calendar else None,
        }
        if self.status == "rejected":
            out["reason"] = self.reason
            return out
        out["suppressed"] = self.suppressed
        out["extreme"] = self.extreme
        if self.posterior is not None:
            out["posterior"] = round(self.posterior, 6)
        if self.families:
            out["families"] = {
                name: ({"p": float(f"{p:.4g}"), "channel": self.family_channels[name]}
                       if name in self.family_channels else {"p": float(f"{p:.4g}")})
                for name, p in self.families.items()
            }
            if self.stuck and "relation" in out["families"]:
                out["families"]["relation"]["stuck"] = True
            if self.forecast and "deviation" in out["families"]:
                out["families"]["deviation"]["forecast"] = self.forecast
            if self.interval_events > 1.0:
                out["interval_events"] = round(self.interval_events, 2)
        if self.flagged:
            out["escalation"] = self.escalation
        if self.evidence:
            out["evidence"] = [ev.as_dict() for ev in self.evidence]
        if self.explanation:
            out["explanation"] = [line.line() for line in self.explanation]
        out["model_version"] = self.model_version
        return out


@dataclass
class BatchResult:
    """Columnar outcome of ``process_many``; iterate it for per-event ``Result`` objects."""

    events: Sequence[Event]
    score: np.ndarray
    flagged: np.ndarray
    status: np.ndarray  # 0 scored, 1 warming, 2 rejected
    suppressed: np.ndarray
    escalated: np.ndarray  # flagged inside an open episode (rules.Suppression)
    extreme: np.ndarray
    posterior: np.ndarray
    reasons: dict[int, str]
    evidence: dict[int, list[Evidence]]
    explanation: dict[int, list[ClassEvidence]]
    threshold: float
    model_version: str
    family_p: np.ndarray  # [n, NFAM] tail probability per evidence family (NaN = none)
    family_channel: np.ndarray  # [n, 2] channel index driving deviation, relation (-1 = none)
    forecast: np.ndarray  # [n] what deviation's channel was judged against (-1 = none)
    interval_events: np.ndarray  # [n] events its families' p was read over (score_interval)

    STATUS = ("scored", "warming", "rejected")

    def __len__(self) -> int:
        return len(self.events)

    def result(self, i: int) -> Result:
        post = self.posterior[i]
        families: dict[str, float] = {}
        channels: dict[str, str] = {}
        stuck = False
        fam = self.family_p[i]
        if self.flagged[i] and not np.isnan(fam[PATTERNS]):  # explained like ``evidence``
            fields = self.events[i].fields
            for f, name in enumerate(FAMILIES):
                if fam[f] < 1.0 or f == PATTERNS:
                    families[name] = float(fam[f])
                    if f != PATTERNS:
                        ch = int(self.family_channel[i, f - 1])
                        stuck = stuck or ch <= STUCK
                        channels[name] = fields[STUCK - ch if ch <= STUCK else ch]
        return Result(
            event=self.events[i],
            score=float(self.score[i]),
            flagged=bool(self.flagged[i]),
            threshold=self.threshold,
            status=self.STATUS[int(self.status[i])],
            suppressed=bool(self.suppressed[i]),
            escalation=bool(self.escalated[i]),
            extreme=bool(self.extreme[i]),
            posterior=None if np.isnan(post) else float(post),
            reason=self.reasons.get(i),
            evidence=self.evidence.get(i, []),
            explanation=self.explanation.get(i, []),
            model_version=self.model_version,
            families=families,
            family_channels=channels,
            forecast=(FORECAST_NAMES[int(self.forecast[i])]
                      if "deviation" in families and self.forecast[i] >= 0 else ""),
            interval_events=float(self.interval_events[i]) if families else 1.0,
            stuck=stuck,
        )

    def __iter__(self) -> Iterator[Result]:
        return (self.result(i) for i in range(len(self.events)))

    def flagged_results(self) -> list[Result]:
        return [self.result(int(i)) for i in np.flatnonzero(self.flagged)]


@dataclass
class _Scored:
    """A bank's scored events of one batch, in arrival order."""

    target: np.ndarray  # index in the batch
    at: np.ndarray  # index among the bank's events of the batch (replays are counted by it)
    rows: np.ndarray  # source row
    ts: np.ndarray
    has_cal: np.ndarray
    values: np.ndarray  # raw [n, C]
    labels: np.ndarray  # int8, -1 = unknown


def write_and_release(store: PatternStore, keys: np.ndarray, deltas: np.ndarray,
                      positions: Mapping[str, int] | None, meta: Mapping[str, bytes],
                      **options: Any) -> None:
    """``store.apply``, then hand the write's buffers back to the system: a store's write
    copies its keys and deltas (sorted, split by the ``new`` hint) and builds parameters,
    which glibc kept after a flush of 900k keys (80 of 220 MB above the start when SQLite
    still built Python rows of a whole write, bench/memory.py)."""
    store.apply(keys, deltas, positions, meta, **options)
    release_free_memory()


class FlushUnknown(ConnectionError):
    """A flush was asked of a detector whose earlier write may or may not have landed."""


class Detector:
    """Streaming anomaly detector over many sources; see the module docstring.

    Examples
    --------
    >>> import math
    >>> from neurogate.engine.config import EngineConfig
    >>> from neurogate.engine.events import Event
    >>> cfg = EngineConfig(warmup=20).replace(**{"neuronet.enabled": False})
    >>> det = Detector(cfg)
    >>> stream = [Event("s", float(t), (math.sin(t / 5),)) for t in range(400)]
    >>> stream.append(Event("s", 400.0, (25.0,)))  # far outside anything seen
    >>> out = det.process_many(stream)
    >>> out.result(0).status, out.result(400).flagged
    ('warming', True)
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        store: PatternStore | None = None,
        *,
        flush_every: int | None = 500_000,
        preload_limit: int = 5_000_000,
        progress: bool = False,
        label_memory: int = 0,
        state: bytes | None = None,
        max_patterns: int | None = None,
    ) -> None:
        """``flush_every``: events between automatic flushes, written in the background while
        scoring goes on (None: only when ``flush`` is called, e.g. by a caller that records
        input positions). A store holding a state snapshot is resumed from it, unless a
        ``state`` (``to_state``) is given (see ``from_state``). While a background flush runs,
        its thread uses the store: call ``flush`` or ``close`` before using the store directly.
        ``label_memory``: how many recent scored events keep their pattern keys for
        ``learn_labels`` (0: none; labels that come with events need none). ``max_patterns``:
        pattern keys held in memory (default: the configuration's); past it, keys whose
        counts the store holds are evicted and read back when needed again."""
        self.config = config or EngineConfig()
        self._zone = time_zone(self.config.timezone)  # None: UTC
        self.store = store if store is not None else MemoryStore()
        self.flush_every = flush_every
        self.progress = progress
        self.cache = CountTable(track_changes=True)  # counts, and which of them are not stored
        self.max_patterns = max_patterns or self.config.max_patterns
        self.evicted = 0  # keys evicted from the cache so far
        # keys of writes taken out by ``detach_flush`` that the caller has not confirmed yet
        # (``committed``): pinned in the cache, the store may not hold their counts yet
        self._detached: list[tuple[int, np.ndarray]] = []
        self._detach_seq = 0
        self.committed_seq = 0  # set by ``committed`` (from any thread: one int assignment)
        self._pending_events = 0
        # Fresh or small stores are read whole: then every key not in the cache is truly zero.
        self._complete = self.store.size() <= min(preload_limit, self.max_patterns)
        if self._complete:
            for keys, counts in self.store.iter_counts():
                self.cache.load(keys, counts)
        self.banks: dict[tuple[str, ...], Bank] = {}
        self.lifecycles: dict[tuple[str, ...], Lifecycle] = {}
        self._sources: dict[str, tuple[Bank, int]] = {}
        self.events_seen = 0
        # NeuroNet training (in the background) and how long scoring waited for it
        self.timings: dict[str, float] = {"train_seconds": 0.0, "train_wait_seconds": 0.0}
        self.flush_errors = 0
        self.label_memory = LabelMemory(label_memory) if label_memory else None
        self._writer: ThreadPoolExecutor | None = None
        self._writing: tuple[Future[None], np.ndarray, np.ndarray] | None = None
        self._unknown: BaseException | None = None  # a write whose outcome is unknown
        self._learning = True  # False inside score_many: counts are read, never added
        self._steps: dict[str, int] = {}  # learn_one's event numbers of sources without ts
        self._given_ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # set_range
        self._rules = rules.chain(self.config)  # post-score rules, in order
        if state is None:
            state = self.store.get_meta(snapshot.META_NAME)
        if state is not None:
            self._restore(state)

    @classmethod
    def from_state(cls, state: bytes, config: EngineConfig | None = None,
                   store: PatternStore | None = None, **options: Any) -> Detector:
        """A detector that continues exactly where ``to_state`` left off: ``state`` holds
        everything but the pattern counts, which ``store`` holds (the counts flushed with
        that state). ``config`` must have the same state-shaping settings
        (``EngineConfig.state_settings``); ``options`` as for ``Detector``."""
        return cls(config, store, state=state, **options)

    def to_state(self) -> bytes:
        """Everything besides the pattern counts that scoring depends on: each field set's
        per-source arrays and encoder lifecycle (engine/snapshot.py). ``flush`` stores it
        beside the counts; ``from_state`` continues from it."""
        banks: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        for b, (fields, bank) in enumerate(self.banks.items()):
            bank_meta, bank_arrays = bank.to_state()
            lc_meta, lc_arrays = self.lifecycles[fields].to_state()
            banks.append(bank_meta | lc_meta)
            arrays.update((f"b{b}/{k}", v) for k, v in (bank_arrays | lc_arrays).items())
        return snapshot.dump(self.config, self.events_seen, banks, arrays)

    def _restore(self, state: bytes) -> None:
        """Take over ``to_state``'s state (a fresh detector with the same configuration)."""
        self.events_seen, banks = snapshot.load(state, self.config)
        for meta, arrays in banks:
            fields = tuple(meta["fields"])
            lc = Lifecycle.from_state(self.config, len(fields), meta, arrays,
                                      self.store.get_meta)
            bank = Bank.from_state(fields, lc.window, self.config, meta, arrays)
            self._attach(bank, lc)
            for row, source in enumerate(bank.sources):
                self._sources[source] = (bank, row)

    # -- public API ----------------------------------------------------------------------------

    def process_many(self, events: Sequence[Event], now: float | None = None) -> BatchResult:
        """Score every event, then learn from it (in order); rejects bad events with a reason.
        ``events`` may be an ``EventBatch`` (columns, e.g. from ``batch_from_json``): the
        detector reads columns, so a batch skips turning events into them. The cycle collector
        waits while events are scored (``neurogate.engine.gcpause``), not while an encoder trains.
        ``now`` (epoch seconds, default the wall clock) bounds how far ahead of it a timestamp
        may lie (``max_future_skew``)."""
        return self._process(EventBatch.from_events(events), now, learn=True)

    def score_many(self, events: Sequence[Event], now: float | None = None) -> BatchResult:
        """Score events as the continuation of their sources' streams **without learning**:
        afterwards the detector is exactly as before (counts, per-source state, new sources
        forgotten). Inside one call, each event's window holds the events before it, as in
        ``process_many``; only what is learned differs. Use ``process_many`` to score and
        learn (prequential). Nothing is flushed."""
        batch = EventBatch.from_events(events)
        known = set(self._sources)
        sizes = {fields: len(bank.sources) for fields, bank in self.banks.items()}
        saved = []
        for bank in self.banks.values():
            rows = np.unique(np.array([self._sources[s][1] for s in set(batch.sources)
                                       if s in known and self._sources[s][0] is bank],
                                      dtype=np.int64))
            saved.append((bank, rows, bank.state.rows_copy(rows)))
        try:
            return self._process(batch, now, learn=False)
        finally:
            for bank, rows, copy in saved:
                bank.state.restore_rows(rows, copy)
            for fields in list(self.banks):
                if fields not in sizes:  # a field set first seen in this call
                    del self.banks[fields], self.lifecycles[fields]
                else:
                    bank = self.banks[fields]
                    del bank.sources[sizes[fields]:]
                    bank.state.truncate(sizes[fields])
            for source in set(self._sources) - known:
                del self._sources[source]

    def learn_one(self, x: Mapping[str, float], *, source: str = "default",
                  ts: float | None = None) -> None:
        """River-style: learn from one observation ``x`` (field name -> value) of ``source``
        (scored first, as always). ``ts`` is epoch seconds; without it the source's events are
        numbered 0, 1, 2, ... (no calendar)."""
        self.process_many([self._event_of(x, source, ts, advance=True)])

    def score_one(self, x: Mapping[str, float], *, source: str = "default",
                  ts: float | None = None) -> float:
        """River-style: the score (0..1) of one observation ``x`` as the next event of
        ``source``, without learning from it; 0.0 while the source warms up (its first
        ``warmup`` events)."""
        score = float(self.score_many([self._event_of(x, source, ts, advance=False)]).score[0])
        return 0.0 if math.isnan(score) else score

    def _event_of(self, x: Mapping[str, float], source: str, ts: float | None,
                  advance: bool) -> Event:
        if not x:
            raise ValueError("an observation needs at least one field")
        fields = tuple(sorted(x))
        try:
            values = tuple(float(x[f]) for f in fields)
        except (TypeError, ValueError):
            raise ValueError(f"every value must be a number, got {dict(x)!r}") from None
        if ts is not None:
            return Event(source, float(ts), values, fields)
        step = self._steps.get(source, 0)
        if advance:
            self._steps[source] = step + 1
        return Event(source, float(step), values, fields, has_calendar=False)

    def set_range(self, source: str, lo: Sequence[float] | float,
                  hi: Sequence[float] | float) -> None:
        """Give ``source``'s value range up front (per channel, or one for all): when its
        warm-up ends, its value bins span exactly ``lo``..``hi`` instead of the warm-up's range
        widened by ``range_margin`` (e.g. NAB's inputMin/inputMax). Call it before the
        source's warm-up ends; the frozen range then lives in the saved state."""
        low = np.atleast_1d(np.asarray(lo, dtype=np.float64))
        high = np.atleast_1d(np.asarray(hi, dtype=np.float64))
        if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"a range needs finite lo and hi of one shape, got {lo!r}, {hi!r}")
        if (low > high).any():
            raise ValueError(f"range of {source!r}: lo must not exceed hi, got {lo!r}, {hi!r}")
        entry = self._sources.get(source)
        if entry is not None:
            bank, row = entry
            if low.size not in (1, bank.channels):
                raise ValueError(f"{source!r} has {bank.channels} channels, the range "
                                 f"{low.size}")
            if bank.state.n_seen[row] >= self.config.warmup:
                raise ValueError(f"{source!r} has already fixed its range (its warm-up ended)")
        self._given_ranges[source] = (low, high)

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        """Flush and wait (``close``); the store stays open (the caller owns it)."""
        self.close()

    def _process(self, batch: EventBatch, now: float | None, learn: bool) -> BatchResult:
        now = time.time() if now is None else now
        n = len(batch)
        cfg = self.config
        out = BatchResult(
            events=batch,
            score=np.zeros(n),
            flagged=np.zeros(n, dtype=bool),
            status=np.zeros(n, dtype=np.int8),
            suppressed=np.zeros(n, dtype=bool),
            escalated=np.zeros(n, dtype=bool),
            extreme=np.zeros(n, dtype=bool),
            posterior=np.full(n, np.nan),
            reasons={},
            evidence={},
            explanation={},
            threshold=cfg.threshold,
            model_version="",
            family_p=np.full((n, NFAM), np.nan),
            family_channel=np.full((n, 2), -1, dtype=np.int64),
            forecast=np.full(n, -1, dtype=np.int64),
            interval_events=np.ones(n),
        )
        self._learning = learn
        try:
            with collector_paused():
                by_bank = self._route(batch, out)
                for fields, (idx, rows) in by_bank.items():
                    self._process_bank(self.banks[fields], batch, idx, rows, out, now)
        finally:
            self._learning = True
        for i in out.reasons:
            out.status[i] = 2
            out.score[i] = np.nan
        out.model_version = self.model_version()
        if not learn:
            self._bound()
            return out
        self.events_seen += n
        for fields in by_bank:
            self.lifecycles[fields].after_batch(self, self.banks[fields])
        out.model_version = self.model_version()
        if self.flush_every is not None and self._pending_events >= self.flush_every:
            self.flush(wait=False)
        self._bound()
        return out

    def process_one(self, event: Event) -> Result:
        """One-event wrapper of ``process_many``."""
        return self.process_many([event]).result(0)

    def learn_labels(self, labels: Sequence[Label]) -> Counter[str]:
        """Apply labels that arrived after their events were scored: each adds to the n0/n1
        counts of its event's patterns (written with the next flush). Returns how many had
        each outcome (``neurogate.engine.labels.OUTCOMES``)."""
        if self.label_memory is None:
            raise ValueError("this detector keeps no keys for late labels: create it with "
                             "label_memory=N (recent events to remember)")
        outcomes = learn_labels(self.cache, self.label_memory, labels, self._load_missing)
        self._bound()
        return outcomes

    def flush(self, positions: dict[str, int] | None = None, *, wait: bool = True) -> None:
        """Write the counts added since the last flush, the input positions they cover and the
        state snapshot to the store in one transaction: after a crash the store is as of the
        last flush that finished. ``wait=False`` writes in a background thread while the
        caller goes on (one write at a time); if that write fails, its counts stay unstored,
        the next flush writes them (a warning is logged), and a waiting flush raises. If the
        store cannot tell whether a write landed (``OutcomeUnknown``: a lost COMMIT
        acknowledgement), every later flush raises ``FlushUnknown``: writing the counts again
        could count them twice, and resuming from the store's positions cannot."""
        keys, deltas, new, blob = self._take_changes()
        meta = {snapshot.META_NAME: blob}
        if wait:
            try:
                write_and_release(self.store, keys, deltas, positions, meta, new=new)
            except BaseException as exc:
                self._write_failed(exc, keys, deltas)
                raise
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="neurogate-flush")
        job = self._writer.submit(write_and_release, self.store, keys, deltas, positions, meta,
                                  new=new)
        self._writing = (job, keys, deltas)

    def detach_flush(self) -> tuple[np.ndarray, np.ndarray, bytes, int]:
        """What ``flush`` would write (count deltas, state snapshot) and its sequence number,
        taken out without writing it: for a caller that writes it elsewhere (the worker's
        commit thread), reports it written with ``committed(seq)`` and, if that write fails,
        discards this detector and resumes from the store. Until then its keys stay in memory."""
        keys, deltas, _, blob = self._take_changes()
        self._detach_seq += 1
        self._detached = [(seq, k) for seq, k in self._detached if seq > self.committed_seq]
        self._detached.append((self._detach_seq, keys))
        return keys, deltas, blob, self._detach_seq

    def committed(self, seq: int) -> None:
        """The detached writes up to ``seq`` are in the store: their keys may be evicted.
        Safe from another thread (the commit thread)."""
        self.committed_seq = max(self.committed_seq, seq)

    def _take_changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
        """(keys, deltas, new-key mask, state snapshot) of everything not yet stored, now
        counted as stored (a failed write puts the deltas back with ``cache.unstore``)."""
        self._settle()
        if self._unknown is not None:
            raise FlushUnknown(
                f"an earlier flush may or may not have landed ({self._unknown}); writing again "
                "could count its events twice, so this detector writes no more: open a new one "
                "on the store (it resumes from the store's state) and feed the input again from "
                "the store's positions") from self._unknown
        keys, deltas, new = self.cache.changes()
        blob = self.to_state()
        self.cache.mark_stored()
        self._pending_events = 0
        return keys, deltas, new, blob

    def close(self, positions: dict[str, int] | None = None) -> None:
        """Flush pending counts (and ``positions``) and wait for them; the store stays open
        (the caller owns it)."""
        self.flush(positions)
        for lc in self.lifecycles.values():
            lc.close()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def _settle(self) -> None:
        """Wait for the background flush in flight, if any; if it failed, its counts become
        unstored again so that the next flush writes them (with newer positions and state)."""
        if self._writing is None:
            return
        job, keys, deltas = self._writing
        self._writing = None
        exc = job.exception()
        if exc is None:
            return
        self.flush_errors += 1
        self._write_failed(exc, keys, deltas)
        if self._unknown is None:
            log.warning("a background flush failed (%s: %s); its counts are kept and written "
                        "by the next flush", type(exc).__name__, exc)
        else:
            log.error("a background flush may or may not have landed (%s); the next flush "
                      "will fail: resume from the store's positions", exc)

    def _write_failed(self, exc: BaseException, keys: np.ndarray, deltas: np.ndarray) -> None:
        """A write failed: its counts become unstored again (the next flush writes them),
        unless the store cannot tell whether it landed: then no flush may follow."""
        if isinstance(exc, OutcomeUnknown):
            self._unknown = exc
        else:
            self.cache.unstore(keys, deltas)

    def save_encoder(self, encoder: Encoder) -> None:
        """Keep a trained encoder's artifact in the store's registry (for rollback and reuse)."""
        self._settle()
        blob = encoder.to_bytes()
        self.store.put_meta(f"encoder/{encoder.name}/{encoder.version}", blob)

    def count_only(self, keys: np.ndarray, labels: np.ndarray) -> None:
        """Count keys [m, streams, NKINDS] of events without scoring them (warming a namespace)."""
        self._count(keys, labels)

    def model_version(self) -> str:
        """Which encoder serves each level, e.g. ``fixed:1a2b..[0,1,2]+neuronet:..[3,4]``."""
        return ";".join(lc.describe() for lc in self.lifecycles.values())

    def status(self) -> dict[str, Any]:
        """Sources, patterns held and encoder state, for logs and the CLI summary; per field
        set, how many of its sources have a channel judged against a seasonal profile (found
        at the warm-up or by the late look for a period), how many against a local trend, how
        many are read per ``score_interval`` (sampled faster), and how many sources it has."""
        return {
            "events": self.events_seen,
            "sources": len(self._sources),
            "patterns_cached": len(self.cache),
            "patterns_evicted": self.evicted,
            "encoders": {",".join(f): lc.status() for f, lc in self.lifecycles.items()},
            "periodic": {",".join(f): [bank.judged_sources(SEASONAL), len(bank.sources)]
                         for f, bank in self.banks.items()},
            "trending": {",".join(f): [bank.judged_sources(TREND), len(bank.sources)]
                         for f, bank in self.banks.items()},
            "interval": {",".join(f): [bank.read_per_interval(), len(bank.sources)]
                         for f, bank in self.banks.items()},
            "train_seconds": round(self.timings["train_seconds"], 2),
            "train_wait_seconds": round(self.timings["train_wait_seconds"], 2),
        }

    # -- internals -----------------------------------------------------------------------------

    def _route(self, batch: EventBatch, out: BatchResult
               ) -> dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]:
        """Each event's bank and source row, grouped by bank (input order kept); new sources
        are added in order of first appearance; an event whose fields differ from its source's
        is rejected (schema_mismatch). List comprehensions: this runs for every event."""
        get = self._sources.get
        sources, event_fields = batch.sources, batch.fields
        entries = [get(s) for s in sources]
        if None in entries:
            for i, s in enumerate(sources):
                if entries[i] is None:
                    entries[i] = get(s) or self._add_source(s, event_fields[i])
        mismatch: list[int] = []
        if len(self.banks) > 1 or (
                self.banks and event_fields.count(next(iter(self.banks))) < len(sources)):
            # not the common case (one field set, every event has it): check event by event
            mismatch = [i for i, (f, en) in enumerate(zip(event_fields, entries, strict=True))
                        if f is not en[0].fields and f != en[0].fields]  # type: ignore[index]
        for i in mismatch:
            out.reasons[i] = "schema_mismatch"
        rows = np.array([en[1] for en in entries], dtype=np.int64)  # type: ignore[index]
        ok = np.ones(len(sources), dtype=bool)
        ok[mismatch] = False
        if len(self.banks) == 1:
            (fields,) = self.banks
            idx = np.flatnonzero(ok)
            return {fields: (idx, rows[idx])} if idx.size else {}
        bank_of = np.array([id(en[0]) for en in entries], dtype=np.int64)  # type: ignore[index]
        groups = []
        for fields, bank in self.banks.items():
            idx = np.flatnonzero(ok & (bank_of == id(bank)))
            if idx.size:
                groups.append((int(idx[0]), fields, idx))
        return {fields: (idx, rows[idx]) for _, fields, idx in sorted(groups)}  # first seen first

    def _add_source(self, source: str, fields: tuple[str, ...]) -> tuple[Bank, int]:
        bank = self.banks.get(fields)
        if bank is None:
            fixed = FixedEncoder(self.config.fixed, channels=len(fields))
            lc = Lifecycle(self.config, fixed, len(fields))
            bank = Bank(fields, lc.window, self.config)
            self._attach(bank, lc)
        entry = (bank, bank.add_source(source))
        self._sources[source] = entry
        return entry

    def _attach(self, bank: Bank, lc: Lifecycle) -> None:
        """Serve a field set with ``bank`` and ``lc``."""
        bank.given_ranges = self._given_ranges
        self.banks[bank.fields] = bank
        self.lifecycles[bank.fields] = lc

    def _process_bank(
        self, bank: Bank, batch: EventBatch, idx: np.ndarray, rows: np.ndarray,
        out: BatchResult, now: float,
    ) -> None:
        values = batch.value_rows(idx)
        bad = np.asarray(~np.isfinite(values).all(axis=1))
        if bad.any():
            for j in np.flatnonzero(bad):
                out.reasons[int(idx[j])] = "non_finite"
            keep = ~bad
            idx, rows, values = idx[keep], rows[keep], values[keep]
        if not idx.size:
            return
        ts = batch.ts[idx]
        has_cal = batch.has_calendar[idx]
        labels = batch.labels[idx]
        p = bank.prepare(rows, ts, has_cal, values, labels, now)
        for j in np.flatnonzero(p.late):
            out.reasons[int(idx[j])] = "out_of_order"
        for j in np.flatnonzero(p.future):
            out.reasons[int(idx[j])] = "future_timestamp"
        out.status[idx[p.warming]] = 1
        lc = self.lifecycles[bank.fields]
        replays = []
        for row, at in zip(p.done_rows, p.done_at, strict=True):
            r = bank.replay(np.array([row]))
            bucket = self._bucket(wall_clock(r.ts, self._zone), r.has_calendar)
            keys = self._keys(lc, r.windows, bank.state.scope[r.rows], bucket)
            replays.append((int(at), int(row), keys, r.labels))
        post = p.post
        scored = _Scored(idx[post], post, rows[post], ts[post], has_cal[post], values[post],
                         labels[post])
        self._score_post(bank, p, scored, replays, out)

    def _keys(
        self, lc: Lifecycle, windows: np.ndarray, scope: np.ndarray, bucket: np.ndarray
    ) -> np.ndarray:
        """Keys [m, all active streams, NKINDS] from every active encoder (serving and shadow)."""
        parts = []
        for slot in lc.slots:
            codes = slot.encoder.encode(windows)
            parts.append(pattern_keys(slot.bases, scope, codes, bucket))
        return np.concatenate(parts, axis=1)

    def _bucket(self, ts: np.ndarray, has_cal: np.ndarray) -> np.ndarray:
        if not self.config.calendar:
            has_cal = np.zeros_like(has_cal)
        return calendar_bucket(ts, has_cal, self.config.calendar_hours)

    @staticmethod
    def _deltas(labels: np.ndarray) -> np.ndarray:
        d = np.zeros((labels.size, NCOLS), dtype=np.int64)
        d[:, 0] = 1
        d[labels == 0, 1] = 1
        d[labels == 1, 2] = 1
        return d

    def _load_missing(self, keys: np.ndarray) -> None:
        """Read the counts of the keys the cache does not hold from the store (unless the cache
        holds everything the store has)."""
        if self._complete:
            return
        uniq = np.unique(keys)
        miss = uniq[~self.cache.contains(uniq)]
        if miss.size:
            self._settle()  # the store is not shared with a background flush
            self.cache.load(miss, self.store.fetch(miss))

    def _bound(self) -> None:
        """Past ``max_patterns`` keys, evict stored ones down to 80 % of it (so evictions, one
        pass over the table each, come once per fifth of the bound of new keys). Keys of writes
        not confirmed yet stay: a read-back could miss their counts. Afterwards a key the cache
        lacks may be in the store, so misses are read from it."""
        if len(self.cache) <= self.max_patterns:
            return
        self._detached = [(seq, keys) for seq, keys in self._detached if seq > self.committed_seq]
        pinned = [keys for _, keys in self._detached]
        if self._writing is not None:
            pinned.append(self._writing[1])
        dropped = self.cache.evict(self.max_patterns * 4 // 5, pinned)
        if dropped:
            self.evicted += dropped
            self._complete = False
            self.cache.shrink()  # e.g. after the warm-ups of many sources ended together

    def _count(self, keys: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Prequential read-then-add of every event's keys; returns the counts before each event."""
        m = keys.shape[0]
        flat = keys.reshape(m, -1)
        self._load_missing(flat)
        if not self._learning:  # score_many: read, never add
            return self.cache.get(flat.ravel()).reshape(keys.shape + (NCOLS,))
        deltas = self._deltas(labels)
        counts = self.cache.score_then_add(flat, deltas)
        self._pending_events += m
        return counts.reshape(keys.shape + (NCOLS,))

    def _count_in_order(
        self, bank: Bank, lc: Lifecycle, keys: np.ndarray, labels: np.ndarray, at: np.ndarray,
        replays: list[tuple[int, int, np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        """Count scored events (keys/labels at ascending input indices ``at``) and warm-up
        replays (counted where the warm-up ended) in arrival order, so no event sees counts
        of anything that arrived after it."""
        counts = np.empty(keys.shape + (NCOLS,), dtype=np.int64)
        start = 0
        for pos, row, rkeys, rlabels in replays:
            stop = int(np.searchsorted(at, pos))
            if stop > start:
                counts[start:stop] = self._count(keys[start:stop], labels[start:stop])
            replayed = self._count(rkeys, rlabels)
            if self.config.evidence.calibrate and self._learning:
                self._seed_pattern_history(bank, lc, row, replayed)
            start = stop
        if start < keys.shape[0]:
            counts[start:] = self._count(keys[start:], labels[start:])
        return counts

    def _seed_pattern_history(self, bank: Bank, lc: Lifecycle, row: int,
                              counts: np.ndarray) -> None:
        """Start a source's pattern-evidence history with the surprise of the last quarter of
        its warm-up replay (earlier replay events know too little to be typical), each event
        counting as ``evidence.seed_weight`` events: the first events after the warm-up are
        otherwise judged by the prior alone. Chosen on NAB's labels (fixed codes): 67.57
        without, 68.30 with the last quarter, 66.36 with the last half (weight 1, memory
        2000); with ``tail_memory`` 4000, weight 0.5: 70.11 (1.0: 69.60, 0.25: 70.01). At
        least ``MIN_HISTORY`` events' worth, though: with the default warm-up of 200 the last
        quarter made 25, so the first events after it met the union-bound prior (sensors dev
        files through the default: 47 flags in the 30 events after the warm-up, 7 now)."""
        cfg = self.config
        keep = counts.shape[0] // 4
        if cfg.evidence.seed_weight > 0:
            keep = max(keep, math.ceil(MIN_HISTORY / cfg.evidence.seed_weight))
        half = counts[max(counts.shape[0] - keep, 0) :]
        _, p_ctx = stream_probabilities(half[..., 0], lc.vocab, cfg.alpha, cfg.alpha0)
        cols = lc.serving_columns()
        bank.seed_pattern_history(row, top_k_mean(-np.log(p_ctx[:, cols]), cfg.top_k))

    def _score_post(self, bank: Bank, p: Prepared, s: _Scored,
                    replays: list[tuple[int, int, np.ndarray, np.ndarray]],
                    out: BatchResult) -> None:
        """Count the scored events ``s`` (with the warm-up ``replays`` in arrival order), score
        them from the counts before each, then run the post-score rules (engine/rules.py)."""
        cfg = self.config
        lc = self.lifecycles[bank.fields]
        if not s.at.size:
            self._count_in_order(bank, lc, np.zeros((0, 0, 0), np.uint64), s.labels, s.at,
                                 replays)
            return
        target = s.target
        local = wall_clock(s.ts, self._zone)  # the calendar reads the `timezone`'s clock
        bucket = self._bucket(local, s.has_cal)
        keys = self._keys(lc, p.windows, bank.state.scope[s.rows], bucket)
        counts = self._count_in_order(bank, lc, keys, s.labels, s.at, replays)
        if self.label_memory is not None and self._learning:
            batch = out.events
            assert isinstance(batch, EventBatch)
            self.label_memory.remember(batch.take(target), keys, s.labels)
        p_uni, p_ctx = stream_probabilities(counts[..., 0], lc.vocab, cfg.alpha, cfg.alpha0)
        surprise = -np.log(p_ctx)
        if self._learning:
            lc.observe(surprise, -np.log(p_uni), s.labels)
        cols = lc.serving_columns()
        assert p.groups is not None
        ctx = rules.run(self._rules, rules.ScoreContext(
            bank.state, s.rows, p.groups, s.values, top_k_mean(surprise[:, cols], cfg.top_k),
            float(np.log(np.median(lc.vocab[cols]))), bank.relation, bank.deviation,
            calendar_times(local, s.has_cal),
            calendar_times(s.ts - bank.state.warm_ts[s.rows, 0], s.has_cal)))
        flagged = ctx.flagged
        out.score[target] = ctx.score
        out.extreme[target] = ctx.extreme
        out.suppressed[target] = ctx.suppressed
        out.escalated[target] = ctx.escalated & flagged
        out.flagged[target] = flagged
        out.family_p[target] = ctx.family_p
        out.family_channel[target] = ctx.family_channel
        out.forecast[target] = ctx.forecast
        out.interval_events[target] = ctx.interval_events
        has_labels = np.asarray((counts[:, 0, 0, 1:] > 0).all(axis=1))
        if has_labels.any():
            sel = np.flatnonzero(has_labels)
            c_s = counts[sel][:, cols]
            out.posterior[target[sel]] = log_odds(c_s, p_uni[sel][:, cols], cfg.posterior_beta)
        flag = np.flatnonzero(flagged)
        if flag.size:  # the codes again, for the flagged events only (they are not kept)
            codes = np.concatenate([slot.encoder.encode(p.windows[flag]) for slot in lc.slots],
                                   axis=1)
            low, width = bank.state.lo[s.rows[flag]], bank.state.scale[s.rows[flag]]
        for f, j in enumerate(flag):
            i = int(target[j])
            out.evidence[i] = [
                Evidence(
                    level=spec.level,
                    channel=spec.channel,
                    encoder=name,
                    pattern=int(keys[j, col, TRI]),
                    count=int(counts[j, col, TRI, 0]),
                    probability=float(p_ctx[j, col]),
                    surprise=float(surprise[j, col]),
                    stream=spec.kind,
                    field=bank.fields[spec.channel] if spec.channel >= 0 else "",
                    dilation=spec.dilation,
                    vocab=spec.vocab,
                    codes=(int(codes[f, col, 0]), int(codes[f, col, 1]), int(codes[f, col, 2])),
                    context_count=int(counts[j, col, TRICTX, 0]),
                    value_range=(None if spec.channel < 0 else
                                 (float(low[f, spec.channel]),
                                  float(low[f, spec.channel] + width[f, spec.channel]))),
                )
                for col, spec, name in lc.serving_specs()
            ]
            if has_labels[j]:
                out.explanation[i] = explain(
                    counts[j][cols], p_uni[j][cols], keys[j][cols], cfg.posterior_beta, TRI
                )

"""The streaming worker's core, independent of the Kafka client: Kafka records in, anomaly and
dead-letter records out, counts committed to the pattern store with the offsets they came from.

One detector per partition of the events topic. Sources are the message key, so a source lives
in one partition and its per-source state and counts move with the partition between workers:
each partition's detector has its own state snapshot in the store (``detector/state/kafka:
<topic>:<partition>``) and shares the pattern counts (additive upserts, so workers can write
concurrently). The labels topic must be co-partitioned with the events topic (same partition
count, same key), so a source's labels reach the detector that scored its events.

Exactly-once counting: a partition's store commit writes its count deltas, its snapshot and its
positions (``kafka:<topic>:<partition>`` = next offset to process) in one transaction. Records
below a committed position are skipped (they are in the counts already); the Kafka consumer is
moved to the committed positions whenever partitions are assigned, so Kafka's own offsets are
only a hint. Outputs (anomalies, dead letters) are sent before the commit that covers them: after
a crash they can be sent again (with the same ``origin``, so readers can drop repeats), counts
never twice.
"""

from __future__ import annotations

import base64
import bisect
import collections
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from neurogate.engine import snapshot
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector, write_and_release
from neurogate.engine.events import (
    BadEvent,
    Event,
    EventBatch,
    decoded_events,
    event_from_dict,
    event_to_dict,
    load_message,
    object_columns,
)
from neurogate.engine.labels import labels_from_json
from neurogate.engine.stores import DelegatingStore, PatternStore, PositionsMoved, StoreStats
from neurogate.stream.metrics import Metrics, store_families
from neurogate.stream.settings import WorkerSettings

__all__ = ["CommitThread", "Fenced", "Output", "ParsedEvents", "PartitionState", "PartitionView",
           "PendingCommit", "Processor", "Record", "RecordTuple", "parse_events"]

log = logging.getLogger("neurogate.worker")
ENGINE_BATCH = 2048  # events per detector call: the fastest in bench runs (windows stay in cache)


@dataclass(slots=True)
class Record:
    """One consumed Kafka message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = math.nan  # seconds since the epoch (the message's Kafka timestamp)

    def as_tuple(self) -> RecordTuple:
        return self.topic, self.partition, self.offset, self.key, self.value, self.timestamp


# parsed event messages: (their indexes in the batch's records, their good events, each event's
# array index in its message -- or None: one event per message, index 0)
Parsed = tuple[list[int], "EventBatch | list[Event]", "list[int] | None"]
# a bad event message or item: (record index, reason, error, array index or None, its raw text)
Bad = tuple[int, str, str, "int | None", bytes]
RecordTuple = tuple[str, int, int, "bytes | None", "bytes | None", float]


@dataclass
class ParsedEvents:
    """A batch's event messages parsed (``parse_events``): each partition's good events in
    offset order, and the bad messages and items (dead letters once their record is taken)."""

    parts: dict[int, list[Parsed]] = field(default_factory=dict)
    bad: list[Bad] = field(default_factory=list)


def parse_events(records: Sequence[RecordTuple], events_topic: str, max_bytes: int
                 ) -> ParsedEvents:
    """Parse the event messages of a batch of records (pure: the worker runs it on the faust
    side, beside the engine process, which then only scores). A run of one-event messages
    becomes one batch of columns when every event is plain (``object_columns``); any other
    message is parsed alone (``decoded_events``)."""
    by_part: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        if r[0] == events_topic:
            by_part.setdefault(r[1], []).append(i)
    out = ParsedEvents()
    for p, idxs in by_part.items():
        out.parts[p] = list(_parsed(records, idxs, max_bytes, out.bad))
    return out


def _parsed(records: Sequence[RecordTuple], idxs: list[int], max_bytes: int, bad: list[Bad]
            ) -> Iterator[Parsed]:
    """One partition's messages (record indexes ``idxs``), in order."""
    run: list[tuple[int, dict[str, Any]]] = []
    for i in idxs:
        key, value = records[i][3], records[i][4] or b""
        try:
            obj = load_message(value, max_bytes)
        except BadEvent as e:
            bad.append((i, e.reason, e.message, None, value))
            continue
        if type(obj) is dict:
            if obj.get("source") is None:
                key_source = _key_text(key)
                if key_source is not None:
                    obj["source"] = key_source  # the message key is the default source
            run.append((i, obj))
            if len(run) >= ENGINE_BATCH:
                yield from _singles(records, run, bad)
                run = []
            continue
        if run:
            yield from _singles(records, run, bad)
            run = []
        errors: list[BadEvent] = []
        try:
            got = decoded_events(obj, default_source=_key_text(key), errors=errors)
        except BadEvent as e:
            bad.append((i, e.reason, e.message, None, value))
            continue
        bad.extend((i, b.reason, b.message, b.index, _item(value, b.index)) for b in errors)
        if len(got):
            yield [i], got, _good_indexes(len(got), errors)
    if run:
        yield from _singles(records, run, bad)


def _singles(records: Sequence[RecordTuple], run: list[tuple[int, dict[str, Any]]],
             bad: list[Bad]) -> Iterator[Parsed]:
    """One-event messages in a row: one batch of columns if every event is plain, else each
    checked alone (its error dead-letters its message)."""
    batch = object_columns([obj for _, obj in run])
    if batch is not None:
        yield [i for i, _ in run], batch, None
        return
    for i, obj in run:
        try:
            event = event_from_dict(obj)
        except BadEvent as e:
            bad.append((i, e.reason, e.message, None, records[i][4] or b""))
            continue
        yield [i], [event], [0]


@dataclass
class Output:
    """What one ``Processor.process`` call produced, by record index of its input."""

    anomalies: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # processed: ack after their commit
    acks: list[int] = field(default_factory=list)  # already committed: ack now
    ignored: list[int] = field(default_factory=list)  # partition not assigned: never ack
    events: int = 0
    due: bool = False  # a partition should commit now
    finished: list[tuple[int, str | None]] = field(default_factory=list)  # commits written


class PartitionView(DelegatingStore):
    """One partition's window on the shared store: shared counts, positions and encoder
    artifacts, its own detector state snapshot. Writes go to ``writer`` (the commit thread's
    own store client; stores are not shared between threads)."""

    def __init__(self, store: PatternStore, name: str, size: Callable[[], int],
                 writer: PatternStore | None = None) -> None:
        super().__init__(store)
        self.writer = writer if writer is not None else store
        self.url = f"{store.url}#{name}"
        self.meta_name = f"{snapshot.META_NAME}/{name}"
        self._size = size
        self.fetched = 0

    def _name(self, name: str) -> str:
        return self.meta_name if name == snapshot.META_NAME else name

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        self.fetched += int(np.size(keys))
        return self.backend.fetch(keys)

    def apply(self, keys: np.ndarray, deltas: np.ndarray,
              positions: Mapping[str, int] | None = None,
              meta: Mapping[str, bytes] | None = None, *,
              new: np.ndarray | None = None,
              expect: Mapping[str, int | None] | None = None) -> None:
        renamed = {self._name(k): v for k, v in (meta or {}).items()}
        self.writer.apply(keys, deltas, positions, renamed, new=new, expect=expect)

    def size(self) -> int:
        return self._size()

    def put_meta(self, name: str, value: bytes) -> None:
        self.backend.put_meta(self._name(name), value)

    def get_meta(self, name: str) -> bytes | None:
        return self.backend.get_meta(self._name(name))


@dataclass
class PartitionState:
    """A partition's detector and where it stands in each topic."""

    partition: int
    detector: Detector
    view: PartitionView
    next: dict[str, int]  # topic -> next offset to process
    committed: dict[str, int]  # topic -> position in the store
    prepared: dict[str, int] = field(default_factory=dict)  # positions of the last commit made
    dirty: int = 0  # events and labels processed since the last commit
    since: float = 0.0  # monotonic time of the first uncommitted record
    model_version: str = ""


class Fenced(RuntimeError):
    """A commit found the partition's positions moved by another worker."""


@dataclass
class PendingCommit:
    """One partition's commit, detached from its detector: ``apply`` writes it in one store
    transaction (from any thread, but one commit of a partition after the other)."""

    state: PartitionState
    keys: np.ndarray
    deltas: np.ndarray
    positions: dict[str, int]  # store position names -> next offsets
    next: dict[str, int]  # topic -> next offset, what ``state.committed`` becomes
    snapshot: bytes
    metrics: Metrics
    expected: dict[str, int | None] = field(default_factory=dict)  # positions before it
    seq: int = 0  # the detector's number of this write (``Detector.committed``)

    def apply(self) -> None:
        """Write the commit, unless the store's positions are not the ones this worker left:
        then another worker owns the partition now (this one lost its group membership), and
        committing would count events twice (``Fenced``)."""
        t0 = time.perf_counter()
        view = self.state.view
        try:
            write_and_release(view, self.keys, self.deltas, self.positions,
                              {snapshot.META_NAME: self.snapshot}, expect=self.expected)
        except Exception as exc:
            self.metrics.store_errors.labels("commit").inc()
            if isinstance(exc, PositionsMoved):
                raise Fenced(f"partition {self.state.partition} was committed by another "
                             f"worker; not committing: {exc}") from exc
            raise
        self.metrics.commit_seconds.observe(time.perf_counter() - t0)
        self.metrics.last_commit.set(time.time())
        self.state.committed = self.next
        self.state.detector.committed(self.seq)


class CommitThread:
    """Writes ``PendingCommit``s in order in its own thread and reports each as ``(partition,
    None)`` or ``(partition, error)``; after an error it writes nothing more (the caller stops).
    ``submit`` blocks while more than ``limit`` commits wait, which bounds their memory."""

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._queue: queue.Queue[PendingCommit] = queue.Queue()
        self._done: collections.deque[tuple[int, str | None]] = collections.deque()
        self._failed = False
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None

    def submit(self, commits: Sequence[PendingCommit]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="neurogate-commit",
                                            daemon=True)
            self._thread.start()
        for pc in commits:
            self._queue.put(pc)
        while self._queue.qsize() > self.limit and not self._failed:
            time.sleep(0.005)

    def _run(self) -> None:
        while True:
            pc = self._queue.get()
            try:
                if self._failed:
                    continue
                self.busy_since = time.monotonic()
                try:
                    pc.apply()
                    self._done.append((pc.state.partition, None))
                except Exception as exc:
                    self._failed = True
                    log.error("commit of partition %d failed: %s", pc.state.partition, exc)
                    self._done.append((pc.state.partition, f"{type(exc).__name__}: {exc}"))
                finally:
                    self.busy_since = None
            finally:
                self._queue.task_done()

    def finished(self) -> list[tuple[int, str | None]]:
        """Commits written (or failed) since the last call, in order."""
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def drain(self) -> list[tuple[int, str | None]]:
        """Wait until every submitted commit is written; then ``finished``."""
        self._queue.join()
        return self.finished()


class Processor:
    """Parses, scores, learns and commits, partition by partition; see the module docstring.

    Not thread-safe: the caller runs every method in one thread (the worker's engine thread),
    except ``PendingCommit.apply``, which writes through ``commit_store`` (default: ``store``;
    give a second client of the same store to commit from another thread).
    """

    def __init__(self, config: EngineConfig, settings: WorkerSettings, store: PatternStore,
                 metrics: Metrics | None = None,
                 commit_store: PatternStore | None = None) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.commit_store = commit_store if commit_store is not None else store
        self.metrics = metrics if metrics is not None else Metrics(
            source_names=settings.metrics_source_names)
        self.parts: dict[int, PartitionState] = {}
        self.active: set[int] = set()
        self.topics = tuple(t for t in (settings.events_topic, settings.labels_topic) if t)
        # the engine's label_memory is the worker's budget, shared by the partitions it may own
        self.label_capacity = (max(1000, config.label_memory // settings.partitions)
                               if settings.labels_topic and config.label_memory else 0)
        # likewise the pattern-key bound (engine max_patterns)
        self.pattern_capacity = max(1000, config.max_patterns // settings.partitions)
        self.store_size: int | None = None
        self.committer = CommitThread(limit=2 * settings.partitions)
        self._fetched_closed = 0  # keys fetched by detectors that were dropped since
        self._evicted_closed = 0  # keys evicted by them
        self._highwaters: dict[tuple[str, int], int] = {}  # partition ends, from the consumer
        self.metrics.on_scrape(self._families)

    # -- assignment ----------------------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> tuple[set[int], dict[tuple[str, int], int]]:
        """Own exactly ``partitions`` of the events topic (and the same labels partitions).

        A detector is kept only if the store still holds what it last committed (nobody else
        owned the partition meanwhile) and it has no uncommitted work; otherwise it is rebuilt
        from the store. Returns the partitions rebuilt (their uncommitted records must be
        redelivered) and the committed positions ``{(topic, partition): offset}`` the Kafka
        consumer must continue from.
        """
        wanted = set(partitions)
        for p in list(self.parts):
            if p not in wanted:
                self._drop(p)
        stored = self.store.positions() if wanted else {}
        size: list[int] = []

        def store_size() -> int:  # read once per assignment, only if a detector asks
            if not size:
                size.append(self.store.size())
            return size[0]

        rebuilt: set[int] = set()
        for p in sorted(wanted):
            committed = {t: stored[k] for t in self.topics
                         if (k := self.settings.position_key(t, p)) in stored}
            st = self.parts.get(p)
            if st is not None and (st.dirty or st.committed != committed):
                log.warning("partition %d: state differs from the store (another worker owned "
                            "it, or uncommitted work); reloading it from the store", p)
                self._drop(p)
                st = None
            if st is None:
                self.parts[p] = self._open(p, committed, store_size)
                rebuilt.add(p)
        self.active = wanted
        self.metrics.partitions.set(len(wanted))
        positions = {(t, p): off for p in sorted(wanted)
                     for t, off in self.parts[p].committed.items()}
        return rebuilt, positions

    def release(self, partitions: Iterable[int] | None = None) -> None:
        """Stop processing ``partitions`` (all if None), after committing everything: their next
        owner starts from the store. Their detectors stay in memory in case they come back."""
        self.commit(force=True)
        self.active -= set(self.active if partitions is None else partitions)
        self.metrics.partitions.set(len(self.active))

    def _open(self, p: int, committed: dict[str, int],
              store_size: Callable[[], int]) -> PartitionState:
        name = self.settings.position_key(self.settings.events_topic, p)
        view = PartitionView(self.store, name, store_size, self.commit_store)
        det = Detector(self.config, view, flush_every=None,
                       preload_limit=self.settings.preload_limit,
                       label_memory=self.label_capacity, max_patterns=self.pattern_capacity)
        return PartitionState(p, det, view, dict(committed), dict(committed), dict(committed),
                              model_version=det.model_version())

    def _drop(self, p: int) -> None:
        st = self.parts.pop(p)
        self._fetched_closed += st.view.fetched
        self._evicted_closed += st.detector.evicted

    # -- processing ----------------------------------------------------------------------------

    def process(self, records: Sequence[Record],
                highwaters: Mapping[tuple[str, int], int] | None = None,
                parsed: ParsedEvents | None = None) -> Output:
        """Score and learn the events, apply the labels, collect the outputs (see ``Output``).
        ``highwaters`` (partition ends, where the consumer knows them) feed the lag metric;
        ``parsed``: the event messages already parsed (``parse_events``; their values may then
        be None), else they are parsed here."""
        t0 = time.perf_counter()
        if highwaters is not None:
            self._highwaters = dict(highwaters)
        if parsed is None:
            parsed = parse_events([r.as_tuple() for r in records], self.settings.events_topic,
                                  self.settings.max_message_bytes)
        out = Output()
        now = time.time()
        taken, labels, stamps = self._admit(records, out)
        for i, reason, error, index, raw in parsed.bad:
            if i in taken:
                self._dead(out, records[i], reason, error, index, raw)
        for p, entries in parsed.parts.items():
            if p in self.active and p in self.parts:
                out.events += self._score(self.parts[p], records, _taken(entries, taken), out)
        for p, recs in labels.items():
            self._learn(self.parts[p], recs, out)
        m = self.metrics
        if stamps:
            lat = now - np.array(stamps)
            m.latency.observe_many(lat[np.isfinite(lat)].clip(min=0.0))
        out.due = self.due()
        out.finished = self.committer.finished()
        m.batch_seconds.observe(time.perf_counter() - t0)
        return out

    def _admit(self, records: Sequence[Record], out: Output
               ) -> tuple[set[int], dict[int, list[Record]], list[float]]:
        """Which records are processed now: of assigned partitions, not already counted
        (``Output.pending``; the others are ``ignored`` or ``acks``). Moves the positions;
        returns the event records' indexes, the label records by partition, and the
        processed records' Kafka timestamps."""
        taken: set[int] = set()
        labels: dict[int, list[Record]] = {}
        consumed: dict[str, int] = {}
        skipped: dict[str, int] = {}
        stamps: list[float] = []
        for i, r in enumerate(records):
            consumed[r.topic] = consumed.get(r.topic, 0) + 1
            st = self.parts.get(r.partition) if r.partition in self.active else None
            if st is None:
                out.ignored.append(i)
                skipped["not_assigned"] = skipped.get("not_assigned", 0) + 1
                continue
            nxt = st.next.get(r.topic)
            if nxt is not None and r.offset < nxt:
                out.acks.append(i)
                skipped["already_counted"] = skipped.get("already_counted", 0) + 1
                continue
            if nxt is not None and r.offset > nxt:
                self.metrics.gaps.inc()
                log.warning("%s[%d]: offsets %d..%d are missing from the log (retention or "
                            "compaction?); continuing at %d", r.topic, r.partition, nxt,
                            r.offset - 1, r.offset)
            st.next[r.topic] = r.offset + 1
            if not st.dirty:
                st.since = time.monotonic()
            st.dirty += 1
            out.pending.append(i)
            stamps.append(r.timestamp)
            if r.topic == self.settings.events_topic:
                taken.add(i)
            else:
                labels.setdefault(r.partition, []).append(r)
        for topic, n in consumed.items():
            self.metrics.messages.labels(topic).inc(n)
        for reason, n in skipped.items():
            self.metrics.skipped.labels(reason).inc(n)
        return taken, labels, stamps

    def _score(self, st: PartitionState, records: Sequence[Record], entries: Iterable[Parsed],
               out: Output) -> int:
        """Run a partition's parsed events through its detector in chunks of whole messages,
        about ``ENGINE_BATCH`` events each."""
        chunk: list[Parsed] = []
        size = total = 0
        for entry in entries:
            chunk.append(entry)
            size += len(entry[1])
            if size >= ENGINE_BATCH:
                total += self._detect(st, records, chunk, out)
                chunk, size = [], 0
        if chunk:
            total += self._detect(st, records, chunk, out)
        if total:
            self.metrics.batch_events.observe(total)
        return total

    def _detect(self, st: PartitionState, records: Sequence[Record], chunk: list[Parsed],
                out: Output) -> int:
        """Score and learn one chunk of a partition's messages (their good events, with each
        event's array index in its message); collect rejections and flags."""
        batch = EventBatch.concat(b for _, b, _ in chunk)
        starts = np.cumsum([0] + [len(b) for _, b, _ in chunk[:-1]]).tolist()

        def origin(i: int) -> tuple[Record, int]:  # event i -> its message and array index
            m = bisect.bisect_right(starts, i) - 1
            idxs, _, good = chunk[m]
            j = i - starts[m]
            return (records[idxs[0]], good[j]) if good is not None else (records[idxs[j]], 0)

        res = st.detector.process_many(batch)
        st.model_version = res.model_version
        for i, reason in res.reasons.items():
            r, k = origin(i)
            self._dead(out, r, reason, f"item {k}: rejected by the detector: {reason}", k,
                       orjson.dumps(event_to_dict(batch[i])))
        for i in np.flatnonzero(res.flagged).tolist():
            r, k = origin(i)
            rec = res.result(i).as_dict()
            rec["origin"] = {"topic": r.topic, "partition": r.partition, "offset": r.offset,
                             "index": k}
            out.anomalies.append((batch.sources[i].encode(), orjson.dumps(rec)))
        self.metrics.count_events(batch.sources, res.status, res.flagged, res.score,
                                  res.escalated)
        return len(batch)

    def _learn(self, st: PartitionState, recs: list[Record], out: Output) -> None:
        got = []
        for r in recs:
            errors: list[BadEvent] = []
            try:
                got.extend(labels_from_json(r.value or b"",
                                            max_bytes=self.settings.max_message_bytes,
                                            default_source=_key_text(r.key), errors=errors))
            except BadEvent as e:
                self._dead(out, r, e.reason, e.message, None, r.value or b"")
                continue
            for bad in errors:
                self._dead(out, r, bad.reason, bad.message, bad.index, _item(r.value, bad.index))
        if got:
            for outcome, n in st.detector.learn_labels(got).items():
                self.metrics.labels.labels(outcome).inc(n)

    def _dead(self, out: Output, r: Record, reason: str, message: str, index: int | None,
              raw: bytes) -> None:
        """A dead-letter record: ``{"reason", "topic", "partition", "offset", "index",
        "error", "raw" | "raw_base64", "truncated"}``, keyed like the original."""
        limit = self.settings.deadletter_raw_bytes
        cut = raw[:limit]
        rec: dict[str, Any] = {"reason": reason, "topic": r.topic, "partition": r.partition,
                               "offset": r.offset, "index": index, "error": message[:1000]}
        try:
            rec["raw"] = cut.decode("utf-8")
        except UnicodeDecodeError:
            rec["raw_base64"] = base64.b64encode(cut).decode("ascii")
        rec["truncated"] = len(raw) > limit
        out.deadletters.append((r.key, orjson.dumps(rec)))
        self.metrics.deadletters.labels(reason).inc()

    # -- commits -------------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether a partition has waited ``commit_interval`` or gathered ``commit_events``."""
        return any(self._due(st, time.monotonic()) for st in self.parts.values())

    def _due(self, st: PartitionState, now: float) -> bool:
        s = self.settings
        return bool(st.dirty) and (st.dirty >= s.commit_events
                                   or now - st.since >= s.commit_interval)

    def prepare_commit(self, force: bool = False) -> list[PendingCommit]:
        """Detach the commits of the partitions that are due (all with uncommitted work if
        ``force``): their count deltas, positions and state snapshot, taken together so that
        processing can go on while ``PendingCommit.apply`` writes them (in order)."""
        out = []
        now = time.monotonic()
        for p, st in self.parts.items():
            if not st.dirty or not (force or self._due(st, now)):
                continue
            name = self.settings.position_key
            positions = {name(t, p): off for t, off in st.next.items()}
            expected = {name(t, p): st.prepared.get(t) for t in st.next}
            keys, deltas, blob, seq = st.detector.detach_flush()
            out.append(PendingCommit(st, keys, deltas, positions, dict(st.next), blob,
                                     self.metrics, expected, seq))
            st.prepared = dict(st.next)
            st.dirty = 0
        return out

    def commit(self, force: bool = False) -> list[int]:
        """Commit the due partitions now: counts, positions and state in one store transaction
        each. Returns the partitions committed."""
        done = []
        for pc in self.prepare_commit(force):
            pc.apply()
            done.append(pc.state.partition)
        return done

    def start_commit(self, force: bool = False) -> list[int]:
        """Detach the due commits (all if ``force``) and hand them to the commit thread; returns
        their partitions. ``finished`` (also in every ``Output``) reports them written."""
        commits = self.prepare_commit(force)
        self.committer.submit(commits)
        return [pc.state.partition for pc in commits]

    def tick(self) -> tuple[list[tuple[int, str | None]], bool]:
        """Commits written since the last call, and whether a partition is due."""
        return self.committer.finished(), self.due()

    def drain(self) -> list[tuple[int, str | None]]:
        """Wait for the commit thread; the commits written since the last report."""
        return self.committer.drain()

    def close(self) -> None:
        """Commit everything; the stores stay open (the caller owns them)."""
        self.committer.drain()
        self.commit(force=True)

    # -- observability -------------------------------------------------------------------------

    def refresh_store_size(self) -> None:
        """Read the store's key count for ``neurogate_store_patterns`` (can be slow: a timer
        calls it every ``store_stats_interval`` from its own thread; ``size`` only reads
        PostgreSQL, whose client is a thread-safe pool)."""
        try:
            self.store_size = self.store.size()
        except Exception as exc:  # a metric must never take the worker down
            self.metrics.store_errors.labels("stats").inc()
            log.warning("could not read the store size: %s", exc)

    def status(self) -> dict[str, Any]:
        """Partitions, positions and encoders, for /ready and logs."""
        parts = dict(self.parts)
        return {
            "partitions": sorted(self.active),
            "positions": {str(p): dict(st.next) for p, st in sorted(parts.items())
                          if p in self.active},
            "uncommitted": sum(st.dirty for st in parts.values()),
            "commit_busy_seconds": (None if self.committer.busy_since is None else
                                    round(time.monotonic() - self.committer.busy_since, 1)),
            "encoders": sorted({st.model_version for st in parts.values()}),
        }

    def _families(self) -> list[Any]:
        parts = list(self.parts.values())
        stats: dict[str, int] = {}
        clients = [self.store] if self.commit_store is self.store else [self.store,
                                                                        self.commit_store]
        for store in clients:
            layer: PatternStore | None = store
            while layer is not None:  # CachedStore -> its PostgresStore backend
                if isinstance(layer, StoreStats):
                    for name, value in dict(layer.stats).items():
                        stats[name] = stats.get(name, 0) + value
                layer = layer.backend if isinstance(layer, DelegatingStore) else None
        encoders: dict[str, int] = {}
        for st in parts:
            if st.partition in self.active:
                encoders[st.model_version] = encoders.get(st.model_version, 0) + 1
        return store_families(
            stats, cached=sum(len(st.detector.cache) for st in parts),
            store_size=self.store_size,
            fetched=self._fetched_closed + sum(st.view.fetched for st in parts),
            lag=self.lag(), encoders=encoders,
            limit=sum(st.detector.max_patterns for st in parts),
            evicted=self._evicted_closed + sum(st.detector.evicted for st in parts),
            committed_lag=self.lag(committed=True))

    def lag(self, committed: bool = False) -> dict[tuple[str, int], int]:
        """Messages between each assigned partition's position and its end, where known: from
        the position processed, or (``committed``) from the one committed to the store (none
        for a partition that has committed nothing yet)."""
        out = {}
        for (topic, p), end in self._highwaters.items():
            st = self.parts.get(p)
            pos = None if st is None else (st.committed if committed else st.next).get(topic)
            if pos is not None and p in self.active and end is not None:
                out[(topic, p)] = max(0, end - pos)
        return out


def _key_text(key: bytes | None) -> str | None:
    """The message key as the default source, if it is printable UTF-8."""
    if not key:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _taken(entries: list[Parsed], taken: set[int]) -> Iterator[Parsed]:
    """The parsed messages whose records are processed now (not already counted): a run of
    one-event messages may be cut (after a redelivery), other entries are one message."""
    for idxs, events, items in entries:
        keep = [k for k, i in enumerate(idxs) if i in taken]
        if len(keep) == len(idxs):
            yield idxs, events, items
        elif keep:
            assert isinstance(events, EventBatch) and items is None, "one message per entry"
            yield [idxs[k] for k in keep], events.take(np.asarray(keep)), None


def _good_indexes(n_good: int, errors: list[BadEvent]) -> list[int]:
    """Array positions of the good items, given the bad ones' (items keep their order)."""
    if not errors:
        return list(range(n_good))
    bad = {e.index for e in errors}
    return [k for k in range(n_good + len(errors)) if k not in bad]


def _item(raw: bytes | None, index: int | None) -> bytes:
    """The JSON text of one array item of ``raw`` (for its dead-letter record)."""
    try:
        return json.dumps(json.loads(raw or b"")[index]).encode()
    except (ValueError, TypeError, IndexError, KeyError):
        return raw or b""

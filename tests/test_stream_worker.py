"""The worker's core without Kafka: parsing, dead letters, anomaly records, exactly-once
commits, restarts and partitions moving between processors
(``neurogate.stream.worker.Processor``)."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import Event, event_to_dict
from neurogate.engine.stores import MemoryStore, PatternStore, SQLiteStore
from neurogate.stream.settings import WorkerSettings
from neurogate.stream.worker import Fenced, ParsedEvents, Processor, Record
from tests.conftest import seasonal_stream

SETTINGS = WorkerSettings(partitions=2, store="memory://", commit_interval=60.0)
LOCAL = WorkerSettings(partitions=2, store="memory://", commit_interval=60.0,
                       engine_process=False)  # batches not packed
EVENTS = SETTINGS.events_topic


@pytest.fixture
def cfg(fast_config: EngineConfig) -> EngineConfig:
    return fast_config


def counts(store: PatternStore) -> dict[int, tuple[int, ...]]:
    out: dict[int, tuple[int, ...]] = {}
    for keys, c in store.iter_counts():
        out.update(zip(keys.tolist(), map(tuple, c.tolist()), strict=True))
    return out


def reference(cfg: EngineConfig, events: Sequence[Event]) -> tuple[dict[int, tuple[int, ...]],
                                                                  set[tuple[str, float]]]:
    store = MemoryStore()
    det = Detector(cfg, store, flush_every=None, label_memory=cfg.label_memory)
    out = det.process_many(list(events))
    det.flush()
    return counts(store), {(events[i].source, events[i].ts) for i in np.flatnonzero(out.flagged)}


def partition_of(source: str) -> int:
    return int(source[1:]) % SETTINGS.partitions


def to_records(events: Sequence[Event], per_message: int = 5,
               start: dict[int, int] | None = None) -> list[Record]:
    """Messages of ``per_message`` events of one source, partition = source number % 2."""
    offsets = dict(start or {})
    buffers: dict[str, list[Event]] = {}
    out: list[Record] = []

    def flush(source: str) -> None:
        p = partition_of(source)
        items = [event_to_dict(e) for e in buffers.pop(source)]
        off = offsets.get(p, 0)
        offsets[p] = off + 1
        out.append(Record(EVENTS, p, off, source.encode(), orjson.dumps(items), time.time()))

    for e in events:
        buffers.setdefault(e.source, []).append(e)
        if len(buffers[e.source]) == per_message:
            flush(e.source)
    for source in list(buffers):
        flush(source)
    return out


def published(outs: Sequence[object]) -> set[tuple[str, float]]:
    recs = [json.loads(v) for o in outs for _, v in o.anomalies]  # type: ignore[attr-defined]
    return {(r["source"], r["ts"]) for r in recs}


def test_anomaly_records_carry_evidence_and_origin(cfg: EngineConfig) -> None:
    events = seasonal_stream(sources=2, length=2400).events
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0, 1])
    records = to_records(events)
    out = proc.process(records)
    assert out.events == len(events) and not out.deadletters
    assert sorted(out.pending) == list(range(len(records)))
    _, want = reference(cfg, events)
    assert published([out]) == want
    key, value = out.anomalies[0]
    rec = json.loads(value)
    assert key == rec["source"].encode()
    assert rec["flagged"] and rec["score"] >= rec["threshold"] and rec["evidence"]
    assert rec["model_version"].startswith("fixed:")
    origin = rec["origin"]
    src = next(r for r in records if r.partition == origin["partition"]
               and r.offset == origin["offset"])
    assert json.loads(src.value)[origin["index"]]["ts"] == rec["ts"]
    sent = json.loads(src.value)[origin["index"]]  # the values by name, the time readable
    assert rec["values"] == {"value": sent["value"]}
    assert rec["time"] == datetime.fromtimestamp(rec["ts"], UTC).isoformat().replace(
        "+00:00", "Z")
    assert {ev["stream"] for ev in rec["evidence"]} >= {"value", "level"}


@pytest.mark.parametrize(("value", "reason", "index"), [
    (b"{not json", "bad_json", None),
    (b"\xff\x00\xfe", "bad_json", None),
    (b"[1]", "not_an_object", 0),
    (b"[]", "not_an_object", None),
    (b'"text"', "not_an_object", None),
    (b'{"ts": 1700000000, "value": 1.0, "source": ""}', "bad_type", None),
    (b'{"source": "s0", "ts": 1700000000}', "missing_field", None),
    (b'{"source": "s0", "ts": 1700000000, "value": NaN}', "non_finite", None),
    (b'{"source": "s0", "ts": 1700000000, "value": "1"}', "bad_type", None),
    (b'{"source": "s0", "ts": "yesterday", "value": 1}', "bad_timestamp", None),
    (b'{"source": "s0", "ts": 1700000000, "value": 1, "label": 2}', "bad_label", None),
    (b'{"source": "s0", "ts": 1700000000, "value": 1, "values": {"a": 1}}', "schema_mismatch",
     None),
    (b"", "bad_json", None),
])
def test_bad_records_are_dead_lettered_with_their_reason(
    cfg: EngineConfig, value: bytes, reason: str, index: int | None
) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    out = proc.process([Record(EVENTS, 0, 7, b"s0", value, time.time())])
    assert len(out.deadletters) == 1 and out.pending == [0]
    key, body = out.deadletters[0]
    dead = json.loads(body)
    assert key == b"s0"
    assert (dead["reason"], dead["topic"], dead["partition"], dead["offset"], dead["index"]) == \
        (reason, EVENTS, 0, 7, index)
    raw = dead["raw"].encode() if "raw" in dead else base64.b64decode(dead["raw_base64"])
    assert raw == (value if index is None else b"1")
    assert dead["error"] and dead["truncated"] is False


def test_good_items_of_a_partly_bad_array_are_kept(cfg: EngineConfig) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    items = [{"source": "s0", "ts": 1_700_000_000 + i, "value": float(i)} for i in range(5)]
    items[2] = {"source": "s0", "ts": "never", "value": 1.0}
    out = proc.process([Record(EVENTS, 0, 0, b"s0", orjson.dumps(items), time.time())])
    assert out.events == 4
    (dead,) = [json.loads(v) for _, v in out.deadletters]
    assert dead["index"] == 2 and json.loads(dead["raw"]) == items[2]


def test_detector_rejections_and_oversized_messages(cfg: EngineConfig) -> None:
    settings = WorkerSettings(partitions=2, store="memory://", max_message_bytes=200,
                              deadletter_raw_bytes=50)
    proc = Processor(cfg, settings, MemoryStore())
    proc.assign([0])
    first = {"source": "s0", "ts": 1_700_000_100, "value": 1.0}
    late = {"source": "s0", "ts": 1_700_000_000, "value": 1.0}
    records = [Record(EVENTS, 0, 0, b"s0", orjson.dumps([first, late])),
               Record(EVENTS, 0, 1, b"s0", b'{"source": "s0", "pad": "' + b"x" * 300 + b'"}')]
    out = proc.process(records)
    reasons = {json.loads(v)["reason"]: json.loads(v) for _, v in out.deadletters}
    assert set(reasons) == {"out_of_order", "oversized"}
    assert reasons["out_of_order"]["index"] == 1
    assert json.loads(reasons["out_of_order"]["raw"])["ts"] == late["ts"]
    assert reasons["oversized"]["truncated"] is True
    assert len(reasons["oversized"]["raw"]) == 50


def test_key_is_the_default_source(cfg: EngineConfig) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    out = proc.process([Record(EVENTS, 0, 0, b"pump-7", b'{"ts": 1700000000, "value": 1}'),
                        Record(EVENTS, 0, 1, b"\xff", b'{"ts": 1700000000, "value": 1}')])
    assert out.events == 1 and proc.parts[0].detector.status()["sources"] == 1
    assert json.loads(out.deadletters[0][1])["reason"] == "missing_field"


def test_one_event_per_message_counts_and_flags_like_one_detector(cfg: EngineConfig) -> None:
    """Runs of one-event messages are parsed as one batch of columns (stream/worker.py
    ``_singles``; partition 0, some naming no source: the key does); a run with a message that
    is not plain (ISO time) or a bad one is checked message by message (partition 1)."""
    events = seasonal_stream(sources=2, length=2400).events
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0, 1])
    records, offsets = [], {0: 0, 1: 0}
    for i, e in enumerate(events):
        item = event_to_dict(e)
        if e.source == "s1" and i % 97 == 5:
            item["ts"] = datetime.fromtimestamp(e.ts, UTC).isoformat()  # item-by-item path
        if i % 89 == 3:
            del item["source"]  # from the key
        p = partition_of(e.source)
        records.append(Record(EVENTS, p, offsets[p], e.source.encode(), orjson.dumps(item),
                              time.time()))
        offsets[p] += 1
        if e.source == "s1" and i > 700 and offsets[p] == 400:  # a bad one in a run
            records.append(Record(EVENTS, p, offsets[p], e.source.encode(),
                                  b'{"source": "s0", "ts": 1}', time.time()))
            offsets[p] += 1
    out = proc.process(records)
    assert out.events == len(events) and sorted(out.pending) == list(range(len(records)))
    assert [(json.loads(v)["reason"], json.loads(v)["index"]) for _, v in out.deadletters] == \
        [("missing_field", None)]
    proc.commit(force=True)
    proc.drain()
    want_counts, want_flags = reference(cfg, events)
    assert counts(proc.store) == want_counts
    assert published([out]) == want_flags
    assert {json.loads(v)["source"] for _, v in out.anomalies} == {"s0", "s1"}
    by_offset = {(r.partition, r.offset): json.loads(r.value or b"") for r in records}
    for _, value in out.anomalies:
        rec = json.loads(value)
        origin = rec["origin"]
        assert origin["index"] == 0
        sent = by_offset[(origin["partition"], origin["offset"])]
        ts = sent["ts"] if not isinstance(sent["ts"], str) else \
            datetime.fromisoformat(sent["ts"]).timestamp()
        assert (sent.get("source", rec["source"]), ts) == (rec["source"], rec["ts"])


def test_events_parsed_by_the_faust_side_score_as_parsed_here(cfg: EngineConfig) -> None:
    """The worker parses event messages on its faust side (``stream.app._parse``) and sends
    the engine the events and the records without their values: the outputs and counts are
    those of records parsed by the engine itself, with bad messages, bad array items, runs of
    one-event messages and a redelivery that cuts such a run."""
    from neurogate.stream.app import _parse

    events = seasonal_stream(sources=2, length=2400).events
    records = to_records(events[:1200], per_message=5)
    offsets = {p: 1 + max(r.offset for r in records if r.partition == p) for p in (0, 1)}
    for i, e in enumerate(events[1200:]):
        p = partition_of(e.source)
        value = orjson.dumps(event_to_dict(e)) if i != 300 else b'{"source": "s0"}'
        records.append(Record(EVENTS, p, offsets[p], e.source.encode(), value, time.time()))
        offsets[p] += 1
    records.append(Record(EVENTS, 0, offsets[0], b"s0", b'[{"source": "s0"}, 1]', time.time()))
    here = Processor(cfg, SETTINGS, MemoryStore())
    there = Processor(cfg, SETTINGS, MemoryStore())
    outs = []
    for proc, faust_side in ((here, False), (there, True)):
        proc.assign([0, 1])
        got = []
        for batch in (records[:1500], records[1400:]):  # a redelivery of 100 records
            if faust_side:
                _, slim, parsed = _parse(0, [r.as_tuple() for r in batch], LOCAL)
                assert isinstance(parsed, ParsedEvents)
                got.append(proc.process([Record(*r) for r in slim], parsed=parsed))
            else:
                got.append(proc.process(batch))
        proc.commit(force=True)
        proc.drain()
        outs.append(got)
    for a, b in zip(*outs, strict=True):
        assert (a.anomalies, a.deadletters, a.pending, a.acks, a.events) == \
            (b.anomalies, b.deadletters, b.pending, b.acks, b.events)
    assert [len(o.deadletters) for o in outs[0]] == [1, 2] and len(outs[0][1].acks) == 100
    assert counts(here.store) == counts(there.store)


def test_commit_writes_counts_positions_and_a_snapshot_per_partition(cfg: EngineConfig) -> None:
    events = seasonal_stream(sources=4, length=600, plant=False).events
    store = MemoryStore()
    proc = Processor(cfg, SETTINGS, store)
    proc.assign([0, 1])
    records = to_records(events)
    proc.process(records)
    assert store.positions() == {} and counts(store) == {}, "nothing before the commit"
    assert sorted(proc.commit(force=True)) == [0, 1]
    ends = {p: max(r.offset for r in records if r.partition == p) + 1 for p in (0, 1)}
    assert store.positions() == {f"kafka:{EVENTS}:{p}": end for p, end in ends.items()}
    assert store.meta_names("detector/state/") == [
        f"detector/state/kafka:{EVENTS}:0", f"detector/state/kafka:{EVENTS}:1"]
    assert counts(store) == reference(cfg, events)[0]
    assert proc.commit(force=True) == [], "nothing left to commit"


def test_redelivered_records_are_skipped_not_counted_twice(cfg: EngineConfig) -> None:
    """A restart after a commit: Kafka redelivers from an older offset; the store's positions
    say what is counted already."""
    events = seasonal_stream(sources=4, length=2400, seed=1).events
    records = to_records(events)
    store = MemoryStore()
    first = Processor(cfg, SETTINGS, store)
    first.assign([0, 1])
    half = len(records) // 2
    out1 = first.process(records[:half])
    first.commit(force=True)
    first.process(records[half : half + 20])  # processed, never committed (a crash)
    second = Processor(cfg, SETTINGS, store)
    _, positions = second.assign([0, 1])
    assert positions == {(EVENTS, p): o for p, o in
                         ((p, max(r.offset for r in records[:half] if r.partition == p) + 1)
                          for p in (0, 1))}
    out2 = second.process(records)  # everything again, from offset 0
    assert len(out2.acks) == half and len(out2.pending) == len(records) - half
    second.commit(force=True)
    want_counts, want_flags = reference(cfg, events)
    assert counts(store) == want_counts
    assert published([out1, out2]) == want_flags
    assert not published([out1]) & published([out2]), "no anomaly published twice"


@pytest.mark.slow
def test_restart_resumes_exactly_where_the_commit_left_off(cfg: EngineConfig) -> None:
    events = seasonal_stream(sources=3, length=2400).events
    records = to_records(events, per_message=7)
    store = MemoryStore()
    outs = []
    for chunk in (records[:200], records[200:650], records[650:]):
        proc = Processor(cfg, SETTINGS, store)  # a new process each time
        proc.assign([0, 1])
        outs.append(proc.process(chunk))
        proc.commit(force=True)
    want_counts, want_flags = reference(cfg, events)
    assert counts(store) == want_counts
    assert published(outs) == want_flags


def test_partitions_move_between_processors_through_the_store(cfg: EngineConfig) -> None:
    events = seasonal_stream(sources=4, length=2400, seed=2).events
    records = to_records(events)
    store = MemoryStore()  # shared, like PostgreSQL between two workers
    a, b = Processor(cfg, SETTINGS, store), Processor(cfg, SETTINGS, store)
    a.assign([0, 1])
    third = len(records) // 3
    outs = [a.process(records[:third])]
    a.release()  # rebalance: commit, stop
    assert a.assign([0]) == (set(), {(EVENTS, 0): a.parts[0].committed[EVENTS]}), \
        "a keeps partition 0's detector: the store holds what it committed"
    rebuilt, _ = b.assign([1])
    assert rebuilt == {1}
    for proc in (a, b):
        outs.append(proc.process([r for r in records[third : 2 * third]
                                  if r.partition in proc.active]))
        proc.release()
    rebuilt, _ = a.assign([0, 1])  # b leaves; a gets 1 back, which b changed meanwhile
    assert rebuilt == {1}
    outs.append(a.process(records[2 * third :]))
    a.commit(force=True)
    want_counts, want_flags = reference(cfg, events)
    assert counts(store) == want_counts
    assert published(outs) == want_flags


def test_uncommitted_work_is_dropped_on_reassignment(cfg: EngineConfig) -> None:
    events = seasonal_stream(sources=2, length=700, plant=False).events
    records = to_records(events)
    store = MemoryStore()
    proc = Processor(cfg, SETTINGS, store)
    proc.assign([0, 1])
    proc.process(records[:50])
    proc.commit(force=True)
    proc.process(records[50:80])
    rebuilt, positions = proc.assign([0, 1])  # e.g. the commit at revocation failed
    assert rebuilt == {0, 1}
    assert positions == {(EVENTS, p): store.positions()[f"kafka:{EVENTS}:{p}"] for p in (0, 1)}
    proc.process(records[50:])
    proc.commit(force=True)
    assert counts(store) == reference(cfg, events)[0]


def test_records_of_unassigned_partitions_are_ignored(cfg: EngineConfig) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    rec = Record(EVENTS, 1, 0, b"s1", b'{"source": "s1", "ts": 1700000000, "value": 1}')
    out = proc.process([rec])
    assert out.ignored == [0] and not out.pending and out.events == 0
    proc.release()
    assert proc.process([Record(EVENTS, 0, 0, b"s0", rec.value)]).ignored == [0]


def test_commit_when_due(cfg: EngineConfig) -> None:
    settings = WorkerSettings(partitions=2, store="memory://", commit_interval=0.2,
                              commit_events=10)
    proc = Processor(cfg, settings, MemoryStore())
    proc.assign([0, 1])
    one = b'{"source": "s0", "ts": 1700000000, "value": 1}'
    proc.process([Record(EVENTS, 0, 0, b"s0", one)])
    assert not proc.due() and proc.commit() == []
    time.sleep(0.25)
    assert proc.due() and proc.commit() == [0]
    many = [Record(EVENTS, 1, i, b"s1", orjson.dumps(
        {"source": "s1", "ts": 1_700_000_000 + i, "value": 1.0})) for i in range(10)]
    proc.process(many)
    assert proc.due(), "commit_events reached"


def test_offset_gap_is_counted_and_processing_goes_on(cfg: EngineConfig) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    mk = [Record(EVENTS, 0, off, b"s0", orjson.dumps(
        {"source": "s0", "ts": 1_700_000_000 + off, "value": math.sin(off)})) for off in (0, 1, 5)]
    out = proc.process(mk)
    assert out.events == 3 and proc.parts[0].next[EVENTS] == 6
    assert "neurogate_offset_gaps_total 1.0" in proc.metrics.exposition().decode()


def test_lag_from_highwaters(cfg: EngineConfig) -> None:
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    proc.process([Record(EVENTS, 0, 0, b"s0", b'{"ts": 1700000000, "value": 1}')],
                 highwaters={(EVENTS, 0): 40, (EVENTS, 1): 9})
    assert proc.lag() == {(EVENTS, 0): 39}


def test_a_worker_that_lost_its_partition_cannot_commit_it(cfg: EngineConfig) -> None:
    """Fencing: a zombie (still processing a partition another worker now owns) must not add its
    counts: its commit finds positions it did not write and fails."""
    events = seasonal_stream(sources=2, length=700, plant=False).events
    records = [r for r in to_records(events) if r.partition == 0]
    store = MemoryStore()
    zombie, owner = Processor(cfg, SETTINGS, store), Processor(cfg, SETTINGS, store)
    zombie.assign([0])
    zombie.process(records[:20])
    zombie.commit(force=True)
    owner.assign([0])  # the group moved partition 0; the zombie was not told
    owner.process(records[20:40])
    owner.commit(force=True)
    before = counts(store)
    zombie.process(records[20:40])
    with pytest.raises(Fenced, match="committed by another worker"):
        zombie.commit(force=True)
    assert counts(store) == before
    assert store.positions()[f"kafka:{EVENTS}:0"] == records[39].offset + 1



def test_a_bounded_worker_counts_and_flags_like_an_unbounded_detector(
    cfg: EngineConfig, tmp_path: Path
) -> None:
    """engine max_patterns split over 2 partitions (1,000 keys each, of ~2,400 per source):
    committed keys are evicted and read back while the commit thread writes (keys of commits
    not yet written stay), and the result is exactly the unbounded one; the metrics show the
    keys held, the limit and the evictions."""
    events = seasonal_stream(sources=4, length=700, plant=False).events
    want_counts, want_flags = reference(cfg, events)
    settings = WorkerSettings(partitions=2, store="memory://", commit_interval=60.0,
                              commit_events=100)
    path = tmp_path / "w.db"
    with SQLiteStore(path) as store, SQLiteStore(path) as writer:
        proc = Processor(cfg.replace(max_patterns=2000), settings, store, commit_store=writer)
        proc.assign([0, 1])
        records = to_records(events)
        outs = []
        for start in range(0, len(records), 40):
            outs.append(proc.process(records[start : start + 40]))
            proc.start_commit()
        proc.drain()
        proc.close()
        text = proc.metrics.exposition().decode()
        assert counts(store) == want_counts
    assert published(outs) == want_flags
    evicted = sum(st.detector.evicted for st in proc.parts.values())
    assert evicted > 0
    assert f"neurogate_patterns_evicted_total {float(evicted)}" in text
    assert "neurogate_patterns_limit 2000.0" in text
    held = sum(len(st.detector.cache) for st in proc.parts.values())
    assert held < len(want_counts)  # (the last eviction ran before the last commits)


def test_committed_lag_counts_from_the_committed_position(cfg: EngineConfig) -> None:
    """The lag gauge counts from the position processed: 0 while nothing is committed. The
    committed lag counts from the store's position: what a restart would redo."""
    proc = Processor(cfg, SETTINGS, MemoryStore())
    proc.assign([0])
    recs = [Record(EVENTS, 0, off, b"s0", orjson.dumps(
        {"source": "s0", "ts": 1_700_000_000 + off, "value": 1.0})) for off in range(10)]
    proc.process(recs[:4], highwaters={(EVENTS, 0): 10})
    proc.commit(force=True)
    proc.process(recs[4:], highwaters={(EVENTS, 0): 10})
    assert proc.lag() == {(EVENTS, 0): 0}
    assert proc.lag(committed=True) == {(EVENTS, 0): 6}
    text = proc.metrics.exposition().decode()
    assert ('neurogate_consumer_committed_lag_messages{partition="0",topic="neurogate.events"} '
            '6.0') in text
    proc.commit(force=True)
    assert proc.lag(committed=True) == {(EVENTS, 0): 0}

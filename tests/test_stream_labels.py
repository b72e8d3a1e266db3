"""Late labels (``neurogate.engine.labels``): parsing, the key memory, exact n0/n1 updates, and the
posterior they feed; and their path through the worker (labels topic -> counts)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.events import BadEvent, Event
from neurogate.engine.keys import NCOLS
from neurogate.engine.labels import (
    Label,
    LabelMemory,
    label_from_dict,
    labels_from_json,
)
from neurogate.engine.patterns import NKINDS
from neurogate.engine.stores import MemoryStore, totals
from neurogate.stream.settings import WorkerSettings
from neurogate.stream.worker import Processor, Record


def stream(n: int = 400, source: str = "s") -> list[Event]:
    return [Event(source, 1_700_000_000.0 + 60 * t, (math.sin(t / 5) + 0.05 * (t % 3),),
                  id=f"{source}-{t}") for t in range(n)]


def test_label_parsing() -> None:
    assert label_from_dict({"source": "a", "id": 7, "label": True}) == Label("a", 1, id="7")
    assert label_from_dict({"ts": "2024-01-01T00:00:00Z", "label": 0}, default_source="k") == \
        Label("k", 0, ts=1_704_067_200.0)
    for bad, reason in (({"source": "a", "label": 1}, "missing_field"),
                        ({"source": "a", "id": "x"}, "missing_field"),
                        ({"source": "a", "id": "x", "label": 3}, "bad_label"),
                        ({"source": 5, "id": "x", "label": 1}, "bad_type"),
                        ({"id": "x", "label": 1}, "missing_field"),
                        ([], "not_an_object")):
        with pytest.raises(BadEvent) as exc:
            label_from_dict(bad)
        assert exc.value.reason == reason
    errors: list[BadEvent] = []
    got = labels_from_json(b'[{"source": "a", "id": "1", "label": 1}, {"source": "a"}]',
                           errors=errors)
    assert got == [Label("a", 1, id="1")] and errors[0].index == 1
    with pytest.raises(BadEvent, match="invalid JSON"):
        labels_from_json(b"{")
    with pytest.raises(BadEvent, match="empty array") as exc:
        labels_from_json(b"[]", errors=errors)
    assert exc.value.reason == "not_an_object"
    with pytest.raises(BadEvent) as exc:
        labels_from_json(b"x" * 20, max_bytes=10)
    assert exc.value.reason == "oversized"


def test_memory_keeps_the_newest_batches() -> None:
    mem = LabelMemory(capacity=10)
    keys = np.arange(1, 1 + 4 * 2 * NKINDS, dtype=np.uint64).reshape(4, 2, NKINDS)
    for b in range(4):
        evs = [Event("s", float(4 * b + i), (0.0,), id=f"e{4 * b + i}") for i in range(4)]
        mem.remember(evs, keys, np.full(4, -1, dtype=np.int8))
    assert len(mem) == 8, "whole batches go, oldest first, until at most capacity remain"
    assert mem.find(Label("s", 1, id="e7")) is None and mem.find(Label("s", 1, ts=7.0)) is None
    assert mem.find(Label("s", 1, id="e8")) is not None
    assert mem.find(Label("s", 1, ts=15.0)) is not None
    assert mem.find(Label("t", 1, id="e15")) is None, "ids are per source"
    big = LabelMemory(2)
    big.remember([Event("s", float(i), (0.0,)) for i in range(4)], keys,
                 np.full(4, -1, dtype=np.int8))
    assert len(big) == 4, "the newest batch is kept even when larger than the capacity"
    off = LabelMemory(0)
    off.remember([Event("s", 0.0, (0.0,))], keys[:1], np.array([-1], dtype=np.int8))
    assert len(off) == 0


@pytest.mark.slow
def test_memory_never_finds_the_wrong_event_and_costs_the_collector_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Names are hashes: with every name colliding (patched to one value), a lookup finds
    the right event or none, never another (only the newest event holds a name); a repeated
    (source, ts) finds the newest event;
    remembered events add no objects for the cycle collector to walk."""
    import gc

    import neurogate.engine.labels as labels_mod

    keys = np.arange(1, 1 + 3 * NKINDS, dtype=np.uint64).reshape(3, 1, NKINDS)
    none = np.full(3, -1, dtype=np.int8)
    batch = [Event("s", 1.0, (0.0,), id="a"), Event("s", 2.0, (0.0,), id="b"),
             Event("s", 2.0, (0.0,), id="c")]
    mem = LabelMemory(capacity=10)
    mem.remember(batch, keys, none)
    hit = mem.find(Label("s", 1, ts=2.0))
    assert hit is not None and hit[0].ids[hit[1]] == "c", "the newest event with that ts"
    assert mem.find(Label("s", 1, ts=-0.0)) is None and mem.find(Label("t", 1, id="a")) is None

    small = LabelMemory(capacity=2)
    small.remember([Event("s", 5.0, (0.0,), id="old")], keys[:1], none[:1])
    for k in range(3):  # many small batches; the first is evicted after a newer (s, 5.0)
        small.remember([Event("s", 5.0 if k == 0 else 10.0 + k, (0.0,), id=f"n{k}")],
                       keys[:1], none[:1])
        if k == 1:
            hit = small.find(Label("s", 1, ts=5.0))
            assert hit is not None and hit[0].ids[hit[1]] == "n0", "evicting 'old' kept it"
    hit = small.find(Label("s", 1, ts=5.0))
    assert len(small) == 2 and hit is None, "both (s, 5.0) events are evicted by now"
    small.remember([Event("s", 5.0, (0.0,), id="new")], keys[:1], none[:1])
    small.remember([Event("s", 20.0, (0.0,))], keys[:1], none[:1])
    hit = small.find(Label("s", 1, ts=5.0))
    assert hit is not None and hit[0].ids[hit[1]] == "new"

    monkeypatch.setattr(labels_mod, "_names", lambda a, b: np.zeros(a.size, dtype=np.uint64))
    clash = LabelMemory(capacity=10)
    clash.remember(batch, keys, none)
    clash.remember([Event("s", 9.0, (0.0,), id="z")], keys[:1], none[:1])
    for lab, want in [(Label("s", 1, id="a"), None), (Label("s", 1, ts=1.0), None),
                      (Label("s", 1, id="c"), None), (Label("s", 1, ts=9.0), "z"),
                      (Label("s", 1, id="z"), "z")]:
        hit = clash.find(lab)
        assert (None if hit is None else hit[0].ids[hit[1]]) == want, lab
    monkeypatch.undo()

    big = LabelMemory(capacity=100_000)
    many = [Event(f"s{i % 7}", float(i), (0.0,), id=str(i)) for i in range(20_000)]
    wide = np.zeros((20_000, 1, NKINDS), dtype=np.uint64)
    gc.collect()
    before = len(gc.get_objects())
    for k in range(0, 20_000, 4000):
        big.remember(many[k : k + 4000], wide[k : k + 4000], np.full(4000, -1, np.int8))
    assert len(gc.get_objects()) - before < 100, "per batch, not per event"
    hit = big.find(Label(f"s{12345 % 7}", 1, id="12345"))
    assert hit is not None and hit[0].ts[hit[1]] == 12345.0


def test_outcomes_and_exact_count_changes(fast_config: EngineConfig) -> None:
    store = MemoryStore()
    det = Detector(fast_config, store, flush_every=None, label_memory=fast_config.label_memory)
    events = stream()
    det.process_many(events[:300])
    det.process_many(events[300:])
    det.flush()
    before = totals(store)
    row = det.label_memory.find(Label("s", 1, id="s-350"))
    assert row is not None
    keys = row[0].keys[row[1]]
    per_event = keys.size
    out = det.learn_labels([Label("s", 1, id="s-350"), Label("s", 1, ts=events[351].ts),
                            Label("s", 1, id="s-350"), Label("s", 0, id="s-10"),
                            Label("nobody", 1, id="x")])
    assert dict(out) == {"applied": 2, "duplicate": 1, "unmatched": 2}, \
        "s-10 was a warm-up event: counted at replay, never scored, so unknown"
    assert det.cache.get(keys)[:, 2].min() >= 1
    det.flush()
    after = totals(store)
    assert (after - before).tolist() == [0, 0, 2 * per_event]
    out = det.learn_labels([Label("s", 0, id="s-350")])  # a correction: 1 -> 0
    assert dict(out) == {"corrected": 1}
    det.flush()
    assert (totals(store) - after).tolist() == [0, per_event, -per_event]
    assert store.fetch(keys)[:, 1:].min() >= 0


def test_events_labelled_at_scoring_are_not_labelled_twice(fast_config: EngineConfig) -> None:
    det = Detector(fast_config, None, flush_every=None, label_memory=fast_config.label_memory)
    events = stream(300)
    events[250] = Event("s", events[250].ts, events[250].values, id="s-250", label=1)
    det.process_many(events)
    assert dict(det.learn_labels([Label("s", 1, id="s-250")])) == {"duplicate": 1}
    assert dict(det.learn_labels([Label("s", 0, id="s-250")])) == {"corrected": 1}


def test_late_labels_feed_the_posterior(fast_config: EngineConfig) -> None:
    """Without labels there is no posterior; after late labels of both classes, scored events
    get one and flagged events get the explanation line."""
    cfg = fast_config.replace(threshold=0.5)
    det = Detector(cfg, None, flush_every=None, label_memory=cfg.label_memory)
    events = stream(1200)
    out = det.process_many(events[:800])
    assert np.isnan(out.posterior).all()
    labels = [Label("s", int(out.flagged[i]), id=events[i].id) for i in range(100, 800)]
    assert det.learn_labels(labels)["applied"] == 700
    later = det.process_many(events[800:])
    assert not np.isnan(later.posterior).any()
    flagged = later.flagged_results()
    assert flagged and all(r.explanation for r in flagged)
    assert "prior st(" in flagged[0].as_dict()["explanation"][0]


def test_labels_topic_reaches_the_counts(fast_config: EngineConfig) -> None:
    settings = WorkerSettings(partitions=1, store="memory://")
    store = MemoryStore()
    proc = Processor(fast_config, settings, store)
    proc.assign([0])
    ev, lab = settings.events_topic, settings.labels_topic
    records = [Record(ev, 0, i, b"s", json.dumps({"source": "s", "ts": e.ts, "value": e.values[0],
                                                  "id": e.id}).encode(), time.time())
               for i, e in enumerate(stream())]
    proc.process(records)
    proc.commit(force=True)
    before = totals(store)
    out = proc.process([Record(lab, 0, 0, b"s", b'{"id": "s-399", "label": 1}'),
                        Record(lab, 0, 1, b"s", b'[{"id": "s-398", "label": 1}, {"id": "q"}]'),
                        Record(lab, 0, 2, b"s", b"nope")])
    assert [json.loads(v)["reason"] for _, v in out.deadletters] == ["missing_field", "bad_json"]
    proc.commit(force=True)
    assert store.positions()[f"kafka:{lab}:0"] == 3
    gained = totals(store) - before
    assert gained[0] == gained[1] == 0 and gained[2] > 0 and gained[2] % 2 == 0
    text = proc.metrics.exposition().decode()
    assert 'neurogate_labels_total{outcome="applied"} 2.0' in text
    assert NCOLS == 3


def test_late_labels_need_a_label_memory(fast_config: EngineConfig) -> None:
    det = Detector(fast_config, None, flush_every=None)  # the default keeps no keys
    det.process_many(stream(300))
    assert det.label_memory is None
    with pytest.raises(ValueError, match="label_memory=N"):
        det.learn_labels([Label("s", 1, id="s-250")])


def test_memory_joins_small_batches_and_finds_every_event() -> None:
    """Batches smaller than _SEAL gather in a tail that becomes one searchable chunk: every
    event is found by id and by ts before and after that, with labels set meanwhile kept."""
    from neurogate.engine.labels import _SEAL

    n = 3 * _SEAL
    evs = [Event(f"s{i % 3}", float(i), (0.0,), id=f"e{i}") for i in range(n)]
    keys = np.arange(1, 1 + n * NKINDS, dtype=np.uint64).reshape(n, 1, NKINDS)
    mem = LabelMemory(capacity=10 * _SEAL)

    def check(i: int) -> tuple[object, int]:
        by_id = mem.find(Label(evs[i].source, 1, id=evs[i].id))
        by_ts = mem.find(Label(evs[i].source, 1, ts=evs[i].ts))
        assert by_id is not None and by_ts is not None
        assert by_id[0] is by_ts[0] and by_id[1] == by_ts[1]
        assert by_id[0].keys[by_id[1]].tolist() == keys[i].ravel().tolist()  # type: ignore[attr-defined]
        return by_id

    def add(lo: int, hi: int) -> None:  # events lo..hi-1 in batches of 7
        for k in range(lo, hi, 7):
            end = min(k + 7, hi)
            mem.remember(evs[k:end], keys[k:end], np.full(end - k, -1, np.int8))

    add(0, _SEAL - 1)
    assert not mem._sealed
    chunk, row = check(_SEAL - 2)
    chunk.labels[row] = 1  # type: ignore[attr-defined]  # as learn_labels does
    add(_SEAL - 1, n)
    assert len(mem) == n and len(mem._sealed) >= 2
    for i in (0, _SEAL - 2, _SEAL, 2 * _SEAL + 5, n - 1):
        check(i)
    chunk, row = check(_SEAL - 2)
    assert chunk.labels[row] == 1, "a label set in the tail survives the join"  # type: ignore[attr-defined]
    assert mem.find(Label("s0", 1, id="e1")) is None, "ids are per source"


def test_memory_joins_only_batches_of_one_key_width() -> None:
    """When an encoder takes over a level the key width changes; small batches on both sides
    of the change are kept apart and all found."""
    from neurogate.engine.labels import _SEAL

    mem = LabelMemory(capacity=10 * _SEAL)
    narrow = np.ones((_SEAL - 1, 1, NKINDS), dtype=np.uint64)
    wide = np.full((_SEAL - 1, 2, NKINDS), 2, dtype=np.uint64)
    evs = [Event("s", float(i), (0.0,)) for i in range(2 * _SEAL - 2)]
    none = np.full(_SEAL - 1, -1, np.int8)
    mem.remember(evs[: _SEAL - 1], narrow, none)
    mem.remember(evs[_SEAL - 1 :], wide, none)
    mem.remember([Event("s", -1.0, (0.0,))], wide[:1], none[:1])
    for ts, width in ((0.0, NKINDS), (float(_SEAL), 2 * NKINDS), (-1.0, 2 * NKINDS)):
        hit = mem.find(Label("s", 1, ts=ts))
        assert hit is not None and hit[0].keys[hit[1]].size == width

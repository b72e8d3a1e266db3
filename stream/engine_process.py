"""The worker's engine, in its own process or in a thread of the faust process.

faust spends ~120 µs of Python per consumed message on its event loop and consumer thread; the
engine needs tens of µs per event. In one process both share one interpreter lock, so a worker
uses one core (measured: 0.9 cores at ~5,000 single-event messages/s on 2 cores). ``EngineProcess``
runs the ``Processor`` (detectors, store clients, commit thread, metrics) in a spawned child
process, so faust and the engine use a core each; the faust side only moves raw records in and
output records out through a pipe. ``LocalEngine`` is the same interface in-process (for
``worker.engine_process = false``: one core, no child).

Both implement the ``Engine`` protocol below. Its call lists are the one place a call is
written: ``EngineProcess`` forwards ``PIPE_CALLS`` down its pipe and ``SIDE_CALLS`` to the child's
side thread, and the child serves them from a ``LocalEngine``, which answers the ``Processor``'s own
calls (``PROCESSOR_CALLS``) by handing them on. Records cross the pipe as tuples
``(topic, partition, offset, key, value, timestamp)``; the faust side parses the event messages
first (``parse_events``) and sends their events instead of their values.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from neurogate.engine.config import EngineConfig
from neurogate.engine.redaction import known_secrets, redact_url, redacting_logs, scrub
from neurogate.engine.stores import PatternStore, open_store
from neurogate.stream.metrics import Metrics
from neurogate.stream.settings import WorkerSettings
from neurogate.stream.worker import Output, ParsedEvents, Processor, Record, RecordTuple

__all__ = ["Engine", "EngineError", "EngineProcess", "LocalEngine", "open_stores", "pack"]

log = logging.getLogger("neurogate.worker")
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class ProcessorCalls(Protocol):
    """The engine calls a ``Processor`` answers itself (see its methods)."""

    def assign(self, partitions: Sequence[int]) -> tuple[set[int], dict[tuple[str, int], int]]:
        ...

    def release(self, partitions: Sequence[int]) -> None: ...

    def start_commit(self, force: bool) -> list[int]: ...

    def tick(self) -> tuple[list[tuple[int, str | None]], bool]: ...

    def drain(self) -> list[tuple[int, str | None]]: ...


class EngineCalls(ProcessorCalls, Protocol):
    """The calls that go down the proxy's pipe, one at a time in the engine thread."""

    def process(self, records: Sequence[RecordTuple],
                highwaters: Mapping[tuple[str, int], int] | None = None,
                parsed: ParsedEvents | None = None) -> Output:
        """Score a batch (see ``Processor.process``; ``highwaters`` None: unchanged; ``parsed``
        its event messages, parsed by the caller, whose values may then be None)."""
        ...

    def process_packed(self, batch: bytes,
                       highwaters: Mapping[tuple[str, int], int] | None = None) -> Output:
        """``process`` of ``pack(records, parsed)``: the faust side pickles a batch in its
        parse thread, so the engine does not wait while it is pickled (~95 ms per 200k
        events, 5-10 % of the engine's time)."""
        ...

    def refresh_store_size(self) -> None:
        """Start a count of the store's keys (returns at once)."""
        ...

    def set_ready(self, ready: bool) -> None: ...


class EngineSide(Protocol):
    """The calls a scrape makes: the child serves them from a second thread, so they do not
    wait for a batch."""

    def status(self) -> dict[str, Any]:
        """Partitions, positions, encoders and the store, for /ready."""
        ...

    def exposition(self) -> bytes:
        """The /metrics text."""
        ...


class Engine(EngineCalls, EngineSide, Protocol):
    """What the faust process holds: ``LocalEngine`` or ``EngineProcess``."""

    url: str

    @property
    def alive(self) -> bool: ...

    def close(self, commit: bool = True) -> None:
        """Commit everything (unless ``commit`` is false) and release the store clients."""
        ...


def pack(records: Sequence[RecordTuple], parsed: ParsedEvents) -> bytes:
    """A batch for ``process_packed``."""
    return pickle.dumps((records, parsed), protocol=pickle.HIGHEST_PROTOCOL)


def _calls(protocol: type) -> frozenset[str]:
    """The method names a protocol declares (with its bases')."""
    return frozenset(name for name in dir(protocol) if not name.startswith("_"))


PROCESSOR_CALLS = _calls(ProcessorCalls)
PIPE_CALLS = _calls(EngineCalls)
SIDE_CALLS = _calls(EngineSide)
# the Processor must answer its calls as the protocol spells them (a static check)
_PROCESSOR: type[ProcessorCalls] = Processor


class EngineError(RuntimeError):
    """The engine failed (its message says where); the worker must stop without committing."""


def open_stores(settings: WorkerSettings, metrics: Metrics,
                factory: Callable[[str], PatternStore] = open_store,
                give_up: Callable[[], bool] = lambda: False) -> tuple[PatternStore, PatternStore]:
    """Two clients of the configured store (engine thread and commit thread: clients are not
    thread-safe, and two clients behave like two workers, which the store is built for),
    retrying while it is unreachable; ``memory://`` has one client for both."""
    delay = 1.0
    while True:
        try:
            store = factory(settings.store)
            if settings.store.startswith("memory://"):
                return store, store
            try:
                return store, factory(settings.store)
            except BaseException:
                store.close()
                raise
        except (ValueError, FileNotFoundError):  # a bad URL: retrying cannot help
            raise
        except Exception as exc:
            metrics.store_errors.labels("open").inc()
            if give_up():
                raise
            log.warning("store %s unavailable (%s); retrying in %.0f s",
                        redact_url(settings.store), exc, delay)
            time.sleep(delay)
            delay = min(30.0, delay * 2)


class LocalEngine:
    """The engine in the calling process (its methods run in the caller's engine thread)."""

    def __init__(self, config: EngineConfig, settings: WorkerSettings,
                 give_up: Callable[[], bool] = lambda: False) -> None:
        """``give_up``: stop waiting for an unreachable store (and raise its error)."""
        self.metrics = Metrics(source_names=settings.metrics_source_names)
        store, writer = open_stores(settings, self.metrics, give_up=give_up)
        self.proc = Processor(config, settings, store, self.metrics, commit_store=writer)
        self.url = store.url
        self._counting: threading.Thread | None = None

    def process(self, records: Sequence[RecordTuple],
                highwaters: Mapping[tuple[str, int], int] | None = None,
                parsed: ParsedEvents | None = None) -> Output:
        return self.proc.process([Record(*r) for r in records], highwaters, parsed)

    def process_packed(self, batch: bytes,
                       highwaters: Mapping[tuple[str, int], int] | None = None) -> Output:
        records, parsed = pickle.loads(batch)  # noqa: S301  (our own faust process packed it)
        return self.process(records, highwaters, parsed)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``PROCESSOR_CALLS``, answered by the ``Processor``."""
        if name in PROCESSOR_CALLS:
            call: Callable[..., Any] = getattr(self.proc, name)
            return call
        raise AttributeError(name)

    def status(self) -> dict[str, Any]:
        return {**self.proc.status(), "store": self.url}

    def refresh_store_size(self) -> None:
        """Start a count of the store's keys in a thread (a large table takes a while; the
        engine goes on)."""
        if self._counting is None or not self._counting.is_alive():
            self._counting = threading.Thread(target=self.proc.refresh_store_size,
                                              name="neurogate-store-size", daemon=True)
            self._counting.start()

    def set_ready(self, ready: bool) -> None:
        self.metrics.ready.set(int(ready))

    def exposition(self) -> bytes:
        return self.metrics.exposition()

    def close(self, commit: bool = True) -> None:
        """Commit everything (unless ``commit`` is false) and close the store clients."""
        if commit:
            self.proc.close()
        for store in {id(s): s for s in (self.proc.store, self.proc.commit_store)}.values():
            store.close()

    @property
    def alive(self) -> bool:
        return True


class EngineProcess:
    """The engine in a spawned child process; see the module docstring.

    Calls are blocking and serialised (one pipe); ``exposition`` and ``status`` use a second
    pipe served by a thread of the child, so a scrape does not wait for a batch. If the parent
    dies, the child sees its pipe close and exits without committing.
    """

    def __init__(self, config: EngineConfig, settings: WorkerSettings,
                 start_timeout: float = 300.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._side, side_child = ctx.Pipe()
        level = logging.getLogger().getEffectiveLevel()
        self._proc = ctx.Process(target=_child_main, name="neurogate-engine", daemon=True,
                                 args=(child, side_child, config, settings, level))
        self._proc.start()
        child.close()
        side_child.close()
        self._lock = threading.Lock()
        self._side_lock = threading.Lock()
        if not self._conn.poll(start_timeout):
            self._proc.kill()
            raise EngineError(f"the engine process did not start within {start_timeout:.0f} s")
        self._unwrap(self._recv())
        self.url = str(self.call("url"))

    def _recv(self) -> Any:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise EngineError(f"the engine process exited (code {self._proc.exitcode})") \
                from None

    @staticmethod
    def _unwrap(reply: tuple[bool, Any]) -> Any:
        ok, value = reply
        if not ok:
            raise EngineError(value)
        return value

    def call(self, name: str, *args: Any) -> Any:
        """Call ``name`` in the child and wait for its answer (``EngineError`` if it failed)."""
        with self._lock:
            try:
                self._conn.send((name, args))
            except (BrokenPipeError, OSError):
                raise EngineError(f"the engine process exited (code {self._proc.exitcode})") \
                    from None
            return self._unwrap(self._recv())

    def _side_call(self, name: str) -> Any:
        with self._side_lock:
            try:
                self._side.send(name)
                return self._side.recv()
            except (EOFError, OSError):
                raise EngineError("the engine process exited") from None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """The engine's calls: ``PIPE_CALLS`` down the pipe, ``SIDE_CALLS`` to the side thread
        (typed by the ``Engine`` protocol the caller holds; what comes back is unpickled)."""
        if name in PIPE_CALLS:
            return functools.partial(self.call, name)
        if name in SIDE_CALLS:
            return functools.partial(self._side_call, name)
        raise AttributeError(name)

    def close(self, commit: bool = True) -> None:
        """Commit everything (unless ``commit`` is false) and stop the child."""
        try:
            if self._proc.is_alive():
                self.call("close", commit)
        except EngineError as exc:
            log.warning("engine process: %s", exc)
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()


def _child_main(conn: Any, side: Any, config: EngineConfig, settings: WorkerSettings,
                level: int) -> None:
    """The child: open the stores, then serve calls until ``close`` or the parent goes away;
    its log records and the errors it reports are scrubbed of the store's secrets."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    with redacting_logs(known_secrets([settings.store], os.environ)) as secrets:
        _serve(conn, side, config, settings, secrets)


def _serve(conn: Any, side: Any, config: EngineConfig, settings: WorkerSettings,
           secrets: frozenset[str]) -> None:
    try:
        from neurogate.engine.extras import set_torch_threads

        set_torch_threads(settings.torch_threads)
        parent = os.getppid()  # a worker killed while the store is down: stop retrying
        engine = LocalEngine(config, settings, give_up=lambda: os.getppid() != parent)
        # what is loaded by now (torch, numba, the stores) lives as long as the process: keep
        # it out of the cycle collector's full passes, which otherwise walk it again and again
        gc.freeze()
    except Exception as exc:
        log.exception("the engine process could not start")
        conn.send((False, scrub(f"starting the engine: {type(exc).__name__}: {exc}", secrets)))
        return
    conn.send((True, None))

    def serve_side() -> None:
        while True:
            try:
                what = side.recv()
            except (EOFError, OSError):
                return
            try:
                side.send(getattr(engine, what)() if what in SIDE_CALLS else None)
            except (EOFError, OSError):
                return

    threading.Thread(target=serve_side, name="neurogate-metrics", daemon=True).start()
    calls: dict[str, Callable[..., Any]] = {name: getattr(engine, name) for name in PIPE_CALLS}
    calls["url"] = lambda: engine.url
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):  # the faust process is gone: stop, commit nothing
            log.warning("the worker process went away; the engine stops without committing")
            os._exit(0)
        if name == "close":
            try:
                engine.close(commit=bool(args[0]))
                conn.send((True, None))
            except Exception as exc:
                log.exception("closing the engine failed")
                conn.send((False, scrub(f"closing: {type(exc).__name__}: {exc}", secrets)))
            return
        try:
            result = calls[name](*args)
        except Exception as exc:
            log.exception("engine call %s failed", name)
            conn.send((False, scrub(f"{name}: {type(exc).__name__}: {exc}", secrets)))
            continue
        conn.send((True, result))

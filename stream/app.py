"""The faust app: the events and labels topics consumed a Kafka fetch at a time, the engine in
a worker thread, outputs to the anomalies and dead-letter topics, ``/metrics``, ``/healthz``
and ``/ready`` on the faust web server.

Run it with ``neurogate worker`` (or ``faust -A neurogate.stream.app worker -l info``, configured by
``NEUROGATE_CONFIG`` and ``NEUROGATE_*`` variables; only ``neurogate worker`` exits with 70 after
a fatal error). ``neurogate.stream.worker.Processor`` does the work, in its own process by default
(``neurogate.stream.engine_process``); this module only connects it to faust:

* each Kafka fetch goes to the engine whole: faust's consumer fetches, seeks and rebalances,
  but its per-message machinery (an event, a stream step and an acknowledgement per message:
  ~60 µs of CPU per message, which capped one event per message at ~10k events/s) is
  bypassed. Fetches queue while the engine scores (two at most); the next batch is all that
  queued, up to ``batch_size`` messages, and its event messages are parsed here, in a thread
  (``parse_events``: 15 % of the engine's time when it parsed them), while the engine scores
  the batch before; the engine gets the events and records without their values;
* a partition's Kafka offsets are committed by the worker itself, only after the store commit
  that covers its messages, so they never pass uncommitted counts (the store's positions are
  the authority; one thread for the engine, off the event loop);
* a commit is detached from the detectors by the engine and written by its commit thread (its
  own store client) while processing goes on; before that, every anomaly and dead-letter
  record sent so far is awaited (delivered);
* on revocation every partition is committed first; on assignment the consumer's committed
  offsets are set to the store's positions before faust seeks to them (the store is the
  authority, which also repairs faust committing past unprocessed messages, faust#312/#596);
* a fetch from before a rebalance is dropped (its partitions restart from the store's
  positions); faust's per-message monitor is off, its stall warnings are fed per fetch, and
  its hard-coded 1.5 s fetch wait is ``worker.fetch_max_wait``;
* a store or producer failure that outlives its retries stops the worker (exit code 70)
  without committing: a restart resumes from the last commit and counts nothing twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import faust
from faust.transport.consumer import Consumer
from faust.types import TP

from neurogate.engine.config import EngineConfig
from neurogate.engine.redaction import known_secrets, scrub
from neurogate.stream.engine_process import (
    Engine,
    EngineError,
    EngineProcess,
    LocalEngine,
    pack,
)
from neurogate.stream.kafka_security import aiokafka_credentials
from neurogate.stream.settings import WorkerSettings
from neurogate.stream.worker import ParsedEvents, RecordTuple, parse_events

__all__ = ["Runtime", "create_app"]

log = logging.getLogger("neurogate.worker")
T = TypeVar("T")
# consumer generation, records, their events (packed for an engine process: ``pack``)
Batch = tuple[int, list[RecordTuple], "ParsedEvents | bytes"]
_EXPOSITION_TYPE = "text/plain; version=0.0.4"  # aiohttp adds the charset itself
_NOT_RUNNING = (b"# the engine is not running\n# HELP neurogate_ready 1 when the worker is ready "
                b"(see /ready)\n# TYPE neurogate_ready gauge\nneurogate_ready 0.0\n")


class Runtime:
    """The worker's state next to the faust app: the engine (a child process or a local
    thread), unacknowledged events per partition, sends awaiting delivery, health."""

    def __init__(self, app: faust.App, config: EngineConfig, settings: WorkerSettings) -> None:
        self.app = app
        self.config = config
        self.settings = settings
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="neurogate-engine-calls")
        self.engine: Engine | None = None
        # next Kafka offset per (topic, partition), by engine partition: processed, not yet
        # in a store commit / in store commits being written
        self.pending: dict[int, dict[TP, int]] = {}
        self.awaiting: dict[int, collections.deque[dict[TP, int]]] = {}
        # Kafka fetches waiting for the engine, with the consumer generation they came in: two
        # at most (max_poll_records messages each), so the consumer waits while the engine works
        self.fetches: asyncio.Queue[tuple[int, list[RecordTuple]]] = asyncio.Queue(maxsize=2)
        # one parsed batch waits for the engine while it scores the one before
        self.parsed: asyncio.Queue[Batch] = asyncio.Queue(maxsize=1)
        self.parse_pool = ThreadPoolExecutor(1, thread_name_prefix="neurogate-parse")
        self.sends: list[Any] = []
        self.committing: asyncio.Future[None] | None = None  # a due commit under way
        self.busy_since: float | None = None
        self.assigned_once = False
        self.closed = False
        self.fatal: BaseException | None = None
        self.anomalies: Any = None  # faust topics, set by create_app
        self.deadletter: Any = None
        self._lock: asyncio.Lock | None = None
        self._starting: asyncio.Lock | None = None
        self.secrets = known_secrets([settings.store], os.environ)  # kept out of /healthz

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call in the engine-call thread, timing it for /healthz."""
        self.busy_since = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.busy_since = None

    async def ensure_engine(self) -> Engine:
        """Start the engine (it opens the store, waiting while it is unreachable)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.engine is None:
                kind: Callable[..., Engine] = (EngineProcess if self.settings.engine_process
                                               else LocalEngine)
                try:
                    engine = await self.run(kind, self.config, self.settings)
                except Exception as exc:
                    await self.die(exc, "starting the engine")
                    raise
                log.info("engine ready (%s), store %s",
                         "own process" if self.settings.engine_process else "in-process",
                         engine.url)
                self.engine = engine
            return self.engine

    def _highwaters(self) -> dict[tuple[str, int], int]:
        consumer = self.app.consumer
        out = {}
        for tp in consumer.assignment():
            try:
                hw = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            if hw is not None:
                out[(tp.topic, tp.partition)] = hw
        return out

    # -- batches -----------------------------------------------------------------------------

    async def fetched(self, generation: int, records: list[RecordTuple]) -> None:
        """The consumer's hand-off: one fetch's records (waits while two are queued)."""
        await self.fetches.put((generation, records))

    async def handle_fetches(self) -> None:
        """Two stages, until cancelled: the queued fetches become batches (all that queued, of
        one consumer generation, in slices of at most ``batch_size`` messages) whose event
        messages are parsed in the parse thread, while the engine scores the batch before."""
        await asyncio.gather(self._parse_fetches(), self._handle_batches())

    async def _parse_fetches(self) -> None:
        queue, parsed, size = self.fetches, self.parsed, self.settings.batch_size
        loop = asyncio.get_running_loop()
        while True:
            generation, records = await queue.get()
            while not queue.empty() and len(records) < size:
                if queue._queue[0][0] != generation:  # type: ignore[attr-defined]
                    break  # (asyncio.Queue has no peek)
                records = records + queue.get_nowait()[1]
            for start in range(0, len(records), size):
                try:
                    batch = await loop.run_in_executor(
                        self.parse_pool, _parse, generation, records[start:start + size],
                        self.settings)
                except Exception as exc:  # parsing reports bad input as dead letters: a bug
                    await self.die(exc, "parsing a batch")
                    continue
                await parsed.put(batch)

    async def _handle_batches(self) -> None:
        while True:
            generation, records, events = await self.parsed.get()
            try:
                await self.handle(generation, records, events)
            except Exception as exc:  # handle reports its own failures; this is a bug
                await self.die(exc, "handling a batch")

    async def handle(self, generation: int, records: list[RecordTuple],
                     events: ParsedEvents | bytes) -> None:
        """Process one batch of records fetched in consumer ``generation``, their event
        messages parsed (``_parse``)."""
        async with self.lock:
            if self.closed or self.fatal is not None:
                return
            if generation != self.app.consumer_generation_id:
                # fetched before a rebalance: the partitions (if still ours) restart from the
                # store's positions, where the consumer was moved
                log.debug("dropped %d messages fetched before a rebalance", len(records))
                return
            engine = await self.ensure_engine()
            try:
                if isinstance(events, bytes):
                    out = await self.run(engine.process_packed, events, self._highwaters())
                else:
                    out = await self.run(engine.process, records, self._highwaters(), events)
            except Exception as exc:
                await self.die(exc, f"processing a batch of {len(records)} messages "
                               f"({_span(records)})")
                return
            try:
                for key, value in out.anomalies:
                    self.sends.append(await self.anomalies.send(key=key, value=value))
                for key, value in out.deadletters:
                    self.sends.append(await self.deadletter.send(key=key, value=value))
            except Exception as exc:
                await self.die(exc, "sending anomaly/dead-letter records")
                return
            for i in out.pending:
                topic, partition, offset = records[i][:3]
                nexts = self.pending.setdefault(partition, {})
                tp = TP(topic, partition)
                if offset >= nexts.get(tp, 0):
                    nexts[tp] = offset + 1
            await self._finished(out.finished)
            if out.due and self.committing is None:
                self.committing = asyncio.ensure_future(self._due_commit())

    async def _due_commit(self) -> None:
        """A due commit, beside the batches: the sends so far are delivered first without the
        lock (a broker round trip, which held every batch back: one event per message at
        1,000 events/s, commits took 15-47 ms under the lock), then, under it, any sent since
        and the commit's start (``_commit``)."""
        try:
            try:  # (they stay in self.sends: a forced commit meanwhile awaits them too)
                await asyncio.gather(*list(self.sends))
            except Exception as exc:
                await self.die(exc, "delivering anomaly/dead-letter records")
                return
            async with self.lock:
                if not self.closed and self.fatal is None:
                    await self._commit(force=False)
        finally:
            self.committing = None

    async def tick(self) -> None:
        """Timer: acknowledge written commits and start due ones (also when input is idle)."""
        if self.engine is None or self.closed or self.fatal is not None or self.lock.locked():
            return  # a batch is running: it does this itself
        async with self.lock:
            if self.closed or self.fatal is not None:
                return
            try:
                finished, due = await self.run(self.engine.tick)
            except Exception as exc:
                await self.die(exc, "polling the engine")
                return
            await self._finished(finished)
        if due and self.committing is None:
            self.committing = asyncio.ensure_future(self._due_commit())

    async def _commit(self, *, force: bool) -> None:
        """Deliver the sends so far, then let the engine detach the due partitions' commits
        (all if ``force``) and write them in its commit thread while processing goes on;
        ``force`` waits until they are written. Caller holds the lock."""
        assert self.engine is not None
        try:
            if self.sends:
                sends, self.sends = self.sends, []
                await asyncio.gather(*sends)
            started = await self.run(self.engine.start_commit, force)
            for p in started:
                self.awaiting.setdefault(p, collections.deque()).append(self.pending.pop(p, {}))
            if force:
                await self._finished(await self.run(self.engine.drain))
        except Exception as exc:
            await self.die(exc, "committing to the store")

    async def _finished(self, finished: list[tuple[int, str | None]]) -> None:
        """Commit the Kafka offsets the store commits the engine has written cover. A failed
        Kafka commit is only logged: the store's positions are the authority (an assignment
        moves the consumer to them)."""
        offsets: dict[TP, int] = {}
        for p, error in finished:
            if error is not None:
                await self.die(EngineError(error), f"committing partition {p} to the store")
                return
            offsets.update(self.awaiting[p].popleft())
        if offsets:
            consumer = self.app.consumer
            assert isinstance(consumer, Consumer), type(consumer)
            try:
                committed = await consumer._commit(offsets)  # faust's public one: acked only
            except Exception as exc:
                committed = False
                log.debug("Kafka offset commit failed: %s", exc)
            if not committed:
                log.warning("could not commit Kafka offsets %s (the store has them: a restart "
                            "resumes there)", {f"{t.topic}:{t.partition}": o
                                               for t, o in sorted(offsets.items())})

    # -- rebalancing and shutdown --------------------------------------------------------------

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Commit everything and stop processing the revoked partitions."""
        parts = {tp.partition for tp in revoked if tp.topic == self.settings.events_topic}
        async with self.lock:
            if self.engine is None or self.fatal is not None or self.closed:
                return
            await self._commit(force=True)
            if self.fatal is None:
                try:
                    await self.run(self.engine.release, sorted(parts))
                except Exception as exc:
                    await self.die(exc, "releasing partitions")
        log.info("partitions revoked: %s", sorted(parts))

    async def on_rebalance_complete(self) -> None:
        """Take the new assignment and move the consumer to the store's positions (faust seeks
        to the committed offsets right after this signal)."""
        consumer = self.app.consumer
        assignment = set(consumer.assignment())
        parts = {tp.partition for tp in assignment if tp.topic == self.settings.events_topic}
        async with self.lock:
            if self.fatal is not None or self.closed:
                return
            engine = await self.ensure_engine()
            try:
                rebuilt, positions = await self.run(engine.assign, sorted(parts))
            except Exception as exc:
                await self.die(exc, "reading the store for a new assignment")
                return
            for p in rebuilt:
                self.pending.pop(p, None)  # redelivered from the committed position
            offsets = {TP(t, p): off for (t, p), off in positions.items()
                       if TP(t, p) in assignment}
            if offsets:
                # faust's public commit only commits acknowledged offsets; its transport
                # consumer's private one sets them
                assert isinstance(consumer, Consumer), type(consumer)
                await consumer._commit(offsets)
            if not self.assigned_once:
                self.assigned_once = True
                await self.run(engine.set_ready, True)
        log.info("partitions assigned: %s (resuming at %s)", sorted(parts),
                 {f"{tp.topic}:{tp.partition}": o for tp, o in sorted(offsets.items())})

    async def on_shutdown(self) -> None:
        """Graceful stop: commit everything processed (unless a fatal error made it unsafe)."""
        async with self.lock:
            if self.engine is not None and self.fatal is None and not self.closed:
                await self._commit(force=True)
            self.closed = True
            if self.engine is not None:
                await self.run(self.engine.close, self.fatal is None)
        self.pool.shutdown(wait=False)
        self.parse_pool.shutdown(wait=False)

    async def die(self, exc: BaseException, what: str) -> None:
        """Stop the worker without committing: its in-memory state may be half-updated. It
        stops ``fatal_exit_delay`` seconds later: meanwhile it processes nothing, /healthz
        fails and /metrics shows the error counters to the next scrape."""
        if self.fatal is None:
            self.fatal = exc
            delay = self.settings.fatal_exit_delay
            log.critical("fatal error while %s: %s: %s; stopping without committing in %g s (a "
                         "restart resumes from the last commit)", what, type(exc).__name__, exc,
                         delay, exc_info=not isinstance(exc, EngineError))
            asyncio.get_running_loop().call_later(delay, os.kill, os.getpid(), signal.SIGTERM)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        """Liveness: fails after a fatal error, when the engine process is gone, or when one
        engine call exceeds ``stall_timeout``."""
        if self.fatal is not None:
            error = scrub(f"{type(self.fatal).__name__}: {self.fatal}", self.secrets)
            return 503, {"status": "failed", "error": error[:500]}
        if self.engine is not None and not self.engine.alive and not self.closed:
            return 503, {"status": "failed", "error": "the engine process exited"}
        busy = self.busy_since
        if busy is not None and time.monotonic() - busy > self.settings.stall_timeout:
            return 503, {"status": "stalled", "busy_seconds": round(time.monotonic() - busy, 1)}
        return 200, {"status": "ok"}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """Ready once the engine has opened the store and the first assignment is taken."""
        code, body = self.health()
        ready = code == 200 and self.engine is not None and self.assigned_once and not self.closed
        body = {"ready": ready, **body}
        if self.engine is not None and self.engine.alive and not self.closed:
            try:
                body.update(self.engine.status())
            except EngineError as exc:
                body["error"] = scrub(str(exc), self.secrets)
        return (200 if ready else 503), body

    def exposition(self) -> bytes:
        """/metrics: the engine's metrics (all of the worker's metrics live there); while the
        engine is not running (starting, waiting for its store, or gone), not ready."""
        if self.engine is None or self.closed or not self.engine.alive:
            return _NOT_RUNNING
        return self.engine.exposition()


def _parse(generation: int, records: list[RecordTuple], settings: WorkerSettings) -> Batch:
    """A batch for the engine: its event messages parsed (``parse_events``), and their values
    left out of the records the engine gets, except where a dead letter quotes them; packed
    for an engine process."""
    events = parse_events(records, settings.events_topic, settings.max_message_bytes)
    quoted = {bad[0] for bad in events.bad}
    topic = settings.events_topic
    slim = [r if r[0] != topic or i in quoted else (r[0], r[1], r[2], r[3], None, r[5])
            for i, r in enumerate(records)]
    return generation, slim, pack(slim, events) if settings.engine_process else events


def _span(records: list[tuple[Any, ...]]) -> str:
    """Partitions and offset ranges of a batch, for error messages."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset, *_ in records:
        ranges.setdefault((topic, partition), []).append(offset)
    return ", ".join(f"{t}[{p}] {min(o)}..{max(o)}" for (t, p), o in sorted(ranges.items()))


class _App(faust.App):
    """``faust.App`` whose Kafka consumer hands each fetch to ``deliver`` (the worker's
    ``Runtime.fetched``) and waits at most ``fetch_max_wait_ms`` for data.

    faust hard-codes 1.5 s. A broker answers a fetch as soon as data is there, so the wait
    only matters for sparse input or brokers that hold fetches (the Kafka-protocol test broker
    does): there it bounds the latency a quiet partition adds.
    """

    fetch_max_wait_ms = 1500
    deliver: Callable[[int, list[RecordTuple]], Coroutine[Any, Any, None]]

    def _new_transport(self) -> Any:
        return _transport()(self.conf.broker_consumer, self)


def _transport() -> type:
    """faust's aiokafka transport with ``_App.fetch_max_wait_ms`` applied to its consumer."""
    from faust.transport.drivers import aiokafka as driver

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", 1500)
            return consumer

    class WaitingConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
            """Hand each fetch to the worker whole (``_App.deliver``) instead of yielding its
            messages one at a time to faust's streams (an event, a stream step and an
            acknowledgement per message: ~60 µs of CPU each). As faust's: only active
            partitions, and while the flow is stopped (a rebalance) nothing, but a seek back
            to the committed offsets."""
            records, active = await self._wait_next_records(timeout)
            if not records or self.should_stop:
                return
            if not self.flow_active:
                try:
                    await self.perform_seek()
                except Exception as exc:
                    log.warning("seek to the committed offsets failed: %s", exc)
                return
            generation = self.app.consumer_generation_id
            inbound = self.app.monitor.stream_inbound_time
            now = time.monotonic()
            rows: list[RecordTuple] = []
            for tp, batch in records.items():
                if active is None or tp in active or tp in self._buffered_partitions:
                    inbound[tp] = now  # what faust's stall warnings read
                    rows += [(r.topic, r.partition, r.offset, r.key, r.value,
                              math.nan if r.timestamp is None else r.timestamp / 1000.0)
                             for r in batch]
            if rows:
                assert isinstance(self.app, _App), type(self.app)
                await self.app.deliver(generation, rows)
            return
            yield  # an async generator, as faust's: it iterates what this yields (nothing)

    class Transport(driver.Transport):
        Consumer = WaitingConsumer

    return Transport


def create_app(config: EngineConfig, settings: WorkerSettings) -> faust.App:
    """The faust app for these settings; ``app.neurogate`` is its ``Runtime``."""
    s = settings
    app = _App(
        s.group,
        broker=";".join(f"kafka://{server.strip()}" for server in s.bootstrap.split(",")),
        broker_credentials=aiokafka_credentials(s),
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        topic_disable_leader=True,
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=s.heartbeat_interval,
        broker_max_poll_records=s.max_poll_records,
        producer_acks=-1,
        producer_max_request_size=max(1_048_576, 2 * s.deadletter_raw_bytes + 65_536),
        web_enabled=s.web_enabled,
        web_bind=s.web_host,
        web_port=s.web_port,
        # only our pages: faust's /router and /table would show the cluster and table contents
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        datadir=os.path.join(tempfile.gettempdir(), f"neurogate-faust-{os.getuid()}"),
    )
    app.fetch_max_wait_ms = int(s.fetch_max_wait * 1000)
    rt = Runtime(app, config, s)
    app.neurogate = rt  # type: ignore[attr-defined]
    inputs = [t for t in (s.events_topic, s.labels_topic) if t]
    source = app.topic(*inputs)
    rt.anomalies = app.topic(s.anomalies_topic)
    rt.deadletter = app.topic(s.deadletter_topic)

    @app.task
    async def start_engine() -> None:  # while faust joins the group
        await rt.ensure_engine()

    @app.agent(source, name="neurogate.score", concurrency=1)
    async def score(stream: Any) -> None:
        # subscribes the consumer to the topics; the fetches bypass it (``getmany`` above)
        async for _event in stream:
            raise AssertionError("a message reached faust's stream")

    app.deliver = rt.fetched

    @app.task
    async def handle_fetches() -> None:
        await rt.handle_fetches()

    @app.timer(interval=s.commit_interval, name="neurogate.commit")
    async def commit_timer() -> None:
        await rt.tick()

    if s.store_stats_interval > 0:
        @app.timer(interval=s.store_stats_interval, name="neurogate.store_stats")
        async def store_stats() -> None:
            if rt.engine is not None and rt.fatal is None and not rt.closed:
                await rt.run(rt.engine.refresh_store_size)  # returns at once: a thread counts

    # mode's SignalHandlerT matches no function, not even one with its exact signature
    # (mypy 1.x), hence the ignores
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(_sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await rt.on_revoked(revoked)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(_sender: Any, **kwargs: Any) -> None:
        await rt.on_rebalance_complete()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(_sender: Any, **kwargs: Any) -> None:
        await rt.on_shutdown()

    @app.page("/metrics")
    async def metrics_page(web: Any, _request: Any) -> Any:
        return web.bytes(await asyncio.to_thread(rt.exposition), content_type=_EXPOSITION_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, _request: Any) -> Any:
        code, body = rt.health()
        return web.json(body, status=code)

    @app.page("/ready")
    async def ready(web: Any, _request: Any) -> Any:
        code, body = await asyncio.to_thread(rt.readiness)
        return web.json(body, status=code)

    return app


_app: faust.App | None = None


def __getattr__(name: str) -> Any:
    """``neurogate.stream.app.app``, built on first use from ``NEUROGATE_CONFIG`` and the
    environment (what ``faust -A neurogate.stream.app worker`` loads)."""
    global _app
    if name == "app":
        if _app is None:
            from neurogate.cli.config import load_settings

            _app = create_app(*load_settings())
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

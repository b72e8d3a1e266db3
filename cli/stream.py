"""Streaming commands: ``worker`` (the Kafka worker), ``produce`` and ``replay`` (send events),
``topics`` (create/list), ``tail`` (read anomalies or dead letters back).

``register(sub)`` adds them to the ``neurogate`` command;
``python -m neurogate.cli.stream ...`` runs them on their own. Settings come from
``--config`` (``[engine]`` and ``[worker]`` tables, default ``$NEUROGATE_CONFIG``),
``NEUROGATE_*`` variables and ``--set key=value`` (``worker.``-prefixed keys are worker
settings); flags like ``--bootstrap`` override them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from neurogate.cli.argtypes import positive_int
from neurogate.cli.boundary import (
    EXIT_FAILURE,
    EXIT_FATAL,
    EXIT_OK,
    Parser,
    UserError,
    main_of,
    print_error,
    user_errors,
)
from neurogate.cli.config import load_settings
from neurogate.cli.options import (
    add_config_options,
    add_input_options,
    add_quiet,
    add_store,
    open_inputs,
    progress,
)
from neurogate.engine.redaction import redact_url
from neurogate.stream.settings import WorkerSettings

if TYPE_CHECKING:  # numpy: not loaded to start the command line (bench/startup.py)
    from neurogate.engine.events import Event

# user errors of these commands besides UserError: Kafka and the network
KAFKA_ERRORS = ("neurogate.stream.kafka_tools.KafkaToolError", "kafka.errors.KafkaError",
                "OSError")
_FLAGS = {"bootstrap": "bootstrap", "store": "store", "group": "group", "web_port": "web_port",
          "log_level": "log_level"}


# -- registration --------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``worker``, ``produce``, ``replay``, ``topics`` and ``tail``."""
    _register_worker(sub)
    _register_produce(sub)
    _register_replay(sub)
    _register_topics(sub)
    _register_tail(sub)


def _kafka_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` and ``--bootstrap``."""
    add_config_options(p, worker=True)
    p.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")


def _sending_options(p: argparse.ArgumentParser) -> None:
    """How ``produce`` and ``replay`` send: batching, rate, late labels, progress."""
    p.add_argument("--per-message", type=positive_int, default=1, metavar="N",
                   help="events of one source per message (a JSON array when N > 1)")
    p.add_argument("--rate", type=_positive_float, metavar="EVENTS_PER_S",
                   help="send at most this many events per second")
    p.add_argument("--late-labels", type=_nonnegative_int, metavar="N",
                   help="strip labels from the events and send them to the labels topic "
                   "N events later")
    add_quiet(p)


def _register_worker(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    w = sub.add_parser("worker", help="run the Kafka streaming worker (PostgreSQL + Redis store)")
    _kafka_options(w)
    add_store(w, help="pattern store URL, e.g. redis+postgresql://user@host/db "
              "(default: worker.store)")
    w.add_argument("--group", help="consumer group (workers of one group share partitions)")
    w.add_argument("--web-port", type=int, help="port of /metrics, /healthz and /ready")
    w.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="log level (default: worker.log_level, info)")
    w.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for Kafka and the store at start-up (default 120)")
    w.add_argument("--no-preflight", action="store_true",
                   help="skip the start-up check of topics and store")
    w.set_defaults(func=cmd_worker)


def _register_produce(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pr = sub.add_parser("produce", help="send events from CSV/JSONL files to the events topic")
    pr.add_argument("files", nargs="+", help="CSV/TSV/JSONL files ('-' = JSONL on stdin)")
    _kafka_options(pr)
    add_input_options(pr)
    _sending_options(pr)
    pr.set_defaults(func=cmd_produce)


def _register_replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rp = sub.add_parser("replay", help="replay files or the demo stream at their own pace, or "
                        "re-publish dead letters")
    rp.add_argument("files", nargs="*", help="CSV/TSV/JSONL files; none = built-in demo stream")
    _kafka_options(rp)
    add_input_options(rp)
    _sending_options(rp)
    rp.add_argument("--speed", type=_positive_float, default=None,
                    help="replay at this multiple of the timestamps' pace (e.g. 3600: an hour "
                    "per second); default: as fast as --rate allows")
    rp.add_argument("--demo-sources", type=positive_int, default=8, metavar="N",
                    help="sources of the built-in demo stream (default 8)")
    rp.add_argument("--demo-length", type=positive_int, default=5000, metavar="N",
                    help="events per source of the built-in demo stream (default 5000)")
    rp.add_argument("--seed", type=int, default=0, help="demo stream seed")
    rp.add_argument("--deadletter", action="store_true",
                    help="re-publish dead-lettered records to the topic they came from")
    rp.add_argument("--reason", action="append", default=[],
                    help="with --deadletter: only these reasons (repeatable)")
    rp.add_argument("--timeout", type=_positive_float, default=5.0,
                    help="with --deadletter: stop after this many idle seconds")
    rp.set_defaults(func=cmd_replay)


def _register_topics(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tp = sub.add_parser("topics", help="create or list the neurogate topics")
    tp.add_argument("action", choices=("create", "list"),
                    help="create the missing topics, or list them with their partitions")
    _kafka_options(tp)
    tp.add_argument("--partitions", type=positive_int,
                    help="partitions of new topics (default worker.partitions)")
    tp.add_argument("--replication", type=positive_int,
                    help="replication factor of new topics (default worker.replication)")
    tp.set_defaults(func=cmd_topics)


def _register_tail(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ta = sub.add_parser("tail", help="read anomalies (or dead letters) back from Kafka")
    _kafka_options(ta)
    ta.add_argument("--topic", default="anomalies",
                    help="anomalies, deadletter, events, labels or a topic name")
    ta.add_argument("--from-beginning", action="store_true",
                    help="read the topic from its start (default: only new messages)")
    ta.add_argument("--max", type=positive_int, help="stop after N messages")
    ta.add_argument("--timeout", type=_positive_float,
                    help="stop after this many seconds without messages (default: follow)")
    ta.add_argument("--json", action="store_true", help="print the raw JSON records")
    ta.set_defaults(func=cmd_tail)


# -- commands ------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> tuple[Any, WorkerSettings]:
    sets = list(args.set)
    for attr, key in _FLAGS.items():
        value = getattr(args, attr, None)
        if value is not None:
            sets.append(f"worker.{key}={value}")
    return load_settings(args.config, sets)


@user_errors(*KAFKA_ERRORS)
def cmd_worker(args: argparse.Namespace) -> int:
    """Start the worker; returns when it stops (70 after a fatal error)."""
    import logging

    from neurogate.stream.engine_process import LOG_FORMAT

    config, settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    if not args.no_preflight:
        _preflight(settings, args.wait)
    else:  # aiokafka, like kafka-python, waits forever for a TLS handshake a listener ignores
        from neurogate.stream.kafka_security import tls_problem

        if (problem := tls_problem(settings)) is not None:
            raise UserError(f"cannot reach Kafka at {settings.bootstrap}: {problem}")
    import faust

    from neurogate.stream.app import create_app

    if not settings.engine_process:
        from neurogate.engine.extras import set_torch_threads

        set_torch_threads(settings.torch_threads)
    app = create_app(config, settings)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False,
                          override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        code = 0
    if app.neurogate.fatal is not None:  # type: ignore[attr-defined]
        return EXIT_FATAL
    return code


def _preflight(settings: WorkerSettings, wait: float) -> None:
    """Check the topics (co-partitioning) and the store (opening it applies pending schema
    migrations), waiting up to ``wait`` seconds for either to come up."""
    import logging

    from neurogate.stream.kafka_tools import KafkaToolError, check_topics

    log = logging.getLogger("neurogate.worker")
    deadline = time.monotonic() + wait
    while True:
        try:
            parts = check_topics(settings)
            break
        except KafkaToolError as exc:
            if "co-partitioned" in str(exc) or time.monotonic() > deadline:
                raise UserError(str(exc)) from None
            log.warning("%s; retrying", exc)
            time.sleep(2.0)
    missing = [t for t, n in parts.items() if n is None]
    if missing:
        log.warning("topics %s do not exist yet; the worker creates them with %d partitions "
                    "(or run `neurogate topics create`)", missing, settings.partitions)
    from neurogate.engine.stores import open_store

    while True:
        try:
            open_store(settings.store).close()
            return
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(f"cannot open store {redact_url(settings.store)}: "
                                     f"{exc}") from None
        except Exception as exc:
            if time.monotonic() > deadline:
                raise UserError(f"store unavailable: {exc}") from None
            log.warning("store unavailable (%s); retrying", exc)
            time.sleep(2.0)


def _file_events(args: argparse.Namespace, bad: list[Any]) -> tuple[Iterator[Event], int | None]:
    """Events of the input files (bad records collected in ``bad``) and a total if known."""
    from itertools import chain

    from neurogate.cli.files import BadRecord

    readers, total = open_inputs(args)

    def good() -> Iterator[Event]:
        for item in chain.from_iterable(reader for _, reader in readers):
            if isinstance(item, BadRecord):
                bad.append(item)
            else:
                yield item

    return good(), total


def _send(args: argparse.Namespace, settings: WorkerSettings, events: Iterator[Event],
          total: int | None, speed: float | None = None) -> Any:
    from tqdm import tqdm

    from neurogate.stream.kafka_tools import make_producer, send_events

    if args.late_labels is not None and not settings.labels_topic:
        raise UserError("--late-labels needs worker.labels_topic")
    producer = make_producer(settings)
    bar = tqdm(total=total, unit="ev", disable=not progress(args), file=sys.stderr,
               smoothing=0.1)
    try:
        stats = send_events(producer, settings, events, per_message=args.per_message,
                            rate=args.rate, speed=speed, late_labels=args.late_labels,
                            progress=bar.update)
    finally:
        bar.close()
        producer.close()
    rate = stats.events / stats.seconds if stats.seconds else float("nan")
    labels = f", {stats.labels:,} labels to {settings.labels_topic}" if stats.labels else ""
    print(f"sent {stats.events:,} events in {stats.messages:,} messages to "
          f"{settings.events_topic}{labels} ({rate:,.0f} events/s)", file=sys.stderr)
    return stats


def _report_bad(bad: list[Any], sent: int) -> int:
    """List the bad input records; ``EXIT_FAILURE`` when nothing else was there to send."""
    if not bad:
        return EXIT_OK
    print(f"skipped {len(bad):,} bad input records (not sent):", file=sys.stderr)
    for b in bad[:10]:
        print(f"  {b.path}:{b.line}: {b.reason}: {b.message}", file=sys.stderr)
    if sent:
        return EXIT_OK
    print_error(f"every input record was bad ({len(bad):,}); nothing was sent")
    return EXIT_FAILURE


@user_errors(*KAFKA_ERRORS)
def cmd_produce(args: argparse.Namespace) -> int:
    _, settings = _settings(args)
    bad: list[Any] = []
    events, total = _file_events(args, bad)
    stats = _send(args, settings, events, total)
    return _report_bad(bad, stats.events)


@user_errors(*KAFKA_ERRORS)
def cmd_replay(args: argparse.Namespace) -> int:
    _, settings = _settings(args)
    if args.deadletter:
        from neurogate.stream.kafka_tools import make_producer, read_topic, send_deadletters

        producer = make_producer(settings)
        try:
            records = read_topic(settings, settings.deadletter_topic, from_beginning=True,
                                 timeout=args.timeout)
            stats = send_deadletters(producer, records,
                                     reasons=set(args.reason) or None, rate=args.rate)
        finally:
            producer.close()
        print(f"re-published {stats.messages:,} dead-lettered records "
              f"({stats.skipped:,} truncated ones skipped)", file=sys.stderr)
        return EXIT_OK
    bad: list[Any] = []
    if args.files:
        events, total = _file_events(args, bad)
    else:
        from neurogate.cli.demo import demo_events

        demo, _ = demo_events(sources=args.demo_sources, length=args.demo_length, seed=args.seed)
        events, total = iter(demo), len(demo)
    stats = _send(args, settings, events, total, speed=args.speed)
    return _report_bad(bad, stats.events)


@user_errors(*KAFKA_ERRORS)
def cmd_topics(args: argparse.Namespace) -> int:
    from neurogate.stream.kafka_tools import check_topics, create_topics

    _, settings = _settings(args)
    if args.action == "create":
        for topic, what in create_topics(settings, partitions=args.partitions,
                                         replication=args.replication).items():
            print(f"{topic:<32} {what}")
    check = check_topics(settings)  # raises when events and labels are not co-partitioned
    if args.action == "list":
        for topic, parts in check.items():
            print(f"{topic:<32} {'missing' if parts is None else f'{parts} partitions'}")
    return EXIT_OK


@user_errors(*KAFKA_ERRORS)
def cmd_tail(args: argparse.Namespace) -> int:
    from neurogate.stream.kafka_tools import read_topic

    _, settings = _settings(args)
    names = {"anomalies": settings.anomalies_topic, "deadletter": settings.deadletter_topic,
             "events": settings.events_topic, "labels": settings.labels_topic}
    topic = names.get(args.topic, args.topic)
    for msg in read_topic(settings, topic, from_beginning=args.from_beginning,
                          timeout=args.timeout, limit=args.max):
        text = msg.value.decode("utf-8", "replace") if msg.value is not None else "null"
        if args.json:
            print(text, flush=True)
            continue
        try:
            rec = json.loads(text)
        except ValueError:
            rec = None
        print(_describe(rec, text), flush=True)
    return EXIT_OK


def _describe(rec: Any, text: str) -> str:
    """One readable block per record: an anomaly with its evidence, or a dead letter."""
    if not isinstance(rec, dict):
        return text
    if "reason" in rec and "topic" in rec:
        return (f"DEAD LETTER {rec['reason']:<16} {rec['topic']}[{rec['partition']}]@"
                f"{rec['offset']} item {rec.get('index')}: {rec.get('error')}")
    if "score" in rec and "source" in rec:
        from neurogate.cli.results import describe

        return "\n".join(describe(rec))
    return text


# -- plumbing ------------------------------------------------------------------------------------


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these commands (``python -m neurogate.cli.stream``, tests)."""
    p = Parser(prog="neurogate", description=__doc__.split("\n\n")[0])
    register(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: Iterable[str] | None = None) -> int:
    """Run ``neurogate`` with these arguments (default: the process's); the exit code."""
    return main_of(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

"""No secret in any output or log.

Every command of the ``neurogate`` CLI, found by walking its argparse tree (a new command is
run here without editing this file), runs with a sentinel password in its store URLs (user
info, a ``?password=`` parameter, the nested ``redis=`` URL, ``rediss://``, a bad port) and in
the environment (``NEUROGATE_PG_URL``, ``NEUROGATE_REDIS_URL``, ``PGPASSWORD``), once against
live servers (PostgreSQL, a password-protected private Redis, the Kafka test broker) and once
against closed ports. The sentinel must not appear in stdout, stderr, the log records, or the
worker's log and HTTP answers.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from neurogate.cli import main as cli
from neurogate.cli.store import export_counts
from neurogate.engine.redaction import known_secrets, redact_url, scrub, secrets_in
from neurogate.engine.stores import SQLiteStore
from neurogate.stream import kafka_tools
from tests import kafka_fixtures as kf
from tests.kafka_fixtures import StreamEnv, WorkerProcess
from tests.pg_fixtures import RedisServer, free_port, pg_db, require_pg, require_redis

kafka_bootstrap = kf.kafka_bootstrap  # fixtures, by name
workers = kf.workers
__all__ = ["kafka_bootstrap", "pg_db", "workers"]  # fixtures used by name

SENTINEL = "Sent1nelPw-q7Zx"
WORKER = ("worker",)  # a long-running process: run as one (test_worker_never_shows_the_password)
STORE_DESTS = {"store", "dest", "sources"}  # positionals that take a store URL
EXTRA = {  # keep each command short and bounded; anything else runs with generic arguments
    ("run",): ["-q", "--set", "neuronet.enabled=false", "--set", "warmup=20"],
    ("replay",): ["--demo-length", "30", "--demo-sources", "1", "-q"],
    ("produce",): ["-q"],
    ("tail",): ["--timeout", "1", "--max", "1"],
    ("eval", "multivariate"): ["--length", "500", "--sources", "2", "-q"],  # 200 crashes: reported
    ("eval", "creditcard-generate"): ["--rows", "50"],
    ("train",): ["--set", "neuronet.max_steps_per_level=1", "--set", "neuronet.levels=2"],
    # a study of 2 trials on a small generated set (the defaults ran 190 s)
    ("eval", "tuned"): ["--only", "generated", "--sources", "2", "--length", "700",
                        "--trials", "2", "-q"],
}
FLAGS = {("run",): [[], ["--append"], ["--fresh"]]}  # every flag that changes the store path


@dataclass
class Servers:
    """Where the servers are (live or closed ports) and the secrets pointing at them."""

    live: bool
    pg: str  # host:port/database
    redis_port: int
    bootstrap: str
    tmp: Path

    def stores(self) -> dict[str, str]:
        host = self.pg.split("/")[0].rsplit(":", 1)[0]
        db = self.pg.split("/", 1)[1]
        redis = f"127.0.0.1:{self.redis_port}/0"
        return {
            "userinfo": f"redis+postgresql://postgres:{SENTINEL}@{self.pg}"
                        f"?redis=redis://:{SENTINEL}@{redis}",
            "query": f"postgresql://postgres@{self.pg}?password={SENTINEL}",
            "rediss": f"redis+postgresql://postgres@{self.pg}?redis=rediss://:{SENTINEL}@{redis}",
            "bad-port": f"postgresql://postgres:{SENTINEL}@{host}:5o32/{db}",
        }

    def environ(self) -> dict[str, str]:
        return {"NEUROGATE_PG_URL": f"postgresql://postgres:{SENTINEL}@{self.pg}",
                "NEUROGATE_REDIS_URL": f"redis://:{SENTINEL}@127.0.0.1:{self.redis_port}/0",
                "PGPASSWORD": SENTINEL, "NEUROGATE_STORE_RETRY_SECONDS": "0.5"}


@pytest.fixture(params=["live", "down"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Servers]:
    if request.param == "down":
        yield Servers(False, f"127.0.0.1:{free_port()}/nowhere", free_port(),
                      f"127.0.0.1:{free_port()}", tmp_path)
        return
    require_pg()
    require_redis()
    pg_db = request.getfixturevalue("pg_db")
    parts = urlsplit(pg_db())
    redis = RedisServer(password=SENTINEL)
    try:
        yield Servers(True, f"{parts.hostname}:{parts.port or 5432}{parts.path}", redis.port,
                      request.getfixturevalue("kafka_bootstrap"), tmp_path)
    finally:
        redis.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEUROGATE_") or name == "PGPASSWORD":
            monkeypatch.delenv(name)
    return monkeypatch


def leaves(parser: argparse.ArgumentParser,
           path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the parser tree, with its own parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for name, sub in subs[0].choices.items() for leaf in leaves(sub, (*path, name))]


def uses_store(parser: argparse.ArgumentParser) -> bool:
    return any("--store" in a.option_strings or "--storage" in a.option_strings
               or (not a.option_strings and a.dest in STORE_DESTS) for a in parser._actions)


def command_lines(path: tuple[str, ...], parser: argparse.ArgumentParser, store: str,
                  srv: Servers, export: Path) -> list[list[str]]:
    """Arguments for one command: the store URL wherever a store goes, the broker, small
    files, a path for every other required option; then ``EXTRA`` and each of ``FLAGS``."""
    data = srv.tmp / "data.csv"
    argv = list(path)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            if action.dest in STORE_DESTS:
                value = store
            elif action.choices:
                value = next(iter(action.choices))
            elif action.dest == "file" and path[-1] == "import":
                value = str(export)
            elif action.dest in ("files", "results"):
                value = str(data)
            else:
                value = str(srv.tmp / f"{'-'.join(path)}.out")
            argv.append(value)
        elif "--store" in action.option_strings:
            argv += ["--store", store]
        elif "--storage" in action.option_strings and store.startswith("postgresql://"):
            argv += ["--storage", store]  # a tuning study's database (optuna)
        elif "--bootstrap" in action.option_strings:
            prefix = f"t{os.getpid()}{time.monotonic_ns() % 10**6}"
            argv += ["--bootstrap", srv.bootstrap, *[
                f"--set=worker.{t}_topic={prefix}.{t}" for t in
                ("events", "labels", "anomalies", "deadletter")]]
        elif action.required:
            argv += [action.option_strings[0], str(srv.tmp / f"{action.dest}-missing")]
    argv += EXTRA.get(path, [])
    return [argv + flags for flags in FLAGS.get(path, [[]])]


@pytest.mark.slow
def test_every_command_keeps_the_password_out_of_outputs_and_logs(
    servers: Servers, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in servers.environ().items():
        clean_env.setenv(name, value)
    clean_env.setattr(kafka_tools, "CONNECT_TIMEOUT", 1.0)
    caplog.set_level(logging.DEBUG)
    for noisy in ("kafka", "aiokafka", "numba", "matplotlib", "PIL"):  # volume, not secrets
        logging.getLogger(noisy).setLevel(logging.INFO)
    (servers.tmp / "data.csv").write_text(
        "timestamp,value\n" + "".join(f"{1_700_000_000 + 60 * i},{i % 7}\n" for i in range(60)))
    with SQLiteStore(servers.tmp / "site.db") as site:
        export = servers.tmp / "site.zip"
        export_counts(site, export)

    ran: set[tuple[str, ...]] = set()
    commands = leaves(cli.build_parser())
    assert len(commands) > 15 and WORKER in {p for p, _ in commands}
    for path, parser in commands:
        if path == WORKER:
            continue
        stores = servers.stores() if uses_store(parser) else {"any": servers.stores()["userinfo"]}
        for variant, store in stores.items():
            for argv in command_lines(path, parser, store, servers, export):
                try:
                    code = cli.main(argv)
                except SystemExit as exc:  # argparse
                    code = exc.code
                out, err = capsys.readouterr()
                shown = f"{' '.join(path)} [{variant}] {redact_url(' '.join(argv))}"
                for where, text in (("stdout", out), ("stderr", err), ("log", caplog.text)):
                    assert SENTINEL not in text, f"{shown}: the password is in its {where}:\n" \
                        f"{text.replace(SENTINEL, '<<SENTINEL>>')[-3000:]}"
                assert "internal error" not in err, f"{shown} crashed:\n{err[-3000:]}"
                assert isinstance(code, int), shown
                caplog.clear()
                ran.add(path)
    assert ran == {p for p, _ in commands} - {WORKER}
    # a store URL given where argparse does not expect one is echoed in the usage error
    with pytest.raises(SystemExit):
        cli.main(["db", "status", servers.stores()["userinfo"]])
    err = capsys.readouterr().err
    assert "unrecognized arguments: redis+postgresql://postgres:***@" in err
    assert SENTINEL not in err


def _worker_env(servers: Servers, store: str) -> dict[str, str]:
    return {**servers.environ(), "NEUROGATE_WORKER__STORE": store}


@pytest.mark.slow
def test_worker_never_shows_the_password(servers: Servers, clean_env: pytest.MonkeyPatch,
                                         workers: Callable[..., WorkerProcess],
                                         kafka_bootstrap: str) -> None:
    """Live: the worker's log, /ready, /healthz and /metrics. Store down (Kafka up, so that
    the worker gets that far): the start-up check's message, and the engine's repeated
    "store ... unavailable" log line."""
    store = servers.stores()["userinfo"]
    env = StreamEnv(kafka_bootstrap, store, servers.tmp)
    if servers.live:
        kf.create_topics(env)
        w = workers(env, "live", extra_env=_worker_env(servers, store))
        w.ready()
        bodies = [w.get(path)[1].decode() for path in ("/ready", "/healthz", "/metrics")]
        assert w.stop() == 0
        for text in (*bodies, w.log_path.read_text()):
            assert SENTINEL not in text, text.replace(SENTINEL, "<<SENTINEL>>")[-3000:]
        assert "engine ready" in w.log_path.read_text()
        return
    # nothing listens: the start-up check gives up after --wait; without it, the engine retries
    checked = workers(env, "preflight", extra_env=_worker_env(servers, store),
                      args=["--wait", "2"])
    assert checked.wait_exit(60) == 2
    retrying = workers(env, "retrying", extra_env=_worker_env(servers, store),
                       args=["--no-preflight"])
    deadline = time.monotonic() + 60
    while retrying.log_path.read_text().count("unavailable") < 2:
        assert time.monotonic() < deadline, retrying.tail()
        time.sleep(0.3)
    health = retrying.get("/healthz")[1].decode()
    retrying.kill()  # a SIGTERM would wait for the engine to start; the engine process sees
    # its parent gone at its next retry and gives up
    for w in (checked, retrying):
        log = w.log_path.read_text()
        assert "unavailable" in log and SENTINEL not in log, \
            log.replace(SENTINEL, "<<SENTINEL>>")[-3000:]
    assert SENTINEL not in health


@pytest.mark.parametrize("text", [
    f"postgresql://app:{SENTINEL}@db:5432/ng",
    f"postgres://app:{SENTINEL}@db/ng?sslmode=require",
    f"redis+postgresql://app@db/ng?redis=redis%3A%2F%2F%3A{SENTINEL}%40cache%3A6379%2F0",
    f"redis+postgresql://app@db/ng?sslmode=require&password={SENTINEL}&x=1",
    f"rediss://default:{SENTINEL}@cache:6380/0",
    f"host=db user=app password={SENTINEL} dbname=ng",
    f"host=db password='{SENTINEL} x' dbname=ng",
    f"cannot open store postgresql://app:{SENTINEL}@db:5432/ng: connection refused",
    f"Error connecting to redis://:{SENTINEL}@cache:6379/0.",
])
def test_scrub_masks_the_secret_of_every_url_form(text: str) -> None:
    assert SENTINEL in " ".join(secrets_in(text)) or "password=" in text
    masked = scrub(text)
    assert SENTINEL not in masked and "***" in masked
    assert SENTINEL not in redact_url(text.split(" ")[-1] if " " in text and "://" in text
                                      else text)


def test_known_secrets_come_from_arguments_and_environment() -> None:
    env = {"PGPASSWORD": "pg-secret-1", "NEUROGATE_REDIS_URL": "redis://:rs-secret-2@c:6379/0",
           "HOME": "/home/x", "PATH": "/usr/bin"}
    found = known_secrets(["run", "--store", "postgresql://u:arg-secret-3@h/db"], env)
    assert found == {"pg-secret-1", "rs-secret-2", "arg-secret-3"}
    assert scrub("auth failed: rs-secret-2 / arg-secret-3", found) == "auth failed: *** / ***"
    assert scrub("a short one: ab", {"ab"}) == "a short one: ab"  # below MIN_SECRET


@pytest.mark.slow
def test_the_console_script_keeps_the_environments_password_out(tmp_path: Path) -> None:
    """The installed ``neurogate`` as a process: the store URL comes from NEUROGATE_PG_URL."""
    exe = Path(sys.executable).with_name("neurogate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROGATE_")}
    env["NEUROGATE_PG_URL"] = f"postgresql://postgres:{SENTINEL}@127.0.0.1:{free_port()}/x"
    proc = subprocess.run([str(exe), "db", "status"], cwd=tmp_path, capture_output=True,
                          text=True, env={**env, "NEUROGATE_STORE_RETRY_SECONDS": "0"},
                          timeout=60)
    assert proc.returncode == 2
    assert SENTINEL not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("neurogate: error: ")



@pytest.mark.slow
@pytest.mark.parametrize("source", ["env", "file"])
def test_kafka_commands_keep_the_sasl_password_out(
    servers: Servers, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, source: str,
) -> None:
    """Every command that talks to Kafka, and the worker, with SASL (SCRAM) and the sentinel
    as the SASL password, from NEUROGATE_WORKER__SASL_PASSWORD or from a password file (which
    no scan of the environment or the command line knows about). The test broker does not
    speak SASL, so each command fails its handshake: the error path is what shows settings."""
    sasl = ["--set=worker.security_protocol=SASL_PLAINTEXT",
            "--set=worker.sasl_mechanism=SCRAM-SHA-512", "--set=worker.sasl_username=svc"]
    env = {"NEUROGATE_STORE_RETRY_SECONDS": "0.5"}
    if source == "env":
        env["NEUROGATE_WORKER__SASL_PASSWORD"] = SENTINEL
    else:
        (servers.tmp / "sasl.pw").write_text(SENTINEL + "\n")
        sasl.append(f"--set=worker.sasl_password_file={servers.tmp / 'sasl.pw'}")
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.setattr(kafka_tools, "CONNECT_TIMEOUT", 1.0)
    caplog.set_level(logging.DEBUG)  # kafka-python's debug records too: the handshake
    export = servers.tmp / "none.zip"
    commands = [(p, parser) for p, parser in leaves(cli.build_parser())
                if any("--bootstrap" in a.option_strings for a in parser._actions)]
    assert {("produce",), ("replay",), ("tail",), ("topics",), WORKER} <= {p for p, _ in commands}
    for path, parser in commands:
        if path == WORKER:
            continue
        store = servers.stores()["userinfo"]
        for argv in command_lines(path, parser, store, servers, export):
            try:
                code = cli.main(argv + sasl)
            except SystemExit as exc:
                code = exc.code
            out, err = capsys.readouterr()
            for where, text in (("stdout", out), ("stderr", err), ("log", caplog.text)):
                assert SENTINEL not in text, f"{path} [{source}]: the password is in its " \
                    f"{where}:\n{text.replace(SENTINEL, '<<SENTINEL>>')[-3000:]}"
            assert "internal error" not in err, f"{path} crashed:\n{err[-3000:]}"
            assert code == 2, f"{path}: {code}\n{err[-2000:]}"  # no SASL at the test broker
            caplog.clear()
    # the worker: its start-up check fails the same way, and its log shows no password
    env_file = StreamEnv(servers.bootstrap, servers.stores()["userinfo"], servers.tmp)
    env_file.worker = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_username": "svc"}
    if source == "file":
        env_file.worker["sasl_password_file"] = str(servers.tmp / "sasl.pw")
    w = WorkerProcess(env_file, "sasl", extra_env={**servers.environ(), **env},
                      args=["--wait", "1", "--log-level", "debug"]).start()
    try:
        assert w.wait_exit(90) == 2
    finally:
        w.kill()
    log = w.log_path.read_text()
    assert "cannot reach Kafka" in log and SENTINEL not in log, \
        log.replace(SENTINEL, "<<SENTINEL>>")[-3000:]

"""Kafka TLS and SASL settings: the mapping to kafka-python's and faust/aiokafka's arguments,
clear errors for inconsistent settings, the password only from the environment or a file,
and TLS against a plain listener failing with a clear error instead of a hang."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurogate.cli import main as cli
from neurogate.cli.config import load_settings
from neurogate.engine.config import ConfigError
from neurogate.engine.redaction import scrub
from neurogate.stream.kafka_security import (
    aiokafka_credentials,
    kafka_python_kwargs,
    ssl_context,
    tls_problem,
)
from neurogate.stream.settings import WorkerSettings
from tests import kafka_fixtures as kf

kafka_bootstrap = kf.kafka_bootstrap  # fixture, by name
__all__ = ["kafka_bootstrap"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate for localhost (its own CA) and an unrelated one."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    tmp = tmp_path_factory.mktemp("pki")
    for name in ("broker", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", tmp / f"{name}.key", "-out", tmp / f"{name}.pem"],
                       check=True, capture_output=True)
    return {p.stem + p.suffix.replace(".", "_"): p for p in tmp.iterdir()}


def settings(sets: list[str], env: dict[str, str] | None = None) -> WorkerSettings:
    return load_settings(None, [f"worker.{s}" for s in sets], env or {})[1]


def test_plaintext_is_the_default() -> None:
    s = WorkerSettings()
    assert kafka_python_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_credentials(s) is None and ssl_context(s) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_maps_to_both_clients(pki: dict[str, Path], mechanism: str) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = settings(["security_protocol=SASL_SSL", f"sasl_mechanism={mechanism}",
                  "sasl_username=svc", f"ssl_cafile={pki['broker_pem']}",
                  f"ssl_certfile={pki['other_pem']}", f"ssl_keyfile={pki['other_key']}"],
                 {"NEUROGATE_WORKER__SASL_PASSWORD": "pw-from-env"})
    kp = kafka_python_kwargs(s)
    assert {k: v for k, v in kp.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "ssl_check_hostname": True,
        "sasl_mechanism": mechanism, "sasl_plain_username": "svc",
        "sasl_plain_password": "pw-from-env"}
    assert isinstance(kp["ssl_context"], ssl.SSLContext)
    assert kp["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    ak = credentials_to_aiokafka_auth(aiokafka_credentials(s))  # what faust hands aiokafka
    assert {k: v for k, v in ak.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc", "sasl_plain_password": "pw-from-env"}
    assert isinstance(ak["ssl_context"], ssl.SSLContext)
    assert "pw-from-env" not in repr(s) + repr(aiokafka_credentials(s))


def test_ssl_and_sasl_plaintext(pki: dict[str, Path], tmp_path: Path) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = settings(["security_protocol=SSL", f"ssl_cafile={pki['broker_pem']}",
                  "ssl_check_hostname=false"])
    ctx = ssl_context(s)
    assert ctx is not None and not ctx.check_hostname
    assert kafka_python_kwargs(s)["ssl_check_hostname"] is False
    ak = credentials_to_aiokafka_auth(aiokafka_credentials(s))
    assert ak["security_protocol"] == "SSL" and ak["ssl_context"].check_hostname is False
    secret = tmp_path / "sasl.pw"
    secret.write_text("pw-from-file-77\nignored\n")
    s = settings(["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=SCRAM-SHA-512",
                  "sasl_username=svc", f"sasl_password_file={secret}"])
    assert kafka_python_kwargs(s)["sasl_plain_password"] == "pw-from-file-77"
    ak = credentials_to_aiokafka_auth(aiokafka_credentials(s))
    assert ak["security_protocol"] == "SASL_PLAINTEXT" and ak["ssl_context"] is None
    # read at run time, then masked in whatever this process scrubs
    assert scrub("auth failed for pw-from-file-77") == "auth failed for ***"


def test_the_worker_app_takes_the_credentials(pki: dict[str, Path]) -> None:
    from neurogate.engine.config import EngineConfig
    from neurogate.stream.app import create_app

    s = settings(["security_protocol=SASL_SSL", "sasl_mechanism=SCRAM-SHA-256",
                  "sasl_username=svc", f"ssl_cafile={pki['broker_pem']}"],
                 {"NEUROGATE_WORKER__SASL_PASSWORD": "pw"})
    creds = create_app(EngineConfig(), s).conf.broker_credentials
    assert (creds.username, creds.password, creds.mechanism.value, creds.protocol.value) == \
        ("svc", "pw", "SCRAM-SHA-256", "SASL_SSL")


@pytest.mark.parametrize(("sets", "env", "message"), [
    (["security_protocol=TLS"], {}, "worker.security_protocol must be one of"),
    (["security_protocol=SASL_SSL"], {}, "SASL_SSL needs worker.sasl_mechanism"),
    (["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=GSSAPI"], {},
     "worker.sasl_mechanism must be one of"),
    (["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=PLAIN"], {},
     "PLAIN needs worker.sasl_username"),
    (["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=PLAIN", "sasl_username=u"], {},
     "needs exactly one of NEUROGATE_WORKER__SASL_PASSWORD"),
    (["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=PLAIN", "sasl_username=u",
      "sasl_password_file=/nonexistent/pw"], {"NEUROGATE_WORKER__SASL_PASSWORD": "x"},
     "needs exactly one of"),
    (["security_protocol=SASL_PLAINTEXT", "sasl_mechanism=PLAIN", "sasl_username=u",
      "sasl_password_file=/nonexistent/pw"], {}, "sasl_password_file: cannot read"),
    (["sasl_mechanism=PLAIN"], {}, "sasl_mechanism is set but worker.security_protocol = "
     "PLAINTEXT does not use SASL"),
    ([], {"NEUROGATE_WORKER__SASL_USERNAME": "u"}, "sasl_username is set but"),
    (["ssl_cafile=/etc/hostname"], {}, "ssl_cafile is set but worker.security_protocol = "
     "PLAINTEXT does not use TLS"),
    (["security_protocol=SSL", "ssl_cafile=/nonexistent/ca.pem"], {},
     "worker.ssl_cafile: file not found: /nonexistent/ca.pem"),
    (["security_protocol=SSL", "ssl_cafile=/etc/hostname"], {}, "holds no PEM CA certificate"),
    (["security_protocol=SSL", "ssl_keyfile=/etc/hostname"], {},
     "worker.ssl_keyfile needs worker.ssl_certfile"),
    (["sasl_password=x"], {}, "worker.sasl_password is not accepted from --set"),
])
def test_inconsistent_settings_are_clear_errors(sets: list[str], env: dict[str, str],
                                                message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings(sets, env)
    assert message in str(exc.value)


def test_the_password_is_refused_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[worker]\nsasl_password = "Sentinel-in-file"\n')
    with pytest.raises(ConfigError, match="not accepted from") as exc:
        load_settings(path, [], {})
    assert "Sentinel-in-file" not in str(exc.value)


def test_an_empty_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        settings(["security_protocol=SASL_SSL", "sasl_mechanism=PLAIN", "sasl_username=u",
                  f"sasl_password_file={tmp_path / 'pw'}"])


# -- against listeners ---------------------------------------------------------------------------


@pytest.fixture
def tls_listener(pki: dict[str, Path]) -> Iterator[int]:
    """A TLS server (the 'broker' certificate) that completes handshakes and nothing else."""
    server = socket.create_server(("127.0.0.1", 0))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["broker_pem"], pki["broker_key"])
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(1)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_the_tls_probe_checks_the_certificate(pki: dict[str, Path], tls_listener: int) -> None:
    good = settings([f"bootstrap=localhost:{tls_listener}", "security_protocol=SSL",
                     f"ssl_cafile={pki['broker_pem']}"])
    assert tls_problem(good) is None
    wrong_ca = settings([f"bootstrap=localhost:{tls_listener}", "security_protocol=SSL",
                         f"ssl_cafile={pki['other_pem']}"])
    problem = tls_problem(wrong_ca)
    assert problem is not None and "failed on the broker's certificate" in problem
    assert "worker.ssl_cafile" in problem


@pytest.mark.parametrize("argv", [["topics", "list"], ["tail", "--timeout", "1"],
                                  ["replay", "--demo-length", "5", "-q"]],
                         ids=["topics", "tail", "replay"])
@pytest.mark.slow
def test_tls_to_a_plain_listener_is_a_clear_error(
    kafka_bootstrap: str, pki: dict[str, Path], argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kafka-python alone waits for the handshake forever; the tools stop after the probe's
    timeout with an error that says what is wrong (pytest-timeout catches a hang)."""
    code = cli.main([*argv, "--bootstrap", kafka_bootstrap, "--set",
                     "worker.security_protocol=SSL", "--set",
                     f"worker.ssl_cafile={pki['broker_pem']}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "TLS handshake" in err and "is it a TLS listener?" in err, err


@pytest.mark.slow
def test_the_worker_refuses_tls_to_a_plain_listener(
    kafka_bootstrap: str, pki: dict[str, Path], tmp_path: Path,
) -> None:
    """Without the start-up check too: faust's aiokafka producer would wait silently (40 s
    without a log line, measured) for the handshake."""
    env = kf.StreamEnv(kafka_bootstrap, "memory://", tmp_path)
    env.worker = {"security_protocol": "SSL", "ssl_cafile": str(pki["broker_pem"])}
    for args in (["--no-preflight"], ["--wait", "1"]):
        w = kf.WorkerProcess(env, "tls", args=args).start()
        try:
            assert w.wait_exit(60) == 2, w.tail()
        finally:
            w.kill()
        assert "is it a TLS listener?" in w.log_path.read_text(), w.tail()


def test_sasl_against_a_listener_without_it_says_so(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from neurogate.stream import kafka_tools

    monkeypatch.setattr(kafka_tools, "CONNECT_TIMEOUT", 1.0)
    monkeypatch.setenv("NEUROGATE_WORKER__SASL_PASSWORD", "pw-not-shown-1")
    code = cli.main(["topics", "list", "--bootstrap", kafka_bootstrap,
                     "--set", "worker.security_protocol=SASL_PLAINTEXT",
                     "--set", "worker.sasl_mechanism=SCRAM-SHA-256",
                     "--set", "worker.sasl_username=svc"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "(SASL_PLAINTEXT)" in err and "a listener without SASL SCRAM-SHA-256" in err, err
    assert "pw-not-shown-1" not in err

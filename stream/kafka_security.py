"""Kafka TLS and SASL: the one place that turns the ``worker.security_protocol``,
``worker.ssl_*`` and ``worker.sasl_*`` settings into client arguments, for faust/aiokafka (the
worker) and for kafka-python (``produce``, ``replay``, ``tail``, ``topics`` and the worker's
start-up check).

Protocols: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``; mechanisms:
``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``. The SASL password comes from the environment
(``NEUROGATE_WORKER__SASL_PASSWORD``) or a file (``worker.sasl_password_file``), never from the
TOML file or ``--set`` (``settings.load_settings`` refuses it there). Inconsistent settings
(a mechanism without a user, a SASL protocol without a mechanism, certificate files with a
protocol that does not use TLS, a missing or unreadable file) are ``ConfigError``s naming the
setting. Before a kafka-python client connects with TLS on, ``tls_problem`` tries a TLS handshake
with the first server, so that a listener without TLS is a clear error, not a hang.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurogate.engine.config import ConfigError
from neurogate.engine.redaction import register_secret

if TYPE_CHECKING:
    from neurogate.stream.settings import WorkerSettings

__all__ = ["MECHANISMS", "PROTOCOLS", "aiokafka_credentials", "check_security",
           "kafka_python_kwargs", "sasl_password", "ssl_context", "tls_problem"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROBE_TIMEOUT = 5.0  # seconds for the diagnostic TLS handshake
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
_SASL_FIELDS = ("sasl_username", "sasl_password", "sasl_password_file")


def _uses_tls(s: WorkerSettings) -> bool:
    return s.security_protocol in ("SSL", "SASL_SSL")


def check_security(s: WorkerSettings) -> None:  # noqa: C901  (one check per setting)
    """Raise ``ConfigError`` for inconsistent security settings (``load_settings`` checks its
    result, and every client's arguments are checked again before a connection)."""
    if s.security_protocol not in PROTOCOLS:
        raise ConfigError(f"worker.security_protocol must be one of {list(PROTOCOLS)}, "
                          f"got {s.security_protocol!r}")
    sasl = s.security_protocol.startswith("SASL_")
    if s.sasl_mechanism and s.sasl_mechanism not in MECHANISMS:
        raise ConfigError(f"worker.sasl_mechanism must be one of {list(MECHANISMS)}, "
                          f"got {s.sasl_mechanism!r}")
    if sasl and not s.sasl_mechanism:
        raise ConfigError(f"worker.security_protocol = {s.security_protocol} needs "
                          f"worker.sasl_mechanism ({', '.join(MECHANISMS)})")
    if not sasl:
        for name in ("sasl_mechanism", *_SASL_FIELDS):
            if getattr(s, name):
                raise ConfigError(f"worker.{name} is set but worker.security_protocol = "
                                  f"{s.security_protocol} does not use SASL (SASL_SSL or "
                                  "SASL_PLAINTEXT)")
    else:
        if not s.sasl_username:
            raise ConfigError(f"worker.sasl_mechanism = {s.sasl_mechanism} needs "
                              "worker.sasl_username")
        if bool(s.sasl_password) == bool(s.sasl_password_file):
            raise ConfigError(f"worker.sasl_mechanism = {s.sasl_mechanism} needs exactly one "
                              "of NEUROGATE_WORKER__SASL_PASSWORD (environment) and "
                              "worker.sasl_password_file")
        if s.sasl_password_file:
            sasl_password(s)  # readable and not empty
    if not _uses_tls(s):
        for name in _SSL_FILES:
            if getattr(s, name):
                raise ConfigError(f"worker.{name} is set but worker.security_protocol = "
                                  f"{s.security_protocol} does not use TLS (SSL or SASL_SSL)")
        return
    if s.ssl_keyfile and not s.ssl_certfile:
        raise ConfigError("worker.ssl_keyfile needs worker.ssl_certfile (the client certificate)")
    for name in _SSL_FILES:
        path = getattr(s, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"worker.{name}: file not found: {path}")
    ssl_context(s)  # the files parse


def sasl_password(s: WorkerSettings) -> str:
    """The SASL password: the environment's, or the first line of ``sasl_password_file``;
    registered for redaction either way (a client's error could quote it)."""
    if not s.sasl_password_file:
        register_secret(s.sasl_password)
        return s.sasl_password
    path = Path(s.sasl_password_file)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"worker.sasl_password_file: cannot read {path}: "
                          f"{exc.strerror}") from None
    if not lines or not lines[0]:
        raise ConfigError(f"worker.sasl_password_file: {path} is empty")
    register_secret(lines[0])
    return lines[0]


def ssl_context(s: WorkerSettings) -> ssl.SSLContext | None:
    """The TLS context (None without TLS): the system's CAs or ``ssl_cafile``, the client
    certificate if given, host names checked unless ``ssl_check_hostname = false``."""
    if not _uses_tls(s):
        return None
    try:
        ctx = ssl.create_default_context(cafile=s.ssl_cafile or None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"worker.ssl_cafile: {s.ssl_cafile} holds no PEM CA certificate "
                          f"({exc})") from None
    if s.ssl_certfile:
        try:
            ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile or None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"worker.ssl_certfile/ssl_keyfile: {s.ssl_certfile} and "
                              f"{s.ssl_keyfile or 'its own key'} are not a PEM certificate and "
                              f"its unencrypted key ({exc})") from None
    ctx.check_hostname = s.ssl_check_hostname
    return ctx


def kafka_python_kwargs(s: WorkerSettings) -> dict[str, Any]:
    """Security arguments of kafka-python's clients (KafkaAdminClient, KafkaProducer,
    KafkaConsumer)."""
    kwargs: dict[str, Any] = {"security_protocol": s.security_protocol}
    ctx = ssl_context(s)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
        kwargs["ssl_check_hostname"] = s.ssl_check_hostname
    if s.sasl_mechanism:
        kwargs.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                      sasl_plain_password=sasl_password(s))
    return kwargs


def aiokafka_credentials(s: WorkerSettings) -> Any:
    """faust's ``broker_credentials`` (None for PLAINTEXT); faust passes them to aiokafka's
    consumer, producer and admin client alike."""
    from faust.auth import SASLCredentials, SSLCredentials

    check_security(s)
    ctx = ssl_context(s)
    if s.sasl_mechanism:
        return SASLCredentials(username=s.sasl_username, password=sasl_password(s),
                               mechanism=s.sasl_mechanism, ssl_context=ctx)
    return SSLCredentials(ctx) if ctx is not None else None


def tls_problem(s: WorkerSettings) -> str | None:
    """With TLS on, a TLS handshake with the first bootstrap server, bounded by
    ``PROBE_TIMEOUT``: what is wrong with it, or None (TLS off, the handshake worked, or the
    server is down, which the client reports itself). kafka-python 3.0 waits forever for a
    handshake that a plain listener never answers (measured: > 10 min against the test broker,
    whatever ``bootstrap_timeout_ms``), so the tools ask this before they connect."""
    ctx = ssl_context(s)
    if ctx is None:
        return None
    host, _, port = s.bootstrap.split(",")[0].strip().rpartition(":")
    where = f"{host}:{port}"
    try:
        raw = socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT)
    except OSError:
        return None
    try:
        with ctx.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as err:
        return (f"the TLS handshake with {where} failed on the broker's certificate: "
                f"{err.verify_message} (worker.ssl_cafile must hold the CA that signed it; "
                "see also worker.ssl_check_hostname)")
    except (OSError, ssl.SSLError) as err:  # socket.timeout is an OSError
        what = "got no answer" if isinstance(err, TimeoutError) else f"failed ({err})"
        return (f"a TLS handshake with {where} {what} in {PROBE_TIMEOUT:g} s: is it a TLS "
                f"listener? worker.security_protocol = {s.security_protocol} needs one")
    finally:
        raw.close()

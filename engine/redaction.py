"""Secrets out of every message: store URLs, connection strings and error texts with their
passwords masked, and a logging hook that applies the same to every log record.

What counts as a secret: the password of a URL's user info (``postgresql://u:PW@host``,
``redis://:PW@host``, ``rediss://...``), the value of a password-like query parameter
(``?password=PW``, ``sslpassword``, ``token``, ...), the same inside a URL nested in a query
parameter (``redis+postgresql://...?redis=redis://:PW@cache``), and a libpq ``password=PW``
key/value pair. ``known_secrets`` also collects them from the command line and the environment,
so that ``scrub`` masks them wherever they appear, even in a driver's error text that quotes
one without its URL (secrets of fewer than ``MIN_SECRET`` characters are masked only where
they stand in a URL: masking every ``"ab"`` would garble the message and hide nothing).

>>> redact_url("redis+postgresql://app:s3cret@db:5432/ng?redis=rediss://:hunter22@cache:6380/0")
'redis+postgresql://app:***@db:5432/ng?redis=rediss://:***@cache:6380/0'
>>> redact_url("postgresql://app@db/ng?sslmode=require&password=s3cret")
'postgresql://app@db/ng?sslmode=require&password=***'
>>> sorted(secrets_in("run --store postgresql://app:s3cret@db/ng?redis=redis://:hunter22@c/0"))
['hunter22', 's3cret']
>>> scrub("connection failed for 'host=db password=s3cret' (s3cret)", {"s3cret"})
"connection failed for 'host=db password=***' (***)"
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import quote, quote_plus, unquote_plus

__all__ = ["MASK", "MIN_SECRET", "known_secrets", "redact_url", "redacting_logs",
           "register_secret", "scrub", "secrets_in"]

MASK = "***"
MIN_SECRET = 4  # shorter known secrets are masked inside URLs only
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "secret",
                            "token", "access_token", "api_key", "apikey",
                            "sasl_plain_password", "sasl_password"})
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|AUTH", re.I)
_REGISTERED: set[str] = set()  # secrets read at run time (register_secret); a handful at most
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*[^\s'\"<>.,;:)\]}]")  # no end punctuation
_KV = re.compile(r"\b(password|passwd|pwd|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)",
                 re.I)


def _walk(url: str, found: set[str]) -> str:
    """``url`` with its secrets masked; the secrets (decoded) are added to ``found``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _kv(url, found)
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    at = rest.rfind("@", 0, end)
    if at == -1:
        # no user info in the authority as a URL parser sees it; an unencoded '/' or '#' in a
        # password hides it from the parser: take the last '@' before any nested URL and
        # query (this may mask more than the password, never less)
        nested = rest.find("://")
        at = rest.rfind("@", 0, nested if nested != -1 else len(rest))
        if "?" in rest[:max(at, 0)]:
            at = -1
    head, tail = (rest[:at], rest[at:]) if at != -1 else ("", rest)
    user, colon, password = head.partition(":")
    if colon and password:
        found.add(unquote_plus(password))
        found.add(password)
        head = f"{user}:{MASK}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        items = []
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            plain = unquote_plus(value)
            if eq and unquote_plus(key).lower() in _SECRET_PARAMS and value:
                found.update((plain, value))
                value = MASK
            elif eq and ("://" in plain or "=" in plain):
                nested_value = _walk(plain, found)
                if nested_value != plain:
                    value = nested_value
            items.append(key + eq + value)
        tail = f"{path}?{'&'.join(items)}{hash_}{fragment}"
    return f"{scheme}://{head}{tail}"


def _kv(text: str, found: set[str]) -> str:
    """libpq ``key=value`` passwords masked (quoted values keep their quotes)."""

    def mask(m: re.Match[str]) -> str:
        value = m.group(3)
        if value.rstrip(".,;:)]}") in (MASK, f"'{MASK}'"):  # masked already (in a URL)
            return m.group(0)
        found.add(value.strip("'"))
        return m.group(1) + m.group(2) + (f"'{MASK}'" if value.startswith("'") else MASK)

    return _KV.sub(mask, text)


def redact_url(url: str) -> str:
    """A store URL (or libpq connection string) safe to print: every password masked."""
    return _walk(url, set())


def secrets_in(*texts: str) -> set[str]:
    """The passwords found in the URLs and ``password=`` pairs of ``texts`` (decoded and as
    written)."""
    found: set[str] = set()
    for text in texts:
        for m in _URL.finditer(text):
            _walk(m.group(0), found)
        _kv(text, found)
    return {s for s in found if s and s != MASK}


def known_secrets(values: Iterable[object], environ: Mapping[str, str]) -> frozenset[str]:
    """Secrets of a process: those in ``values`` (command-line arguments, settings) and in the
    environment (URLs in any variable, and the whole value of a variable whose name says
    password, secret, token or auth, such as ``PGPASSWORD``)."""
    found = secrets_in(*(str(v) for v in values if v is not None))
    for name, value in environ.items():
        if _SECRET_ENV.search(name) and value:
            found.add(value)
        elif "://" in value or "password" in value.lower():
            found |= secrets_in(value)
    return frozenset(found)


def register_secret(secret: str) -> None:
    """Mask ``secret`` in everything this process scrubs from now on: for secrets that are
    read at run time, not given on the command line or in the environment (a password file)."""
    if secret:
        _REGISTERED.add(secret)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL's and ``password=`` pair's secrets masked, and every known
    secret (``secrets`` and those registered) of at least ``MIN_SECRET`` characters masked
    wherever it appears."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _kv(text, set())
    forms = {f for s in (*secrets, *_REGISTERED) if len(s) >= MIN_SECRET
             for f in (s, quote(s, safe=""), quote_plus(s), repr(s)[1:-1])}
    for form in sorted(forms, key=len, reverse=True):  # longest first: no partial leftovers
        if form in text:
            text = text.replace(form, MASK)
    return text


def _scrubbed(record: logging.LogRecord, secrets: frozenset[str]) -> logging.LogRecord:
    """``record`` with its message, traceback and stack scrubbed (formatted now, once)."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself when emitting
        return record
    clean = scrub(message, secrets)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), secrets)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info, secrets)
    return record


@contextlib.contextmanager
def redacting_logs(secrets: Iterable[str] = ()) -> Iterator[frozenset[str]]:
    """Scrub every log record created meanwhile, whatever logger and handler it goes to (a
    record factory: handlers that faust or a driver add later are covered too)."""
    masks = frozenset(secrets)
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        return _scrubbed(previous(*args, **kwargs), masks)

    logging.setLogRecordFactory(factory)
    try:
        yield masks
    finally:
        logging.setLogRecordFactory(previous)

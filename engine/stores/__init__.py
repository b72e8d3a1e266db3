"""Pattern stores: in-memory (tests), SQLite (embedded default), PostgreSQL (shared,
authoritative) and PostgreSQL behind a Redis cache, all behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from neurogate.engine.stores.base import (
    DelegatingStore,
    OutcomeUnknown,
    PatternStore,
    PositionsMoved,
    StoreStats,
    merge_into,
    totals,
)
from neurogate.engine.stores.memory import MemoryStore
from neurogate.engine.stores.sqlite import SQLiteStore

if TYPE_CHECKING:  # the server back-ends import psycopg/redis: loaded only when used
    from neurogate.engine.stores.postgres import CommitUnknown, PostgresStore, StoreUnavailable
    from neurogate.engine.stores.redis_front import CachedStore

__all__ = ["CachedStore", "CommitUnknown", "DelegatingStore", "MemoryStore", "OutcomeUnknown",
           "PatternStore", "PositionsMoved",
           "PostgresStore", "SQLiteStore", "StoreStats", "StoreUnavailable", "merge_into",
           "open_store", "totals"]

_PG, _REDIS = "neurogate.engine.stores.postgres", "neurogate.engine.stores.redis_front"
_LAZY = {"PostgresStore": _PG, "StoreUnavailable": _PG, "CommitUnknown": _PG, "CachedStore": _REDIS}


def __getattr__(name: str) -> object:
    """Import the server back-ends on first use, so embedded runs never load their drivers."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, redis_url: str | None = None) -> PatternStore:
    """Open a pattern store by URL.

    - ``memory://``: nothing persists;
    - ``sqlite:///path/to/file.db`` or a plain path: SQLite;
    - ``postgresql://user@host:5432/db?sslmode=...``: PostgreSQL (a libpq URL; keep passwords
      in ``~/.pgpass`` or ``PGPASSWORD``); pending schema migrations are applied on open;
    - ``redis+postgresql://user@host:5432/db``: the same PostgreSQL store behind a Redis cache.
      Redis is ``redis_url`` if given, else the URL's ``redis`` query parameter
      (``...?redis=redis://cache:6379/0``, removed before libpq sees the URL), else
      ``NEUROGATE_REDIS_URL``, else ``redis://127.0.0.1:6379/0``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "patterns.db"
    >>> store = open_store(str(path))
    >>> type(store).__name__, store.size()
    ('SQLiteStore', 0)
    >>> store.close()
    >>> type(open_store("memory://")).__name__
    'MemoryStore'
    """
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :])
    if url.startswith("postgresql://"):
        from neurogate.engine.stores.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("redis+postgresql://"):
        from neurogate.engine.stores.postgres import PostgresStore
        from neurogate.engine.stores.redis_front import CachedStore

        parts = urlsplit(url.removeprefix("redis+"))
        query = parse_qsl(parts.query, keep_blank_values=True)
        from_url = [v for k, v in query if k == "redis"]
        rest = urlencode([(k, v) for k, v in query if k != "redis"])
        backend = PostgresStore(urlunsplit(parts._replace(query=rest)))
        try:
            return CachedStore(backend, redis_url or (from_url[-1] if from_url else None))
        except BaseException:
            backend.close()
            raise
    if "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}: use memory://, sqlite:///PATH, a file path, "
            "postgresql://HOST/DB or redis+postgresql://HOST/DB"
        )
    return SQLiteStore(Path(url))

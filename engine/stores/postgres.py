"""PostgreSQL pattern store: the authoritative back-end shared by workers (psycopg 3 + a pool).

Counts, input positions and blobs of one ``apply`` commit in one transaction; an apply that hits
a lost connection is retried with backoff and, because every apply records a batch id in the
same transaction, a retry after an ambiguous COMMIT never counts twice. Keys are sorted before
every upsert so concurrent writers lock rows in one order and cannot deadlock. Arrays travel in
PostgreSQL's binary format, built and parsed with numpy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import struct
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import Format
from psycopg_pool import ConnectionPool, PoolTimeout

from neurogate.engine.keys import NCOLS, text_hash64
from neurogate.engine.stores.base import OutcomeUnknown, PatternStore, check_expected, check_keys

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[Any]

INT8_ARRAY_OID = 1016
INT8_OID = 20
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# connection failures no retry can fix
_PERMANENT = ("password authentication failed", "no pg_hba.conf entry", "does not exist",
              "authentication failed")
_CHUNK = 100_000  # rows per statement: bounded message size, same lock order across chunks


class StoreUnavailable(ConnectionError):
    """The store could not be reached within the retry budget and nothing of the failed call
    was committed: the caller may send it again later, and must not acknowledge its input
    meanwhile (see ``CommitUnknown`` for the one exception)."""


class CommitUnknown(StoreUnavailable, OutcomeUnknown):
    """The connection broke while COMMIT was in flight and the store stayed unreachable, so
    whether the batch landed is unknown. Its input positions committed with it (or not): resume
    from ``positions()`` (e.g. restart the worker) rather than re-sending the same deltas."""


class SchemaError(ValueError):
    """The database schema is newer than this code, or older and migrations were not allowed."""


@dataclass(frozen=True)
class Migration:
    """One versioned schema step; every statement is idempotent on its own."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "patterns, input positions, blobs, applied batches", (
        "CREATE TABLE IF NOT EXISTS neurogate_info (name text COLLATE \"C\" PRIMARY KEY,"
        " value text NOT NULL)",
        "INSERT INTO neurogate_info VALUES ('store_id', gen_random_uuid()::text)"
        " ON CONFLICT (name) DO NOTHING",
        # fillfactor leaves room on each page so count updates stay HOT (no index writes)
        "CREATE TABLE IF NOT EXISTS neurogate_patterns (key bigint PRIMARY KEY,"
        " n bigint NOT NULL, n0 bigint NOT NULL, n1 bigint NOT NULL) WITH (fillfactor = 80)",
        "CREATE TABLE IF NOT EXISTS neurogate_positions (input text COLLATE \"C\" PRIMARY KEY,"
        " position bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE IF NOT EXISTS neurogate_meta (name text COLLATE \"C\" PRIMARY KEY,"
        " value bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE IF NOT EXISTS neurogate_batches (id uuid PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())",
        "CREATE INDEX IF NOT EXISTS neurogate_batches_applied_at"
        " ON neurogate_batches (applied_at)",
    )),
    # an encoder registry that nothing used (removed from the code; trained NeuroNets are kept as
    # meta blobs, encoder/<name>/<version>): its tables stay, a migration is history
    Migration(2, "encoder registry with activation log", (
        "CREATE TABLE IF NOT EXISTS neurogate_encoders (name text COLLATE \"C\" NOT NULL,"
        " version text COLLATE \"C\" NOT NULL, artifact bytea NOT NULL, sha256 text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(), active boolean NOT NULL DEFAULT false,"
        " PRIMARY KEY (name, version))",
        "CREATE UNIQUE INDEX IF NOT EXISTS neurogate_encoders_one_active"
        " ON neurogate_encoders (name) WHERE active",
        "CREATE TABLE IF NOT EXISTS neurogate_encoder_log (id bigserial PRIMARY KEY,"
        " name text NOT NULL, version text NOT NULL, action text NOT NULL"
        " CHECK (action IN ('activate', 'rollback')), at timestamptz NOT NULL DEFAULT now())",
    )),
    Migration(3, "Redis cache epoch and unconfirmed invalidations", (
        "CREATE TABLE IF NOT EXISTS neurogate_cache_epoch (one boolean PRIMARY KEY"
        " DEFAULT true CHECK (one), epoch bigint NOT NULL)",
        "INSERT INTO neurogate_cache_epoch (epoch) VALUES (1) ON CONFLICT (one) DO NOTHING",
        # one row per writer that owes Redis invalidations: since its first unconfirmed commit,
        # the server process of its last such commit (NULL: a connection closed after it), and
        # whether the writer knows Redis missed them
        "CREATE TABLE IF NOT EXISTS neurogate_cache_unconfirmed (writer text COLLATE \"C\""
        " PRIMARY KEY, since timestamptz NOT NULL DEFAULT now(), pid integer,"
        " failed boolean NOT NULL)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_UPSERT = (
    "INSERT INTO neurogate_patterns AS p (key, n, n0, n1)"
    " SELECT * FROM unnest(%b::int8[], %b::int8[], %b::int8[], %b::int8[]) ORDER BY 1"
    " ON CONFLICT (key) DO UPDATE SET n = p.n + EXCLUDED.n, n0 = p.n0 + EXCLUDED.n0,"
    " n1 = p.n1 + EXCLUDED.n1"
)
_LOOKUP = (
    "SELECT array_agg(key), array_agg(n), array_agg(n0), array_agg(n1)"
    " FROM neurogate_patterns WHERE key = ANY(%b::int8[])"
)
_PAGE = (
    "SELECT array_agg(key), array_agg(n), array_agg(n0), array_agg(n1) FROM"
    " (SELECT key, n, n0, n1 FROM neurogate_patterns WHERE key >= %s ORDER BY key LIMIT %s) t"
)
_POSITIONS = (
    "INSERT INTO neurogate_positions AS p (input, position)"
    " SELECT * FROM unnest(%s::text[], %s::int8[]) ORDER BY 1"
    " ON CONFLICT (input) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
)
_META = (
    "INSERT INTO neurogate_meta AS m (name, value) SELECT * FROM unnest(%s::text[], %s::bytea[])"
    " ORDER BY 1 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)
_BATCH_RETENTION = "1 day"  # far longer than any retry budget; bounds neurogate_batches
# Redis cache epoch: writers hold the lock shared from their epoch read to their COMMIT, a new
# epoch takes it exclusively, so an epoch is never replaced between a write and its COMMIT.
_CACHE_LOCK = "SELECT pg_advisory_xact_lock_shared(%s)"
_CACHE_LOCK_ALONE = "SELECT pg_advisory_xact_lock(%s)"
_UNCONFIRMED = (
    "WITH m AS (INSERT INTO neurogate_cache_unconfirmed AS u (writer, pid, failed)"
    " VALUES (%s, CASE WHEN %s THEN pg_backend_pid() END, %s) ON CONFLICT (writer) DO UPDATE"
    " SET pid = EXCLUDED.pid, failed = u.failed OR EXCLUDED.failed)"
    " SELECT epoch FROM neurogate_cache_epoch"
)
_WRITER_GONE = "(u.pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(u.pid)))"
# a debt no reader may wait for: its writer's server process is gone (the writer died), or it
# is older than the grace (the writer has not reached Redis since)
_ORPHANED = f"({_WRITER_GONE} OR u.since < now() - make_interval(secs => %(grace)s))"
_CACHE_STATE = (
    "SELECT epoch, (SELECT count(*) FROM neurogate_cache_unconfirmed u WHERE u.writer <> %(me)s"
    "  AND (u.failed OR u.since < now() - make_interval(secs => %(flight)s) OR "
    + _WRITER_GONE + ")),"
    " (SELECT count(*) FROM neurogate_cache_unconfirmed u WHERE " + _ORPHANED + ")"
    " FROM neurogate_cache_epoch"
)
_ORPHANS_TO_NEW_EPOCH = (
    "WITH gone AS (DELETE FROM neurogate_cache_unconfirmed u WHERE " + _ORPHANED
    + " RETURNING 1) UPDATE neurogate_cache_epoch SET epoch = epoch + 1"
    " WHERE EXISTS (SELECT 1 FROM gone)"
)

# -- numpy <-> PostgreSQL binary int8[] --------------------------------------------------------


class Int8Array:
    """Marks a numpy array to be sent as a binary ``int8[]`` parameter (see ``Int8ArrayDumper``)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.int64).ravel()


_ELEMENTS = np.dtype([("len", ">i4"), ("value", ">i8")])


class Int8ArrayDumper(Dumper):
    """Binary ``int8[]`` built with numpy: no per-element Python objects."""

    format = Format.BINARY
    oid = INT8_ARRAY_OID

    def dump(self, obj: Any) -> Buffer:
        values = obj.values
        if values.size == 0:
            return struct.pack(">iiI", 0, 0, INT8_OID)
        body = np.empty(values.size, dtype=_ELEMENTS)
        body["len"] = 8
        body["value"] = values
        return struct.pack(">iiIii", 1, 0, INT8_OID, values.size, 1) + body.tobytes()


class Int8ArrayLoader(Loader):
    """Binary ``int8[]`` result -> numpy int64 array (NULL elements are not expected)."""

    format = Format.BINARY

    def load(self, data: Buffer) -> np.ndarray:
        ndim, has_nulls, _ = struct.unpack_from(">iiI", data)
        if ndim == 0:
            return np.zeros(0, dtype=np.int64)
        if ndim != 1 or has_nulls:
            raise psycopg.DataError("expected a one-dimensional int8[] without NULLs")
        (size,) = struct.unpack_from(">i", data, 12)
        body = np.frombuffer(data, dtype=_ELEMENTS, count=size, offset=20)
        return body["value"].astype(np.int64)


def _configure(conn: Conn) -> None:
    """Pool hook: numpy array adapters on every new connection."""
    conn.adapters.register_dumper(Int8Array, Int8ArrayDumper)
    conn.adapters.register_loader(INT8_ARRAY_OID, Int8ArrayLoader)


def _check_positions(cur: psycopg.Cursor[Any], expect: Mapping[str, int | None]) -> None:
    """Fence a write: lock the expected positions' names (transaction advisory locks, in name
    order so two writers cannot deadlock; absent rows cannot be locked with FOR UPDATE), then
    compare them with what the store holds."""
    names = sorted(expect)
    for name in names:
        cur.execute("SELECT pg_advisory_xact_lock(%s)",
                    (int(text_hash64("position:" + name).view(np.int64)),))
    cur.execute("SELECT input, position FROM neurogate_positions WHERE input = ANY(%s)", (names,))
    check_expected(expect, dict(cur.fetchall()))


def _aggregate(keys: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum duplicate keys and sort by the signed key (the order rows are locked in)."""
    skeys = keys.view(np.int64)
    if skeys.size < 2 or bool((skeys[1:] > skeys[:-1]).all()):
        return skeys, deltas
    order = np.argsort(skeys, kind="stable")
    skeys, deltas = skeys[order], deltas[order]
    starts = np.flatnonzero(np.r_[True, skeys[1:] != skeys[:-1]])
    return skeys[starts], np.add.reduceat(deltas, starts, axis=0)


def redact(conninfo: str) -> str:
    """A connection string safe for logs: user, host, port and database, never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable connection string>"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


@dataclass(frozen=True)
class CacheEpoch:
    """What a Redis cache in front of the store must know before it trusts what it holds."""

    epoch: int  # cached counts are valid in this epoch's namespace only
    blocking: int  # other writers' unconfirmed invalidations that keep readers off the cache
    replaced: int | None = None  # the epoch this read ended (orphaned commits), if it did


class PostgresStore(PatternStore):
    """Pattern counts, positions and blobs in PostgreSQL; see the module docstring.

    ``conninfo`` is a libpq URL or key=value string (keep passwords in ``~/.pgpass`` or
    ``PGPASSWORD``). ``retry_seconds`` is the budget of one call across reconnects (default:
    ``NEUROGATE_STORE_RETRY_SECONDS``, else 60). ``migrate=False`` refuses a database whose
    schema is behind instead of migrating it; ``check_schema=False`` opens it anyway (for an
    operator's ``migrate`` and ``status``).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = 4,
        retry_seconds: float | None = None,
        connect_timeout: float = 5.0,
        migrate: bool = True,
        check_schema: bool = True,
    ) -> None:
        self.url = redact(conninfo)
        self.retry_seconds = _retry_budget() if retry_seconds is None else retry_seconds
        self.connect_timeout = connect_timeout
        self.stats = {"retries": 0, "deadlocks": 0, "ambiguous_commits": 0, "applies": 0}
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid PostgreSQL connection string: {exc}") from None
        if not all(p.strip().isdigit() for p in str(params.get("port") or "5432").split(",")):
            raise ValueError(f"invalid port in the PostgreSQL connection string {self.url}")
        kwargs: dict[str, Any] = {"autocommit": True}
        if "application_name" not in params:
            kwargs["application_name"] = "neurogate"
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = max(2, int(connect_timeout))
        self._conninfo, self._kwargs = conninfo, kwargs
        self._direct: weakref.WeakSet[Conn] = weakref.WeakSet()
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo, min_size=1, max_size=max(2, pool_size), kwargs=kwargs, open=False,
            configure=_configure, name="neurogate", timeout=connect_timeout,
            reconnect_timeout=30.0,
        )
        self._pool.open(wait=False)
        self.store_id = ""
        try:
            if migrate:
                self.migrate()
            else:
                current = self.schema_version()
                if check_schema and current != SCHEMA_VERSION:
                    raise SchemaError(
                        f"{self.url} is at schema version {current}, this neurogate needs "
                        f"{SCHEMA_VERSION}: run `neurogate db migrate --store URL`"
                    )
                if current:
                    self.store_id = self._run("read the store id", self._read_store_id)
                    self._prune_batches()
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    # -- connections and retries ---------------------------------------------------------------

    def _run(
        self, what: str, fn: Callable[[Conn], T], *, batch: uuid.UUID | None = None
    ) -> T:
        """Run ``fn`` on a pooled connection, retrying lost connections with backoff until the
        budget is spent. With ``batch``, a retry first checks whether an earlier attempt's
        COMMIT went through (its acknowledgement may be what was lost)."""
        budget = _Budget(self, what)
        while True:
            conn = self._connect(budget)
            try:
                if batch is not None and budget.commit_unknown:
                    if _batch_committed(conn, batch):
                        self.stats["ambiguous_commits"] += 1
                        log.warning("%s: the lost COMMIT had gone through; not repeating it",
                                    what)
                        return None  # type: ignore[return-value]
                    budget.commit_unknown = False  # known now: it did not commit
                return fn(conn)
            except _CommitLost as exc:
                budget.commit_unknown = True
                error: Exception = exc.cause
            except _RETRYABLE as exc:
                error = exc
            finally:
                self._release(conn)
            budget.failed(error)

    def _connect(self, budget: _Budget) -> Conn:
        """A pooled connection, retried with backoff until ``budget`` is spent; if the pool has
        none ready within a second (after an outage it reconnects in the background on its
        own, slower schedule) a direct one, so that a retry is a real connection attempt and
        recovery is prompt."""
        while True:
            try:
                try:
                    return self._pool.getconn(timeout=min(1.0, budget.connect_timeout()))
                except PoolTimeout:
                    conn = psycopg.connect(self._conninfo, **self._kwargs)
                    _configure(conn)
                    self._direct.add(conn)
                    return conn
            except _RETRYABLE as exc:
                budget.failed(exc)

    def _release(self, conn: Conn) -> None:
        """Back to the pool (which replaces a broken one), or close a direct connection."""
        if conn in self._direct:
            self._direct.discard(conn)
            conn.close()
        else:
            self._pool.putconn(conn)

    def _transaction(self, conn: Conn, body: Callable[[psycopg.Cursor[Any]], None]) -> None:
        """BEGIN, ``body``, COMMIT; on any error roll back and re-raise."""
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            try:
                body(cur)
            except BaseException:
                if not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        cur.execute("ROLLBACK")
                raise
            try:
                self._commit(cur)
            except _RETRYABLE as exc:
                raise _CommitLost(exc) from exc

    def _commit(self, cur: psycopg.Cursor[Any]) -> None:
        """The COMMIT of a write transaction (a separate method so tests can break it)."""
        cur.execute("COMMIT")

    # -- schema --------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """Highest applied migration (0 for an empty database)."""
        return self._run("read the schema version", _schema_version)

    def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction under an advisory lock (safe when many
        workers start at once); returns the versions applied."""

        def step(conn: Conn) -> list[int]:
            applied: list[int] = []

            def body(cur: psycopg.Cursor[Any]) -> None:
                lock = _signed(text_hash64("neurogate/migrations"))
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS neurogate_schema (version integer PRIMARY KEY,"
                    " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT coalesce(max(version), 0) FROM neurogate_schema")
                row = cur.fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise SchemaError(
                        f"{self.url} has schema version {current}, newer than this neurogate "
                        f"({SCHEMA_VERSION}); upgrade neurogate"
                    )
                applied.clear()
                for m in MIGRATIONS:
                    if m.version <= current:
                        continue
                    for stmt in m.statements:
                        cur.execute(stmt)
                    cur.execute(
                        "INSERT INTO neurogate_schema (version, description) VALUES (%s, %s)",
                        (m.version, m.description),
                    )
                    applied.append(m.version)

            self._transaction(conn, body)
            return applied

        applied = self._run("migrate the schema", step)
        self.store_id = self._run("read the store id", self._read_store_id)
        self._prune_batches()
        if applied:
            log.info("migrated %s to schema version %d (applied %s)", self.url, SCHEMA_VERSION,
                     applied)
        return applied

    def status(self) -> dict[str, Any]:
        """Schema, sizes and positions: what an operator checks first."""

        def read(conn: Conn) -> dict[str, Any]:
            version = _schema_version(conn)
            out: dict[str, Any] = {
                "store": self.url,
                "store_id": self.store_id,
                "schema_version": version,
                "schema_latest": SCHEMA_VERSION,
                "pending_migrations": [m.version for m in MIGRATIONS if m.version > version],
            }
            out.update(patterns=0, totals=[0, 0, 0], positions={}, meta_blobs=0)
            if version >= 1:
                out["patterns"] = _scalar(conn, "SELECT count(*) FROM neurogate_patterns")
                out["totals"] = list(conn.execute(
                    "SELECT coalesce(sum(n), 0)::int8, coalesce(sum(n0), 0)::int8,"
                    " coalesce(sum(n1), 0)::int8 FROM neurogate_patterns").fetchone() or ())
                out["positions"] = dict(conn.execute(
                    "SELECT input, position FROM neurogate_positions ORDER BY input").fetchall())
                out["meta_blobs"] = _scalar(conn, "SELECT count(*) FROM neurogate_meta")
            out["database_bytes"] = _scalar(conn, "SELECT pg_database_size(current_database())")
            return out

        return self._run("read the status", read)

    # -- PatternStore --------------------------------------------------------------------------

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        uniq, inverse = np.unique(keys.view(np.int64), return_inverse=True)
        found = np.zeros((uniq.size, NCOLS), dtype=np.int64)
        if uniq.size:

            def read(conn: Conn) -> None:
                with conn.cursor(binary=True) as cur:
                    for i in range(0, uniq.size, _CHUNK):
                        cur.execute(_LOOKUP, (Int8Array(uniq[i : i + _CHUNK]),))
                        row = cur.fetchone()
                        if row is None or row[0] is None:
                            continue
                        found[np.searchsorted(uniq, row[0])] = np.stack(row[1:], axis=1)

            self._run("look up pattern counts", read)
        return found[inverse.ravel()]

    def apply(
        self,
        keys: np.ndarray,
        deltas: np.ndarray,
        positions: Mapping[str, int] | None = None,
        meta: Mapping[str, bytes] | None = None,
        *,
        new: np.ndarray | None = None,
        expect: Mapping[str, int | None] | None = None,
    ) -> None:
        self._apply(keys, deltas, positions, meta, new=new, expect=expect, writer=None)

    def apply_unconfirmed(
        self,
        writer: str,
        keys: np.ndarray,
        deltas: np.ndarray,
        positions: Mapping[str, int] | None = None,
        meta: Mapping[str, bytes] | None = None,
        *,
        new: np.ndarray | None = None,
        expect: Mapping[str, int | None] | None = None,
        failed: bool = False,
    ) -> int:
        """``apply`` for a Redis cache in front: the same transaction records that ``writer``
        owes Redis the invalidation of these keys (``failed``: and knows Redis is unreachable),
        kept until ``confirm_invalidations``, and reads the cache epoch, which cannot change
        before the COMMIT. Returns that epoch: the namespace the write makes stale."""
        epoch = self._apply(keys, deltas, positions, meta, new=new, expect=expect,
                            writer=(writer, failed))
        assert epoch is not None
        return epoch

    def _apply(
        self,
        keys: np.ndarray,
        deltas: np.ndarray,
        positions: Mapping[str, int] | None,
        meta: Mapping[str, bytes] | None,
        *,
        new: np.ndarray | None,
        expect: Mapping[str, int | None] | None,
        writer: tuple[str, bool] | None,
    ) -> int | None:
        keys, deltas = check_keys(keys, deltas, new)
        skeys, sdeltas = _aggregate(keys, deltas)
        pos = sorted((positions or {}).items())
        blobs = sorted((name, bytes(value)) for name, value in (meta or {}).items())
        batch = uuid.uuid4()
        epoch: list[int] = []

        def body(cur: psycopg.Cursor[Any]) -> None:
            if expect:
                _check_positions(cur, expect)
            for i in range(0, skeys.size, _CHUNK):
                d = sdeltas[i : i + _CHUNK]
                cur.execute(_UPSERT, (Int8Array(skeys[i : i + _CHUNK]), Int8Array(d[:, 0]),
                                      Int8Array(d[:, 1]), Int8Array(d[:, 2])))
            if pos:
                cur.execute(_POSITIONS, ([p[0] for p in pos], [p[1] for p in pos]))
            if blobs:
                cur.execute(_META, ([b[0] for b in blobs], [b[1] for b in blobs]))
            if writer is not None:
                cur.execute(_CACHE_LOCK, (_CACHE_LOCK_ID,))  # a statement of its own: the
                # epoch is read after the lock is held; the server process tells readers
                # whether the writer lives, unless this connection is closed right after
                pooled = cur.connection not in self._direct
                cur.execute(_UNCONFIRMED, (writer[0], pooled, writer[1]))
                epoch[:] = [_fetch_int(cur)]
            cur.execute("INSERT INTO neurogate_batches (id) VALUES (%s)", (batch,))

        self._run("apply a batch", lambda conn: self._transaction(conn, body), batch=batch)
        self.stats["applies"] += 1
        if self.stats["applies"] % 1000 == 0:
            self._prune_batches()
        return epoch[0] if writer is not None else None

    # -- Redis cache coordination (see engine/stores/redis_front.py) ---------------------------

    def cache_epoch(self, writer: str, grace: float, in_flight: float) -> CacheEpoch:
        """The cache epoch, and how many other writers owe Redis invalidations that keep
        readers off the cache: known to have failed, older than ``in_flight`` seconds, or of a
        dead writer (younger ones are in flight: a read then sees the counts of just before
        that commit). First, if a debt is orphaned (its writer's server process is gone, or it
        is older than ``grace`` seconds), end the epoch: what was cached before is then in a
        namespace nobody reads."""
        args = {"me": writer, "grace": grace, "flight": in_flight}

        def read(conn: Conn) -> tuple[int, int, int]:
            row = conn.execute(_CACHE_STATE, args).fetchone()
            assert row is not None
            return int(row[0]), int(row[1]), int(row[2])

        epoch, unconfirmed, orphans = self._run("read the cache epoch", read)
        if not orphans:
            return CacheEpoch(epoch, unconfirmed)
        result: list[CacheEpoch] = []

        def body(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(_CACHE_LOCK_ALONE, (_CACHE_LOCK_ID,))
            cur.execute(_ORPHANS_TO_NEW_EPOCH, args)
            bumped = cur.rowcount == 1
            cur.execute(_CACHE_STATE, args)
            row = cur.fetchone()
            assert row is not None
            result[:] = [CacheEpoch(int(row[0]), int(row[1]),
                                    int(row[0]) - 1 if bumped else None)]

        self._run("end the cache epoch", lambda conn: self._transaction(conn, body))
        if result[0].replaced is not None:
            log.warning("Redis cache epoch %d ended: a writer died, or lost Redis for over "
                        "%g s, owing it invalidations; the cache starts over in epoch %d",
                        result[0].replaced, grace, result[0].epoch)
        return result[0]

    def new_cache_epoch(self, writer: str | None = None, *, after: int = 0) -> int:
        """End the cache epoch now (the cache starts over empty) and drop ``writer``'s record
        of owed invalidations, which the new epoch makes moot. The new epoch is also above
        ``after`` (e.g. the highest one still cached, after a restore from a backup). Returns
        the new epoch."""
        result: list[int] = []

        def body(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(_CACHE_LOCK_ALONE, (_CACHE_LOCK_ID,))
            if writer is not None:
                cur.execute("DELETE FROM neurogate_cache_unconfirmed WHERE writer = %s",
                            (writer,))
            cur.execute("UPDATE neurogate_cache_epoch SET epoch = greatest(epoch, %s) + 1"
                        " RETURNING epoch", (after,))
            result[:] = [_fetch_int(cur)]

        self._run("start a new cache epoch", lambda conn: self._transaction(conn, body))
        return result[0]

    def confirm_invalidations(self, writer: str) -> None:
        """``writer`` delivered every invalidation it owed Redis: drop its record."""
        self._run("confirm cache invalidations", lambda conn: conn.execute(
            "DELETE FROM neurogate_cache_unconfirmed WHERE writer = %s", (writer,)))

    def invalidations_failed(self, writer: str) -> None:
        """``writer`` could not deliver the invalidations it owes: no reader waits for them."""
        self._run("record failed cache invalidations", lambda conn: conn.execute(
            "UPDATE neurogate_cache_unconfirmed SET failed = true WHERE writer = %s",
            (writer,)))

    def positions(self) -> dict[str, int]:
        return self._run("read input positions", lambda conn: dict(conn.execute(
            "SELECT input, position FROM neurogate_positions").fetchall()))

    def size(self) -> int:
        return self._run("count patterns", lambda conn: int(
            _scalar(conn, "SELECT count(*) FROM neurogate_patterns")))

    def iter_counts(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All counts in key order (signed), from one REPEATABLE READ snapshot: a merge or
        export is consistent even while workers keep writing."""
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        budget = _Budget(self, "start reading counts")
        while True:
            conn = self._connect(budget)
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute("SELECT 1 FROM neurogate_patterns LIMIT 1")  # snapshot taken here
                break
            except _RETRYABLE as exc:
                self._release(conn)
                budget.failed(exc)
        try:
            start = _INT64_MIN
            with conn.cursor(binary=True) as cur:
                while True:
                    try:
                        cur.execute(_PAGE, (start, chunk))
                        row = cur.fetchone()
                    except _RETRYABLE as exc:
                        raise StoreUnavailable(
                            f"PostgreSQL store {self.url}: connection lost while reading "
                            f"counts; start the read again: {_oneline(exc)}"
                        ) from exc
                    if row is None or row[0] is None:
                        break
                    order = np.argsort(row[0])
                    keys = row[0][order]
                    yield keys.view(np.uint64), np.stack(row[1:], axis=1)[order]
                    if keys.size < chunk or keys[-1] == _INT64_MAX:
                        break
                    start = int(keys[-1]) + 1
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            self._release(conn)

    def put_meta(self, name: str, value: bytes) -> None:
        blob = bytes(value)

        def body(cur: psycopg.Cursor[Any]) -> None:
            cur.execute(_META, ([name], [blob]))

        self._run("write a blob", lambda conn: self._transaction(conn, body))

    def get_meta(self, name: str) -> bytes | None:
        row = self._run("read a blob", lambda conn: conn.execute(
            "SELECT value FROM neurogate_meta WHERE name = %s", (name,)).fetchone())
        return None if row is None else bytes(row[0])

    def meta_names(self, prefix: str = "") -> list[str]:
        rows = self._run("list blobs", lambda conn: conn.execute(
            "SELECT name FROM neurogate_meta WHERE starts_with(name, %s) ORDER BY name",
            (prefix,)).fetchall())
        return [r[0] for r in rows]

    def close(self) -> None:
        self._pool.close()

    # -- internals -----------------------------------------------------------------------------

    def _read_store_id(self, conn: Conn) -> str:
        return str(_scalar(conn, "SELECT value FROM neurogate_info WHERE name = 'store_id'"))

    def _prune_batches(self) -> None:
        """Forget applied-batch ids older than the retention (they only guard retries)."""
        try:
            self._run("prune applied batches", lambda conn: conn.execute(
                "DELETE FROM neurogate_batches WHERE applied_at < now() - %s::interval",
                (_BATCH_RETENTION,)))
        except StoreUnavailable as exc:  # housekeeping only: never fail a write for it
            log.warning("%s", exc)


class _CommitLost(Exception):
    """The connection failed while COMMIT was in flight: the transaction may have committed."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Budget:
    """Retry bookkeeping for one store call: backoff with jitter until the deadline."""

    def __init__(self, store: PostgresStore, what: str) -> None:
        self.store = store
        self.what = what
        self.deadline = time.monotonic() + store.retry_seconds
        self.attempt = 0
        self.commit_unknown = False  # a COMMIT was lost and not yet found (not) to have landed

    def connect_timeout(self) -> float:
        return max(0.1, min(self.store.connect_timeout, self.deadline - time.monotonic()))

    def failed(self, exc: Exception) -> None:
        """Sleep before the next attempt, or raise StoreUnavailable when the budget is spent.
        The first retry is immediate: a stale pooled connection is the usual cause."""
        self.attempt += 1
        stats = self.store.stats
        if isinstance(exc, psycopg.errors.DeadlockDetected):
            stats["deadlocks"] += 1
        delay = 0.0 if self.attempt == 1 else min(5.0, 0.1 * 2 ** (self.attempt - 2))
        delay *= 0.5 + random.random() / 2
        if "FATAL:" in str(exc) and any(m in str(exc) for m in _PERMANENT):
            raise StoreUnavailable(
                f"PostgreSQL store {self.store.url}: could not {self.what}: {_oneline(exc)} "
                "(a configuration error: not retried)") from exc
        if time.monotonic() + delay >= self.deadline:
            message = (f"PostgreSQL store {self.store.url} unavailable: could not {self.what} "
                       f"within {self.store.retry_seconds:g} s ({self.attempt} attempts): "
                       f"{_oneline(exc)}")
            if self.commit_unknown:
                raise CommitUnknown(
                    message + "; the last COMMIT may or may not have landed: resume from the "
                    "store's committed positions instead of sending the batch again") from exc
            raise StoreUnavailable(message + "; nothing of it was committed") from exc
        stats["retries"] += 1
        log.warning("could not %s (%s); retry %d in %.2f s", self.what, _oneline(exc),
                    self.attempt, delay)
        time.sleep(delay)


def _retry_budget() -> float:
    """Seconds one store call may spend retrying, from NEUROGATE_STORE_RETRY_SECONDS (60)."""
    text = os.environ.get("NEUROGATE_STORE_RETRY_SECONDS", "60")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"NEUROGATE_STORE_RETRY_SECONDS must be seconds >= 0, got {text!r}")
    return value


def _signed(h: np.uint64) -> int:
    """A uint64 hash as the int64 with the same bits (advisory lock ids are bigint)."""
    return int(np.array([h], dtype=np.uint64).view(np.int64)[0])


_CACHE_LOCK_ID = _signed(text_hash64("neurogate/cache-epoch"))


def _schema_version(conn: Conn) -> int:
    if _scalar(conn, "SELECT to_regclass('neurogate_schema') IS NOT NULL") is False:
        return 0
    return int(_scalar(conn, "SELECT coalesce(max(version), 0) FROM neurogate_schema"))


def _batch_committed(conn: Conn, batch: uuid.UUID) -> bool:
    row = conn.execute("SELECT 1 FROM neurogate_batches WHERE id = %s", (batch,)).fetchone()
    return row is not None


def _fetch_int(cur: psycopg.Cursor[Any]) -> int:
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def _scalar(conn: Conn, query: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _oneline(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def create_database(admin_conninfo: str, name: str) -> None:
    """CREATE DATABASE ``name`` through an admin connection (identifier quoted, not formatted)."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_conninfo: str, name: str) -> None:
    """DROP DATABASE ``name`` (forcing out its sessions); only for databases the caller made."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def with_database(conninfo: str, name: str) -> str:
    """The same server and credentials, another database (a URL stays a URL)."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(conninfo)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    params = conninfo_to_dict(conninfo)
    params["dbname"] = name
    return make_conninfo(**{k: str(v) for k, v in params.items()})

"""SQLite pattern store: the embedded default, one file, no server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np

from neurogate.engine.keys import NCOLS
from neurogate.engine.stores.base import PatternStore, check_expected, check_keys

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: [
        "CREATE TABLE IF NOT EXISTS patterns (key INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
        " n0 INTEGER NOT NULL, n1 INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS positions (input TEXT PRIMARY KEY, position INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    ]
}
_TABLES = {"patterns": {"key", "n", "n0", "n1"}, "positions": {"input", "position"},
           "meta": {"name", "value"}}
SQLITE_HEADER = b"SQLite format 3\x00"
FileKind = Literal["missing", "empty", "store", "foreign"]


def inspect_file(path: str | Path) -> tuple[FileKind, str]:
    """What ``path`` holds, read without writing anything: ``missing``; ``empty`` (a 0-byte
    file or a SQLite database without tables: nothing to lose); ``store`` (a neurogate pattern
    store: schema version >= 1 and exactly its tables and columns, or a newer version with
    them); or ``foreign``, with a reason (not SQLite, or another application's database: its
    tables are named). The SQLite header alone does not make a store.

    >>> import tempfile, sqlite3
    >>> with tempfile.TemporaryDirectory() as d:
    ...     other = sqlite3.connect(f"{d}/crm.db")
    ...     _ = other.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    ...     other.close()
    ...     SQLiteStore(f"{d}/run.db").close()
    ...     [inspect_file(f"{d}/{name}") for name in ("new.db", "crm.db", "run.db")]
    [('missing', ''), ('foreign', "another SQLite database (tables: ['customers'])"), ('store', '')]
    """
    path = Path(path)
    if not path.exists():
        return "missing", ""
    if not path.is_file():
        return "foreign", "not a regular file"
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if not header:
        return "empty", ""
    if header != SQLITE_HEADER:
        return "foreign", "not a SQLite database"
    # immutable: no lock, no -wal/-shm files left next to someone else's database; a database
    # with a write-ahead log in use is read through it (read-only)
    mode = "ro" if Path(f"{path}-wal").exists() else "ro&immutable=1"
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode={mode}", uri=True)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            names = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")]
            tables = {n: {r[1] for r in db.execute("SELECT * FROM pragma_table_info(?)", (n,))}
                      for n in names}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return "foreign", f"an unreadable SQLite database: {exc}"
    if not tables:
        return "empty", ""
    newer = version > SCHEMA_VERSION  # a later release may add tables and columns
    ours = all(tables.get(t) == cols or (newer and cols <= tables.get(t, set()))
               for t, cols in _TABLES.items())
    if version >= 1 and ours and (newer or set(tables) == set(_TABLES)):
        return "store", ""
    return "foreign", f"another SQLite database (tables: {sorted(tables)[:10]})"


_FETCH_CHUNK = 900
_ROWS = 200  # rows per INSERT statement (4 parameters each: under the oldest 999-variable limit)
_ON_CONFLICT = (" ON CONFLICT(key) DO UPDATE SET n = n + excluded.n, n0 = n0 + excluded.n0,"
                " n1 = n1 + excluded.n1")


def _write_rows(db: sqlite3.Connection, skeys: np.ndarray, deltas: np.ndarray,
                upsert: bool) -> None:
    """INSERT (or upsert) rows, ``_ROWS`` per statement: 1.5-2x the rows/s of one statement
    per row, as SQLite steps once per statement and Python binds one flat list. The lists are
    made one statement at a time: one list of the whole write held 67 B per key of Python ints
    and pointers (99 B while it was made; tracemalloc)."""
    if not skeys.size:
        return
    tail = _ON_CONFLICT if upsert else ""

    def statement(rows: int) -> str:
        return ("INSERT INTO patterns (key, n, n0, n1) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * rows) + tail)

    def params(start: int, stop: int) -> list[int]:
        return np.column_stack([skeys[start:stop], deltas[start:stop]]).ravel().tolist()

    full = skeys.size // _ROWS
    if full:
        db.executemany(statement(_ROWS), (params(i * _ROWS, (i + 1) * _ROWS)
                                          for i in range(full)))
    if skeys.size > full * _ROWS:
        db.execute(statement(skeys.size - full * _ROWS), params(full * _ROWS, skeys.size))


class SQLiteStore(PatternStore):
    """Counts in a SQLite file; keys are stored as signed 64-bit integers (same bits)."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        """``timeout``: seconds to wait for another writer's lock before an error."""
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if not self.path.parent.exists():
            raise FileNotFoundError(
                f"directory for the pattern store does not exist: {self.path.parent}"
            )
        kind, why = inspect_file(self.path)
        if kind == "foreign":  # never add our tables to (or count into) someone else's file
            raise ValueError(f"{self.path} is not a usable neurogate SQLite store ({why}); "
                             "refusing to touch it")
        try:
            # A detector's background flush writes from its own thread, one call at a time.
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache for upserts
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path} is not a usable neurogate SQLite store: {exc}") from None

    def _migrate(self) -> None:
        """Apply pending schema migrations, idempotently, recording PRAGMA user_version."""
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise ValueError(
                f"{self.path} has schema version {current}, newer than this neurogate "
                f"({SCHEMA_VERSION}); upgrade neurogate"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            for stmt in _MIGRATIONS[version]:
                self._db.execute(stmt)
            self._db.execute(f"PRAGMA user_version = {version}")
            self._db.execute("COMMIT")

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        uniq, inverse = np.unique(keys.view(np.int64), return_inverse=True)
        found = np.zeros((uniq.size, NCOLS), dtype=np.int64)
        if uniq.size:
            # IN-lists of bound keys: ~4x faster than joining a temp table of the keys; 900
            # stays under the smallest SQLITE_MAX_VARIABLE_NUMBER (999) of older builds
            # (rows go into ``found`` chunk by chunk: Python tuples of every key read back
            # cost 115 B per key while they lasted, tracemalloc)
            self._db.execute("BEGIN")  # one snapshot for all chunks
            try:
                for i in range(0, uniq.size, _FETCH_CHUNK):
                    chunk = uniq[i : i + _FETCH_CHUNK].tolist()
                    rows = self._db.execute(
                        "SELECT key, n, n0, n1 FROM patterns WHERE key IN "
                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
                    if rows:
                        got = np.array(rows, dtype=np.int64)
                        found[np.searchsorted(uniq, got[:, 0])] = got[:, 1:]
            finally:
                self._db.execute("COMMIT")
        return found[inverse]

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
        keys, deltas = check_keys(keys, deltas, new)
        skeys = keys.view(np.int64)
        order = np.argsort(skeys)  # B-tree inserts in key order are several times faster
        skeys, deltas = skeys[order], deltas[order]
        fresh = np.zeros(keys.size, bool) if new is None else np.asarray(new, bool)[order]
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the write lock: positions cannot move until COMMIT
        try:
            if expect:
                check_expected(expect, self.positions())
            if fresh.any():
                self._insert_fresh(skeys[fresh], deltas[fresh])
            _write_rows(db, skeys[~fresh], deltas[~fresh], upsert=True)
            if positions:
                db.executemany(
                    "INSERT INTO positions VALUES (?, ?) ON CONFLICT(input) DO UPDATE"
                    " SET position = excluded.position",
                    list(positions.items()),
                )
            for name, value in (meta or {}).items():
                self._put_meta(name, value)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _insert_fresh(self, skeys: np.ndarray, deltas: np.ndarray) -> None:
        """Plain INSERT of keys the caller believes are new (about twice as fast as an upsert
        of a new key); if one already exists after all, upsert them instead."""
        db = self._db
        db.execute("SAVEPOINT fresh")
        try:
            _write_rows(db, skeys, deltas, upsert=False)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO fresh")
            _write_rows(db, skeys, deltas, upsert=True)
        db.execute("RELEASE fresh")

    def positions(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT input, position FROM positions").fetchall())

    def size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM patterns").fetchone()[0])

    def iter_counts(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cur = self._db.execute("SELECT key, n, n0, n1 FROM patterns ORDER BY key")
        while rows := cur.fetchmany(chunk):
            arr = np.array(rows, dtype=np.int64)
            yield arr[:, 0].view(np.uint64).copy(), arr[:, 1:].copy()

    def put_meta(self, name: str, value: bytes) -> None:
        self._put_meta(name, value)

    def _put_meta(self, name: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, bytes(value)),
        )

    def get_meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def meta_names(self, prefix: str = "") -> list[str]:
        rows = self._db.execute(
            "SELECT name FROM meta WHERE substr(name, 1, ?) = ? ORDER BY name",
            (len(prefix), prefix),
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()

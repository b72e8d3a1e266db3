"""Pattern-database commands: ``db migrate|status|clear-cache`` and ``patterns export|import``.

``register(sub)`` adds ``db`` to the ``neurogate`` command; ``register_patterns(pts)`` adds
``export`` and ``import`` to the ``patterns`` sub-commands.
``python -m neurogate.cli.store ...`` runs them on their own.

Export file (``neurogate.patterns/1``): a zip archive holding ``header.json`` (format, export
id, source, column names, the source's input positions), chunks ``keys-NNNNNN.npy`` (uint64) and
``counts-NNNNNN.npy`` (int64 [rows, 3]: n, n0, n1), and ``summary.json`` (rows, chunks, totals),
which the import checks before it writes anything. Only counts of opaque 64-bit pattern keys
travel: no raw events. Counts are additive, so sites or partitions that learned separately
combine exactly; each chunk is applied together with the marker ``import:<export id>`` in the
destination's positions, so an import is exactly-once: repeating it does nothing, and an
interrupted one resumes where it stopped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurogate.cli.boundary import EXIT_OK, Parser, UserError, main_of, user_errors
from neurogate.cli.options import add_store, store_from_positional
from neurogate.engine.redaction import redact_url

if TYPE_CHECKING:  # numpy and numba: loaded by the commands that use them (bench/startup.py)
    import numpy as np

FORMAT = "neurogate.patterns/1"
CHUNK_ROWS = 500_000
# user errors of these commands besides UserError: bad files and URLs, unreachable servers
STORE_ERRORS = ("ValueError", "OSError", "psycopg.Error", "redis.exceptions.RedisError")

# -- registration --------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``db migrate``, ``db status`` and ``db clear-cache`` to the top-level commands."""
    db = sub.add_parser("db", help="PostgreSQL pattern database: migrations, status, cache")
    dbs = db.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    store_help = ("postgresql://USER@HOST:PORT/DB (or redis+postgresql://...); default: "
                  "$NEUROGATE_PG_URL")
    m = dbs.add_parser("migrate", help="apply pending schema migrations (idempotent; safe while "
                       "workers run)")
    add_store(m, help=store_help)
    m.set_defaults(func=cmd_db_migrate)
    s = dbs.add_parser("status", help="schema version, pattern rows, input positions")
    add_store(s, help=store_help)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_db_status)
    c = dbs.add_parser("clear-cache", help="drop the Redis cache of a redis+postgresql:// store "
                       "(e.g. after restoring PostgreSQL from a backup)")
    add_store(c, help="redis+postgresql://USER@HOST:PORT/DB[?redis=redis://...]")
    c.set_defaults(func=cmd_db_clear_cache)


def register_patterns(pts: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``export`` and ``import`` to the ``patterns`` sub-commands."""
    ex = pts.add_parser("export", help="write a store's counts (no raw data) to a portable file")
    add_store(ex, help="store URL or SQLite path to read")
    ex.add_argument("file", help="file to write (a zip archive, e.g. site1.patterns.zip)")
    ex.add_argument("legacy_file", nargs="?", help=argparse.SUPPRESS)  # old: STORE FILE
    ex.set_defaults(func=cmd_patterns_export)
    im = pts.add_parser(
        "import", help="add an exported file's counts to a store; exactly-once per export "
        "(a repeated import does nothing, an interrupted one resumes)")
    add_store(im, help="store URL or SQLite path to add the counts to")
    im.add_argument("file", help="a file written by `patterns export`")
    im.add_argument("legacy_file", nargs="?", help=argparse.SUPPRESS)  # old: STORE FILE
    im.add_argument("--again", action="store_true",
                    help="add the counts even though this export was imported before (doubles "
                    "them; for deliberately re-weighting a site)")
    im.set_defaults(func=cmd_patterns_import)


# -- db ------------------------------------------------------------------------------------------


def _server_url(args: argparse.Namespace) -> str:
    url = args.store or os.environ.get("NEUROGATE_PG_URL")
    if not url:
        raise UserError("give --store postgresql://... or set NEUROGATE_PG_URL")
    if not url.startswith(("postgresql://", "redis+postgresql://")):
        raise UserError(
            f"{redact_url(url)}: db commands work on postgresql:// and redis+postgresql:// stores "
            "(SQLite stores migrate themselves when opened)")
    return url


def _postgres(url: str, *, migrate: bool = True, check_schema: bool = True) -> Any:
    """A PostgresStore for a postgresql:// or redis+postgresql:// URL (Redis not needed)."""
    from neurogate.engine.stores.postgres import PostgresStore

    plain = url.removeprefix("redis+")
    if "?" in plain:
        from urllib.parse import parse_qsl, urlencode

        base, query = plain.split("?", 1)
        rest = urlencode([(k, v) for k, v in parse_qsl(query) if k != "redis"])
        plain = f"{base}?{rest}" if rest else base
    # no retries: an operator asking for status wants the answer within the connect timeout
    # (5 s), not after the store's 60 s retry budget for a worker riding out a restart
    return PostgresStore(plain, migrate=migrate, check_schema=check_schema, retry_seconds=0)


@user_errors(*STORE_ERRORS)
def cmd_db_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations and say which."""
    from neurogate.engine.stores.postgres import SCHEMA_VERSION

    with _postgres(_server_url(args), migrate=False, check_schema=False) as store:
        applied = store.migrate()
        if applied:
            print(f"{store.url}: applied migration(s) {', '.join(map(str, applied))}; "
                  f"schema now at version {SCHEMA_VERSION}")
        else:
            print(f"{store.url}: schema up to date (version {SCHEMA_VERSION})")
    return EXIT_OK


@user_errors(*STORE_ERRORS)
def cmd_db_status(args: argparse.Namespace) -> int:
    """Print what an operator checks first."""
    from neurogate.engine.stores.postgres import SCHEMA_VERSION

    with _postgres(_server_url(args), migrate=False, check_schema=False) as store:
        st = store.status()
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return EXIT_OK
    pending = st["pending_migrations"]
    print(f"store            {st['store']}  (id {st['store_id']})")
    print(f"schema           version {st['schema_version']} of {SCHEMA_VERSION}"
          + (f"; pending {pending}: run `neurogate db migrate`" if pending else ""))
    print(f"patterns         {st['patterns']:,} keys; totals n={st['totals'][0]:,} "
          f"n0={st['totals'][1]:,} n1={st['totals'][2]:,}")
    print(f"database size    {st['database_bytes'] / 2**20:,.1f} MiB")
    print(f"blobs            {st['meta_blobs']:,}")
    pos = st["positions"]
    print(f"input positions  {len(pos):,}")
    for name, value in list(pos.items())[:20]:
        print(f"  {name}  {value:,}")
    if len(pos) > 20:
        print(f"  ... and {len(pos) - 20:,} more")
    return EXIT_OK


@user_errors(*STORE_ERRORS)
def cmd_db_clear_cache(args: argparse.Namespace) -> int:
    """Drop a Redis-fronted store's cached counts."""
    from neurogate.engine.stores import open_store
    from neurogate.engine.stores.redis_front import CachedStore

    url = _server_url(args)
    if not url.startswith("redis+"):
        raise UserError(f"{redact_url(url)}: not a Redis-fronted store "
                                "(redis+postgresql://...)")
    with open_store(url) as store:
        assert isinstance(store, CachedStore)
        removed = store.clear_cache()
        print(f"cleared the Redis cache of {store.backend.url} (prefix {store.prefix}): "
              f"{removed:,} hash(es) removed, cache epoch now {store.epoch}")
    return EXIT_OK


# -- export / import -----------------------------------------------------------------------------


def _npy(arr: np.ndarray) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def export_counts(store: Any, path: Path, chunk_rows: int | None = None) -> dict[str, Any]:
    """Write every count of ``store`` to ``path`` (atomically: a temp file renamed at the end);
    returns the summary."""
    import numpy as np

    from neurogate.engine.keys import NCOLS

    if not path.parent.is_dir():
        raise UserError(f"output directory does not exist: {path.parent}")
    header = {
        "format": FORMAT,
        "export_id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": store.url,
        "columns": ["n", "n0", "n1"],
        "keys": "uint64 pattern keys (opaque hashes; encoder namespaces are part of the key)",
        "source_positions": store.positions(),
    }
    totals = np.zeros(NCOLS, dtype=np.int64)
    rows = chunks = 0
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                         allowZip64=True) as zf:
        zf.writestr("header.json", json.dumps(header, indent=2))
        for keys, counts in store.iter_counts(chunk_rows or CHUNK_ROWS):
            zf.writestr(f"keys-{chunks:06d}.npy", _npy(keys.astype(np.uint64)))
            zf.writestr(f"counts-{chunks:06d}.npy", _npy(counts.astype(np.int64)))
            totals += counts.sum(axis=0)
            rows += keys.size
            chunks += 1
        summary = {"rows": rows, "chunks": chunks, "totals": totals.tolist()}
        zf.writestr("summary.json", json.dumps(summary))
    tmp.replace(path)
    return {**header, **summary}


def _chunks(zf: zipfile.ZipFile, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import numpy as np

    from neurogate.engine.keys import NCOLS

    for i in range(n):
        with zf.open(f"keys-{i:06d}.npy") as f:
            keys = np.lib.format.read_array(f, allow_pickle=False)
        with zf.open(f"counts-{i:06d}.npy") as f:
            counts = np.lib.format.read_array(f, allow_pickle=False)
        if keys.dtype != np.uint64 or keys.ndim != 1 or counts.dtype != np.int64 or \
                counts.shape != (keys.size, NCOLS):
            raise UserError(f"chunk {i} has the wrong shape or type")
        yield keys, counts


def read_export(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and summary of an export, after checking every chunk against the summary."""
    import numpy as np

    from neurogate.engine.keys import NCOLS

    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            if header.get("format") != FORMAT:
                raise UserError(
                    f"{path}: unknown format {header.get('format')!r} (expected {FORMAT})")
            summary = json.loads(zf.read("summary.json"))
            totals = np.zeros(NCOLS, dtype=np.int64)
            rows = 0
            for keys, counts in _chunks(zf, int(summary["chunks"])):
                totals += counts.sum(axis=0)
                rows += keys.size
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: not a complete neurogate patterns export ({exc})") \
            from None
    if rows != summary["rows"] or totals.tolist() != summary["totals"]:
        raise UserError(f"{path}: chunks do not add up to the summary; file damaged")
    return header, summary


def import_counts(
    store: Any, path: Path, *, again: bool = False,
    checked: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Add an export's counts to ``store`` chunk by chunk, each with its progress marker in the
    same transaction (``checked``: ``read_export``'s result, if already done). Returns the
    header, summary, marker, rows applied and chunks skipped as imported before."""
    import numpy as np

    from neurogate.engine.keys import NCOLS

    header, summary = checked or read_export(path)
    marker = f"import:{header['export_id']}"
    if again:
        marker += f"/again:{uuid.uuid4()}"
    chunks = int(summary["chunks"])
    done = min(chunks, int(store.positions().get(marker, -1)))
    applied = 0
    with zipfile.ZipFile(path) as zf:
        for i, (keys, counts) in enumerate(_chunks(zf, chunks)):
            if i < done:
                continue
            store.apply(keys, counts, positions={marker: i + 1})
            applied += keys.size
    if chunks == 0 and done < 0:  # an empty export: still remember that it was imported
        store.apply(np.zeros(0, np.uint64), np.zeros((0, NCOLS), np.int64), {marker: 0})
    return {"header": header, "summary": summary, "marker": marker, "applied": applied,
            "skipped": max(done, 0), "already": done == chunks}


def _store_and_file(args: argparse.Namespace) -> tuple[str, str]:
    """``--store STORE FILE``, or the deprecated ``STORE FILE``."""
    if args.legacy_file is not None:
        return store_from_positional(args, args.file), args.legacy_file
    return store_from_positional(args, None), args.file


@user_errors(*STORE_ERRORS)
def cmd_patterns_export(args: argparse.Namespace) -> int:
    """``patterns export --store STORE FILE``."""
    from neurogate.engine.stores import open_store

    url, file = _store_and_file(args)
    with open_store(url) as store:
        info = export_counts(store, Path(file))
    t = info["totals"]
    print(f"exported {info['rows']:,} pattern rows (n={t[0]:,} n0={t[1]:,} n1={t[2]:,}) from "
          f"{info['source']} to {file} (export {info['export_id']})")
    return EXIT_OK


@user_errors(*STORE_ERRORS)
def cmd_patterns_import(args: argparse.Namespace) -> int:
    """``patterns import --store STORE FILE``."""
    from neurogate.engine.stores import open_store

    url, file = _store_and_file(args)
    path = Path(file)
    checked = read_export(path)  # a bad file fails before the store is opened (or created)
    with open_store(url) as store:
        res = import_counts(store, path, again=args.again, checked=checked)
    header, summary = res["header"], res["summary"]
    if res["already"]:
        print(f"{file}: export {header['export_id']} was already imported into "
              f"{redact_url(url)}; nothing to do (--again adds it once more)")
    else:
        t = summary["totals"]
        skipped = res["skipped"]
        resumed = f"; resumed after {skipped} of {summary['chunks']} chunks" if skipped else ""
        print(f"imported {res['applied']:,} pattern rows from {file} into "
              f"{redact_url(url)} "
              f"(export totals n={t[0]:,} n0={t[1]:,} n1={t[2]:,}{resumed})")
    return EXIT_OK


# -- plumbing ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these commands (``python -m neurogate.cli.store``, tests)."""
    p = Parser(prog="neurogate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    register(sub)
    pt = sub.add_parser("patterns", help="pattern export and import")
    register_patterns(pt.add_subparsers(dest="action", required=True))
    return p


def main(argv: Iterable[str] | None = None) -> int:
    """Run ``neurogate`` with these arguments (default: the process's); the exit code."""
    return main_of(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Options several commands share, and what they build: the configuration options, the input
files with their CSV options, the store, the progress bar."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurogate.cli.boundary import UserError

if TYPE_CHECKING:  # numpy: not loaded to start the command line (bench/startup.py)
    from neurogate.cli.files import BadRecord, CsvColumns, CsvOptions
    from neurogate.engine.events import Event

FORMATS = ("csv", "tsv", "jsonl")


def add_config_options(p: argparse.ArgumentParser, *, worker: bool = False,
                       after: str = "") -> None:
    """``--config`` and ``--set`` (neurogate.cli.config reads them)."""
    tables = "[engine] and [worker] tables" if worker else "an [engine] table"
    p.add_argument("--config", type=Path, help=f"TOML file with {tables} "
                   "(default: $NEUROGATE_CONFIG)")
    example = "threshold=0.95, worker.batch_size=500" if worker else "threshold=0.95"
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one setting{after}, e.g. {example} (repeatable)")


def add_input_options(p: argparse.ArgumentParser) -> None:
    """``--format`` and the CSV column options; ``csv_options`` builds them."""
    p.add_argument("--format", choices=FORMATS, help="input format (default: by extension)")
    p.add_argument("--delimiter", help="CSV field delimiter (default: whichever of , ; tab | "
                   "splits the header row into the most columns; tab for .tsv)")
    p.add_argument("--timestamp-column", help="timestamp column (default: timestamp, ts, time, "
                   "date or datetime; else the row index)")
    p.add_argument("--value-columns", help="comma-separated value columns (default: all numeric "
                   "ones but the label-like: label, anomaly, changepoint, outlier, attack, ...)")
    p.add_argument("--source-column", help="source column (default: 'source', else the file "
                   "name)")
    p.add_argument("--label-column", help="0/1 label column (default: the first label-like "
                   "column holding 0/1: label, anomaly, ...), used only after each row is scored")
    p.add_argument("--id-column", help="event id column (default: 'id')")


def csv_options(args: argparse.Namespace) -> CsvOptions:
    """The CSV options of ``add_input_options``' flags."""
    from neurogate.cli.files import CsvOptions

    return CsvOptions(
        delimiter=args.delimiter,
        timestamp_column=args.timestamp_column,
        value_columns=tuple(args.value_columns.split(",")) if args.value_columns else None,
        source_column=args.source_column,
        label_column=args.label_column,
        id_column=args.id_column,
    )


def open_inputs(
    args: argparse.Namespace,
) -> tuple[list[tuple[str, Iterator[Event | BadRecord]]], int | None]:
    """Each input file's key (``file:<absolute path>``, ``stdin``) and reader, and the total
    number of lines if known; an input that cannot be read is a user error before any is."""
    from neurogate.cli.files import count_lines, csv_columns, input_problem, read_events

    opts = csv_options(args)
    readers = []
    total: int | None = 0
    for name in args.files:
        path = Path(name)
        if name != "-" and (problem := input_problem(path)) is not None:
            raise UserError(problem)
        try:
            reader = read_events(path, fmt=args.format, csv=opts)
            if name != "-":
                _tell_columns(name, opts, csv_columns(path, fmt=args.format, csv=opts))
        except (ValueError, OSError) as exc:
            raise UserError(str(exc) if name in str(exc) else f"{name}: {exc}") from None
        readers.append(("stdin" if name == "-" else f"file:{path.resolve()}", reader))
        lines = count_lines(path) if name != "-" else None
        total = None if total is None or lines is None else total + lines
    return readers, total


def _tell_columns(name: str, opts: CsvOptions, cols: CsvColumns | None) -> None:
    """One line on stderr when the column choice was not the obvious one: a delimiter other than
    ',' found in the header, a label column other than 'label', label-like columns not scored."""
    if cols is None:
        return
    notes = []
    if opts.delimiter is None and cols.delimiter != ",":
        notes.append(f"delimiter {cols.delimiter!r}")
    if opts.label_column is None and cols.label not in (None, "label"):
        notes.append(f"labels from {cols.label!r} (read only after each row is scored)")
    if cols.set_aside:
        notes.append(f"not scored: {', '.join(map(repr, cols.set_aside))} (a label's name; "
                     "--value-columns scores it)")
    if notes:
        print(f"{name}: " + "; ".join(notes), file=sys.stderr)


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``-q``: no progress bars (there are none when stderr is not a terminal either)."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (they are shown "
                   "only when stderr is a terminal)")


def progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not ``--quiet`` and stderr is a terminal (a log file
    would get a line of escape codes per update)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def add_store(p: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    """``--store``: the one name of the pattern store in every command."""
    p.add_argument("--store", help=help, **kwargs)


def store_from_positional(args: argparse.Namespace, positional: str | None) -> str:
    """``--store``, or the deprecated spelling with the store as the first argument (warned)."""
    if positional is not None:
        if args.store is not None:
            raise UserError(f"unexpected argument {positional!r}: the store is given with "
                            "--store")
        print("neurogate: warning: the store as the first argument is deprecated; use --store",
              file=sys.stderr)
        return positional
    if args.store is None:
        raise UserError("give the store with --store (a SQLite path or a URL)")
    return str(args.store)

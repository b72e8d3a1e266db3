"""Read CSV/TSV or JSONL files (or JSONL on stdin) into `Event`s, streaming, without crashing.

Malformed rows come back as `BadRecord`s in file order between the good events, so a caller can
count and report them; problems with the whole file (missing file, unknown column, no numeric
column, unknown format) raise at once with a message that says what to fix.
"""

from __future__ import annotations

import csv as _csv
import dataclasses
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

from neurogate.engine.events import (
    MAX_ID_LEN,
    MAX_SOURCE_LEN,
    BadEvent,
    Event,
    events_from_json,
    parse_timestamp,
)

__all__ = ["BadRecord", "CsvColumns", "CsvOptions", "count_lines", "csv_columns", "input_problem",
           "read_events"]

RAW_LIMIT = 200
MAX_HEADER_BYTES = 1 << 20  # a longer first line is not a header row (e.g. a one-line 50 MB file)
SAMPLE_ROWS = 50  # data rows inspected to decide which columns are numeric
TIMESTAMP_NAMES = ("timestamp", "ts", "time", "date", "datetime")
DELIMITERS = (",", ";", "\t", "|")  # tried on the header row when no delimiter is given
# Names benchmark files give their ground truth (any case; the first is the label column when
# none is named and its cells are labels). Never scored as values by default: a file with an
# "anomaly" column scored it, and its 0 -> 1 step drove the flags (the score read the labels).
LABEL_NAMES = ("label", "labels", "anomaly", "anomalies", "is_anomaly", "anomalous", "outlier",
               "is_outlier", "changepoint", "change_point", "attack", "is_attack",
               "ground_truth")
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


@dataclass
class BadRecord:
    """A row that could not become an event: where, why (a `REASONS` value) and what it was."""

    path: str
    line: int
    reason: str
    message: str
    raw: str


@dataclass
class CsvOptions:
    """How to map CSV columns onto events; `None` means auto-detect (see `read_events`)."""

    delimiter: str | None = None
    timestamp_column: str | None = None
    value_columns: tuple[str, ...] | None = None
    source_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file, or None if it can."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"input is a directory, not a file: {path}"
    if not path.exists():
        return f"input file not found: {path}"
    return f"input is not a regular file: {path}"


def _undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (read with ``surrogateescape``)."""
    return any("\udc80" <= c <= "\udcff" for c in text)


def _format_of(path: Path, fmt: str | None) -> str:
    """Resolve the format name from `fmt` or the file extension; '-' (stdin) is JSONL."""
    if fmt is None:
        if str(path) == "-":
            return "jsonl"
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(
                f"cannot tell the format of {path} from its extension; use .csv, .tsv, .jsonl, "
                ".ndjson or .json, or pass fmt='csv'|'tsv'|'jsonl'"
            )
        return fmt
    key = fmt.lower().lstrip(".")
    if key in ("ndjson", "json"):
        key = "jsonl"
    if key not in ("csv", "tsv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use 'csv', 'tsv' or 'jsonl'")
    return key


def read_events(
    path: Path | str, *, fmt: str | None = None, csv: CsvOptions | None = None
) -> Iterator[Event | BadRecord]:
    """Stream the events of a CSV/TSV/JSONL file ('-' = JSONL on stdin), with `BadRecord`s inline.

    Line numbers are 1-based physical lines (a CSV header is line 1; a record that spans lines
    inside quotes gets its first line); blank lines are skipped. Whole-file problems raise
    `FileNotFoundError`/`ValueError` here, before iteration starts.

    JSONL: one event object (or array of them) per line, the event format of
    docs/background.md section 3; a missing "source" defaults to the file's stem; bad items of
    an array follow that line's good events.

    CSV auto-detection (for options left as `None`): delimiter = whichever of , ; tab | splits
    the header row into the most columns (tab for .tsv); timestamp = first column named
    timestamp/ts/time/date/datetime (any case), else the data-row index with
    `has_calendar=False`; source = column "source", else the file's stem; id = column "id";
    label = column "label", else the first column with a `LABEL_NAMES` name ("anomaly",
    "changepoint", ...) whose sampled cells are labels; values = every other column with at
    least half of its non-empty cells in the first 50 rows numeric, except columns with a
    `LABEL_NAMES` name (`csv_columns` says which were set aside). Several value columns make a
    multivariate event whose `fields` are the column names *sorted* (the canonical order JSON
    input gets too), with `values` in that order. An empty label cell means "label unknown"
    (None); an empty value cell is a `BadRecord`.
    """
    path = Path(path)
    kind = _format_of(path, fmt)
    if str(path) == "-":
        if kind != "jsonl":
            raise ValueError("stdin ('-') is read as JSONL only; write CSV to a file first")
        return _read_jsonl(sys.stdin.buffer, "-", None)
    problem = input_problem(path)
    if problem is not None:
        raise (FileNotFoundError if not path.exists() else ValueError)(problem)
    if kind == "jsonl":
        return _jsonl_file(path)
    return _read_csv(path, _plan_csv(path, _options(kind, csv)))


def _options(kind: str, csv: CsvOptions | None) -> CsvOptions:
    """``csv`` with a .tsv file's delimiter (tab) filled in when none was given."""
    opts = csv or CsvOptions()
    if kind == "tsv" and opts.delimiter is None:
        opts = dataclasses.replace(opts, delimiter="\t")
    return opts


@dataclass(frozen=True)
class CsvColumns:
    """What `read_events` makes of a CSV file's columns (for a caller to tell the user)."""

    delimiter: str
    values: tuple[str, ...]
    label: str | None
    set_aside: tuple[str, ...]  # label-like columns that are neither values nor the label


def csv_columns(path: Path | str, *, fmt: str | None = None,
                csv: CsvOptions | None = None) -> CsvColumns | None:
    """The column choice `read_events` makes for a CSV/TSV file (None for JSONL); raises as
    `read_events` does."""
    path = Path(path)
    kind = _format_of(path, fmt)
    if kind == "jsonl" or str(path) == "-":
        return None
    plan = _plan_csv(path, _options(kind, csv))
    return CsvColumns(plan.delimiter, plan.fields, plan.label_name, plan.set_aside)


def _jsonl_file(path: Path) -> Iterator[Event | BadRecord]:
    """Open a JSONL file and stream it (kept apart so `read_events` validates eagerly)."""
    with path.open("rb") as f:  # a file name that is not UTF-8 names no source
        yield from _read_jsonl(f, str(path), None if _undecodable(path.stem) else path.stem)


def _read_jsonl(
    f: Iterable[bytes], name: str, default_source: str | None
) -> Iterator[Event | BadRecord]:
    """Parse JSONL lines; each bad line (or bad array item) becomes a `BadRecord`."""
    errors: list[BadEvent] = []
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            events = events_from_json(line, default_source=default_source, errors=errors)
        except BadEvent as e:
            yield BadRecord(name, line_no, e.reason, e.message, _raw(line))
            continue
        yield from events
        if errors:
            raw = _raw(line)
            for bad in errors:
                yield BadRecord(name, line_no, bad.reason, bad.message, raw)
            errors.clear()


def _raw(line: bytes | str) -> str:
    """The offending input, decoded leniently, without its line ending, cut to RAW_LIMIT chars."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    return line[: RAW_LIMIT * 4].decode("utf-8", "replace").rstrip("\r\n")[:RAW_LIMIT]


@dataclass(frozen=True)
class _CsvPlan:
    """Resolved column indices for a CSV file (from its header and a sample of rows)."""

    delimiter: str
    ncols: int
    ts: int | None
    values: tuple[int, ...]
    fields: tuple[str, ...]
    source: int | None
    default_source: str
    label: int | None
    id: int | None
    label_name: str | None = None
    set_aside: tuple[str, ...] = ()


def _open_csv(path: Path) -> IO[str]:
    r"""Open for the csv module: BOM-tolerant UTF-8; bytes that are not UTF-8 are kept apart
    (``surrogateescape``): replacing them would make "caf\xe9" and "caf\xe8" one source."""
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def _rows(f: IO[str], delimiter: str) -> Iterator[tuple[int, list[str] | str]]:
    """(first line number, row) per non-blank record; a csv.Error gives its message, not a row."""
    reader = _csv.reader(f, delimiter=delimiter)
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report where the record starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except _csv.Error as e:
            yield start, str(e)
            continue
        if row:
            yield start, row


def _is_number(cell: str) -> bool:
    """True when a CSV cell parses as a float."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _sniff(first_line: bytes) -> str:
    """The delimiter of `DELIMITERS` that splits a header row into the most columns (quotes
    respected; ',' when none splits it)."""
    text = first_line.decode("utf-8-sig", "surrogateescape")
    widths = []
    for d in DELIMITERS:
        try:
            widths.append(len(next(_csv.reader([text], delimiter=d), [])))
        except _csv.Error:  # e.g. a field over the csv module's limit: reading it says so
            widths.append(0)
    return DELIMITERS[widths.index(max(widths))]


def _is_label_column(sample: list[list[str]], i: int) -> bool:
    """Every non-empty sampled cell is a label (0/1/true/false)."""
    return all(r[i].strip().lower() in _LABELS for r in sample if i < len(r) and r[i].strip())


def _plan_csv(path: Path, opts: CsvOptions) -> _CsvPlan:
    """Read the header and a sample of rows; resolve and check every column choice."""
    with path.open("rb") as raw:
        first_line = raw.readline(MAX_HEADER_BYTES + 1)
        if len(first_line) > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: the first line is longer than {MAX_HEADER_BYTES:,} bytes, "
                             "too long for a header row (is it a CSV file? check the delimiter)")
    delimiter = opts.delimiter if opts.delimiter is not None else _sniff(first_line)
    with _open_csv(path) as f:
        rows = _rows(f, delimiter)
        first = next(rows, None)
        if first is None:
            raise ValueError(f"{path} is empty: expected a header row with column names")
        if isinstance(first[1], str):
            raise ValueError(f"{path}: cannot read the header row (line {first[0]}): {first[1]}")
        header = [h.strip() for h in first[1]]
        sample = [r for _, r in islice(rows, SAMPLE_ROWS) if not isinstance(r, str)]
    if any(_undecodable(h) for h in header):
        raise ValueError(f"{path}: the header row is not valid UTF-8; save the file as UTF-8")
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise ValueError(f"{path}: duplicate column names {dupes}; rename them")
    lower = {h.lower(): i for i, h in reversed(list(enumerate(header)))}

    def col(option: str, name: str) -> int:
        """Index of an explicitly named column, or a clear error listing the columns."""
        if name not in header:
            raise ValueError(
                f"{path}: {option}={name!r} is not a column; available columns: {header}"
            )
        return header.index(name)

    def pick(option: str, name: str | None, auto: int | None) -> int | None:
        """The named column if one is given, else the auto-detected one (if any)."""
        return auto if name is None else col(option, name)

    ts = pick(
        "timestamp_column",
        opts.timestamp_column,
        next((lower[n] for n in TIMESTAMP_NAMES if n in lower), None),
    )
    source = pick("source_column", opts.source_column, lower.get("source"))
    label_like = [lower[n] for n in LABEL_NAMES if n in lower]
    label = pick("label_column", opts.label_column, lower.get("label", next(
        (i for i in label_like if _is_label_column(sample, i)), None)))
    ident = pick("id_column", opts.id_column, lower.get("id"))
    special = {i for i in (ts, source, label, ident) if i is not None}
    set_aside: list[int] = []

    if opts.value_columns is not None:
        if not opts.value_columns:
            raise ValueError(f"{path}: value_columns is empty; name at least one column")
        values = [col("value_columns", c) for c in opts.value_columns]
        clash = [header[i] for i in values if i in special]
        if clash:
            raise ValueError(
                f"{path}: value column(s) {clash} are also the timestamp/source/label/id column"
            )
    else:
        set_aside = sorted(i for i in label_like if i not in special)
        values = [i for i in range(len(header))
                  if i not in special and i not in set_aside and _numeric(sample, i)]
        if not values:
            raise ValueError(
                f"{path}: no numeric value columns found among {header} (read with delimiter "
                f"{delimiter!r}); name them (--value-columns) or the delimiter (--delimiter)"
            )
    order = sorted(set(values), key=header.__getitem__)
    if source is None and _undecodable(path.stem):
        raise ValueError(f"{path}: the file name is not valid UTF-8 and names the source; "
                         "rename the file or add a source column")
    return _CsvPlan(
        delimiter=delimiter,
        ncols=len(header),
        ts=ts,
        values=tuple(order),
        fields=tuple(header[i] for i in order),
        source=source,
        default_source=path.stem,
        label=label,
        id=ident,
        label_name=None if label is None else header[label],
        set_aside=tuple(header[i] for i in set_aside),
    )


def _numeric(sample: list[list[str]], i: int) -> bool:
    """Numeric column: at least half its non-empty sampled cells are numbers (or no sample)."""
    cells = [r[i].strip() for r in sample if i < len(r) and r[i].strip()]
    return sum(map(_is_number, cells)) * 2 >= len(cells) if cells else not sample


def _read_csv(path: Path, plan: _CsvPlan) -> Iterator[Event | BadRecord]:
    """Stream CSV rows as events; the plan was validated eagerly by `read_events`."""
    name = str(path)
    ncols, ts_i, val_i, fields = plan.ncols, plan.ts, plan.values, plan.fields
    src_i, lab_i, id_i = plan.source, plan.label, plan.id
    single = val_i[0] if len(val_i) == 1 else None
    default_source = plan.default_source
    has_calendar = ts_i is not None
    with _open_csv(path) as f:
        rows = _rows(f, plan.delimiter)
        for _, row in rows:  # the header (validated by _plan_csv)
            if not isinstance(row, str):
                break
        index = -1
        for line_no, row in rows:
            index += 1
            if isinstance(row, str):
                reason = "oversized" if "field limit" in row else "schema_mismatch"
                yield BadRecord(name, line_no, reason, f"unreadable CSV row: {row}", "")
                continue
            if len(row) != ncols:
                yield _bad(
                    name,
                    line_no,
                    row,
                    plan,
                    "schema_mismatch",
                    f"expected {ncols} columns, got {len(row)}",
                )
                continue
            try:
                ts = float(index) if ts_i is None else _cell_ts(row[ts_i])
                if single is not None:
                    values: tuple[float, ...] = (_cell_float(row[single], fields[0]),)
                else:
                    values = tuple([_cell_float(row[i], fields[k]) for k, i in enumerate(val_i)])
                source = default_source if src_i is None else _cell_source(row[src_i])
                label = None if lab_i is None else _cell_label(row[lab_i])
                ident = None if id_i is None else _cell_id(row[id_i])
            except BadEvent as e:
                yield _bad(name, line_no, row, plan, e.reason, e.message)
                continue
            yield Event(source, ts, values, fields, ident, label, has_calendar)


def _bad(
    name: str, line_no: int, row: list[str], plan: _CsvPlan, reason: str, message: str
) -> BadRecord:
    """A `BadRecord` for a parsed CSV row (its raw text rebuilt with the delimiter)."""
    return BadRecord(name, line_no, reason, message, _raw(plan.delimiter.join(row)))


def _cell_ts(cell: str) -> float:
    """Timestamp from a CSV cell (ISO-8601 or epoch seconds)."""
    if not cell:
        raise BadEvent("missing_field", "empty timestamp cell")
    return parse_timestamp(cell)


def _cell_float(cell: str, column: str) -> float:
    """A finite float from a CSV cell; empty, non-numeric and NaN/inf cells raise `BadEvent`."""
    try:
        f = float(cell)
    except ValueError:
        if not cell.strip():
            raise BadEvent("missing_field", f"empty value in column {column!r}") from None
        raise BadEvent("bad_type", f"column {column!r}: {cell[:40]!r} is not a number") from None
    if f - f == 0.0:
        return f
    raise BadEvent("non_finite", f"column {column!r}: {cell[:40]!r} is not finite")


def _cell_source(cell: str) -> str:
    """Source id from a CSV cell, held to the same rules as JSON input."""
    source = cell.strip()
    if not source:
        raise BadEvent("missing_field", "empty source cell")
    if len(source) > MAX_SOURCE_LEN or not source.isprintable():
        if _undecodable(source):
            raise BadEvent("bad_encoding", "source is not valid UTF-8: "
                           f"{source.encode('utf-8', 'surrogateescape')[:40]!r}")
        raise BadEvent(
            "bad_type",
            f"source must be 1..{MAX_SOURCE_LEN} printable characters, got {cell[:40]!r}",
        )
    return source


def _cell_id(cell: str) -> str | None:
    """Event id from a CSV cell; empty means no id."""
    ident = cell.strip()
    if len(ident) > MAX_ID_LEN:
        raise BadEvent("oversized", f"id is longer than {MAX_ID_LEN} characters")
    if not ident.isprintable() and _undecodable(ident):
        raise BadEvent("bad_encoding", "id is not valid UTF-8: "
                       f"{ident.encode('utf-8', 'surrogateescape')[:40]!r}")
    return ident or None


def _cell_label(cell: str) -> int | None:
    """Label from a CSV cell: 0/1/true/false (any case); empty means unknown."""
    key = cell.strip().lower()
    if not key:
        return None
    lab = _LABELS.get(key)
    if lab is None:
        raise BadEvent("bad_label", f"label must be 0, 1, true or false, got {cell[:40]!r}")
    return lab


def count_lines(path: Path | str) -> int | None:
    """Number of lines in a file (fast newline count, for progress bars); None for stdin ('-')."""
    if str(path) == "-":
        return None
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n if last == b"\n" else n + 1

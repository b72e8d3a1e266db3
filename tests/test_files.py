"""Reading CSV/TSV/JSONL files: good rows survive, bad rows are reported by line and reason."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from neurogate.cli.files import (
    MAX_HEADER_BYTES,
    BadRecord,
    CsvOptions,
    count_lines,
    csv_columns,
    input_problem,
    read_events,
)
from neurogate.engine.events import Event

T0 = datetime(2014, 7, 1, tzinfo=UTC).timestamp()


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write `text` to tmp_path/name and return the path."""
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def split(items: Iterable[Event | BadRecord]) -> tuple[list[Event], list[BadRecord]]:
    """(events, bad records) of a read_events result."""
    events: list[Event] = []
    bad: list[BadRecord] = []
    for x in items:
        (bad if isinstance(x, BadRecord) else events).append(x)  # type: ignore[arg-type]
    return events, bad


def only_events(path: Path, **kw: Any) -> list[Event]:
    """read_events of a file that must have no bad rows."""
    events, bad = split(read_events(path, **kw))
    assert bad == []
    return events


def test_nab_style_csv(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "nyc_taxi.csv",
        "timestamp,value\n2014-07-01 00:00:00,10844\n2014-07-01 00:30:00,8127.5\n",
    )
    events = only_events(p)
    assert [(e.source, e.ts, e.values, e.fields) for e in events] == [
        ("nyc_taxi", T0, (10844.0,), ("value",)),
        ("nyc_taxi", T0 + 1800, (8127.5,), ("value",)),
    ]
    assert all(e.has_calendar and e.label is None and e.id is None for e in events)


def test_broken_csv_rows_are_reported_with_line_and_reason(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "timestamp,value",  # 1
            "2014-07-01 00:00:00,1",  # 2 good
            "2014-07-01 00:05:00,abc",  # 3 bad_type
            "2014-07-01 00:10:00,",  # 4 empty value
            "2014-07-01 00:15:00,nan",  # 5 non_finite
            "not a time,5",  # 6 bad_timestamp
            "2014-07-01 00:25:00,1,2",  # 7 column count
            "",  # 8 blank: skipped
            ",7",  # 9 empty timestamp
            "2014-07-01 00:40:00,-inf",  # 10 non_finite
            "2014-07-01 00:45:00,2.5",  # 11 good
        ]
    )
    items = list(read_events(write(tmp_path, "x.csv", text + "\n")))
    events, bad = split(items)
    assert [e.values[0] for e in events] == [1.0, 2.5]
    assert [(b.line, b.reason) for b in bad] == [
        (3, "bad_type"),
        (4, "missing_field"),
        (5, "non_finite"),
        (6, "bad_timestamp"),
        (7, "schema_mismatch"),
        (9, "missing_field"),
        (10, "non_finite"),
    ]
    assert bad[0].raw == "2014-07-01 00:05:00,abc" and bad[0].path.endswith("x.csv")
    assert "'value'" in bad[0].message
    order = [x.line if isinstance(x, BadRecord) else x.values[0] for x in items]
    assert order == [1.0, 3, 4, 5, 6, 7, 9, 10, 2.5]  # file order, interleaved


def test_no_timestamp_column_uses_row_index(tmp_path: Path) -> None:
    p = write(tmp_path, "plain.csv", "value\n1\nx\n3\n")
    items = list(read_events(p))
    events, bad = split(items)
    assert [(e.ts, e.has_calendar) for e in events] == [(0.0, False), (2.0, False)]
    assert bad[0].line == 3


def test_multivariate_csv_with_source_label_id(tmp_path: Path) -> None:
    text = (
        "ID,Time,source,rpm,temp,kind,label\n"
        "a1,2014-07-01T00:00:00Z,m-1,1400,71.5,ok,0\n"
        "a2,2014-07-01T00:05:00Z,m-2,1410,71.0,ok,\n"
        ",2014-07-01T00:10:00Z,m-1,1420,70.0,ok,true\n"
        "a4,2014-07-01T00:15:00Z,m-1,1420,70.0,ok,maybe\n"
        "a5,2014-07-01T00:20:00Z,,1420,70.0,ok,1\n"
    )
    events, bad = split(list(read_events(write(tmp_path, "m.csv", text))))
    e = events[0]
    assert (e.source, e.ts, e.id, e.label) == ("m-1", T0, "a1", 0)
    assert e.fields == ("rpm", "temp") and e.values == (1400.0, 71.5)  # text column "kind" skipped
    assert events[1].label is None and events[1].source == "m-2"
    assert events[2].id is None and events[2].label == 1
    assert [(b.line, b.reason) for b in bad] == [(5, "bad_label"), (6, "missing_field")]


def test_explicit_columns_and_sorted_fields(tmp_path: Path) -> None:
    text = "when;z;a;Class\n1404172800;1;2;0\n1404172801;3;4;1\n"
    opts = CsvOptions(
        delimiter=";", timestamp_column="when", value_columns=("z", "a"), label_column="Class"
    )
    events = only_events(write(tmp_path, "cc.txt", text), fmt="csv", csv=opts)
    assert [(e.ts, e.fields, e.values, e.label) for e in events] == [
        (T0, ("a", "z"), (2.0, 1.0), 0),
        (T0 + 1, ("a", "z"), (4.0, 3.0), 1),
    ]


def test_a_semicolon_file_with_label_columns_is_read_without_options(tmp_path: Path) -> None:
    """A benchmark-style file (';' between fields, its ground truth in "anomaly" and
    "changepoint"): the delimiter comes from the header, "anomaly" is the label column and
    neither label column is scored (scored, "anomaly"'s step drove every flag)."""
    text = ("datetime;Accelerometer1RMS;Current;anomaly;changepoint\n"
            "2014-07-01 00:00:00;0.21;1.5;0.0;0.0\n"
            "2014-07-01 00:00:01;0.22;1.4;1.0;1.0\n")
    path = write(tmp_path, "valve1.csv", text)
    events = only_events(path)
    assert [(e.ts, e.fields, e.values, e.label) for e in events] == [
        (T0, ("Accelerometer1RMS", "Current"), (0.21, 1.5), 0),
        (T0 + 1, ("Accelerometer1RMS", "Current"), (0.22, 1.4), 1),
    ]
    cols = csv_columns(path)
    assert cols is not None
    assert (cols.delimiter, cols.label, cols.set_aside) == (";", "anomaly", ("changepoint",))
    named = only_events(path, csv=CsvOptions(value_columns=("Current", "changepoint")))
    assert named[1].fields == ("Current", "changepoint") and named[1].values == (1.4, 1.0)


def test_a_label_like_column_that_holds_no_labels_is_neither_label_nor_value(
        tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "ts|rpm|anomaly|outlier\n1404172800|1400|0.31|1\n")
    events = only_events(path)
    assert [(e.fields, e.values, e.label) for e in events] == [(("rpm",), (1400.0,), 1)]
    cols = csv_columns(path)
    assert cols is not None and (cols.label, cols.set_aside) == ("outlier", ("anomaly",))
    quoted = write(tmp_path, "q.csv", '"a;b",c\n1,2\n')  # a ';' inside quotes splits nothing
    assert only_events(quoted)[0].fields == ("a;b", "c")


def test_tsv_by_extension(tmp_path: Path) -> None:
    events = only_events(write(tmp_path, "t.tsv", "ts\tvalue\n5\t1.5\n"))
    assert [(e.source, e.ts, e.values) for e in events] == [("t", 5.0, (1.5,))]


def test_bom_crlf_quotes_and_bad_bytes(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_bytes(b'\xef\xbb\xbftimestamp,value\r\n"2014-07-01 00:00:00","1"\r\n5,\xff\r\n6,2\r\n')
    events, bad = split(list(read_events(p)))
    assert [e.values for e in events] == [(1.0,), (2.0,)]
    assert [(b.line, b.reason) for b in bad] == [(3, "bad_type")]


def test_sources_that_are_not_utf8_are_rejected_not_merged(tmp_path: Path) -> None:
    """Latin-1 "café" and "cafè" used to be read as one source "caf\ufffd"; their rows (and an
    id that is not UTF-8) are now bad_encoding records, the other rows go on."""
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"source,timestamp,value,id\ncaf\xe9,1,1,a\ncaf\xe8,2,2,b\ncafe,3,3,c\n"
                  b"cafe,4,4,\xff\n")
    events, bad = split(read_events(p))
    assert [(e.source, e.values) for e in events] == [("cafe", (3.0,))]
    assert [(b.line, b.reason) for b in bad] == [(2, "bad_encoding"), (3, "bad_encoding"),
                                                 (5, "bad_encoding")]
    assert bad[0].message == "source is not valid UTF-8: b'caf\\xe9'"
    assert bad[0].raw == "caf\ufffd,1,1,a"  # printable: it goes into reports and dead letters
    header = tmp_path / "h.csv"
    header.write_bytes(b"timestamp,temp\xe9rature\n1,2\n")
    with pytest.raises(ValueError, match="header row is not valid UTF-8"):
        read_events(header)


def test_multiline_record_and_runaway_field(tmp_path: Path) -> None:
    text = 'timestamp,value\n1,2\n2,"3\n4"\n3,"' + "x" * 200_000 + "\n4,5\n"
    events, bad = split(read_events(write(tmp_path, "q.csv", text)))
    assert [e.values for e in events] == [(2.0,), (5.0,)]
    assert [(b.line, b.reason) for b in bad] == [(3, "bad_type"), (5, "oversized")]


def test_mostly_numeric_column_with_a_bad_first_row_is_kept(tmp_path: Path) -> None:
    p = write(tmp_path, "v.csv", "timestamp,value\n1,oops\n2,2\n3,3\n")
    events, bad = split(list(read_events(p)))
    assert [e.values for e in events] == [(2.0,), (3.0,)] and bad[0].line == 2


def test_header_only_csv_yields_nothing(tmp_path: Path) -> None:
    assert list(read_events(write(tmp_path, "h.csv", "timestamp,value\n"))) == []


@pytest.mark.parametrize(
    ("name", "text", "opts", "match"),
    [
        ("e.csv", "", None, "empty"),
        ("e.csv", "timestamp,name\n1,abc\n", None, "no numeric value columns"),
        ("e.csv", "timestamp,value\n1,2\n", CsvOptions(value_columns=("v",)), r"available.*value"),
        ("e.csv", "timestamp,value\n1,2\n", CsvOptions(timestamp_column="t"), "timestamp_column"),
        ("e.csv", "timestamp,value\n1,2\n", CsvOptions(label_column="y"), "label_column"),
        ("e.csv", "timestamp,value\n1,2\n", CsvOptions(value_columns=()), "empty"),
        ("e.csv", "ts,value\n1,2\n", CsvOptions(value_columns=("ts",)), "also the timestamp"),
        ("e.csv", "a,a\n1,2\n", None, "duplicate"),
        ("e.parquet", "x", None, "format"),
    ],
)
def test_whole_file_errors_raise_before_iteration(
    tmp_path: Path, name: str, text: str, opts: CsvOptions | None, match: str
) -> None:
    p = write(tmp_path, name, text)
    with pytest.raises(ValueError, match=match):
        read_events(p, csv=opts)


@pytest.mark.parametrize(("line", "match"), [
    ("x" * (MAX_HEADER_BYTES + 10), "first line is longer than 1,048,576 bytes"),  # 50 MB too
    ("v," * 20 + "x" * 200_000, r"cannot read the header row \(line 1\): field larger"),
], ids=["longer-than-a-header", "field-over-the-csv-limit"])
def test_one_line_file_says_why_it_has_no_header(tmp_path: Path, line: str, match: str) -> None:
    """A file of one huge line is not "empty": the error gives the real reason."""
    p = write(tmp_path, "one.csv", line + "\n")
    with pytest.raises(ValueError, match=match):
        read_events(p)


def test_missing_file_and_unknown_fmt(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input file not found: .*nope.csv"):
        read_events(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match="input is a directory, not a file: .*dir.csv"):
        read_events(tmp_path / "dir.csv")
    assert input_problem(tmp_path / "dir.csv") == f"input is a directory, not a file: " \
        f"{tmp_path / 'dir.csv'}"
    with pytest.raises(ValueError, match="unknown format"):
        read_events(write(tmp_path, "a.csv", "value\n1\n"), fmt="xml")
    with pytest.raises(ValueError, match="stdin"):
        read_events("-", fmt="csv")


def test_jsonl_with_broken_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"source": "a", "ts": "2014-07-01T00:00:00Z", "value": 1}),  # 1
        "{broken",  # 2 bad_json
        "",  # 3 blank
        json.dumps({"ts": 5, "value": 2}),  # 4 source defaults to the stem
        '{"source": "a", "ts": 6, "value": NaN}',  # 5 non_finite
        json.dumps([{"source": "b", "ts": 7, "value": 3}, {"source": "b", "ts": 8}]),  # 6
        "42",  # 7 not_an_object
        json.dumps({"source": "a", "ts": 9, "value": True}),  # 8 bad_type
        "[]",  # 9 not_an_object: an empty array is reported, not skipped
    ]
    p = write(tmp_path, "feed.jsonl", "\n".join(lines) + "\n")
    events, bad = split(list(read_events(p)))
    assert [(e.source, e.ts, e.values[0]) for e in events] == [
        ("a", T0, 1.0),
        ("feed", 5.0, 2.0),
        ("b", 7.0, 3.0),
    ]
    assert [(b.line, b.reason) for b in bad] == [
        (2, "bad_json"),
        (5, "non_finite"),
        (6, "missing_field"),
        (7, "not_an_object"),
        (8, "bad_type"),
        (9, "not_an_object"),
    ]
    assert bad[0].raw == "{broken"
    assert "item 1" in bad[2].message


def test_raw_is_truncated(tmp_path: Path) -> None:
    p = write(tmp_path, "long.ndjson", "x" * 1000 + "\n")
    (bad,) = list(read_events(p))
    assert isinstance(bad, BadRecord) and len(bad.raw) == 200


def test_count_lines(tmp_path: Path) -> None:
    assert count_lines(write(tmp_path, "a.csv", "h\n1\n2\n")) == 3
    assert count_lines(write(tmp_path, "b.csv", "h\n1\n2")) == 3
    assert count_lines(write(tmp_path, "c.csv", "")) == 0
    assert count_lines("-") is None


def test_large_csv_streams_every_row(tmp_path: Path) -> None:
    n = 20_000
    p = tmp_path / "big.csv"
    with p.open("w") as f:
        f.write("timestamp,value\n")
        for i in range(n):
            f.write(f"{1404172800 + 60 * i},{i % 97}.5\n")
    assert count_lines(p) == n + 1
    events = only_events(p)
    assert len(events) == n
    assert events[-1].ts == 1404172800 + 60 * (n - 1)

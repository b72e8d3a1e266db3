"""The event contract: parsing rules, every rejection reason, and the dict round trip."""

from __future__ import annotations

import json
import math
import pickle
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.engine.events import (
    MAX_FIELDS,
    REASONS,
    TS_LIMIT,
    BadEvent,
    Event,
    EventBatch,
    batch_from_json,
    event_from_dict,
    event_to_dict,
    events_from_json,
    message_events,
    parse_timestamp,
)

T0 = datetime(2014, 4, 1, tzinfo=UTC).timestamp()


def reason_of(obj: object, **kw: object) -> str:
    """The BadEvent reason that event_from_dict gives for `obj`."""
    with pytest.raises(BadEvent) as info:
        event_from_dict(obj, **kw)  # type: ignore[arg-type]
    return info.value.reason


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2014-04-01 00:00:00",
        "2014-04-01T00:00:00",
        "2014-04-01T00:00:00Z",
        "2014-04-01T02:00:00+02:00",
        "2014-04-01",
        "20140401T000000",
        " 2014-04-01 00:00:00 ",
        T0,
        int(T0),
        str(int(T0)),
        f"{T0:.1f}",
    ],
)
def test_parse_timestamp_accepts_iso_and_epoch(raw: object) -> None:
    assert parse_timestamp(raw) == T0


def test_parse_timestamp_keeps_fractions() -> None:
    assert parse_timestamp("2014-04-01T00:00:00.25Z") == T0 + 0.25
    assert parse_timestamp(T0 + 0.5) == T0 + 0.5
    assert parse_timestamp(-5) == -5.0


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "",
        "2014-13-01",
        "nan",
        "inf",
        math.nan,
        math.inf,
        True,
        None,
        [1],
        {"t": 1},
        1.7e12,  # epoch milliseconds
        str(int(TS_LIMIT)),
        10**400,
    ],
)
def test_parse_timestamp_rejects(raw: object) -> None:
    with pytest.raises(BadEvent) as info:
        parse_timestamp(raw)
    assert info.value.reason == "bad_timestamp"


def test_millisecond_timestamps_get_a_hint() -> None:
    with pytest.raises(BadEvent, match="milliseconds"):
        parse_timestamp(1_700_000_000_000)


# --- event_from_dict: good input --------------------------------------------------------------


def test_univariate_event() -> None:
    e = event_from_dict({"source": "pump-7", "ts": "2014-04-01 00:00:00", "value": 1.5})
    assert e == Event("pump-7", T0, (1.5,))
    assert e.fields == ("value",) and e.has_calendar and e.id is None and e.label is None


def test_multivariate_fields_are_sorted() -> None:
    e = event_from_dict({"source": "m", "ts": 0, "values": {"temp": 71.2, "rpm": 1400}})
    assert e.fields == ("rpm", "temp")
    assert e.values == (1400.0, 71.2)
    assert all(type(v) is float for v in e.values)


def test_int_value_becomes_float_and_optional_fields() -> None:
    e = event_from_dict({"source": "s", "ts": 1, "value": 3, "id": 42, "label": True, "x": "?"})
    assert e.values == (3.0,) and type(e.values[0]) is float
    assert e.id == "42" and e.label == 1


@pytest.mark.parametrize(("raw", "want"), [(0, 0), (1, 1), (False, 0), (True, 1), (1.0, 1)])
def test_labels(raw: object, want: int) -> None:
    assert event_from_dict({"source": "s", "ts": 1, "value": 0, "label": raw}).label == want


def test_null_optionals_are_absent() -> None:
    e = event_from_dict({"source": "s", "ts": 1, "value": 0, "id": None, "label": None})
    assert e.id is None and e.label is None


def test_default_source_fills_missing_or_null_source() -> None:
    assert event_from_dict({"ts": 1, "value": 0}, default_source="key").source == "key"
    assert event_from_dict({"source": None, "ts": 1, "value": 0}, default_source="k").source == "k"
    assert event_from_dict({"source": "own", "ts": 1, "value": 0}, default_source="k").source == (
        "own"
    )


def test_calendar_flag() -> None:
    e = event_from_dict({"source": "s", "ts": 7, "value": 0, "calendar": False})
    assert e.has_calendar is False


# --- event_from_dict: every rejection ---------------------------------------------------------

OK = {"source": "s", "ts": 1, "value": 1.0}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([OK], "not_an_object"),
        ("s", "not_an_object"),
        (None, "not_an_object"),
        ({"ts": 1, "value": 1}, "missing_field"),
        ({"source": None, "ts": 1, "value": 1}, "missing_field"),
        ({"source": "s", "value": 1}, "missing_field"),
        ({"source": "s", "ts": None, "value": 1}, "missing_field"),
        ({"source": "s", "ts": 1}, "missing_field"),
        ({"source": "s", "ts": 1, "value": None}, "missing_field"),
        ({"source": "s", "ts": 1, "values": {}}, "missing_field"),
        ({"source": 7, "ts": 1, "value": 1}, "bad_type"),
        ({"source": "", "ts": 1, "value": 1}, "bad_type"),
        ({"source": "a\nb", "ts": 1, "value": 1}, "bad_type"),
        ({"source": "x" * 257, "ts": 1, "value": 1}, "bad_type"),
        ({"source": "s", "ts": 1, "value": True}, "bad_type"),
        ({"source": "s", "ts": 1, "value": "1.5"}, "bad_type"),
        ({"source": "s", "ts": 1, "value": [1]}, "bad_type"),
        ({"source": "s", "ts": 1, "values": [1, 2]}, "bad_type"),
        ({"source": "s", "ts": 1, "values": {"a": "1"}}, "bad_type"),
        ({"source": "s", "ts": 1, "values": {"a": None}}, "bad_type"),
        ({"source": "s", "ts": 1, "values": {"": 1}}, "bad_type"),
        ({"source": "s", "ts": 1, "value": 1, "id": 1.5}, "bad_type"),
        ({"source": "s", "ts": 1, "value": 1, "id": True}, "bad_type"),
        ({"source": "s", "ts": 1, "value": 1, "calendar": "no"}, "bad_type"),
        ({"source": "s", "ts": 1, "value": math.nan}, "non_finite"),
        ({"source": "s", "ts": 1, "value": -math.inf}, "non_finite"),
        ({"source": "s", "ts": 1, "value": 10**400}, "non_finite"),
        ({"source": "s", "ts": 1, "values": {"a": 1, "b": math.inf}}, "non_finite"),
        ({"source": "s", "ts": "soon", "value": 1}, "bad_timestamp"),
        ({"source": "s", "ts": math.nan, "value": 1}, "bad_timestamp"),
        ({"source": "s", "ts": 1.7e12, "value": 1}, "bad_timestamp"),
        ({"source": "s", "ts": False, "value": 1}, "bad_timestamp"),
        ({"source": "s", "ts": 1, "value": 1, "id": "i" * 257}, "oversized"),
        (
            {"source": "s", "ts": 1, "values": {str(k): 1 for k in range(MAX_FIELDS + 1)}},
            "oversized",
        ),
        ({"source": "s", "ts": 1, "value": 1, "label": 2}, "bad_label"),
        ({"source": "s", "ts": 1, "value": 1, "label": "1"}, "bad_label"),
        ({"source": "s", "ts": 1, "value": 1, "label": 0.5}, "bad_label"),
        ({"source": "s", "ts": 1, "value": 1, "values": {"a": 1}}, "schema_mismatch"),
    ],
)
def test_event_from_dict_rejects(obj: object, reason: str) -> None:
    assert reason_of(obj) == reason


def test_messages_name_the_field() -> None:
    with pytest.raises(BadEvent, match=r"values\.b"):
        event_from_dict({"source": "s", "ts": 1, "values": {"a": 1, "b": "x"}})
    with pytest.raises(BadEvent, match="'ts'"):
        event_from_dict({"source": "s", "value": 1})


def test_bad_event_contract() -> None:
    e = BadEvent("bad_json", "broken", 3)
    assert isinstance(e, ValueError) and str(e) == "broken"
    copy = pickle.loads(pickle.dumps(e))
    assert (copy.reason, copy.message, copy.index) == ("bad_json", "broken", 3)
    with pytest.raises(ValueError, match="unknown BadEvent reason"):
        BadEvent("whatever", "x")
    assert len(set(REASONS)) == len(REASONS) == 12


# --- events_from_json -------------------------------------------------------------------------


def test_single_object_and_array() -> None:
    one = events_from_json(b'{"source":"a","ts":1,"value":2}')
    assert one == [Event("a", 1.0, (2.0,))]
    many = events_from_json('[{"source":"a","ts":1,"value":2},{"source":"b","ts":2,"value":3}]')
    assert [e.source for e in many] == ["a", "b"]


def test_default_source_applies_to_messages() -> None:
    assert events_from_json('{"ts":1,"value":2}', default_source="key")[0].source == "key"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b'{"source":"a","ts":1,"value":2}{}', "bad_json"),
        (b'\xff\xfe{"a"', "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (b'{"source":"a","ts":1,"value":NaN}', "non_finite"),
        (b'{"source":"a","ts":1,"value":-Infinity}', "non_finite"),
        (b'{"source":"a","ts":1,"value":1e400}', "non_finite"),
        (b"3", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"[3]", "not_an_object"),
        (b"[]", "not_an_object"),  # no event: said so, not dropped silently
        (b" [ ] ", "not_an_object"),
        (b'{"source":"a","ts":1}', "missing_field"),
    ],
)
def test_events_from_json_rejects(raw: bytes, reason: str) -> None:
    for parse in (events_from_json, batch_from_json, message_events):
        with pytest.raises(BadEvent) as info:
            parse(raw, max_bytes=10**6)
        assert info.value.reason == reason


def test_oversized_counts_bytes_not_characters() -> None:
    msg = json.dumps({"source": "é" * 200, "ts": 1, "value": 1}, ensure_ascii=False)
    assert len(msg) < 300 < len(msg.encode())
    with pytest.raises(BadEvent) as info:
        events_from_json(msg, max_bytes=300)
    assert info.value.reason == "oversized"
    with pytest.raises(BadEvent) as info:
        events_from_json(msg.encode(), max_bytes=300)
    assert info.value.reason == "oversized"
    assert events_from_json(msg, max_bytes=1000)[0].source == "é" * 200


def test_array_with_a_bad_item_raises_or_collects() -> None:
    raw = '[{"source":"a","ts":1,"value":1},{"source":"b","ts":1},{"source":"c","ts":1,"value":3}]'
    with pytest.raises(BadEvent) as info:
        events_from_json(raw)
    assert (info.value.reason, info.value.index) == ("missing_field", 1)
    assert "item 1" in info.value.message
    errors: list[BadEvent] = []
    good = events_from_json(raw, errors=errors)
    assert [e.source for e in good] == ["a", "c"]
    assert [(e.reason, e.index) for e in errors] == [("missing_field", 1)]


# --- round trip -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
sources = st.text(min_size=1, max_size=40).filter(str.isprintable)
timestamps = st.floats(min_value=-TS_LIMIT / 2, max_value=TS_LIMIT / 2, allow_nan=False)


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Valid events of every shape that event_from_dict can produce."""
    if draw(st.booleans()):
        fields: tuple[str, ...] = ("value",)
    else:
        names = draw(st.sets(st.text(min_size=1, max_size=10), min_size=1, max_size=6))
        fields = tuple(sorted(names))
    return Event(
        source=draw(sources),
        ts=draw(timestamps),
        values=tuple(draw(finite) for _ in fields),
        fields=fields,
        id=draw(st.none() | st.text(max_size=20)),
        label=draw(st.none() | st.sampled_from([0, 1])),
        has_calendar=draw(st.booleans()),
    )


@pytest.mark.slow
@given(events())
def test_round_trip_through_dict_and_json(e: Event) -> None:
    d = event_to_dict(e)
    assert event_from_dict(d) == e
    assert events_from_json(json.dumps(d, allow_nan=False)) == [e]


def test_to_dict_shapes() -> None:
    assert event_to_dict(Event("s", 1.0, (2.0,))) == {"source": "s", "ts": 1.0, "value": 2.0}
    multi = Event("s", 1.0, (1.0, 2.0), ("a", "b"), id="x", label=0, has_calendar=False)
    assert event_to_dict(multi) == {
        "source": "s",
        "ts": 1.0,
        "values": {"a": 1.0, "b": 2.0},
        "id": "x",
        "label": 0,
        "calendar": False,
    }
    assert "ts" not in event_to_dict(Event("s", math.nan, (2.0,)))


def test_event_is_frozen() -> None:
    e = Event("s", 1.0, (2.0,))
    with pytest.raises(AttributeError):
        e.ts = 2.0  # type: ignore[misc]


# -- columns ---------------------------------------------------------------------------------

_ITEM_VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32),
                         st.integers(-10**6, 10**6), st.just(10**400), st.just(True),
                         st.none(), st.just("1.5"))
_ITEMS = st.fixed_dictionaries(
    {"value": _ITEM_VALUES},
    optional={
        "source": st.one_of(st.sampled_from(["a", "b", "pump-7"]), st.none(), st.just(""),
                            st.just("x" * 300), st.just("tab\there"), st.just(5)),
        "ts": st.one_of(st.floats(-2e11, 2e11, allow_nan=False), st.integers(0, 2 * 10**9),
                        st.just("2024-01-01T00:00:00Z"), st.none(), st.just(False)),
        "id": st.one_of(st.text(max_size=5), st.integers(0, 99), st.just("i" * 300),
                        st.none()),
        "label": st.one_of(st.sampled_from([0, 1, True, False, 0.0, 1.0, 2, "1"]), st.none()),
        "calendar": st.booleans(),
        "values": st.just({"a": 1.0}),
        "extra": st.just([1]),
    })


_PLAIN = st.fixed_dictionaries(
    {"value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers())},
    optional={"source": st.sampled_from(["a", "b", "pump-7"]),
              "ts": st.one_of(st.floats(-1.5e11, 1.5e11), st.integers(-2 * 10**11, 2 * 10**11)),
              "id": st.one_of(st.text(max_size=5), st.none()),
              "label": st.sampled_from([0, 1, True, False, 0.0, 1.0, None]),
              "extra": st.just([1])})


@settings(max_examples=300)
@given(st.one_of(st.lists(_PLAIN, min_size=1, max_size=8),
                 st.lists(st.one_of(_PLAIN, _ITEMS), min_size=1, max_size=8)),
       st.sampled_from([None, "key-1"]))
@pytest.mark.slow
def test_batch_from_json_gives_what_events_from_json_gives(
        items: list[dict[str, object]], key: str | None) -> None:
    """The column path (plain arrays) and the item path (anything else) agree with
    ``events_from_json`` on every event and every error, for any mix of good and bad items."""
    raw = json.dumps(items).encode()
    want_errors: list[BadEvent] = []
    want = events_from_json(raw, default_source=key, errors=want_errors)
    got_errors: list[BadEvent] = []
    got = batch_from_json(raw, default_source=key, errors=got_errors)
    assert list(got) == want
    assert [(e.reason, e.index, e.message) for e in got_errors] == \
        [(e.reason, e.index, e.message) for e in want_errors]


_EDGES = [
    {"ts": 1e11}, {"ts": -1e11}, {"ts": 99_999_999_999.0}, {"ts": 10**11}, {"ts": 10**400},
    {"ts": "2024-01-01T00:00:00Z"}, {"ts": "1700000000"}, {"ts": True}, {"ts": None}, {"ts": -0.0},
    {"value": 10**400}, {"value": True}, {"value": "1"}, {"value": None}, {"value": 1e308},
    {"value": -0.0}, {"value": 3}, {"source": ""}, {"source": "x" * 256}, {"source": "x" * 257},
    {"source": "tab\there"}, {"source": 5}, {"source": None}, {"source": "ünï"},
    {"id": "i" * 256}, {"id": "i" * 257}, {"id": 5}, {"id": ""}, {"id": None}, {"id": 1.5},
    {"label": 2}, {"label": "1"}, {"label": 0.5}, {"label": True}, {"label": 1.0},
    {"label": None}, {"label": -1}, {"calendar": True}, {"calendar": False},
    {"values": {"a": 1.0}, "value": None}, {"values": {"a": 1.0}}, {"extra": {"nested": [1]}},
]


@pytest.mark.parametrize("key", [None, "k"])
@pytest.mark.parametrize("edge", _EDGES, ids=[json.dumps(e)[:40] for e in _EDGES])
def test_batch_from_json_edge_items(edge: dict[str, object], key: str | None) -> None:
    """Each check of the column path, at and beyond its limit, next to plain items."""
    items = [{"source": "a", "ts": 1.7e9 + k, "value": 0.5, "id": str(k)} for k in range(3)]
    items.insert(1, {"source": "b", "ts": 1.7e9, "value": 1.0, "id": "e", **edge})
    raw = json.dumps(items)
    want_errors: list[BadEvent] = []
    want = events_from_json(raw, default_source=key, errors=want_errors)
    got_errors: list[BadEvent] = []
    got = batch_from_json(raw, default_source=key, errors=got_errors)
    assert list(got) == want
    assert [str(e) for e in got_errors] == [str(e) for e in want_errors]


def test_plain_arrays_take_the_column_path() -> None:
    """A plain array comes back with its values as one float array (no per-event tuples),
    sources from the key where missing; a batch reads like the events it holds."""
    items = [{"source": "a", "ts": 1.7e9 + k, "value": k, "id": str(k), "label": k % 2}
             for k in range(5)] + [{"ts": 1.7e9, "value": 0.5}]
    batch = batch_from_json(json.dumps(items), default_source="key")
    assert isinstance(batch.values, np.ndarray) and batch.values.shape == (6, 1)
    assert list(batch) == events_from_json(json.dumps(items), default_source="key")
    assert batch[-1] == Event("key", 1.7e9, (0.5,))
    assert list(batch[1:3]) == list(batch)[1:3]
    both = EventBatch.concat([batch, EventBatch.from_events([Event("m", 1.0, (1.0, 2.0),
                                                                   ("x", "y"))])])
    assert list(both) == list(batch) + [Event("m", 1.0, (1.0, 2.0), ("x", "y"))]
    assert both.value_rows(np.array([6])).tolist() == [[1.0, 2.0]]
    singles = [Event("s", float(k), (float(k),)) for k in range(3)]
    mixed = EventBatch.concat([singles[:1], singles[1:2], batch, [], singles[2:]])
    assert list(mixed) == singles[:2] + list(batch) + singles[2:], "order kept"
    assert list(EventBatch.concat([singles])) == singles and not len(EventBatch.concat([]))

"""The event contract (docs/background.md section 3): the `Event` type and its strict, fast
JSON parsing.

Every input path (Kafka messages, JSONL and CSV files, the demo stream) ends in `Event`.
Bad input raises `BadEvent` whose `.reason` comes from the fixed `REASONS` set, so it can
label a dead-letter counter without unbounded cardinality.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple, NoReturn, overload

import numpy as np

__all__ = [
    "MAX_FIELDS",
    "MAX_ID_LEN",
    "MAX_SOURCE_LEN",
    "REASONS",
    "TS_LIMIT",
    "BadEvent",
    "Event",
    "EventBatch",
    "batch_from_json",
    "decoded_events",
    "event_from_dict",
    "event_to_dict",
    "events_from_json",
    "load_message",
    "message_events",
    "object_columns",
    "parse_timestamp",
]

REASONS = (
    "bad_json",
    "not_an_object",
    "missing_field",
    "bad_type",
    "non_finite",
    "bad_timestamp",
    "oversized",
    "bad_label",
    "schema_mismatch",
    "out_of_order",
    "future_timestamp",
    "bad_encoding",
)
MAX_SOURCE_LEN = 256
MAX_ID_LEN = 256
MAX_FIELDS = 256
TS_LIMIT = 1e11  # |epoch seconds| bound (year 5138): larger values are almost surely milliseconds

_UNIVARIATE = ("value",)
_EPOCH_NAIVE = datetime(1970, 1, 1)


class Event(NamedTuple):
    """One observation of one source; `event_from_dict` is the validating constructor.

    Immutable; a named tuple rather than a frozen dataclass because it is built once per input
    event and a frozen dataclass takes ~3x longer to construct (measured: 1.3 vs 0.45 µs).

    Examples
    --------
    >>> Event("pump-7", 1_700_000_000.0, (71.2,)).fields
    ('value',)
    >>> Event("pump-7", 1_700_000_000.0, (1400.0, 71.2), ("rpm", "temp")).values
    (1400.0, 71.2)
    """

    source: str
    ts: float
    """Epoch seconds UTC (math.nan when unknown); a sequence number when `has_calendar` is False."""
    values: tuple[float, ...]
    """One value (univariate) or the values of `fields`, in that order."""
    fields: tuple[str, ...] = _UNIVARIATE
    """("value",) for univariate input; otherwise the field names, always sorted (canonical)."""
    id: str | None = None
    label: int | None = None
    """0/1 ground truth when the producer knows it; read only after the event is scored."""
    has_calendar: bool = True
    """False when `ts` is a plain sequence number, so calendar features must not be derived."""


class BadEvent(ValueError):
    """Input that breaks the event contract; `.reason` is in `REASONS`, `.index` the array slot."""

    def __init__(self, reason: str, message: str, index: int | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown BadEvent reason {reason!r}; use one of {REASONS}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with all three arguments (worker processes send these across)."""
        return (self.__class__, (self.reason, self.message, self.index))


def _describe(x: object) -> str:
    """Short type name for error messages (JSON vocabulary where it applies)."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, str):
        return "string"
    if isinstance(x, dict):
        return "object"
    if isinstance(x, list | tuple):
        return "array"
    return type(x).__name__


def _ts_checked(t: float) -> float:
    """Return `t` if it is a finite epoch-seconds value in range, else raise bad_timestamp."""
    if t - t != 0.0:
        raise BadEvent("bad_timestamp", f"ts must be finite, got {t!r}")
    if -TS_LIMIT < t < TS_LIMIT:
        return t
    raise BadEvent(
        "bad_timestamp",
        f"ts {t!r} is out of range for epoch seconds (epoch milliseconds? divide by 1000)",
    )


def _ts_from_iso(s: str) -> float:
    """Parse an ISO-8601 string; a naive time is taken as UTC."""
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadEvent(
            "bad_timestamp", f"ts {s[:64]!r} is neither ISO-8601 nor epoch seconds"
        ) from None
    if dt.tzinfo is None:
        return _ts_checked((dt - _EPOCH_NAIVE).total_seconds())
    return _ts_checked(dt.timestamp())


def parse_timestamp(x: object) -> float:
    """Epoch seconds UTC from an ISO-8601 string (naive = UTC) or epoch seconds (number/string)."""
    t = type(x)
    if t is float or t is int:
        try:
            return _ts_checked(float(x))  # type: ignore[arg-type]
        except OverflowError:
            raise BadEvent("bad_timestamp", "ts integer is too large") from None
    if t is str:
        s = x.strip()  # type: ignore[attr-defined]
        if len(s) > 4 and s[4] == "-":  # YYYY-...: skip the float attempt on the common ISO form
            return _ts_from_iso(s)
        try:
            f = float(s)
        except ValueError:
            return _ts_from_iso(s)
        return _ts_checked(f)
    if t is not bool and isinstance(x, numbers.Real):  # numpy scalars and other real types
        return _ts_checked(float(x))
    raise BadEvent(
        "bad_timestamp", f"ts must be an ISO-8601 string or epoch seconds, got {_describe(x)}"
    )


def _number(v: object, name: str) -> float:
    """A finite float from a JSON number; bools, strings and null are bad_type."""
    t = type(v)
    if t is float:
        if v - v == 0.0:  # type: ignore[operator]
            return v  # type: ignore[return-value]
        raise BadEvent("non_finite", f"{name} must be finite, got {v!r}")
    if t is int:
        try:
            return float(v)  # type: ignore[arg-type]
        except OverflowError:
            raise BadEvent("non_finite", f"{name} integer is too large for a float") from None
    if t is bool or not isinstance(v, numbers.Real):
        raise BadEvent("bad_type", f"{name} must be a number, got {_describe(v)}")
    f = float(v)
    if f - f == 0.0:
        return f
    raise BadEvent("non_finite", f"{name} must be finite, got {v!r}")


def _values_from_dict(vs: object) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Sorted field names and their values from a multivariate "values" object."""
    if type(vs) is not dict:
        raise BadEvent(
            "bad_type", f"values must be an object {{name: number}}, got {_describe(vs)}"
        )
    if not vs:
        raise BadEvent("missing_field", "values is empty; give at least one field")
    if len(vs) > MAX_FIELDS:
        raise BadEvent("oversized", f"values has {len(vs)} fields; at most {MAX_FIELDS}")
    for k in vs:
        if type(k) is not str or not k:
            raise BadEvent("bad_type", f"values field names must be non-empty strings, got {k!r}")
    fields = tuple(sorted(vs))
    return fields, tuple([_number(vs[k], "values." + k) for k in fields])


def _bad_source(source: object) -> NoReturn:
    """Raise the bad_type error for a source that is not 1..MAX_SOURCE_LEN printable chars."""
    if type(source) is not str:
        raise BadEvent("bad_type", f"source must be a string, got {_describe(source)}")
    raise BadEvent(
        "bad_type",
        f"source must be 1..{MAX_SOURCE_LEN} printable characters, got {source[:64]!r}",
    )


def _id(i: object) -> str:
    """Validate an event id: a string of bounded length, or an integer (turned into a string)."""
    if type(i) is str:
        if len(i) > MAX_ID_LEN:
            raise BadEvent("oversized", f"id is longer than {MAX_ID_LEN} characters")
        return i
    if type(i) is int:
        return str(i)
    raise BadEvent("bad_type", f"id must be a string or integer, got {_describe(i)}")


def _label(lab: object) -> int:
    """Validate a label: 0/1, true/false (0.0/1.0 accepted too)."""
    if (type(lab) is int or type(lab) is bool or type(lab) is float) and lab in (0, 1):
        return int(lab)
    raise BadEvent("bad_label", f"label must be 0, 1, true or false, got {lab!r}"[:120])


def event_from_dict(obj: object, *, default_source: str | None = None) -> Event:
    """Validate one decoded JSON event (docs/background.md section 3) into an `Event`; raise
    `BadEvent`.

    `default_source` (e.g. the Kafka key) is used when "source" is missing or null. Unknown keys
    are ignored, so producers may add fields. The optional key "calendar": false marks `ts` as a
    sequence number (what `event_to_dict` writes for such events).
    """
    if not isinstance(obj, dict):
        raise BadEvent("not_an_object", f"an event must be a JSON object, got {_describe(obj)}")
    get = obj.get

    source = get("source")
    if source is None:
        source = default_source
        if source is None:
            raise BadEvent("missing_field", "missing or null 'source'")
    if (
        type(source) is not str
        or not source
        or len(source) > MAX_SOURCE_LEN
        or not source.isprintable()
    ):
        _bad_source(source)

    raw_ts = get("ts")
    ts: float
    if isinstance(raw_ts, float):
        ts = raw_ts if -TS_LIMIT < raw_ts < TS_LIMIT else _ts_checked(raw_ts)  # NaN fails `<`
    elif raw_ts is None:
        raise BadEvent("missing_field", "missing or null 'ts'")
    else:
        ts = parse_timestamp(raw_ts)

    v = get("value")
    if v is not None:
        if "values" in obj:
            raise BadEvent("schema_mismatch", "give either 'value' or 'values', not both")
        if type(v) is float:
            if v - v != 0.0:
                raise BadEvent("non_finite", f"value must be finite, got {v!r}")
        else:
            v = _number(v, "value")
        fields: tuple[str, ...] = _UNIVARIATE
        values: tuple[float, ...] = (v,)
    else:
        vs = get("values")
        if vs is None:
            raise BadEvent("missing_field", "missing or null 'value' (or 'values' object)")
        fields, values = _values_from_dict(vs)

    i = get("id")
    if i is not None:
        i = _id(i)
    lab = get("label")
    if lab is not None:
        lab = _label(lab)
    cal = get("calendar", True)
    if cal is not True and cal is not False:
        raise BadEvent("bad_type", f"calendar must be true or false, got {_describe(cal)}")
    return Event(source, ts, values, fields, i, lab, cal)


def _reject_constant(name: str) -> float:
    """json.loads hook: NaN/Infinity literals are not JSON numbers, so refuse them."""
    raise BadEvent("non_finite", f"{name} is not allowed in JSON; send finite numbers")


def _json_loads(raw: bytes | str) -> Any:
    """The standard library parser with NaN/Infinity literals rejected."""
    return json.loads(raw, parse_constant=_reject_constant)


def _make_loads() -> Callable[[bytes | str], Any]:
    """orjson when installed (fast path), with stdlib re-parse on failure for an exact reason."""
    try:
        import orjson
    except ImportError:
        return _json_loads
    fast = orjson.loads

    def loads(raw: bytes | str) -> Any:
        try:
            return fast(raw)
        except ValueError:  # orjson.JSONDecodeError; also >64-bit ints, which stdlib accepts
            return _json_loads(raw)

    return loads


_loads = _make_loads()


def load_message(raw: bytes | str, max_bytes: int) -> Any:
    """Decode one message value as JSON, refusing oversized messages (measured in UTF-8 bytes)
    and NaN/Infinity literals; raises `BadEvent` ("oversized", "bad_json", "non_finite")."""
    n = len(raw)
    if n > max_bytes or (
        type(raw) is str
        and n * 4 > max_bytes
        and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise BadEvent("oversized", f"message is larger than {max_bytes} bytes")
    try:
        return _loads(raw)
    except BadEvent:
        raise
    except (ValueError, RecursionError) as e:
        raise BadEvent("bad_json", f"invalid JSON: {str(e)[:200]}") from None


def events_from_json(
    raw: bytes | str,
    *,
    max_bytes: int = 1_000_000,
    default_source: str | None = None,
    errors: list[BadEvent] | None = None,
) -> list[Event]:
    """Parse one Kafka message value: one event object or a JSON array of them.

    Whole-message problems (size, JSON syntax, top-level type) always raise `BadEvent`. A bad
    item of an array raises too, unless `errors` is given: then each bad item's `BadEvent` (with
    `.index`) is appended there and the good items are still returned, so none is lost.
    """
    return _events_from_obj(load_message(raw, max_bytes), default_source, errors)


def _events_from_obj(obj: Any, default_source: str | None,
                     errors: list[BadEvent] | None) -> list[Event]:
    """`events_from_json` after the JSON is decoded."""
    if type(obj) is dict:
        return [event_from_dict(obj, default_source=default_source)]
    if type(obj) is not list:
        raise BadEvent(
            "not_an_object", f"expected a JSON object or array of objects, got {_describe(obj)}"
        )
    if not obj:
        raise BadEvent("not_an_object",
                       "empty array: expected an event object or a non-empty array of them")
    out: list[Event] = []
    for k, item in enumerate(obj):
        try:
            out.append(event_from_dict(item, default_source=default_source))
        except BadEvent as e:
            bad = BadEvent(e.reason, f"item {k}: {e.message}", k)
            if errors is None:
                raise bad from None
            errors.append(bad)
    return out


def batch_from_json(
    raw: bytes | str,
    *,
    max_bytes: int = 1_000_000,
    default_source: str | None = None,
    errors: list[BadEvent] | None = None,
) -> EventBatch:
    """`events_from_json` straight into columns: the same events, errors and exceptions.

    An array of plain univariate events (numbers for ts and value, string ids, 0/1 labels) is
    checked column by column, each distinct source once, with no `Event` object made (measured
    0.75 vs 1.2 µs per event for 100-event arrays, JSON decoding included). Anything else goes
    through `event_from_dict` item by item.
    """
    return EventBatch.from_events(message_events(raw, max_bytes=max_bytes,
                                                 default_source=default_source, errors=errors))


def message_events(
    raw: bytes | str,
    *,
    max_bytes: int = 1_000_000,
    default_source: str | None = None,
    errors: list[BadEvent] | None = None,
) -> EventBatch | list[Event]:
    """`batch_from_json` without turning a list of events into columns: for a caller that
    gathers many messages into one batch (`EventBatch.concat`), where columns for each
    one-event message would cost more than the event."""
    return decoded_events(load_message(raw, max_bytes), default_source=default_source,
                          errors=errors)


def decoded_events(obj: Any, *, default_source: str | None = None,
                   errors: list[BadEvent] | None = None) -> EventBatch | list[Event]:
    """`message_events` of a message already decoded by `load_message`."""
    if type(obj) is list and obj:
        batch = _plain_columns(obj, default_source)
        if batch is not None:
            return batch
    return _events_from_obj(obj, default_source, errors)


def object_columns(objs: list[dict[str, Any]]) -> EventBatch | None:
    """Columns of many one-event messages' objects (decoded, each naming its source), or None
    if any is not a plain univariate event: the caller then checks them one at a time (the
    worker's input of one event per message: its engine's CPU per message 46 -> 38 µs in
    bench/stream.py's single phase, a loaded machine)."""
    return _plain_columns(objs, None) if objs else None


_PLAIN_NUMBERS = {float, int}
_PLAIN_IDS = {str, type(None)}
_PLAIN_LABELS = {0, 1, None}  # True/False and 0.0/1.0 are equal to these, as _label accepts


def _plain_columns(items: list[Any], default_source: str | None) -> EventBatch | None:
    """Columns of an array of plain univariate events, or None if any item is not plain
    (the caller then validates item by item, with the exact error for each). Loops are
    ``map`` over C functions: this runs for every event of the worker's input."""
    if set(map(type, items)) != {dict}:
        return None
    n = len(items)

    def column(name: str) -> list[Any]:
        return list(map(dict.get, items, repeat(name)))

    if any(map(dict.__contains__, items, repeat("values"))) \
            or any(map(dict.__contains__, items, repeat("calendar"))):
        return None
    sources = column("source")
    if None in sources:
        if default_source is None:
            return None
        sources = [default_source if s is None else s for s in sources]
    distinct = set(sources) if set(map(type, sources)) == {str} else ()
    if not distinct or not all(0 < len(s) <= MAX_SOURCE_LEN and s.isprintable()
                               for s in distinct):
        return None
    ts_raw, values_raw, ids, labels_raw = (column(k) for k in ("ts", "value", "id", "label"))
    if not (set(map(type, ts_raw)) <= _PLAIN_NUMBERS
            and set(map(type, values_raw)) <= _PLAIN_NUMBERS
            and set(map(type, ids)) <= _PLAIN_IDS
            and set(map(type, labels_raw)) <= _PLAIN_NUMBERS | {bool, type(None)}
            and set(labels_raw) <= _PLAIN_LABELS):
        return None
    missing_ids = ids.count(None)
    if missing_ids < n and max(map(len, ids if not missing_ids else
                                   [i for i in ids if i is not None])) > MAX_ID_LEN:
        return None
    try:
        ts = np.array(ts_raw, dtype=np.float64)
        values = np.array(values_raw, dtype=np.float64)
    except OverflowError:  # an integer too large for a float
        return None
    if not (np.abs(ts) < TS_LIMIT).all() or not np.isfinite(values).all():
        return None
    labels = (np.full(n, -1, dtype=np.int8) if labels_raw.count(None) == n else
              np.array([-1 if x is None else x for x in labels_raw], dtype=np.int8))
    if len(distinct) < n:  # one object per source name: a pickle then writes each name once
        # (the worker sends batches to its engine process: 200k events 95 -> 38 ms)
        canon = {name: name for name in distinct}
        sources = list(map(canon.__getitem__, sources))
    return EventBatch(sources, ts, values.reshape(n, 1), [_UNIVARIATE] * n, ids, labels,
                      np.ones(n, dtype=bool))


class EventBatch(Sequence[Event]):
    """Events as columns, which is how the detector reads them. A ``Sequence[Event]`` whose
    items are made on access; ``from_events`` turns events into one, ``batch_from_json`` parses
    into one without making events.

    ``values`` is a float array [n, C] (only when every event has the same fields) or a
    sequence of per-event tuples; ``value_rows`` reads either.
    """

    __slots__ = ("fields", "has_calendar", "ids", "labels", "sources", "ts", "values")

    def __init__(
        self,
        sources: Sequence[str],
        ts: np.ndarray,
        values: np.ndarray | Sequence[tuple[float, ...]],
        fields: Sequence[tuple[str, ...]],
        ids: Sequence[str | None],
        labels: np.ndarray,
        has_calendar: np.ndarray,
    ) -> None:
        self.sources = sources
        self.ts = ts  # float64, epoch seconds (NaN: unknown)
        self.values = values
        self.fields = fields
        self.ids = ids
        self.labels = labels  # int8, -1 = none
        self.has_calendar = has_calendar  # bool

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> EventBatch:
        """The columns of ``events`` (returned as is if already a batch)."""
        if isinstance(events, EventBatch):
            return events
        if not events:
            return cls([], np.zeros(0), np.zeros((0, 1)), [], [], np.zeros(0, np.int8),
                       np.zeros(0, bool))
        sources, ts, values, fields, ids, labels, cal = zip(*events, strict=True)
        n = len(sources)
        return cls(sources, np.array(ts, dtype=np.float64), values, fields, ids,
                   (np.full(n, -1, dtype=np.int8) if labels.count(None) == n else
                    np.array([-1 if x is None else x for x in labels], dtype=np.int8)),
                   np.array(cal, dtype=bool))

    @classmethod
    def concat(cls, parts: Iterable[EventBatch | Sequence[Event]]) -> EventBatch:
        """One batch of the events of ``parts`` (batches or lists of events), in order."""
        batches: list[EventBatch] = []
        events: list[Event] = []
        for part in parts:
            if not isinstance(part, EventBatch):
                events.extend(part)
                continue
            if events:
                batches.append(cls.from_events(events))
                events = []
            if len(part):
                batches.append(part)
        if events:
            batches.append(cls.from_events(events))
        return cls._joined(batches) if len(batches) != 1 else batches[0]

    @classmethod
    def _joined(cls, parts: list[EventBatch]) -> EventBatch:
        """The columns of non-empty batches, concatenated."""
        if not parts:
            return cls.from_events([])
        arrays = [b.values for b in parts]
        values: np.ndarray | list[tuple[float, ...]]
        if all(type(a) is np.ndarray for a in arrays) and len({b.fields[0] for b in parts}) == 1:
            values = np.concatenate(arrays)
        else:
            values = [v for b in parts for v in b._value_tuples()]
        return cls([s for b in parts for s in b.sources], np.concatenate([b.ts for b in parts]),
                   values, [f for b in parts for f in b.fields],
                   [i for b in parts for i in b.ids], np.concatenate([b.labels for b in parts]),
                   np.concatenate([b.has_calendar for b in parts]))

    def _value_tuples(self) -> Sequence[tuple[float, ...]]:
        if type(self.values) is np.ndarray:
            return [tuple(row) for row in self.values.tolist()]
        return self.values  # type: ignore[return-value]

    def value_rows(self, idx: np.ndarray) -> np.ndarray:
        """The values of events ``idx`` (all with the same fields) as a float array [m, C]."""
        if type(self.values) is np.ndarray:
            picked: np.ndarray = self.values[idx]  # numpy's stubs type indexing as Any
            return picked
        vals = self.values
        rows = np.array([vals[i] for i in idx.tolist()], dtype=np.float64)
        return rows.reshape(len(idx), -1)

    def __len__(self) -> int:
        return len(self.sources)

    @overload
    def __getitem__(self, i: int) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> EventBatch: ...

    def __getitem__(self, i: int | slice) -> Event | EventBatch:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        if i < 0:
            i += len(self)
        lab = int(self.labels[i])
        vals = self.values[i]
        return Event(self.sources[i], float(self.ts[i]),
                     tuple(vals.tolist()) if type(vals) is np.ndarray else vals,
                     self.fields[i], self.ids[i], None if lab < 0 else lab,
                     bool(self.has_calendar[i]))

    def take(self, idx: np.ndarray) -> EventBatch:
        """The events ``idx`` (an integer array), as a batch."""
        pick = idx.tolist()
        vals = self.values
        return EventBatch(_gather(self.sources, pick), self.ts[idx],
                          vals[idx] if isinstance(vals, np.ndarray) else _gather(vals, pick),
                          _gather(self.fields, pick), _gather(self.ids, pick),
                          self.labels[idx], self.has_calendar[idx])


def _gather(seq: Sequence[Any], pick: list[int]) -> Sequence[Any]:
    """``[seq[i] for i in pick]``, gathered in C."""
    return itemgetter(*pick)(seq) if len(pick) > 1 else [seq[i] for i in pick]


def event_to_dict(e: Event) -> dict[str, Any]:
    """The JSON-safe dict for `e`; `event_from_dict` inverts it exactly (fields sorted)."""
    d: dict[str, Any] = {"source": e.source}
    if e.ts == e.ts:
        d["ts"] = e.ts
    if e.fields == _UNIVARIATE:
        d["value"] = e.values[0]
    else:
        d["values"] = dict(zip(e.fields, e.values, strict=True))
    if e.id is not None:
        d["id"] = e.id
    if e.label is not None:
        d["label"] = e.label
    if not e.has_calendar:
        d["calendar"] = False
    return d

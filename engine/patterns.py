"""Pattern keys: for every code stream of an event, the 64-bit keys of the counts its scoring
needs (code n-grams, their contexts, the calendar-conditioned code and the stream total)."""

from __future__ import annotations

from datetime import datetime, tzinfo

import numpy as np
from numba import njit

from neurogate.engine.keys import _GOLD, _M1, _M2, EMPTY, mix64, text_hash64

# Key kinds, in the order of the last axis of ``pattern_keys``.
TOTAL, UNI, CALCTX, CAL, BICTX, BI, TRICTX, TRI = range(8)
NKINDS = 8
KIND_NAMES = ("total", "uni", "calctx", "cal", "bictx", "bi", "trictx", "tri")
NO_CALENDAR = 255
_SENT = 0xFFFF  # "no code" in a key slot
MAX_VOCAB = _SENT

# Which of (bucket, c2, c1, c0) each kind keeps; the rest become sentinels.
_USES = np.array(
    [
        # bucket, c2, c1, c0
        [0, 0, 0, 0],  # TOTAL
        [0, 0, 0, 1],  # UNI
        [1, 0, 0, 0],  # CALCTX
        [1, 0, 0, 1],  # CAL
        [0, 0, 1, 0],  # BICTX
        [0, 0, 1, 1],  # BI
        [0, 1, 1, 0],  # TRICTX
        [0, 1, 1, 1],  # TRI
    ],
    dtype=bool,
)


def calendar_bucket(ts: np.ndarray, has_calendar: np.ndarray, hours: int) -> np.ndarray:
    """(hour // hours) x weekend bucket of each UTC timestamp; NO_CALENDAR where there is none."""
    ok = has_calendar & np.isfinite(ts)
    t = np.where(ok, ts, 0.0)
    hour = np.floor(t / 3600.0).astype(np.int64) % 24
    bucket = (hour // hours) * 2 + weekend(t, ok)
    return np.where(ok, bucket, NO_CALENDAR).astype(np.uint64)


def weekend(ts: np.ndarray, has_calendar: np.ndarray) -> np.ndarray:
    """Whether each timestamp falls on a Saturday or Sunday (UTC); False where it has no
    calendar (a row number, a missing time).

    >>> weekend(np.array([0.0, 2 * 86400.0, 2 * 86400.0]), np.array([True, True, False]))
    array([False,  True, False])
    """
    ok = has_calendar & np.isfinite(ts)
    day = (np.floor(np.where(ok, ts, 0.0) / 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01: Thu
    out: np.ndarray = ok & (day >= 5)
    return out


def wall_clock(ts: np.ndarray, zone: tzinfo | None) -> np.ndarray:
    """Each time as the seconds a wall clock in ``zone`` shows since the epoch: UTC plus the
    zone's offset at that time, daylight saving included (``ts`` itself for None, UTC). A
    batch within a month whose first and last times share an offset takes it for all.

    >>> from zoneinfo import ZoneInfo
    >>> march = 1_711_846_800.0  # 2024-03-31T01:00:00Z, as Berlin moves to summer time
    >>> (wall_clock(np.array([march - 3600, march + 3600]), ZoneInfo("Europe/Berlin"))
    ...  - np.array([march - 3600, march + 3600])).tolist()
    [3600.0, 7200.0]
    """
    finite = np.isfinite(ts)
    if zone is None or not finite.any():
        return ts
    first, last = float(ts[finite].min()), float(ts[finite].max())
    offset = _utc_offset(first, zone)
    if last - first < 28 * 86400 and _utc_offset(last, zone) == offset:
        return ts + offset
    out: np.ndarray = ts + np.array([_utc_offset(t, zone) if ok else 0.0
                                     for t, ok in zip(ts.tolist(), finite.tolist(), strict=True)])
    return out


def _utc_offset(t: float, zone: tzinfo) -> float:
    delta = datetime.fromtimestamp(t, zone).utcoffset()
    return delta.total_seconds() if delta is not None else 0.0


def calendar_times(ts: np.ndarray, has_calendar: np.ndarray) -> np.ndarray:
    """Each timestamp that is a time (epoch seconds UTC); NaN where it has no calendar.

    >>> calendar_times(np.array([86490.0, 5.0]), np.array([True, False]))
    array([86490.,    nan])
    """
    out: np.ndarray = np.where(has_calendar, ts, np.nan)
    return out


def stream_bases(namespace: str, count: int) -> np.ndarray:
    """One 64-bit base per stream of an encoder namespace (the encoder version)."""
    ns = text_hash64(namespace)
    return mix64(ns ^ (np.arange(count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)))


def pattern_keys(
    bases: np.ndarray, scope: np.ndarray, codes: np.ndarray, bucket: np.ndarray
) -> np.ndarray:
    """Keys [n, streams, NKINDS] for codes [n, streams, 3] (t-2d, t-d, t) of events with scope
    hashes [n] and calendar buckets [n].

    Key = mix64(mix64(scope ^ stream base) ^ mix64(payload)); the payload packs the kind (bits
    60+) and, per ``_USES``, the bucket, c2, c1, c0 in 16-bit fields (``_SENT`` where unused).
    """
    n, k, _ = codes.shape
    out = np.empty((n, k, NKINDS), dtype=np.uint64)
    _pattern_keys(np.ascontiguousarray(bases, dtype=np.uint64),
                  np.ascontiguousarray(scope, dtype=np.uint64),
                  np.ascontiguousarray(codes, dtype=np.int64),
                  np.ascontiguousarray(bucket, dtype=np.uint64), _USES, out)
    return out


@njit(cache=True)
def _mix(x: np.uint64) -> np.uint64:
    """mix64 of one value (splitmix64 finaliser, 0 remapped to 1)."""
    z = x + _GOLD
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return z if z != EMPTY else np.uint64(1)


@njit(cache=True)
def _pattern_keys(bases: np.ndarray, scope: np.ndarray, codes: np.ndarray, bucket: np.ndarray,
                  uses: np.ndarray, out: np.ndarray) -> None:
    n, k = codes.shape[0], codes.shape[1]
    sent = np.uint64(_SENT)
    parts = np.empty(4, dtype=np.uint64)
    shifts = np.array([48, 32, 16, 0], dtype=np.uint64)
    for i in range(n):
        parts[0] = bucket[i]
        for s in range(k):
            base = _mix(scope[i] ^ bases[s])
            parts[1] = np.uint64(codes[i, s, 0])
            parts[2] = np.uint64(codes[i, s, 1])
            parts[3] = np.uint64(codes[i, s, 2])
            for kind in range(NKINDS):
                payload = np.uint64(kind) << np.uint64(60)
                for j in range(4):
                    payload |= (parts[j] if uses[kind, j] else sent) << shifts[j]
                out[i, s, kind] = _mix(base ^ _mix(payload))

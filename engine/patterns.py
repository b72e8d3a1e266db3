"""Pattern keys: for every code stream of an event, the 64-bit keys of the counts its scoring
needs (code n-grams, their contexts, the calendar-conditioned code and the stream total)."""

from __future__ import annotations

import numpy as np

from engine.counts import mix64, text_hash64

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
    weekday = (np.floor(t / 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    bucket = (hour // hours) * 2 + (weekday >= 5)
    return np.where(ok, bucket, NO_CALENDAR).astype(np.uint64)


def stream_bases(namespace: str, count: int) -> np.ndarray:
    """One 64-bit base per stream of an encoder namespace (the encoder version)."""
    ns = text_hash64(namespace)
    return mix64(ns ^ (np.arange(count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)))


def pattern_keys(
    bases: np.ndarray, scope: np.ndarray, codes: np.ndarray, bucket: np.ndarray
) -> np.ndarray:
    """Keys [n, streams, NKINDS] for codes [n, streams, 3] (t-2d, t-d, t) of events with scope
    hashes [n] and calendar buckets [n]."""
    n, k, _ = codes.shape
    base = mix64(scope[:, None] ^ bases[None, :])  # [n, k]
    c = codes.astype(np.uint64)
    parts = [
        np.broadcast_to(bucket[:, None], (n, k)),
        c[:, :, 0],
        c[:, :, 1],
        c[:, :, 2],
    ]
    shifts = (np.uint64(48), np.uint64(32), np.uint64(16), np.uint64(0))
    payload = np.zeros((n, k, NKINDS), dtype=np.uint64)
    sent = np.uint64(_SENT)
    for j, part in enumerate(parts):
        use = _USES[:, j]
        payload |= np.where(use[None, None, :], part[:, :, None], sent) << shifts[j]
    payload |= np.arange(NKINDS, dtype=np.uint64)[None, None, :] << np.uint64(60)
    return mix64(base[:, :, None] ^ mix64(payload))

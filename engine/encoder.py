"""Encoders turn windows of normalised values into discrete codes, level by level.

Every encoder exposes the same interface: ``streams`` (what each code column means) and
``encode(windows) -> codes[n, streams, 3]`` giving each stream's codes at t-2d, t-d and t, so the
pattern layer can count n-grams dilated by the stream's time step d without keeping code history,
and ``to_bytes`` / ``save`` (its artifact, read back by name with ``engine.encoders.load``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from numba import njit

from neurogate.engine.config import FixedEncoderConfig

ORDER = 3  # codes per stream handed to the pattern layer: t-2d, t-d, t


@dataclass(frozen=True)
class StreamSpec:
    """One code stream: its level, channel (-1 = joint over channels), time step, vocabulary and
    what its codes mean: "value" (a bin of the value), "level" (bin of a block mean x trend),
    "change" (did the value change) or "learned" (a NeuroNet code, no fixed meaning)."""

    level: int
    channel: int
    dilation: int
    vocab: int
    kind: str = "learned"


class Encoder(Protocol):
    """What the detector needs from an encoder (fixed bins or the NeuroNet)."""

    name: str
    version: str
    window: int
    channels: int
    streams: list[StreamSpec]

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """windows float32 [n, window, channels] (last row = now) -> int64 [n, streams, ORDER]."""
        ...

    def to_bytes(self) -> bytes:
        """The artifact: all it takes to encode exactly as this encoder does (the store keeps
        it as ``encoder/<name>/<version>``; ``engine.encoders.load`` reads it by name)."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact (``to_bytes``) to ``path``."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())


FIXED_FORMAT = "fixed/1"


class FixedEncoder(Encoder):
    """Deterministic multi-scale level x trend codes: the cold-start encoder and the ablation.

    >>> enc = FixedEncoder(channels=2)
    >>> again = FixedEncoder.from_bytes(enc.to_bytes())
    >>> again.version == enc.version, again.channels
    (True, 2)
    """

    name = "fixed"

    def __init__(self, config: FixedEncoderConfig | None = None, channels: int = 1) -> None:
        self.config = config or FixedEncoderConfig()
        self.channels = channels
        top = self.config.levels - 1
        # level l needs the block mean at t-2d (d = 2**l) and the block before it for its trend
        self.window = max(4, 4 << top)
        self.streams = [
            StreamSpec(
                level=lvl,
                channel=c,
                dilation=1 << lvl,
                vocab=self.config.value_bins + 2 if lvl == 0 else (self.config.level_bins + 2) * 4,
                kind="value" if lvl == 0 else "level",
            )
            for lvl in range(self.config.levels)
            for c in range(channels)
        ]
        if self.config.change_stream:
            self.streams += [StreamSpec(0, c, 1, CHANGE_CODES, "change") for c in range(channels)]
        self.version = hashlib.blake2b(self.to_bytes(), digest_size=8).hexdigest()

    def to_bytes(self) -> bytes:
        """The artifact: JSON of the settings and channel count (its hash is the version)."""
        return json.dumps({"enc": FIXED_FORMAT, "cfg": asdict(self.config),
                           "ch": self.channels}).encode()

    @classmethod
    def from_bytes(cls, blob: bytes, where: str = "fixed encoder artifact") -> FixedEncoder:
        """Read ``to_bytes``; ValueError if it is not a fixed encoder's artifact."""
        try:
            info = json.loads(blob)
            if info["enc"] != FIXED_FORMAT:
                raise ValueError(f"format {info['enc']!r}")
            return cls(FixedEncoderConfig(**info["cfg"]), channels=int(info["ch"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a fixed encoder artifact of format "
                             f"{FIXED_FORMAT!r} ({exc})") from None

    def encode(self, windows: np.ndarray) -> np.ndarray:
        n, w, c = windows.shape
        if w < self.window or c != self.channels:
            raise ValueError(
                f"fixed encoder needs windows [n, >={self.window}, {self.channels}], "
                f"got {windows.shape}"
            )
        cfg = self.config
        out = np.empty((n, cfg.levels, c, ORDER), dtype=np.int64)
        x = np.ascontiguousarray(windows[:, w - self.window :, :])
        _fixed_codes(x, cfg.levels, cfg.value_bins, cfg.level_bins, cfg.trend_step, out)
        codes = out.reshape(n, cfg.levels * c, ORDER)
        if not cfg.change_stream:
            return codes
        change = np.empty((n, c, ORDER), dtype=np.int64)
        _change_codes(x, change)
        return np.concatenate([codes, change], axis=1)


@njit(cache=True)
def _bin(u: float, bins: int) -> int:
    """Bin u in [0,1) into 1..bins; below the range -> 0, at/above its top -> bins+1."""
    f = math.floor(u * bins)
    return int(min(max(f, -1.0), float(bins))) + 1


CHANGE_CODES = 2  # 0 = the value did not change, 1 = it did


@njit(cache=True)
def _change_codes(x: np.ndarray, out: np.ndarray) -> None:
    """Whether each channel's value changed at t-2, t-1 and t."""
    n, w, c = x.shape
    for i in range(n):
        for ch in range(c):
            for k in range(ORDER):
                pos = w - ORDER + k
                step = abs(x[i, pos, ch] - x[i, pos - 1, ch])
                out[i, ch, k] = 0 if step == 0.0 else 1


@njit(cache=True)
def _fixed_codes(
    x: np.ndarray, levels: int, value_bins: int, level_bins: int, step: float, out: np.ndarray
) -> None:
    """Codes at t-2d, t-d, t of every level and channel, from one prefix sum per window."""
    n, w, c = x.shape
    cs = np.empty(w + 1)
    last = w - 1
    for i in range(n):
        for ch in range(c):
            cs[0] = 0.0
            for t in range(w):
                cs[t + 1] = cs[t] + x[i, t, ch]
            for lvl in range(levels):
                d = 1 << lvl
                for k in range(ORDER):
                    pos = last - (ORDER - 1 - k) * d
                    if lvl == 0:
                        out[i, 0, ch, k] = _bin(x[i, pos, ch], value_bins)
                        continue
                    mean = (cs[pos + 1] - cs[pos + 1 - d]) / d
                    prev = (cs[pos + 1 - d] - cs[pos + 1 - 2 * d]) / d
                    diff = mean - prev
                    trend = 0 if diff < -step else (1 if diff < 0 else (2 if diff < step else 3))
                    out[i, lvl, ch, k] = _bin(mean, level_bins) * 4 + trend

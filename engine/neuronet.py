"""NeuroNet: a learned multi-level encoder that turns a window of values into discrete codes.

Level l (1..L, time step d = 2**l) reads the means of ``kernel`` consecutive blocks of d/2
values ending at the event (receptive field kernel * d / 2 values; 2d with the default kernel
4), as ``(newest block, newest - each older block)`` per channel, standardised with the training
data's mean and spread. A small MLP (ReLU hidden layer) maps them to ``fsq_dims`` latents, and
each latent is quantised against ``fsq_levels - 1`` edges; the digits' mixed-radix integer is
the level's code. The codes at t-2d, t-d and t are the same function at those times, so a
window needs 4 * 2**L values.

The edges are not a fixed grid: after training they are set to the quantiles of each latent on
the training windows at the cumulative probabilities of a standard normal cut at
``-(q-2)/2 .. (q-2)/2`` (q = fsq_levels; q = 4: 16/34/34/16 %). So every digit is used at a
known rate whatever the latent's scale (the cause of the collapsed codebooks before: a sigmoid
quantiser whose inputs drifted into saturation used 1-4 of 16 codes), and the outer digits are
rarer, so unusual shapes get rare codes.

Inference is numpy/numba only (no torch): the engine can serve a NeuroNet without importing
torch; training lives in ``neurogate.engine.neurotrain``.

Examples
--------
>>> import numpy as np
>>> net = NeuroNet(NeuroNetConfig(window=32, levels=3))
>>> x = np.random.default_rng(0).uniform(0, 1, (5, 32, 1)).astype(np.float32)
>>> codes = net.encode(x)
>>> codes.shape, bool(codes.max() < net.config.vocab)
((5, 3, 3), True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numba import njit

from neurogate.engine.encoder import ORDER, Encoder, StreamSpec
from neurogate.engine.patterns import MAX_VOCAB

FORMAT = "neurogate.neuronet/2"
# Weight arrays of a NeuroNet, each [levels, ...]: feature mean and spread, hidden layer,
# latent layer, quantiser edges.
ARRAYS = ("feat_mean", "feat_std", "w1", "b1", "w2", "b2", "edges")


@dataclass(frozen=True)
class NeuroNetConfig:
    """Architecture and training hyper-parameters; part of the encoder's version hash."""

    channels: int = 1
    window: int = 256
    levels: int = 6
    hidden: int = 16
    fsq_dims: int = 2
    fsq_levels: int = 4
    kernel: int = 4
    tolerance: float = 0.05
    lr: float = 1e-2

    def __post_init__(self) -> None:
        minimums = {"channels": 1, "levels": 1, "hidden": 1, "fsq_dims": 1, "fsq_levels": 2,
                    "kernel": 2, "window": 4}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"NeuroNetConfig.{name} must be an int >= {minimum}, got {value!r}")
        # The t-2d code of level L reads kernel blocks of 2**(L-1) values before t-2d.
        least = self.reach(self.levels, self.kernel)
        if self.window & (self.window - 1) or self.window < least:
            raise ValueError(
                f"NeuroNetConfig.window must be a power of two >= {least} (level "
                f"{self.levels}'s code at t-2d reads kernel * 2**(levels-1) values before it), "
                f"got {self.window}")
        if self.fsq_levels**self.fsq_dims >= MAX_VOCAB:
            raise ValueError(f"NeuroNetConfig.fsq_dims, fsq_levels: the vocabulary "
                             f"fsq_levels**fsq_dims must be < {MAX_VOCAB} (a pattern key slot)")
        for name in ("tolerance", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"NeuroNetConfig.{name} must be a number > 0, got {value!r}")

    @staticmethod
    def reach(levels: int, kernel: int) -> int:
        """Values a window needs: level ``levels``'s code at t-2d and its receptive field."""
        d: int = 2**levels  # int ** int is Any to mypy (a negative power is a float)
        return 2 * d + kernel * d // 2

    @property
    def vocab(self) -> int:
        """Distinct codes per level: fsq_levels ** fsq_dims."""
        return int(self.fsq_levels**self.fsq_dims)

    @property
    def features(self) -> int:
        """Inputs of a level's MLP: kernel block features per channel."""
        return self.kernel * self.channels


def target_usage(q: int) -> np.ndarray:
    """Share of events each of a latent's ``q`` digits gets after calibration: a standard
    normal cut at -(q-2)/2 .. (q-2)/2 (q = 4: 0.16, 0.34, 0.34, 0.16)."""
    cuts = [NormalDist().cdf(k - (q - 2) / 2) for k in range(q - 1)]
    return np.diff(np.concatenate([[0.0], cuts, [1.0]]))


def target_perplexity(q: int, dims: int) -> float:
    """Perplexity of a level's codes when its latents are independent and calibrated."""
    p = target_usage(q)
    return float(math.exp(-dims * float((p * np.log(p)).sum())))


@dataclass
class TrainReport:
    """What training did, per level (index 0 = level 1), measured on held-out windows (the most
    recent tenth of each series): prediction accuracy before and after training, and code
    perplexity (exp of the entropy of the held-out codes at t; at most vocab; a collapsed level
    has about 1)."""

    initial_accuracy: list[float] = field(default_factory=list)
    level_accuracy: list[float] = field(default_factory=list)
    code_perplexity: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    train_samples: int = 0
    heldout_samples: int = 0
    reinitialised: list[int] = field(default_factory=list)  # levels whose weights were redrawn

    def summary(self) -> str:
        """One line per level plus totals, for logs and the CLI."""
        lines = [
            f"level {i + 1}: acc {a0:.3f} -> {a:.3f}, code perplexity {p:.1f}"
            for i, (a0, a, p) in enumerate(zip(
                self.initial_accuracy, self.level_accuracy, self.code_perplexity, strict=True))
        ]
        if self.reinitialised:
            lines.append(f"re-initialised (collapsed) levels: {self.reinitialised}")
        lines.append(f"{self.steps} steps, {self.train_samples} train + "
                     f"{self.heldout_samples} held-out windows, {self.seconds:.1f} s")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class NeuroNet(Encoder):
    """Learned encoder: one joint stream of codes per level, shared across sources.

    A fresh NeuroNet has random weights and uncalibrated edges (a standard normal grid);
    ``engine.neurotrain.fit`` trains and calibrates one.
    """

    name = "neuronet"

    def __init__(self, config: NeuroNetConfig | None = None, *, seed: int = 0,
                 weights: dict[str, np.ndarray] | None = None,
                 meta: dict[str, object] | None = None) -> None:
        """``meta``: what is known about the weights (e.g. ``serve_levels``: the levels a
        pretrained NeuroNet serves from the first event); saved, not part of the version."""
        self.config = cfg = config or NeuroNetConfig()
        self.window = cfg.window
        self.channels = cfg.channels
        self.weights = weights if weights is not None else initial_weights(cfg, seed)
        self.meta = dict(meta or {})
        self._check()
        self.version = self._hash()
        self._use(tuple(range(1, cfg.levels + 1)))

    def _use(self, levels: tuple[int, ...]) -> None:
        cfg = self.config
        self.levels = levels
        self.streams = [StreamSpec(level=lv, channel=-1, dilation=2**lv, vocab=cfg.vocab)
                        for lv in levels]
        whole = len(levels) == cfg.levels
        # pattern namespace: a view's stream k is another level than the whole network's
        self.namespace = f"{self.name}:{self.version}" + (
            "" if whole else ":levels=" + ",".join(map(str, levels)))

    def view(self, levels: list[int] | tuple[int, ...]) -> NeuroNet:
        """The same network (same version and artifact) encoding only ``levels``: what a
        pretrained NeuroNet serving a few levels costs (its other levels are not computed
        or counted). Its pattern namespace names the levels."""
        chosen = tuple(sorted(set(levels)))
        if not chosen or not set(chosen) <= set(range(1, self.config.levels + 1)):
            raise ValueError(f"levels must be a non-empty subset of 1..{self.config.levels}, "
                             f"got {list(levels)}")
        net = NeuroNet(self.config, weights=self.weights, meta=self.meta)
        net._use(chosen)
        return net

    def _check(self) -> None:
        cfg = self.config
        lv, f, h, d, q = cfg.levels, cfg.features, cfg.hidden, cfg.fsq_dims, cfg.fsq_levels
        shapes = {"feat_mean": (lv, f), "feat_std": (lv, f), "w1": (lv, f, h), "b1": (lv, h),
                  "w2": (lv, h, d), "b2": (lv, d), "edges": (lv, d, q - 1)}
        if set(self.weights) != set(shapes):
            raise ValueError(f"NeuroNet weights must be {sorted(shapes)}, got "
                             f"{sorted(self.weights)}")
        for name, shape in shapes.items():
            arr = np.ascontiguousarray(self.weights[name], dtype=np.float64)
            if arr.shape != shape or not np.isfinite(arr).all():
                raise ValueError(f"NeuroNet weight {name} must be finite {shape}, got "
                                 f"{arr.shape}")
            self.weights[name] = arr
        if (self.weights["feat_std"] <= 0).any():
            raise ValueError("NeuroNet weight feat_std must be > 0")
        if (np.diff(self.weights["edges"], axis=-1) < 0).any():
            raise ValueError("NeuroNet quantiser edges must be ascending")

    def _hash(self) -> str:
        """16 hex chars of sha256 over the format, the config and every weight array."""
        h = hashlib.sha256(FORMAT.encode())
        h.update(json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode())
        for key in ARRAYS:
            arr = self.weights[key]
            h.update(f"{key}:{arr.dtype}:{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()[:16]

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Codes of each window's last event: finite [n, >= window, channels] values (the last
        ``window`` are read) -> int64 [n, len(self.levels), 3], per level the codes at
        t-2d, t-d, t (d = 2**level)."""
        x = np.asarray(windows)
        if x.ndim != 3 or x.shape[1] < self.window or x.shape[2] != self.channels:
            raise ValueError(f"windows must be [n, >={self.window}, {self.channels}], got "
                             f"{x.shape}")
        x = x[:, x.shape[1] - self.window :]
        top = 2 ** max(self.levels)
        if not np.isfinite(x[:, self.window - 2 * top - self.config.kernel * top // 2 :]).all():
            raise ValueError("windows must be finite (no NaN or inf)")
        out = np.empty((len(x), len(self.levels), ORDER), dtype=np.int64)
        w = self.weights
        _encode(np.ascontiguousarray(x, dtype=np.float32), np.array(self.levels) - 1,
                self.config.kernel, self.config.fsq_levels, w["feat_mean"], w["feat_std"],
                w["w1"], w["b1"], w["w2"], w["b2"], w["edges"], out)
        return out

    def latents(self, series: np.ndarray, ends: np.ndarray, level: int) -> np.ndarray:
        """Latents (before quantisation) [len(ends), fsq_dims] of level ``level`` (1-based) at
        positions ``ends`` of one series [T, channels] (each end >= the level's receptive
        field - 1): what calibration reads."""
        cs = prefix_sums(np.ascontiguousarray(series, dtype=np.float64))
        w = self.weights
        i = level - 1
        out = np.empty((len(ends), self.config.fsq_dims))
        _latents(cs, np.ascontiguousarray(ends, dtype=np.int64), 2 ** (level - 1),
                 self.config.kernel, w["feat_mean"][i], w["feat_std"][i], w["w1"][i],
                 w["b1"][i], w["w2"][i], w["b2"][i], out)
        return out

    # -- persistence ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The artifact: an ``.npz`` (no pickle) with a JSON header (format, config, version)."""
        header = {"format": FORMAT, "config": dataclasses.asdict(self.config),
                  "version": self.version, "meta": self.meta}
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                 **self.weights)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, where: str = "NeuroNet artifact") -> NeuroNet:
        """Read ``to_bytes``; ValueError if it is not a NeuroNet artifact of this format or its
        content hash does not match the stored version (corrupted or tampered)."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            header = json.loads(arrays.pop("header").tobytes())
        except Exception as exc:  # numpy raises many types for foreign or broken files
            raise ValueError(f"{where}: not a neurogate NeuroNet file ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else None
            raise ValueError(f"{where}: not a neurogate NeuroNet file of format {FORMAT!r} "
                             f"(found {found!r}; retrain older encoders)")
        try:
            net = cls(NeuroNetConfig(**header["config"]), weights=arrays,
                      meta=header.get("meta"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: malformed NeuroNet file ({exc})") from exc
        if net.version != header.get("version"):
            raise ValueError(f"{where}: content hash {net.version} does not match the stored "
                             f"version {header.get('version')!r}: the file is corrupted")
        return net

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NeuroNet:
        """Read a file written by ``save`` (see ``from_bytes``)."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), str(path))


def initial_weights(cfg: NeuroNetConfig, seed: int) -> dict[str, np.ndarray]:
    """Random weights (He-scaled hidden layer), unit feature scaling and a standard normal
    grid of edges: what training starts from."""
    rng = np.random.default_rng(seed)
    lv, f, h, d, q = cfg.levels, cfg.features, cfg.hidden, cfg.fsq_dims, cfg.fsq_levels
    grid = np.array([NormalDist().inv_cdf(c) for c in np.cumsum(target_usage(q))[:-1]])
    return {
        "feat_mean": np.zeros((lv, f)),
        "feat_std": np.ones((lv, f)),
        "w1": rng.normal(0.0, math.sqrt(2.0 / f), (lv, f, h)),
        "b1": np.zeros((lv, h)),
        "w2": rng.normal(0.0, math.sqrt(1.0 / h), (lv, h, d)),
        "b2": np.zeros((lv, d)),
        "edges": np.broadcast_to(grid, (lv, d, q - 1)).copy(),
    }


@njit(cache=True)
def prefix_sums(x: np.ndarray) -> np.ndarray:
    """Prefix sums [T+1, C] of a series [T, C] (float64)."""
    t, c = x.shape
    cs = np.zeros((t + 1, c))
    for i in range(t):
        for ch in range(c):
            cs[i + 1, ch] = cs[i, ch] + x[i, ch]
    return cs


@njit(cache=True)
def _features(cs: np.ndarray, end: int, block: int, kernel: int, out: np.ndarray) -> None:
    """Block features at ``end`` from prefix sums ``cs``: per channel the newest block mean,
    then newest minus each older block mean (``kernel`` blocks of ``block`` values)."""
    c = cs.shape[1]
    for ch in range(c):
        newest = (cs[end + 1, ch] - cs[end + 1 - block, ch]) / block
        out[ch * kernel] = newest
        for k in range(1, kernel):
            hi = end + 1 - k * block
            out[ch * kernel + k] = newest - (cs[hi, ch] - cs[hi - block, ch]) / block


@njit(cache=True)
def level_features(cs: np.ndarray, ends: np.ndarray, kernel: int, levels: int, back: int
                   ) -> np.ndarray:
    """Block features [levels, n, kernel * C] of every level at ``ends - back * d`` (d = 2**l)
    from prefix sums ``cs`` [T+1, C] (``prefix_sums``): the training inputs."""
    n = ends.size
    out = np.empty((levels, n, kernel * cs.shape[1]))
    for lv in range(levels):
        d = 2 << lv
        for i in range(n):
            _features(cs, ends[i] - back * d, d // 2, kernel, out[lv, i])
    return out


@njit(cache=True)
def _latent(  # noqa: PLR0913  (numba kernel: takes flat arrays, not objects)
        f: np.ndarray, mean: np.ndarray, std: np.ndarray, w1: np.ndarray, b1: np.ndarray,
            w2: np.ndarray, b2: np.ndarray, hbuf: np.ndarray, z: np.ndarray) -> None:
    """One level's MLP: standardised features -> ReLU hidden -> latents ``z``."""
    nf, nh = w1.shape
    for j in range(nh):
        hbuf[j] = b1[j]
    for i in range(nf):
        v = (f[i] - mean[i]) / std[i]
        for j in range(nh):
            hbuf[j] += v * w1[i, j]
    for k in range(z.size):
        acc = b2[k]
        for j in range(nh):
            if hbuf[j] > 0.0:
                acc += hbuf[j] * w2[j, k]
        z[k] = acc


@njit(cache=True)
def _latents(  # noqa: PLR0913  (numba kernel: takes flat arrays, not objects)
        cs: np.ndarray, ends: np.ndarray, block: int, kernel: int, mean: np.ndarray,
             std: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
             out: np.ndarray) -> None:
    f = np.empty(w1.shape[0])
    hbuf = np.empty(w1.shape[1])
    for i in range(ends.size):
        _features(cs, ends[i], block, kernel, f)
        _latent(f, mean, std, w1, b1, w2, b2, hbuf, out[i])


@njit(cache=True)
def _encode(  # noqa: PLR0913  (numba kernel: takes flat arrays, not objects)
        x: np.ndarray, which: np.ndarray, kernel: int, q: int, mean: np.ndarray,
            std: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
            edges: np.ndarray, out: np.ndarray) -> None:
    """Codes [n, len(which), 3] at t-2d, t-d, t of windows x [n, W, C] for the levels
    ``which`` (0-based)."""
    n, w, c = x.shape
    nf, nh = w1.shape[1], w1.shape[2]
    dims = w2.shape[2]
    top = 2 << which.max()
    start = w - (2 * top + kernel * top // 2)  # only the values the top level reads
    cs = np.zeros((w - start + 1, c))
    f = np.empty(nf)
    hbuf = np.empty(nh)
    z = np.empty(dims)
    for i in range(n):
        for t in range(w - start):
            for ch in range(c):
                cs[t + 1, ch] = cs[t, ch] + x[i, start + t, ch]
        for slot in range(which.size):
            lv = which[slot]
            d = 2 << lv
            for k in range(3):
                _features(cs, w - start - 1 - (2 - k) * d, d // 2, kernel, f)
                _latent(f, mean[lv], std[lv], w1[lv], b1[lv], w2[lv], b2[lv], hbuf, z)
                code = 0
                radix = 1
                for j in range(dims):
                    digit = 0
                    for e in range(q - 1):
                        if z[j] > edges[lv, j, e]:
                            digit += 1
                    code += digit * radix
                    radix *= q
                out[i, slot, k] = code

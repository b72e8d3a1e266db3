"""NeuroNet: a learned multi-level encoder that turns a window of values into discrete codes.

Level l (1..L) reads the level l-1 sequence (level 0 = the raw window), applies a causal
strided conv (stride 2, output j summarises the inputs ending at 2j+1), a nonlinearity and a
finite scalar quantiser (FSQ). The quantised values feed level l+1; their mixed-radix integer is
the level's code. So level l has window / 2**l positions, and its last position ends at the
current event: the last three codes are those at event times t-2d, t-d, t with d = 2**l.
A level-l code sees 1 + (kernel-1)(2**l - 1) values; where that reaches before the window start
(with the defaults only the top level's t-2d code) the window's first value stands in, so that
code can differ from the t code of the window 2d events earlier.

Training is shared across many sources and predictive (EXPERIMENTS.md round 2: that is the only
neural setting that beat fixed bins): each level learns to predict the mean of the next 2**l
values from its codes, plus a small reconstruction term, level by level, then optionally jointly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from numba import njit
from torch import nn
from tqdm import tqdm

from neurogate.engine.encoder import StreamSpec
from neurogate.engine.patterns import MAX_VOCAB

FORMAT = "neurogate.neuronet/1"
_CHUNK = 16384  # windows per encode / evaluation batch: bounds memory
_FLOAT_CHUNK = 1024  # windows per float forward in encode: keeps the hidden layer cache-warm
_CARRY = 8192  # windows (and their level-1 codes) kept from earlier encode calls for reuse
_EVAL_EVERY = 20  # training steps between held-out accuracy checks
_RECON_WEIGHT = 0.1
_HELDOUT = 0.1  # share of each series' windows (its most recent ones, at least one) held out
# Level 1's conv sees each kernel's last value plus its differences to the earlier taps, scaled
# up: an invertible reparametrisation of the raw taps, folded into the conv weight. Differences
# are ~10x smaller than levels in normalised units, and unscaled the conv needed many more steps
# to pick up the trend (measured: level-1 held-out accuracy 0.46 -> 0.62 after 150 steps, far
# better rising/falling separation).
_DIFF_SCALE = 16.0


@njit(cache=True)
def _segment_hash(bits: np.ndarray, row: int, start: int, stop: int) -> np.uint64:
    """Hash of 16 evenly spread steps (all channels) of ``bits[row, start:stop]``: a cheap key
    for candidate matches, each then checked exactly."""
    h = np.uint64(0x9E3779B97F4A7C15)
    span = stop - start - 1
    for q in range(16):
        t = start + span * q // 15
        for ch in range(bits.shape[2]):
            h = (h ^ np.uint64(bits[row, t, ch])) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
    return h


@njit(cache=True)
def _shifted_predecessors(bits: np.ndarray) -> np.ndarray:
    """For windows [B, W, C] (float32 bits): pred[i] = the latest earlier row p whose window
    moved on by two steps is row i's (bits[i, :-2] == bits[p, 2:] exactly), else -1."""
    b, w, c = bits.shape
    size = 16
    while size < 4 * b:
        size *= 2
    mask = np.uint64(size - 1)
    hashes = np.zeros(size, dtype=np.uint64)
    rows = np.full(size, -1, dtype=np.int64)
    pred = np.full(b, -1, dtype=np.int64)
    for i in range(b):
        h = _segment_hash(bits, i, 0, w - 2)
        slot = h & mask
        while rows[slot] >= 0 and hashes[slot] != h:
            slot = (slot + np.uint64(1)) & mask
        p = rows[slot]
        if p >= 0:
            same = True
            for t in range(w - 2):
                for ch in range(c):
                    if bits[i, t, ch] != bits[p, t + 2, ch]:
                        same = False
                        break
                if not same:
                    break
            if same:
                pred[i] = p
        h = _segment_hash(bits, i, 2, w)
        slot = h & mask
        while rows[slot] >= 0 and hashes[slot] != h:
            slot = (slot + np.uint64(1)) & mask
        hashes[slot] = h
        rows[slot] = i
    return pred


@njit(cache=True)
def _fill_shifted(codes: np.ndarray, pred: np.ndarray, edges: np.ndarray, npad: int) -> None:
    """Codes of rows with a predecessor: its codes one position along, then the freshly
    computed padded first ``npad`` and new last outputs (``edges``). Rows in order: p < i."""
    b, half = codes.shape
    for i in range(b):
        p = pred[i]
        if p < 0:
            continue
        for j in range(npad):
            codes[i, j] = edges[i, j]
        for j in range(npad, half - 1):
            codes[i, j] = codes[p, j + 1]
        codes[i, half - 1] = edges[i, npad]


@njit(cache=True)
def _upper_tails(codes1: np.ndarray, tables: np.ndarray, kernel: int, vocab: int,
                 out: np.ndarray) -> None:
    """Last three codes of every level [B, levels, 3] from level-1 codes [B, W/2]: level l+1's
    output j is ``tables[l][taps]`` of level l's codes 2j+2-kernel .. 2j+1, the first code
    standing in before the start (as ``_Level.columns`` pads)."""
    b, half = codes1.shape
    levels = tables.shape[0] + 1
    cur = np.empty(half, dtype=np.int64)
    nxt = np.empty(half, dtype=np.int64)
    for i in range(b):
        n = half
        for j in range(n):
            cur[j] = codes1[i, j]
        for t in range(3):
            out[i, 0, t] = cur[n - 3 + t]
        for lvl in range(1, levels):
            m = n // 2
            for j in range(m):
                idx = 0
                for tap in range(kernel):
                    pos = 2 * j + 2 - kernel + tap
                    idx = idx * vocab + cur[pos if pos > 0 else 0]
                nxt[j] = tables[lvl - 1, idx]
            for j in range(m):
                cur[j] = nxt[j]
            n = m
            for t in range(3):
                out[i, lvl, t] = cur[n - 3 + t]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    lr: float = 3e-2  # measured on sine sources: 3e-3 ends 400 steps far less accurate

    def __post_init__(self) -> None:
        minimums = {"channels": 1, "levels": 1, "hidden": 1, "fsq_dims": 1, "fsq_levels": 2,
                    "kernel": 2, "window": 4}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"NeuroNetConfig.{name} must be an int >= {minimum}, got {value!r}")
        # Level L has window / 2**L positions and needs >= 3 (codes at t-2d, t-d, t); with a
        # power-of-two window that means window >= 4 * 2**levels.
        least = 4 * 2**self.levels
        if self.window & (self.window - 1) or self.window < least:
            raise ValueError(
                f"NeuroNetConfig.window must be a power of two >= 4 * 2**levels = {least} "
                f"(so level {self.levels} has >= 3 positions), got {self.window}"
            )
        if self.fsq_levels**self.fsq_dims >= MAX_VOCAB:
            raise ValueError(f"NeuroNetConfig.fsq_dims, fsq_levels: the vocabulary "
                             f"fsq_levels**fsq_dims must be < {MAX_VOCAB} (a pattern key slot)")
        for name in ("tolerance", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"NeuroNetConfig.{name} must be a number > 0, got {value!r}")

    @property
    def vocab(self) -> int:
        """Distinct codes per level: fsq_levels ** fsq_dims."""
        return int(self.fsq_levels**self.fsq_dims)


@dataclass
class TrainReport:
    """What fit did, per level (index 0 = level 1). Accuracies are on the held-out split:
    before training the level, and when it was frozen; code perplexity (exp of the entropy of
    the held-out windows' last codes, at most vocab) is measured at the end."""

    initial_accuracy: list[float] = field(default_factory=list)
    level_accuracy: list[float] = field(default_factory=list)
    level_steps: list[int] = field(default_factory=list)
    levelhold_reached: list[bool] = field(default_factory=list)
    code_perplexity: list[float] = field(default_factory=list)
    tune_accuracy: float | None = None
    tune_steps: int = 0
    seconds: float = 0.0
    train_samples: int = 0
    heldout_samples: int = 0

    def summary(self) -> str:
        """One line per level plus totals, for logs and the CLI."""
        lines = [
            f"level {i + 1}: acc {a0:.3f} -> {a:.3f} in {s} steps"
            f"{' (levelhold reached)' if hit else ''}, code perplexity {p:.1f}"
            for i, (a0, a, s, hit, p) in enumerate(zip(
                self.initial_accuracy, self.level_accuracy, self.level_steps,
                self.levelhold_reached, self.code_perplexity, strict=True))
        ]
        if self.tune_accuracy is not None:
            lines.append(f"fine-tune: mean acc {self.tune_accuracy:.3f} in {self.tune_steps} steps")
        lines.append(f"{self.train_samples} train + {self.heldout_samples} held-out windows, "
                     f"{self.seconds:.1f} s")
        return "\n".join(lines)


class _Level(nn.Module):
    """One level: causal stride-2 conv -> ReLU -> FSQ, plus the training-only heads."""

    def __init__(self, c_in: int, cfg: NeuroNetConfig, *, raw: bool) -> None:
        super().__init__()
        self.kernel = cfg.kernel
        self.q = cfg.fsq_levels
        self.conv = nn.Linear(c_in * cfg.kernel, cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.fsq_dims)
        # Training only: predict the next block mean from two consecutive steps; reconstruct the
        # two inputs a step summarises.
        self.head = nn.Sequential(nn.Linear(2 * cfg.fsq_dims, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, cfg.channels))
        self.decoder = nn.Linear(cfg.fsq_dims, 2 * c_in)
        self.radix: torch.Tensor
        self.register_buffer("radix", cfg.fsq_levels ** torch.arange(cfg.fsq_dims),
                             persistent=False)
        # Level 1 only: taps -> (last value, _DIFF_SCALE x (last - earlier tap)) per channel.
        taps = torch.zeros(cfg.kernel, cfg.kernel)
        taps[:, -1] = 1.0
        taps[1:, -1] = _DIFF_SCALE
        taps[1:, :-1] = -_DIFF_SCALE * torch.eye(cfg.kernel - 1)
        self.mix: torch.Tensor | None
        self.register_buffer("mix", torch.block_diag(*[taps] * c_in) if raw else None,
                             persistent=False)

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, C] -> conv input columns [B, T/2, C * kernel]. The start is left-padded by
        repeating the first step, so output j covers inputs 2j+2-kernel .. 2j+1."""
        pad = x[:, :1].expand(-1, self.kernel - 2, -1)
        return torch.cat([pad, x], 1).unfold(1, self.kernel, 2).flatten(2)

    def scaled(self, cols: torch.Tensor) -> torch.Tensor:
        """Conv columns [..., C * kernel] -> FSQ inputs [..., d] in [0, q-1], before rounding."""
        flat = cols.reshape(-1, cols.shape[-1])  # 2-D, so each Linear is one fused addmm
        weight = self.conv.weight if self.mix is None else self.conv.weight @ self.mix
        h = nn.functional.linear(flat, weight, self.conv.bias).relu_()
        z = torch.sigmoid(self.proj(h)) * (self.q - 1)
        return z.reshape(*cols.shape[:-1], -1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, C] -> (quantised values [B, T/2, d] in [-1, 1], FSQ digits [B, T/2, d])."""
        z = self.scaled(self.columns(x))
        digits = torch.round(z)
        zq = z + (digits - z).detach() if torch.is_grad_enabled() else digits  # straight-through
        return zq * (2.0 / (self.q - 1)) - 1.0, digits

    def codes(self, digits: torch.Tensor) -> torch.Tensor:
        """FSQ digits [..., d] -> mixed-radix integer codes [...] (int64)."""
        return (digits.long() * self.radix).sum(-1)

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes [...] -> quantised values [..., d]: the inverse of ``codes``."""
        digits = torch.div(codes[..., None], self.radix, rounding_mode="floor") % self.q
        return digits * (2.0 / (self.q - 1)) - 1.0

    def predict(self, values: torch.Tensor) -> torch.Tensor:
        """Quantised values [B, P, d] -> predicted next-block means [B, P-1, channels] for
        positions 1..P-1, each from steps (j-1, j)."""
        return self.head(torch.cat([values[:, :-1], values[:, 1:]], -1))

    def recon_loss(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """MSE of reconstructing each step's 2 input positions from its quantised values."""
        target = x.detach().reshape(x.shape[0], x.shape[1] // 2, -1)
        return nn.functional.mse_loss(self.decoder(values), target)


class _Windows:
    """Training windows cut from many series, addressed by their end index in one flat array."""

    def __init__(self, series: list[np.ndarray], cfg: NeuroNetConfig) -> None:
        w, horizon = cfg.window, 2**cfg.levels
        parts: list[np.ndarray] = []
        train: list[np.ndarray] = []
        held: list[np.ndarray] = []
        offset = 0
        for raw in series:
            s = np.asarray(raw, dtype=np.float32)
            if s.ndim == 1 and cfg.channels == 1:
                s = s[:, None]
            if s.ndim != 2 or s.shape[1] != cfg.channels:
                raise ValueError(f"each series must be [T, {cfg.channels}], got {s.shape}")
            if len(s) <= horizon:
                continue  # no real future for the top level's target
            # Pad the start by repeating the first value, as a source's first windows are in
            # streaming, so every event with a full future ends a window.
            s = np.concatenate([np.repeat(s[:1], w - 1, 0), s])
            ends = offset + np.arange(w - 1, len(s) - horizon)
            cut = len(ends) - (max(1, round(_HELDOUT * len(ends))) if len(ends) > 1 else 0)
            train.append(ends[:cut])
            held.append(ends[cut:])
            parts.append(s)
            offset += len(s)
        self.train = np.concatenate(train) if train else np.zeros(0, np.int64)
        self.held = np.concatenate(held) if held else np.zeros(0, np.int64)
        if len(self.held) == 0 or len(self.train) == 0:
            raise ValueError(
                f"too little data: need a series with >= 2**levels + 2 = {horizon + 2} rows "
                f"(for a train and a held-out window)")
        self.values = np.concatenate(parts)
        self.cumsum = np.concatenate([np.zeros((1, cfg.channels)),
                                      np.cumsum(self.values, 0, dtype=np.float64)])
        self._steps = np.arange(-w + 1, 1)

    def windows(self, ends: np.ndarray) -> np.ndarray:
        """[n, window, channels] float32 windows ending (inclusive) at ``ends``."""
        return self.values[ends[:, None] + self._steps]

    def future_mean(self, ends: np.ndarray, span: int) -> np.ndarray:
        """[n, channels] mean of the ``span`` values after each end: the predictive target."""
        return (self.cumsum[ends + 1 + span] - self.cumsum[ends + 1]) / span


class NeuroNet:
    """Learned encoder: one joint stream of FSQ codes per level, shared across sources.

    Accuracy (levelhold, tunehold, TrainReport): the share of held-out windows whose predicted
    mean of the next 2**l values (from the level's last two code steps) is within
    ``config.tolerance`` (normalised units) of the truth for every channel. The held-out split is
    the most recent 10% (at least one) of each series' windows.
    """

    name = "neuronet"

    def __init__(self, config: NeuroNetConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or NeuroNetConfig()
        self.window = self.config.window
        self.channels = self.config.channels
        self.streams = [
            StreamSpec(level=lv, channel=-1, dilation=2**lv, vocab=self.config.vocab)
            for lv in range(1, self.config.levels + 1)
        ]
        self.device = _device()
        self._build(seed)

    def _build(self, seed: int) -> None:
        """(Re)create the levels with weights drawn from ``seed``, leaving global RNG alone."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.levels = [_Level(cfg.channels if i == 0 else cfg.fsq_dims, cfg, raw=i == 0)
                           for i in range(cfg.levels)]
        self.net = nn.ModuleList(self.levels).to(self.device)
        self._refresh()

    def _refresh(self) -> None:
        """After the weights changed: recompute the version, drop derived lookup tables."""
        self.version = self._hash()
        self._tables: list[torch.Tensor] | None = None  # built from the weights on first use
        self._np_tables: np.ndarray | None = None
        self._carry = (np.zeros((0, 0, 0), np.uint32), np.zeros((0, 0), np.int64))

    def _hash(self) -> str:
        """16 hex chars of sha256 over the format, the config and every weight tensor."""
        h = hashlib.sha256(f"{FORMAT} diff_scale={_DIFF_SCALE}".encode())
        h.update(json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode())
        for key, tensor in sorted(self.net.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]

    def _forward(self, x: torch.Tensor, upto: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run levels 1..upto on x [B, W, C]; returns (values, digits) per level."""
        out = []
        for level in self.levels[:upto]:
            x, digits = level(x)
            out.append((x, digits))
        return out

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Codes of each window's last event: finite [n, window, channels] values ->
        int64 [n, levels, 3], per level the codes at t-2d, t-d, t (d = 2**level)."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.window, self.channels):
            raise ValueError(f"windows must be [n, {self.window}, {self.channels}], got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("windows must be finite (no NaN or inf)")
        out = np.empty((len(x), len(self.levels), 3), dtype=np.int64)
        with torch.inference_mode():
            tables = self._lookup_tables()
            for start in range(0, len(x), _CHUNK):
                batch = torch.from_numpy(x[start:start + _CHUNK]).to(self.device)
                out[start:start + len(batch)] = self._tail_codes(batch, tables).cpu().numpy()
        return out

    def _tail_codes(self, x: torch.Tensor, tables: list[torch.Tensor] | None) -> torch.Tensor:
        """Last three codes of every level, [B, levels, 3], for windows x [B, W, C]."""
        parts = [x[s:s + _FLOAT_CHUNK] for s in range(0, len(x), _FLOAT_CHUNK)]
        if tables is None:
            return torch.cat([torch.stack([lvl.codes(d[:, -3:]) for lvl, (_, d) in zip(
                self.levels, self._forward(p, len(self.levels)), strict=True)], 1) for p in parts])
        codes = self._level1_codes(x)
        if codes.device.type == "cpu":  # levels 2..L in one compiled pass over each window
            out = np.empty((len(x), len(self.levels), 3), dtype=np.int64)
            _upper_tails(codes.numpy(), self._cpu_tables(tables), self.config.kernel,
                         self.config.vocab, out)
            return torch.from_numpy(out)
        tails = [codes[:, -3:]]
        k = self.config.kernel
        radix = self._tap_radix()
        for table in tables:
            padded = torch.cat([codes[:, :1].expand(-1, k - 2), codes], 1)
            codes = table[(padded.unfold(1, k, 2) * radix).sum(-1)]
            tails.append(codes[:, -3:])
        return torch.stack(tails, 1)

    def _level1_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Level-1 codes [B, W/2] of windows x [B, W, C] on the float path.

        A window that is an earlier one moved on by two steps (a source's next-but-one event)
        has the same level-1 outputs, one position along (stride 2), except its padded first
        and its new last ones: only those are computed and the rest is copied. Earlier windows
        are looked for in this call and among up to ``_CARRY`` windows of earlier calls that no
        later window continued (the ends of each source's runs: with many sources interleaved,
        a source's previous events sit thousands of rows back).
        """
        first = self.levels[0]

        def full(rows: torch.Tensor) -> torch.Tensor:
            return torch.cat([first.codes(torch.round(first.scaled(first.columns(p))))
                              for p in rows.split(_FLOAT_CHUNK)])

        if x.device.type != "cpu" or len(x) < 3:
            return full(x)
        half = x.shape[1] // 2
        bits = np.ascontiguousarray(x.numpy()).view(np.uint32)
        carry_bits, carry_codes = self._carry
        if carry_bits.shape[1:] != bits.shape[1:]:
            carry_bits, carry_codes = bits[:0], np.zeros((0, half), dtype=np.int64)
        r = len(carry_bits)
        every = np.concatenate([carry_bits, bits])
        pred = _shifted_predecessors(every)
        pred[:r] = -1  # carried rows are known already
        out = np.zeros((r + len(x), half), dtype=np.int64)
        out[:r] = carry_codes
        follow = np.flatnonzero(pred[r:] >= 0)
        heads = np.flatnonzero(pred[r:] < 0)
        if heads.size:
            out[r + heads] = full(x[torch.from_numpy(heads)]).numpy()
        if follow.size:
            npad = (self.config.kernel - 1) // 2  # leading outputs that read the padding
            edge_cols = torch.tensor([*range(npad), half - 1])
            edges = first.columns(x[torch.from_numpy(follow)])[:, edge_cols]  # [F, npad+1, Ck]
            edge_codes = np.zeros((len(out), npad + 1), dtype=np.int64)
            edge_codes[r + follow] = first.codes(torch.round(first.scaled(edges))).numpy()
            _fill_shifted(out, pred, edge_codes, npad)
        ends = np.ones(len(every), dtype=bool)  # windows no later window has moved on from:
        ends[pred[pred >= 0]] = False  # only these can precede a future window
        keep = np.flatnonzero(ends)[-_CARRY:]
        self._carry = (every[keep], out[keep])
        return torch.from_numpy(out[r:])

    def _cpu_tables(self, tables: list[torch.Tensor]) -> np.ndarray:
        """The lookup tables as one int64 array [levels - 1, vocab**kernel] (cached)."""
        if self._np_tables is None:
            self._np_tables = np.stack([t.cpu().numpy() for t in tables]).astype(np.int64)
        return self._np_tables

    def _lookup_tables(self) -> list[torch.Tensor] | None:
        """Levels 2..L read only codes, so each is a table from its kernel's input codes to its
        output code: exact and much faster than the float path. None when the tables would be
        too large (vocab**kernel > 2**20 entries)."""
        cfg = self.config
        if cfg.vocab**cfg.kernel > 2**20:
            return None
        if self._tables is None:
            taps = torch.arange(cfg.vocab**cfg.kernel, device=self.device)[:, None]
            taps = torch.div(taps, self._tap_radix(), rounding_mode="floor") % cfg.vocab
            self._tables = []
            for level in self.levels[1:]:
                cols = level.values(taps).transpose(1, 2).flatten(1)  # like columns(): [C, k]
                self._tables.append(level.codes(torch.round(level.scaled(cols))))
        return self._tables

    def _tap_radix(self) -> torch.Tensor:
        """Place values of a lookup-table index: tap 0 (the oldest input) is most significant."""
        k = self.config.kernel
        return self.config.vocab ** torch.arange(k - 1, -1, -1, device=self.device)

    def _level_loss(self, i: int, x: torch.Tensor, values: torch.Tensor,
                    raw: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """Predictive + 0.1 x reconstruction loss of level i+1 (input x, output values).

        The prediction is dense: step j predicts the mean of block j+1 (inside the window), and
        the last step the mean of the values after the window.
        """
        span = 2 ** (i + 1)
        blocks = raw.reshape(raw.shape[0], -1, span, raw.shape[2]).mean(2)  # [B, P, C]
        target = torch.cat([blocks[:, 2:], future[:, None]], 1)
        pred_loss = nn.functional.mse_loss(self.levels[i].predict(values), target)
        return pred_loss + _RECON_WEIGHT * self.levels[i].recon_loss(values, x)

    def _evaluate(self, data: _Windows, upto: int) -> tuple[list[float], list[float]]:
        """Held-out accuracy and code perplexity (exp of code entropy) of levels 1..upto."""
        hits = np.zeros(upto)
        counts = np.zeros((upto, self.config.vocab))
        with torch.inference_mode():
            for start in range(0, len(data.held), _CHUNK):
                ends = data.held[start:start + _CHUNK]
                x = torch.from_numpy(data.windows(ends)).to(self.device)
                for i, (values, digits) in enumerate(self._forward(x, upto)):
                    pred = self.levels[i].predict(values[:, -2:])[:, 0].cpu().numpy()
                    err = np.abs(pred - data.future_mean(ends, 2 ** (i + 1)))
                    hits[i] += np.all(err <= self.config.tolerance, axis=1).sum()
                    codes = self.levels[i].codes(digits[:, -1]).cpu().numpy()
                    counts[i] += np.bincount(codes, minlength=self.config.vocab)
        p = counts / counts.sum(1, keepdims=True)
        entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)
        return [float(a) for a in hits / len(data.held)], [float(p) for p in np.exp(entropy)]

    def _batch(self, data: _Windows, rng: np.random.Generator, batch_size: int,
               upto: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random training batch: windows [B, W, C] and the future means for levels 1..upto."""
        ends = data.train[rng.integers(0, len(data.train), batch_size)]
        x = torch.from_numpy(data.windows(ends)).to(self.device)
        future = np.stack([data.future_mean(ends, 2**lv) for lv in range(1, upto + 1)], 1)
        return x, torch.from_numpy(future.astype(np.float32)).to(self.device)

    def fit(self, series: list[np.ndarray], *, levelhold: float = 0.7,
            tunehold: float | None = None, max_steps_per_level: int = 400,
            batch_size: int = 512, seed: int = 0, max_windows: int = 65536,
            progress: bool = False) -> TrainReport:
        """Train from scratch (weights re-drawn from ``seed``) on normalised series from many
        sources, each [T_i, channels] (1-D allowed for one channel).

        Level by level: train level l until its held-out accuracy (see the class docstring)
        reaches ``levelhold`` or after ``max_steps_per_level`` steps, then freeze it. If
        ``tunehold`` is set, fine-tune all levels jointly until the mean accuracy reaches it or
        after ``max_steps_per_level`` steps. At most ``max_windows`` training windows (and a
        tenth as many held-out ones) are sampled. Deterministic for a seed on CPU.
        """
        t0 = time.perf_counter()
        self._tables = self._np_tables = None  # the weights change: so do the tables
        self._carry = (np.zeros((0, 0, 0), np.uint32), np.zeros((0, 0), np.int64))
        cfg = self.config
        data = _Windows(series, cfg)
        rng = np.random.default_rng(seed)
        if len(data.train) > max_windows:
            data.train = np.sort(rng.choice(data.train, max_windows, replace=False))
        if len(data.held) > max(1, max_windows // 10):
            data.held = np.sort(rng.choice(data.held, max(1, max_windows // 10), replace=False))
        self._build(seed)
        report = TrainReport(train_samples=len(data.train), heldout_samples=len(data.held))
        total = max_steps_per_level * (cfg.levels + (tunehold is not None))
        with tqdm(total=total, disable=not progress, desc="neuronet") as bar:
            for i in range(cfg.levels):
                level = self.levels[i]
                opt = torch.optim.Adam(level.parameters(), lr=cfg.lr)
                acc = self._evaluate(data, i + 1)[0][i]
                report.initial_accuracy.append(acc)
                steps = 0
                while acc < levelhold and steps < max_steps_per_level:
                    x, future = self._batch(data, rng, batch_size, i + 1)
                    with torch.no_grad():
                        below = self._forward(x, i)
                    inp = below[-1][0] if below else x
                    loss = self._level_loss(i, inp, level(inp)[0], x, future[:, i])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    steps += 1
                    bar.update()
                    if steps % _EVAL_EVERY == 0 or steps == max_steps_per_level:
                        acc = self._evaluate(data, i + 1)[0][i]
                        bar.set_postfix(level=i + 1, acc=f"{acc:.3f}")
                report.level_accuracy.append(acc)
                report.level_steps.append(steps)
                report.levelhold_reached.append(acc >= levelhold)
            if tunehold is not None:
                report.tune_accuracy, report.tune_steps = self._fine_tune(
                    data, rng, tunehold, max_steps_per_level, batch_size, bar)
        report.code_perplexity = self._evaluate(data, cfg.levels)[1]
        self._refresh()
        report.seconds = time.perf_counter() - t0
        return report

    def _fine_tune(self, data: _Windows, rng: np.random.Generator, tunehold: float,
                   max_steps: int, batch_size: int, bar: tqdm) -> tuple[float, int]:
        """Train all levels jointly on the summed level losses until the mean held-out accuracy
        reaches ``tunehold``; returns (mean accuracy, steps)."""
        cfg = self.config
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        acc = float(np.mean(self._evaluate(data, cfg.levels)[0]))
        steps = 0
        while acc < tunehold and steps < max_steps:
            x, future = self._batch(data, rng, batch_size, cfg.levels)
            loss = torch.zeros((), device=self.device)
            inp = x
            for i, (values, _) in enumerate(self._forward(x, cfg.levels)):
                loss = loss + self._level_loss(i, inp, values, x, future[:, i])
                inp = values
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            bar.update()
            if steps % _EVAL_EVERY == 0 or steps == max_steps:
                acc = float(np.mean(self._evaluate(data, cfg.levels)[0]))
                bar.set_postfix(tune_acc=f"{acc:.3f}")
        return acc, steps

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config, weights and version to one file (loadable with weights_only=True)."""
        torch.save({
            "format": FORMAT,
            "config": dataclasses.asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "version": self.version,
        }, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NeuroNet:
        """Read a file written by ``save``; ValueError if it is not a NeuroNet file or its
        content hash does not match the stored version (corrupted or tampered)."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or broken files
            raise ValueError(f"{path}: not a neurogate NeuroNet file ({exc})") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"{path}: not a neurogate NeuroNet file (format != {FORMAT!r})")
        try:
            net = cls(NeuroNetConfig(**blob["config"]))
            net.net.load_state_dict(blob["state_dict"])
        except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise ValueError(f"{path}: malformed NeuroNet file ({exc})") from exc
        net._refresh()
        if net.version != blob.get("version"):
            raise ValueError(f"{path}: content hash {net.version} does not match the stored "
                             f"version {blob.get('version')!r}: the file is corrupted")
        return net

"""Training of a NeuroNet (``neurogate.engine.neuronet``) with torch: predictive, shared across
sources, all levels at once (each level reads the raw block means, not the level below, so the
levels are independent and train as one batched model).

Each level learns to predict the mean of the next d = 2**l values from its codes at t-d and t,
and to reconstruct its own block features from its code at t. While training, each latent is
standardised over the batch before a straight-through quantiser on the standard normal grid
(``neuronet.target_usage``), so no latent can drift into a range where every event gets the same
digit. After training, the edges are calibrated to the latents' quantiles on training windows
(the serving quantiser), and a level whose held-out codes still collapsed (perplexity below
``COLLAPSED``) is redrawn from another seed and trained again, up to ``RETRIES`` times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import torch
from torch import nn

from neurogate.engine.neuronet import (
    NeuroNet,
    NeuroNetConfig,
    TrainReport,
    initial_weights,
    level_features,
    target_usage,
)

BLOCK, HELD_EVERY = 64, 10  # held out: every 10th block of 64 consecutive windows (see Series)
MAX_HELDOUT = 4096  # held-out windows evaluated (a sample when there are more)
RECON_WEIGHT = 0.5  # reconstruction vs prediction loss
FEATURE_FLOOR = 1e-3  # smallest feature spread (normalised units) used for standardising
CALIBRATION_WINDOWS = 20_000  # training windows whose latents set the quantiser edges
COLLAPSED = 2.0  # held-out perplexity below which a level counts as collapsed
RETRIES = 2  # times a collapsed level is redrawn and retrained


class Series:
    """Training windows cut from many series, addressed by their end index in one flat,
    start-padded array (as a source's first windows are in streaming)."""

    def __init__(self, series: list[np.ndarray], cfg: NeuroNetConfig) -> None:
        w, horizon = cfg.window, 2**cfg.levels
        parts: list[np.ndarray] = []
        train: list[np.ndarray] = []
        held: list[np.ndarray] = []
        offset = 0
        for raw in series:
            s = np.asarray(raw, dtype=np.float64)
            if s.ndim == 1 and cfg.channels == 1:
                s = s[:, None]
            if s.ndim != 2 or s.shape[1] != cfg.channels:
                raise ValueError(f"each series must be [T, {cfg.channels}], got {s.shape}")
            if not np.isfinite(s).all():
                raise ValueError("training series must be finite (no NaN or inf)")
            if len(s) <= horizon + 1:
                continue  # no real future for the top level's target
            s = np.concatenate([np.repeat(s[:1], w - 1, 0), s])
            ends = offset + np.arange(w - 1, len(s) - horizon)
            # every HELD_EVERY-th block of BLOCK windows, the last one included, is held out:
            # spread over the series, so a regime at its end does not stand for all of it
            block = (len(ends) - 1 - np.arange(len(ends))) // BLOCK
            out = block % HELD_EVERY == 0
            if out.all():  # a short series: only its last window is held out
                out[:-1] = False
            train.append(ends[~out])
            held.append(ends[out])
            parts.append(s)
            offset += len(s)
        if not parts:
            raise ValueError(
                f"too little data: need a series with >= 2**levels + 2 = {horizon + 2} rows "
                f"(for a train and a held-out window)")
        self.train = np.concatenate(train)
        self.held = np.concatenate(held)
        self.values = np.concatenate(parts)
        self.cumsum = np.concatenate([np.zeros((1, cfg.channels)),
                                      np.cumsum(self.values, 0, dtype=np.float64)])
        self.config = cfg

    def features(self, ends: np.ndarray, back: int = 0) -> np.ndarray:
        """Block features [levels, n, kernel * C] at ``ends - back * d`` per level."""
        cfg = self.config
        return level_features(self.cumsum, ends, cfg.kernel, cfg.levels, back)

    def future(self, ends: np.ndarray) -> np.ndarray:
        """[levels, n, C] mean of the d = 2**l values after each end: the predictive target."""
        out = []
        for lv in range(1, self.config.levels + 1):
            d = 2**lv
            out.append((self.cumsum[ends + 1 + d] - self.cumsum[ends + 1]) / d)
        return np.stack(out)

    def windows(self, ends: np.ndarray) -> np.ndarray:
        """[n, window, C] float32 windows ending (inclusive) at ``ends``."""
        steps = np.arange(-self.config.window + 1, 1)
        return self.values[ends[:, None] + steps].astype(np.float32)


def _stacked(levels: int, fan_in: int, fan_out: int, gen: torch.Generator
             ) -> tuple[nn.Parameter, nn.Parameter]:
    """A layer per level as one [levels, fan_in, fan_out] weight (uniform +-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(levels, fan_in, fan_out, generator=gen) * 2 - 1) * bound
    return nn.Parameter(w), nn.Parameter(torch.zeros(levels, 1, fan_out))


class _Model(nn.Module):
    """Every level's MLP to latents plus its training-only heads, stacked over levels."""

    def __init__(self, cfg: NeuroNetConfig, w: dict[str, np.ndarray], gen: torch.Generator
                 ) -> None:
        super().__init__()
        lv, f, h, d, c = cfg.levels, cfg.features, cfg.hidden, cfg.fsq_dims, cfg.channels
        self.w1 = nn.Parameter(torch.from_numpy(w["w1"]).float())
        self.b1 = nn.Parameter(torch.from_numpy(w["b1"][:, None]).float())
        self.w2 = nn.Parameter(torch.from_numpy(w["w2"]).float())
        self.b2 = nn.Parameter(torch.from_numpy(w["b2"][:, None]).float())
        self.h1, self.hb1 = _stacked(lv, 2 * d, h, gen)  # head: codes at t-d, t -> future
        self.h2, self.hb2 = _stacked(lv, h, c, gen)
        self.d1, self.db1 = _stacked(lv, d, h, gen)  # decoder: code at t -> features
        self.d2, self.db2 = _stacked(lv, h, f, gen)

    def latents(self, feats: torch.Tensor) -> torch.Tensor:
        """Standardised features [L, n, F] -> latents [L, n, D]."""
        return torch.baddbmm(self.b2, torch.relu(torch.baddbmm(self.b1, feats, self.w1)),
                             self.w2)

    def predict(self, before: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.baddbmm(self.hb1, torch.cat([before, now], -1), self.h1))
        return torch.baddbmm(self.hb2, h, self.h2)

    def decode(self, now: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.db2, torch.relu(torch.baddbmm(self.db1, now, self.d1)), self.d2)


class _Trainer:
    """Training state of one fit: data, weights being trained, the torch model."""

    def __init__(self, net: NeuroNet, data: Series, rng: np.random.Generator,
                 gen: torch.Generator, *, restandardise: bool) -> None:
        """``restandardise``: set the feature scaling from ``data`` (a fresh network); a
        network being fine-tuned keeps its own, so training starts from its function."""
        self.cfg = cfg = net.config
        self.data = data
        self.rng = rng
        self.gen = gen
        self.weights = {k: v.copy() for k, v in net.weights.items()}
        usage = target_usage(cfg.fsq_levels)
        normal = NormalDist()
        self.grid = torch.tensor([normal.inv_cdf(float(c)) for c in np.cumsum(usage)[:-1]])
        # each digit's representative on the standard normal scale: its bin's median
        self.reps = torch.tensor([normal.inv_cdf(float(m)) for m in np.cumsum(usage) - usage / 2])
        calib = data.train
        if len(calib) > CALIBRATION_WINDOWS:
            calib = np.sort(rng.choice(calib, CALIBRATION_WINDOWS, replace=False))
        self.calib = calib
        if restandardise:
            feats = data.features(calib)
            self.weights["feat_mean"] = feats.mean(1)
            self.weights["feat_std"] = np.maximum(feats.std(1), FEATURE_FLOOR)
        fut = data.future(calib)
        self.t_mean = fut.mean(1, keepdims=True)
        self.t_std = np.maximum(fut.std(1, keepdims=True), FEATURE_FLOOR)
        held = data.held
        if len(held) > MAX_HELDOUT:
            held = np.sort(rng.choice(held, MAX_HELDOUT, replace=False))
        self.held = held
        self.model = _Model(cfg, self.weights, gen)

    def _standardised(self, ends: np.ndarray, back: int) -> torch.Tensor:
        f = (self.data.features(ends, back) - self.weights["feat_mean"][:, None]) \
            / self.weights["feat_std"][:, None]
        return torch.from_numpy(f.astype(np.float32))

    def _quantise(self, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Batch-standardised latents -> digit representatives, straight-through."""
        zs = (z - mean) / std
        digits = (zs[..., None] > self.grid).sum(-1)
        return zs + (self.reps[digits] - zs).detach()

    def loss(self, ends: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
        now, before = self._standardised(ends, 0), self._standardised(ends, 1)
        target = torch.from_numpy(
            ((self.data.future(ends) - self.t_mean) / self.t_std).astype(np.float32))
        m = self.model
        z_now, z_before = m.latents(now), m.latents(before)
        mean = z_now.mean(1, keepdim=True).detach()
        std = z_now.std(1, keepdim=True).detach().clamp_min(1e-6)
        v_now, v_before = self._quantise(z_now, mean, std), self._quantise(z_before, mean, std)
        pred = nn.functional.smooth_l1_loss(m.predict(v_before, v_now), target,
                                            reduction="none").mean((1, 2))
        recon = nn.functional.smooth_l1_loss(m.decode(v_now), now, reduction="none").mean((1, 2))
        return ((pred + RECON_WEIGHT * recon) * mask).sum()

    def train(self, steps: int, batch_size: int, only: list[int] | None = None,
              tick: Callable[[], None] | None = None) -> None:
        mask = torch.ones(self.cfg.levels)
        if only is not None:
            mask = torch.zeros(self.cfg.levels)
            mask[only] = 1.0
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, foreach=True)
        for _ in range(steps):
            ends = self.data.train[self.rng.integers(0, len(self.data.train), batch_size)]
            loss = self.loss(ends, mask)
            opt.zero_grad()
            torch.autograd.backward(loss)  # = loss.backward(), which torch leaves untyped
            if only is not None:  # frozen levels keep their weights exactly
                for p in self.model.parameters():
                    assert p.grad is not None
                    p.grad *= mask.view(-1, 1, 1)
            opt.step()
            if tick is not None:
                tick()

    def export(self) -> NeuroNet:
        """The current weights, edges calibrated to the latents' quantiles on training data."""
        m, w = self.model, self.weights
        for key, p in (("w1", m.w1), ("w2", m.w2)):
            w[key] = p.detach().double().numpy().copy()
        for key, p in (("b1", m.b1), ("b2", m.b2)):
            w[key] = p.detach().double().numpy()[:, 0].copy()
        cum = np.cumsum(target_usage(self.cfg.fsq_levels))[:-1]
        net = NeuroNet(self.cfg, weights={k: v.copy() for k, v in w.items()})
        for i in range(self.cfg.levels):
            z = net.latents(self.data.values, self.calib, i + 1)
            w["edges"][i] = np.quantile(z, cum, axis=0).T
        return NeuroNet(self.cfg, weights={k: v.copy() for k, v in w.items()})

    def redraw(self, levels: list[int], seed: int) -> None:
        """New random weights for ``levels`` (0-based), the others kept."""
        fresh = initial_weights(self.cfg, seed)
        with torch.no_grad():
            for i in levels:
                self.model.w1[i] = torch.from_numpy(fresh["w1"][i]).float()
                self.model.w2[i] = torch.from_numpy(fresh["w2"][i]).float()
                self.model.b1[i] = 0.0
                self.model.b2[i] = 0.0

    def evaluate(self, net: NeuroNet) -> tuple[list[float], list[float]]:
        """Held-out prediction accuracy (share within ``tolerance`` on every channel, from the
        codes at t-d and t through the training head) and code perplexity, per level."""
        cfg = self.cfg
        codes = net.encode(self.data.windows(self.held))  # [n, levels, 3]
        q, dims = cfg.fsq_levels, cfg.fsq_dims
        digits = np.stack([(codes // q**j) % q for j in range(dims)], -1)  # [n, L, 3, D]
        v = self.reps[torch.from_numpy(digits)].transpose(0, 1)  # [L, n, 3, D]
        with torch.no_grad():
            pred = self.model.predict(v[:, :, 1], v[:, :, 2]).double().numpy()
        pred = pred * self.t_std + self.t_mean
        err = np.abs(pred - self.data.future(self.held))
        acc = np.all(err <= cfg.tolerance, axis=2).mean(1)
        ppl = [perplexity(codes[:, i, 2], cfg.vocab) for i in range(cfg.levels)]
        return [float(a) for a in acc], ppl


def perplexity(codes: np.ndarray, vocab: int) -> float:
    """exp of the entropy of a code sample (1 = one code, ``vocab`` = all equally often)."""
    p = np.bincount(codes, minlength=vocab) / max(len(codes), 1)
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


def fit(series: list[np.ndarray], config: NeuroNetConfig, *, steps: int = 300,
        batch_size: int = 256, seed: int = 0, init: NeuroNet | None = None,
        progress: bool = False) -> tuple[NeuroNet, TrainReport]:
    """Train a NeuroNet on normalised series from many sources, each [T_i, channels] (1-D
    allowed for one channel), for ``steps`` steps of ``batch_size`` windows; from ``init``'s
    weights (fine-tuning) or from weights drawn from ``seed``. Deterministic for a seed (one
    torch thread; the global torch RNG is left alone)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    if init is not None and init.config != config:
        raise ValueError(f"init's config {init.config} differs from {config}")
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    start = init if init is not None else NeuroNet(config, seed=seed)
    data = Series(series, config)
    trainer = _Trainer(start, data, rng, gen, restandardise=init is None)
    report = TrainReport(train_samples=len(data.train), heldout_samples=len(trainer.held))
    report.initial_accuracy = trainer.evaluate(trainer.export())[0]
    with tqdm(total=steps, disable=not progress, desc="neuronet") as bar:
        trainer.train(steps, batch_size, tick=bar.update)
    net = trainer.export()
    acc, ppl = trainer.evaluate(net)
    for attempt in range(1, RETRIES + 1):
        low = [i for i, p in enumerate(ppl) if p < COLLAPSED]
        if not low:
            break
        trainer.redraw(low, seed + 7919 * attempt)
        trainer.train(steps, batch_size, only=low)
        report.reinitialised.extend(i + 1 for i in low)
        net = trainer.export()
        acc, ppl = trainer.evaluate(net)
    report.level_accuracy, report.code_perplexity = acc, ppl
    report.steps = steps
    report.seconds = time.perf_counter() - t0
    return net, report

"""NeuroNet encoder: interface, determinism, persistence, that training learns something and
that no level's codebook collapses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurogate.engine import encoders
from neurogate.engine.config import EngineConfig
from neurogate.engine.encoder import Encoder, FixedEncoder, StreamSpec
from neurogate.engine.neuronet import (
    FORMAT,
    NeuroNet,
    NeuroNetConfig,
    target_perplexity,
    target_usage,
)
from neurogate.engine.neurotrain import COLLAPSED, Series, fit, perplexity

SMALL = NeuroNetConfig(window=64, levels=3)


def sines(sources: int = 12, length: int = 1200, seed: int = 0) -> list[np.ndarray]:
    """Normalised sine waves of a few periods with noise, one per source."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = []
    for _ in range(sources):
        period, phase = rng.uniform(24, 160), rng.uniform(0, 2 * np.pi)
        s = 0.5 + 0.4 * np.sin(2 * np.pi * t / period + phase) + rng.normal(0, 0.02, length)
        out.append(s.astype(np.float32)[:, None])
    return out


def plateaus(length: int = 2048, seed: int = 0) -> np.ndarray:
    """One source switching between levels (ramps of 60 events, plateaus of 150-400) far beyond
    its warm-up range [0, 1], with noise: the shape of a machine temperature that drifts."""
    rng = np.random.default_rng(seed)
    s = np.empty(length)
    i, level = 0, 1.0
    while i < length:
        new = rng.uniform(-2.0, 1.3)
        seg = np.concatenate([np.linspace(level, new, 60), np.full(int(rng.integers(150, 400)),
                                                                   new)])[: length - i]
        s[i : i + len(seg)] = seg
        i, level = i + len(seg), new
    return (s + rng.normal(0, 0.04, length)).astype(np.float32)[:, None]


def ramps(n: int, slope: float, seed: int) -> np.ndarray:
    """[n, 64, 1] ramps of the given slope per step into random levels in 0.4..0.6, flat before
    they reach 0.1 or 0.9, with a little noise."""
    rng = np.random.default_rng(seed)
    ends = rng.uniform(0.4, 0.6, (n, 1))
    x = np.clip(ends + slope * np.arange(-63, 1)[None, :], 0.1, 0.9)
    return (x + rng.normal(0, 0.005, x.shape)).astype(np.float32)[:, :, None]


@pytest.fixture(scope="module")
def trained() -> tuple[NeuroNet, object]:
    return fit(sines(), SMALL, steps=300, batch_size=128, seed=1)


def test_interface_attributes() -> None:
    net = NeuroNet(SMALL)
    assert net.name == "neuronet"
    assert (net.window, net.channels) == (64, 1)
    assert len(net.version) == 16 and int(net.version, 16) >= 0
    assert net.streams == [StreamSpec(level=lv, channel=-1, dilation=2**lv, vocab=16)
                           for lv in (1, 2, 3)]


def test_encode_shape_dtype_range() -> None:
    net = NeuroNet(NeuroNetConfig(window=32, levels=2, fsq_dims=3, fsq_levels=3))
    x = np.random.default_rng(0).uniform(-0.2, 1.5, (37, 32, 1)).astype(np.float32)
    codes = net.encode(x)
    assert codes.shape == (37, 2, 3) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 27
    assert net.encode(np.zeros((0, 32, 1), np.float32)).shape == (0, 2, 3)
    longer = np.concatenate([np.zeros((37, 8, 1), np.float32), x], 1)
    np.testing.assert_array_equal(net.encode(longer), codes)  # the last `window` values count
    with pytest.raises(ValueError, match="windows must be"):
        net.encode(np.zeros((3, 31, 1), np.float32))
    with pytest.raises(ValueError, match="windows must be"):
        net.encode(np.zeros((3, 32, 2), np.float32))
    with pytest.raises(ValueError, match="finite"):
        net.encode(np.full((3, 32, 1), np.nan, np.float32))


def test_encode_is_causal_in_its_codes(trained: tuple[NeuroNet, object]) -> None:
    """The code at t-d of a window equals the code at t of the same series d events earlier."""
    net, _ = trained
    s = sines(1, 300, seed=5)[0]
    now = net.encode(s[200:264][None])[0]
    for lv in (1, 2, 3):
        d = 2**lv
        assert now[lv - 1, 1] == net.encode(s[200 - d : 264 - d][None])[0, lv - 1, 2]
        assert now[lv - 1, 0] == net.encode(s[200 - 2 * d : 264 - 2 * d][None])[0, lv - 1, 2]


def test_calibrated_edges_give_the_target_usage(trained: tuple[NeuroNet, object]) -> None:
    """Each latent's digits are used at the target rates on the training windows, and the
    latents computed from a series give the codes that windows give."""
    net, _ = trained
    data = Series(sines(), SMALL)
    ends = data.train[::7]
    codes = net.encode(data.windows(ends))
    q = SMALL.fsq_levels
    for lv in (1, 2, 3):
        z = net.latents(data.values, ends, lv)
        digits = (z[:, :, None] > net.weights["edges"][lv - 1][None]).sum(-1)
        np.testing.assert_array_equal(digits[:, 0] + q * digits[:, 1], codes[:, lv - 1, 2])
        usage = np.bincount(digits[:, 0], minlength=q) / len(digits)
        np.testing.assert_allclose(usage, target_usage(q), atol=0.03)


def test_a_view_encodes_only_its_levels(trained: tuple[NeuroNet, object]) -> None:
    net, _ = trained
    view = net.view([3, 1])
    x = np.stack([s[-64:] for s in sines(5, 300, seed=4)])
    assert view.levels == (1, 3) and [s.level for s in view.streams] == [1, 3]
    np.testing.assert_array_equal(view.encode(x), net.encode(x)[:, [0, 2]])
    assert view.version == net.version and view.namespace != net.namespace
    assert view.to_bytes() == net.to_bytes()
    with pytest.raises(ValueError, match="subset"):
        net.view([4])


def test_fit_is_deterministic() -> None:
    data = sines(4, 400)
    a, _ = fit(data, SMALL, steps=25, batch_size=64, seed=7)
    b, _ = fit(data, SMALL, steps=25, batch_size=64, seed=7)
    c, _ = fit(data, SMALL, steps=25, batch_size=64, seed=8)
    x = np.stack([s[-64:] for s in sines(6, 300, seed=3)])
    assert a.version == b.version != c.version
    np.testing.assert_array_equal(a.encode(x), b.encode(x))


def test_fine_tuning_starts_from_the_given_weights(trained: tuple[NeuroNet, object]) -> None:
    net, _ = trained
    data = sines(4, 400, seed=9)
    tuned, _ = fit(data, SMALL, steps=5, batch_size=64, seed=7, init=net)
    fresh, _ = fit(data, SMALL, steps=5, batch_size=64, seed=7)
    w1 = net.weights["w1"]
    assert np.abs(tuned.weights["w1"] - w1).mean() < np.abs(fresh.weights["w1"] - w1).mean()
    with pytest.raises(ValueError, match="config"):
        fit(data, NeuroNetConfig(window=64, levels=2), steps=1, init=net)


def test_save_load_round_trip(trained: tuple[NeuroNet, object], tmp_path: Path) -> None:
    net, _ = trained
    net.save(tmp_path / "net.npz")
    loaded = NeuroNet.load(tmp_path / "net.npz")
    x = np.random.default_rng(2).uniform(0, 1, (500, 64, 1)).astype(np.float32)
    assert loaded.version == net.version and loaded.config == net.config
    np.testing.assert_array_equal(loaded.encode(x), net.encode(x))


@pytest.mark.parametrize("name", ["fixed", "neuronet"])
def test_every_encoder_saves_and_is_read_back_by_name(
        trained: tuple[NeuroNet, object], tmp_path: Path, name: str) -> None:
    """``save`` is part of the Encoder interface; the registry reads an artifact by the
    encoder's name, and refuses another encoder's artifact."""
    enc: Encoder = trained[0] if name == "neuronet" else FixedEncoder(channels=1)
    enc.save(tmp_path / "enc")
    loaded = encoders.load(enc.name, (tmp_path / "enc").read_bytes())
    assert type(loaded) is type(enc) and loaded.version == enc.version
    x = np.random.default_rng(2).uniform(0, 1, (50, 256, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.encode(x), enc.encode(x))
    other = "fixed" if name == "neuronet" else "neuronet"
    with pytest.raises(ValueError, match="not a"):
        encoders.load(other, enc.to_bytes())


def test_an_unknown_encoder_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown encoder 'neuronet2'; known: fixed, neuronet"):
        encoders.load("neuronet2", b"")
    slot = {"name": "neuronet2", "version": "0" * 16, "levels": [1]}
    with pytest.raises(ValueError, match=r"unknown encoder 'neuronet2'; known: fixed, neuronet"):
        encoders.restore(slot, EngineConfig(), 1, lambda key: None)
    fixed = FixedEncoder(channels=1)
    slot = {"name": "fixed", "version": fixed.version}
    assert encoders.restore(slot, EngineConfig(), 1, lambda key: None).version == fixed.version
    with pytest.raises(ValueError, match="fixed encoder settings changed"):
        encoders.restore(slot, EngineConfig().replace(**{"fixed.levels": 5}), 1,
                         lambda key: None)


def test_load_rejects_tampered_and_foreign_files(trained: tuple[NeuroNet, object],
                                                 tmp_path: Path) -> None:
    net, _ = trained
    weights = {k: v.copy() for k, v in net.weights.items()}
    weights["w1"][0, 0, 0] += 1e-3  # changed weights under the stored version
    header = {"format": FORMAT, "config": dataclasses.asdict(net.config),
              "version": net.version}
    np.savez(tmp_path / "tampered.npz", header=np.frombuffer(json.dumps(header).encode(),
                                                             np.uint8), **weights)
    with pytest.raises(ValueError, match="does not match"):
        NeuroNet.load(tmp_path / "tampered.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a neurogate NeuroNet"):
        NeuroNet.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"definitely not a numpy file")
    with pytest.raises(ValueError, match="not a neurogate NeuroNet"):
        NeuroNet.load(tmp_path / "junk.npz")


def test_training_learns(trained: tuple[NeuroNet, object]) -> None:
    _, report = trained
    assert report.level_accuracy[0] >= report.initial_accuracy[0] + 0.2  # type: ignore[attr-defined]
    assert all(acc > 0.2 for acc in report.level_accuracy)  # type: ignore[attr-defined]
    assert report.train_samples > 10_000 and report.heldout_samples > 1_000  # type: ignore[attr-defined]
    assert "level 1" in report.summary()  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_level_collapses_on_a_stream_with_structure(seed: int) -> None:
    """A source that switches between levels far outside its warm-up range: every level's
    held-out codes keep a perplexity of at least 3 (of 16; a calibrated latent alone gives
    3.7). The sigmoid quantiser before this release ended at 1.2-2.7 on these streams (and
    1.0-1.6 on a real machine-temperature file), i.e. one or two codes per level."""
    _, report = fit([plateaus(seed=seed)], SMALL, steps=300, seed=seed)
    assert min(report.code_perplexity) >= 3.0, report.summary()
    assert target_perplexity(4, 1) > 3.0


def test_a_collapsed_level_is_redrawn() -> None:
    """A level whose latents are constant (its hidden units dead) is re-initialised from
    another seed and trained again; the report says which."""
    net = NeuroNet(SMALL)
    dead = {k: v.copy() for k, v in net.weights.items()}
    dead["b1"][1] = -1e3  # level 2: every ReLU off, the latent is its bias
    start = NeuroNet(SMALL, weights=dead)
    tuned, report = fit(sines(4, 600), SMALL, steps=60, batch_size=64, init=start)
    assert 2 in report.reinitialised
    assert min(report.code_perplexity) >= COLLAPSED


def test_perplexity() -> None:
    assert perplexity(np.zeros(50, np.int64), 16) == pytest.approx(1.0)
    assert perplexity(np.arange(16).repeat(3), 16) == pytest.approx(16.0)


def test_codes_separate_rising_from_falling(trained: tuple[NeuroNet, object]) -> None:
    net, _ = trained
    rising = net.encode(ramps(200, 0.03, seed=0))[:, -1, 2]
    falling = net.encode(ramps(200, -0.03, seed=1))[:, -1, 2]
    top_rising, top_falling = np.bincount(rising).argmax(), np.bincount(falling).argmax()
    assert top_rising != top_falling
    assert np.mean(rising == top_falling) < 0.2 and np.mean(falling == top_rising) < 0.2


def test_multichannel_series() -> None:
    cfg = NeuroNetConfig(channels=2, window=32, levels=2)
    data = [np.concatenate([s, 1 - s], 1) for s in sines(3, 300)]
    net, report = fit(data, cfg, steps=10, batch_size=32)
    assert len(report.level_accuracy) == 2
    assert net.encode(np.stack([d[-32:] for d in data])).shape == (3, 2, 3)
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        fit([np.zeros((100, 3), np.float32)], cfg)


def test_fit_needs_enough_data() -> None:
    with pytest.raises(ValueError, match="too little data"):
        fit([np.zeros((8, 1), np.float32)], SMALL)


@pytest.mark.parametrize("field, kwargs", [
    ("window", {"window": 48}),
    ("window", {"window": 16, "levels": 3}),
    ("levels", {"levels": 0}),
    ("channels", {"channels": 0}),
    ("hidden", {"hidden": 0}),
    ("fsq_dims", {"fsq_dims": 0}),
    ("fsq_levels", {"fsq_levels": 1}),
    ("fsq_dims", {"fsq_dims": 8, "fsq_levels": 4}),
    ("kernel", {"kernel": 1}),
    ("tolerance", {"tolerance": 0.0}),
    ("lr", {"lr": -1e-3}),
    ("levels", {"levels": 2.5}),
])
def test_invalid_config(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        NeuroNetConfig(**kwargs)  # type: ignore[arg-type]


def test_invalid_weights() -> None:
    w = NeuroNet(SMALL).weights
    with pytest.raises(ValueError, match="w1"):
        NeuroNet(SMALL, weights={**w, "w1": np.zeros((3, 4, 5))})
    with pytest.raises(ValueError, match="ascending"):
        NeuroNet(SMALL, weights={**w, "edges": w["edges"][..., ::-1].copy()})
    with pytest.raises(ValueError, match="weights must be"):
        NeuroNet(SMALL, weights={k: v for k, v in w.items() if k != "b2"})

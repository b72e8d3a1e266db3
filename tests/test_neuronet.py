"""NeuroNet encoder: interface, determinism, persistence, and that training learns something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurogate.engine.encoder import StreamSpec
from neurogate.engine.neuronet import NeuroNet, NeuroNetConfig, TrainReport, _shifted_predecessors

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


def ramps(n: int, slope: float, seed: int) -> np.ndarray:
    """[n, 64, 1] ramps of the given slope per step into random levels in 0.4..0.6, flat before
    they reach 0.1 or 0.9, with a little noise."""
    rng = np.random.default_rng(seed)
    ends = rng.uniform(0.4, 0.6, (n, 1))
    x = np.clip(ends + slope * np.arange(-63, 1)[None, :], 0.1, 0.9)
    return (x + rng.normal(0, 0.005, x.shape)).astype(np.float32)[:, :, None]


@pytest.fixture(scope="module")
def trained() -> tuple[NeuroNet, TrainReport]:
    net = NeuroNet(SMALL)
    report = net.fit(sines(), max_steps_per_level=150, batch_size=128, seed=1)
    return net, report


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
    with pytest.raises(ValueError, match="windows must be"):
        net.encode(np.zeros((3, 31, 1), np.float32))
    with pytest.raises(ValueError, match="finite"):
        net.encode(np.full((3, 32, 1), np.nan, np.float32))


def test_encode_is_causal_in_its_codes(trained: tuple[NeuroNet, TrainReport]) -> None:
    """The code at t-d of a window equals the code at t of the same series d events earlier,
    as long as the receptive field stays inside both windows (levels 1 and 2 here)."""
    net, _ = trained
    s = sines(1, 200, seed=5)[0]
    now, earlier = s[100:164][None], s[98:162][None]  # earlier ends 2 events before
    assert net.encode(now)[0, 0, 1] == net.encode(earlier)[0, 0, 2]
    earlier4 = s[96:160][None]
    assert net.encode(now)[0, 1, 1] == net.encode(earlier4)[0, 1, 2]


def test_lookup_tables_match_float_path(trained: tuple[NeuroNet, TrainReport]) -> None:
    net, _ = trained
    x = torch.from_numpy(np.random.default_rng(1).uniform(-0.2, 1.2, (300, 64, 1)).astype("f4"))
    with torch.inference_mode():
        tables = net._lookup_tables()
        assert tables is not None
        assert torch.equal(net._tail_codes(x, tables), net._tail_codes(x, None))
    big = NeuroNet(NeuroNetConfig(window=64, levels=3, fsq_dims=3, fsq_levels=8))
    assert big._lookup_tables() is None  # 512**4 entries: encode uses the float path
    assert big.encode(x.numpy()).max() < 512


def sliding_windows(series: list[np.ndarray], window: int) -> np.ndarray:
    """Every window of each series, the series interleaved event by event (as a batch of many
    sources' events arrives), [n, window, 1]."""
    per = [np.lib.stride_tricks.sliding_window_view(s[:, 0], window) for s in series]
    n = min(len(w) for w in per)
    return np.stack([w[i] for i in range(n) for w in per]).astype(np.float32)[:, :, None]


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_level1_reuse_gives_the_full_computation(kernel: int) -> None:
    """Windows that are earlier ones moved on by two steps reuse their level-1 codes: the codes
    equal the full float computation, for one source, interleaved sources, flat stretches
    (many equal windows) and a batch with nothing to reuse."""
    net = NeuroNet(NeuroNetConfig(window=64, levels=3, kernel=kernel))
    rng = np.random.default_rng(kernel)
    flat = np.concatenate([np.full(90, 0.5), rng.uniform(0, 1, 60), np.full(90, 0.2)])
    cases = [
        sliding_windows(sines(1, 400), 64),
        sliding_windows(sines(3, 300, seed=2), 64),
        sliding_windows([flat.astype(np.float32)[:, None]], 64),
        rng.uniform(0, 1, (50, 64, 1)).astype(np.float32),
    ]
    with torch.inference_mode():
        for x in cases:
            t = torch.from_numpy(x)
            first = net.levels[0]
            want = first.codes(torch.round(first.scaled(first.columns(t))))
            assert torch.equal(net._level1_codes(t), want)
            # in small calls, predecessors are found among the windows of earlier calls
            got = torch.cat([net._level1_codes(c) for c in t.split(7)])
            assert torch.equal(got, want)
    pred = _shifted_predecessors(cases[1].view(np.uint32))
    assert (pred[6:] == np.arange(6, len(pred)) - 6).all()  # 3 sources: 2 steps = 6 rows back


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_compiled_upper_levels_match_the_float_path(kernel: int) -> None:
    """Levels 2..L by lookup tables in one compiled pass equal the float forward pass."""
    net = NeuroNet(NeuroNetConfig(window=64, levels=4, kernel=kernel))
    x = torch.from_numpy(sliding_windows(sines(2, 200, seed=kernel), 64))
    with torch.inference_mode():
        tables = net._lookup_tables()
        assert tables is not None
        assert torch.equal(net._tail_codes(x, tables), net._tail_codes(x, None))


def test_fit_is_deterministic() -> None:
    data = sines(4, 400)
    kwargs = {"max_steps_per_level": 25, "batch_size": 64, "seed": 7}
    a, b, c = NeuroNet(SMALL), NeuroNet(SMALL), NeuroNet(SMALL)
    a.fit(data, **kwargs)
    b.fit(data, **kwargs)
    c.fit(data, **{**kwargs, "seed": 8})
    x = np.stack([s[-64:] for s in sines(6, 300, seed=3)])
    assert a.version == b.version != c.version
    np.testing.assert_array_equal(a.encode(x), b.encode(x))


def test_save_load_round_trip(trained: tuple[NeuroNet, TrainReport], tmp_path: Path) -> None:
    net, _ = trained
    net.save(tmp_path / "net.pt")
    loaded = NeuroNet.load(tmp_path / "net.pt")
    x = np.random.default_rng(2).uniform(0, 1, (500, 64, 1)).astype(np.float32)
    assert loaded.version == net.version and loaded.config == net.config
    np.testing.assert_array_equal(loaded.encode(x), net.encode(x))


def test_load_rejects_tampered_and_foreign_files(trained: tuple[NeuroNet, TrainReport],
                                                 tmp_path: Path) -> None:
    net, _ = trained
    path = tmp_path / "net.pt"
    net.save(path)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["0.conv.weight"][0, 0] += 1e-3
    torch.save(blob, path)
    with pytest.raises(ValueError, match="does not match"):
        NeuroNet.load(path)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a neurogate NeuroNet"):
        NeuroNet.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match="not a neurogate NeuroNet"):
        NeuroNet.load(tmp_path / "junk.pt")


def test_training_learns(trained: tuple[NeuroNet, TrainReport]) -> None:
    _, report = trained
    assert report.level_accuracy[0] >= report.initial_accuracy[0] + 0.3
    assert all(acc > 0.2 for acc in report.level_accuracy)
    assert all(0 < steps <= 150 for steps in report.level_steps)
    assert report.train_samples > 10_000 and report.heldout_samples > 1_000
    assert "level 1" in report.summary()


def test_levelhold_ends_levels_early() -> None:
    report = NeuroNet(SMALL).fit(sines(4, 600), levelhold=0.05, max_steps_per_level=200,
                                 batch_size=64)
    assert all(report.levelhold_reached)
    assert all(steps < 200 for steps in report.level_steps)


def test_fine_tune_runs_until_tunehold() -> None:
    data = sines(4, 400)
    done = NeuroNet(SMALL).fit(data, max_steps_per_level=20, batch_size=64, tunehold=0.0)
    assert done.tune_steps == 0 and done.tune_accuracy is not None
    tuned = NeuroNet(SMALL).fit(data, max_steps_per_level=20, batch_size=64, tunehold=1.0)
    assert tuned.tune_steps == 20 and tuned.tune_accuracy is not None
    assert "fine-tune" in tuned.summary()


def test_codes_separate_rising_from_falling(trained: tuple[NeuroNet, TrainReport]) -> None:
    net, _ = trained
    rising = net.encode(ramps(200, 0.03, seed=0))[:, -1, 2]
    falling = net.encode(ramps(200, -0.03, seed=1))[:, -1, 2]
    top_rising, top_falling = np.bincount(rising).argmax(), np.bincount(falling).argmax()
    assert top_rising != top_falling
    assert np.mean(rising == top_falling) < 0.2 and np.mean(falling == top_rising) < 0.2


def test_multichannel_series() -> None:
    cfg = NeuroNetConfig(channels=2, window=32, levels=2)
    data = [np.concatenate([s, 1 - s], 1) for s in sines(3, 300)]
    net = NeuroNet(cfg)
    report = net.fit(data, max_steps_per_level=10, batch_size=32)
    assert len(report.level_accuracy) == 2
    assert net.encode(np.stack([d[-32:] for d in data])).shape == (3, 2, 3)
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        net.fit([np.zeros((100, 3), np.float32)])


def test_fit_needs_enough_data() -> None:
    with pytest.raises(ValueError, match="too little data"):
        NeuroNet(SMALL).fit([np.zeros((8, 1), np.float32)])


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

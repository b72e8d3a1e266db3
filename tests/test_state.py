"""Per-source state helpers (``neurogate.engine.state``): the compiled window cut matches
numpy exactly."""

from __future__ import annotations

import numpy as np
import pytest

from neurogate.engine.state import normalised_windows, windows_at


@pytest.mark.parametrize("channels", [1, 3])
def test_normalised_windows_round_exactly_like_numpy(channels: int) -> None:
    """The numpy steps it replaces: gather windows, scatter them as float32, subtract the
    float64 ``lo`` and divide by ``scale`` in place. Values span 12 orders of magnitude, so a
    different rounding order would show."""
    rng = np.random.default_rng(channels)
    n, w = 500, 64
    ext = rng.normal(0, 1e3, (n + 20 * w, channels)) * rng.choice([1e-6, 1.0, 1e6],
                                                                  (n + 20 * w, channels))
    vpos = np.sort(rng.choice(np.arange(w - 1, n + 20 * w), n, replace=False))
    order = rng.permutation(n)
    lo = rng.normal(0, 1e3, (n, channels))
    scale = rng.random((n, channels)) * 1e3 + 1e-3
    want = np.empty((n, w, channels), dtype=np.float32)
    want[order] = windows_at(ext, vpos, w)
    want -= lo[:, None, :]
    want /= scale[:, None, :]
    got = normalised_windows(ext, vpos, order, lo, scale, w)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))

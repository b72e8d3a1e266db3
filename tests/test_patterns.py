"""Pattern keys: the compiled kernel against the key formula written with numpy arrays (the
formula every stored key was made with, so it must never change)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurogate.engine.keys import mix64
from neurogate.engine.patterns import _SENT, _USES, NKINDS, NO_CALENDAR, pattern_keys, stream_bases


def reference_keys(bases: np.ndarray, scope: np.ndarray, codes: np.ndarray,
                   bucket: np.ndarray) -> np.ndarray:
    n, k, _ = codes.shape
    base = mix64(scope[:, None] ^ bases[None, :])
    c = codes.astype(np.uint64)
    parts = [np.broadcast_to(bucket[:, None], (n, k)), c[:, :, 0], c[:, :, 1], c[:, :, 2]]
    shifts = (np.uint64(48), np.uint64(32), np.uint64(16), np.uint64(0))
    payload = np.zeros((n, k, NKINDS), dtype=np.uint64)
    for j, part in enumerate(parts):
        use = _USES[:, j]
        payload |= np.where(use[None, None, :], part[:, :, None], np.uint64(_SENT)) << shifts[j]
    payload |= np.arange(NKINDS, dtype=np.uint64)[None, None, :] << np.uint64(60)
    return mix64(base[:, :, None] ^ mix64(payload))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 40), st.integers(1, 9), st.integers(0, 2**32), st.booleans())
def test_kernel_matches_the_reference_formula(n: int, streams: int, seed: int,
                                              wide_scope: bool) -> None:
    rng = np.random.default_rng(seed)
    bases = stream_bases(f"ns-{seed}", streams)
    hi = 2**64 - 1 if wide_scope else 50
    scope = rng.integers(0, hi, size=n, dtype=np.uint64, endpoint=True)
    codes = rng.integers(0, _SENT, size=(n, streams, 3))
    bucket = np.where(rng.random(n) < 0.2, NO_CALENDAR,
                      rng.integers(0, 16, size=n)).astype(np.uint64)
    got = pattern_keys(bases, scope, codes, bucket)
    assert got.shape == (n, streams, NKINDS) and got.dtype == np.uint64
    np.testing.assert_array_equal(got, reference_keys(bases, scope, codes, bucket))


def test_known_keys_never_change() -> None:
    """Keys pinned to their values: stores hold keys made with this formula."""
    keys = pattern_keys(stream_bases("fixed:1", 1), np.array([7], dtype=np.uint64),
                        np.array([[[1, 2, 3]]]), np.array([4], dtype=np.uint64))
    assert [hex(int(x)) for x in keys[0, 0]] == [
        "0xf085e9a97f9e6cc5", "0x8a279df47e796f2f", "0x16b7c768e724029d", "0x744c221ab13e58f6",
        "0xca609926efaf8d42", "0xb889605b33ff9394", "0x61b424861de919aa", "0x440e71757dc6d927"]

"""The key/count contract between the engine and the pattern stores.

A pattern is stored as a 64-bit key (0 is never a key: it marks an empty slot) with ``NCOLS``
non-negative counts. The engine makes keys with ``mix64`` and names scopes and meta entries with
``text_hash64``; a store needs nothing else from the engine (``engine/stores/`` imports only this
module). Hashes are platform-stable: a store written on one machine is read on another.
"""

from __future__ import annotations

import hashlib

import numpy as np

EMPTY = np.uint64(0)
NCOLS = 3  # count columns per key: n (all events), n0 (labelled normal), n1 (labelled anomaly)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array: a fast, well-distributed, platform-stable hash."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLD
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    # 0 marks an empty slot in CountTable; remap the (astronomically rare) zero hash.
    z[z == EMPTY] = np.uint64(1)
    return z


def text_hash64(text: str) -> np.uint64:
    """Stable 64-bit hash of a string (source ids, namespaces); unlike hash() it is the same in
    every process."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))

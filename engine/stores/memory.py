"""In-memory pattern store: for tests and throw-away runs.

The one store that lives inside the engine's process: it keeps its counts in the engine's own
``CountTable``. The other stores depend on the key/count contract (``engine/keys.py``) only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from neurogate.engine.counts import CountTable
from neurogate.engine.stores.base import PatternStore, check_expected, check_keys


class MemoryStore(PatternStore):
    """Counts in a CountTable; nothing survives the process."""

    url = "memory://"

    def __init__(self) -> None:
        self._table = CountTable()
        self._positions: dict[str, int] = {}
        self._meta: dict[str, bytes] = {}

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        return self._table.get(keys)

    def apply(
        self,
        keys: np.ndarray,
        deltas: np.ndarray,
        positions: Mapping[str, int] | None = None,
        meta: Mapping[str, bytes] | None = None,
        *,
        new: np.ndarray | None = None,
        expect: Mapping[str, int | None] | None = None,
    ) -> None:
        keys, deltas = check_keys(keys, deltas, new)
        check_expected(expect, self._positions)
        self._table.add(keys, deltas)
        self._positions.update(positions or {})
        self._meta.update({k: bytes(v) for k, v in (meta or {}).items()})

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def size(self) -> int:
        return len(self._table)

    def iter_counts(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        keys, counts = self._table.items()
        order = np.argsort(keys)
        for i in range(0, keys.size, chunk):
            sel = order[i : i + chunk]
            yield keys[sel], counts[sel]

    def put_meta(self, name: str, value: bytes) -> None:
        self._meta[name] = bytes(value)

    def get_meta(self, name: str) -> bytes | None:
        return self._meta.get(name)

    def meta_names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._meta if n.startswith(prefix))

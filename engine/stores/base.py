"""The pattern-store interface every back-end implements, and store-independent operations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from neurogate.engine.keys import NCOLS


class PositionsMoved(RuntimeError):
    """An ``apply`` found input positions other than the ones it expected: another writer
    committed them (e.g. a worker that now owns the partition); nothing was written."""


class OutcomeUnknown(Exception):  # noqa: N818 (a marker, mixed into a store's own error)
    """Mixed into a store error when a write may or may not have landed (a lost COMMIT
    acknowledgement): writing the same deltas again could count them twice, so the writer must
    resume from the store's committed positions and state instead."""


class PatternStore(ABC):
    """Additive pattern counts (uint64 key -> n, n0, n1), input positions and named blobs.

    ``apply`` is atomic: the count deltas and the input positions they came from land together
    or not at all, which is what makes accumulation exactly-once across restarts.
    """

    url: str

    @abstractmethod
    def fetch(self, keys: np.ndarray) -> np.ndarray:
        """Counts [len(keys), NCOLS] (zeros for unknown keys)."""

    @abstractmethod
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
        """Add ``deltas`` to the counts of ``keys``, record ``positions`` and write ``meta``
        blobs (e.g. the detector's state snapshot), all in one transaction. ``new`` is a hint:
        a mask of the keys the caller believes the store does not hold yet, which a store may
        insert rather than upsert; a wrong hint may cost time, never correctness. ``expect``
        fences the write: the positions the store must hold first (None: absent); if any
        differs (another writer committed meanwhile), ``PositionsMoved`` and nothing written."""

    @abstractmethod
    def positions(self) -> dict[str, int]:
        """The last committed input position of every input (file, partition, ...)."""

    @abstractmethod
    def size(self) -> int:
        """Number of distinct keys held."""

    @abstractmethod
    def iter_counts(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (keys uint64, counts int64[.., NCOLS]) in chunks."""

    @abstractmethod
    def put_meta(self, name: str, value: bytes) -> None:
        """Store a named blob (encoder artifacts, registry entries)."""

    @abstractmethod
    def get_meta(self, name: str) -> bytes | None:
        """A named blob, or None."""

    @abstractmethod
    def meta_names(self, prefix: str = "") -> list[str]:
        """Names of stored blobs starting with ``prefix``."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections; the default has none."""

    def __enter__(self) -> PatternStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DelegatingStore(PatternStore):
    """A store in front of another one, ``backend``: positions, size, counts and blobs go on to
    it unless a subclass changes them. ``fetch`` and ``apply`` are what a front is for, so each
    subclass writes its own, and ``close`` is its to decide (the front may not own ``backend``)."""

    def __init__(self, backend: PatternStore) -> None:
        self.backend = backend

    def positions(self) -> dict[str, int]:
        return self.backend.positions()

    def size(self) -> int:
        return self.backend.size()

    def iter_counts(self, chunk: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.backend.iter_counts(chunk)

    def put_meta(self, name: str, value: bytes) -> None:
        self.backend.put_meta(name, value)

    def get_meta(self, name: str) -> bytes | None:
        return self.backend.get_meta(name)

    def meta_names(self, prefix: str = "") -> list[str]:
        return self.backend.meta_names(prefix)


@runtime_checkable
class StoreStats(Protocol):
    """A store that counts what it went through (retries, cache hits, ...); the worker exports
    ``stats`` as metrics, summed over the layers of a ``DelegatingStore``."""

    stats: dict[str, int]


def merge_into(dst: PatternStore, *sources: PatternStore) -> int:
    """Add every count of ``sources`` into ``dst`` (exact: counts are sums). Returns rows read."""
    rows = 0
    for src in sources:
        for keys, counts in src.iter_counts():
            dst.apply(keys, counts)
            rows += keys.size
    return rows


def totals(store: PatternStore) -> np.ndarray:
    """Sum of every count column: a cheap fingerprint for comparing stores."""
    out = np.zeros(NCOLS, dtype=np.int64)
    for _, counts in store.iter_counts():
        out += counts.sum(axis=0)
    return out


def check_keys(
    keys: np.ndarray, deltas: np.ndarray, new: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise an ``apply`` payload (and its ``new`` hint, if any)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
    deltas = np.ascontiguousarray(deltas, dtype=np.int64)
    if deltas.shape != (keys.size, NCOLS):
        raise ValueError(f"deltas must be [{keys.size}, {NCOLS}], got {deltas.shape}")
    if (keys == 0).any():
        raise ValueError("pattern key 0 is reserved (it marks empty slots); keys come from mix64")
    if new is not None and np.shape(new) != keys.shape:
        raise ValueError(f"new must be a mask of {keys.size} keys, got shape {np.shape(new)}")
    return keys, deltas



def check_expected(expect: Mapping[str, int | None] | None, found: Mapping[str, int]) -> None:
    """Raise ``PositionsMoved`` unless every expected position is the one ``found``."""
    moved = {k: (v, found.get(k)) for k, v in (expect or {}).items() if found.get(k) != v}
    if moved:
        raise PositionsMoved("input positions moved since this writer last committed "
                             f"(expected, found): {moved}; not writing")

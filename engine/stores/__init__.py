"""Pattern stores: in-memory (tests) and SQLite (embedded default) behind one interface."""

from __future__ import annotations

from pathlib import Path

from engine.stores.base import PatternStore, merge_into, totals
from engine.stores.memory import MemoryStore
from engine.stores.sqlite import SQLiteStore

__all__ = ["MemoryStore", "PatternStore", "SQLiteStore", "merge_into", "open_store", "totals"]


def open_store(url: str) -> PatternStore:
    """``memory://``, ``sqlite:///path/to/file.db`` or a plain path (SQLite)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :])
    if "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}: use memory://, sqlite:///PATH or a file path"
        )
    return SQLiteStore(Path(url))

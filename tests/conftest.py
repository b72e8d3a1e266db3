"""Shared fixtures: a fast engine configuration and a seasonal multi-source stream with planted
anomalies of known kinds."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from neurogate.engine.config import EngineConfig
from neurogate.engine.events import Event

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STEP = 900.0  # 15 minutes: a day is 96 steps
DAY_STEPS = 96


@dataclass(frozen=True)
class Planted:
    """A generated stream and, per event, the kind of anomaly planted there ("" = normal)."""

    events: list[Event]
    kinds: np.ndarray
    position: np.ndarray  # index of each event within its source

    def mask(self, kind: str) -> np.ndarray:
        return self.kinds == kind


def seasonal_stream(
    sources: int = 3,
    length: int = 2400,
    seed: int = 0,
    noise: float = 0.4,
    plant: bool = True,
) -> Planted:
    """Daily sine + noise per source, interleaved by time; with ``plant`` a spike at step 1500, a
    level shift over 1700..1759 and a frozen stretch over 2000..2039 in every source."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series, kinds = [], []
    for j in range(sources):
        x = 10 * np.sin(2 * np.pi * (t / DAY_STEPS + j / 7)) + rng.normal(0, noise, length) + 5 * j
        k = np.full(length, "", dtype=object)
        if plant:
            x[1500] += 40
            k[1500] = "spike"
            x[1700:1760] += 15
            k[1700:1760] = "level_shift"
            x[2000:2040] = x[2000]
            k[2000:2040] = "frozen"
        series.append(x)
        kinds.append(k)
    events, kind_list, position = [], [], []
    for i in range(length):
        for j in range(sources):
            events.append(Event(f"s{j}", T0 + i * STEP + j, (float(series[j][i]),)))
            kind_list.append(kinds[j][i])
            position.append(i)
    return Planted(events, np.array(kind_list), np.array(position))


SeasonalFactory = Callable[..., Planted]


@pytest.fixture
def seasonal() -> SeasonalFactory:
    """The ``seasonal_stream`` generator, for tests that need a variant of the default stream."""
    return seasonal_stream


@pytest.fixture
def fast_config() -> EngineConfig:
    """Short warm-up, no NeuroNet (its training is slow and tested in test_neuronet.py)."""
    return EngineConfig(warmup=50).replace(**{"neuronet.enabled": False})


@pytest.fixture(scope="session")
def planted() -> Planted:
    return seasonal_stream()


def foreign_sqlite(path: Path) -> bytes:
    """Another application's SQLite database (a customers table) at ``path``; its bytes."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers VALUES (1, 'Ada')")
    db.close()
    return path.read_bytes()

"""The in-memory pattern counts are bounded (engine ``max_patterns``): committed keys are evicted
and read back from the store, so a tiny bound scores exactly like no bound, on SQLite, the real
PostgreSQL and PostgreSQL behind Redis; uncommitted counts are never evicted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from neurogate.engine.config import ConfigError, EngineConfig
from neurogate.engine.detector import Detector
from neurogate.engine.stores import PatternStore, PostgresStore, SQLiteStore, totals
from tests import pg_fixtures as fx
from tests.conftest import seasonal_stream

pg_db, pg_url, redis_prefix = fx.pg_db, fx.pg_url, fx.redis_prefix

BOUND = 3000  # keys; the 8 sources below hold ~19,600 (about 2,400 each)


@pytest.fixture(params=["sqlite", "postgresql", "redis+postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], PatternStore]]:
    """A factory of fresh, empty stores of one kind."""
    made: list[PatternStore] = []
    kind = request.param

    def new() -> PatternStore:
        if kind == "sqlite":
            store: PatternStore = SQLiteStore(tmp_path / f"s{len(made)}.db")
        else:
            db: Callable[[], str] = request.getfixturevalue("pg_db")
            if kind == "postgresql":
                store = PostgresStore(db(), retry_seconds=5)
            else:
                from neurogate.engine.stores import CachedStore

                prefix = request.getfixturevalue("redis_prefix") + f"{len(made)}:"
                store = CachedStore(PostgresStore(db(), retry_seconds=5), fx.REDIS_URL,
                                    prefix=prefix)
        made.append(store)
        return store

    yield new
    for store in made:
        store.close()


def _run(det: Detector, events: list, batch: int) -> tuple[np.ndarray, list[int]]:
    """Scores of every event, and the keys the detector held after each batch."""
    scores, held = [], []
    for start in range(0, len(events), batch):
        scores.append(det.process_many(events[start : start + batch]).score)
        held.append(len(det.cache))
    det.close()
    return np.concatenate(scores), held


@pytest.mark.slow
def test_a_tiny_bound_scores_exactly_like_no_bound(
    stores: Callable[[], PatternStore], fast_config: EngineConfig
) -> None:
    """With room for 3,000 of ~19,600 keys the detector evicts committed keys and reads them
    back (the keys of a background flush in flight stay): the same scores, the same counts in
    the store. The bound holds once the sources are past their warm-up (where the warm-ups of
    all 8 sources, ~5,400 keys, are counted in one batch, uncommitted)."""
    events = seasonal_stream(sources=8, length=900, plant=False).events
    free, bounded = stores(), stores()
    want, free_held = _run(Detector(fast_config, free, flush_every=40), events, 40)
    det = Detector(fast_config, bounded, flush_every=40, max_patterns=BOUND)
    got, held = _run(det, events, 40)
    assert max(free_held) > 6 * BOUND  # unbounded, the cache holds every key
    assert det.evicted > max(free_held)  # keys were evicted, and many read back again
    assert max(held[len(held) // 4 :]) <= BOUND
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(totals(bounded), totals(free))
    assert bounded.size() == free.size()


def test_uncommitted_counts_are_never_evicted(tmp_path: Path, fast_config: EngineConfig) -> None:
    """Without flushes nothing is committed: the cache outgrows the bound rather than lose a
    count, and the close writes every count."""
    events = seasonal_stream(sources=4, length=600, plant=False).events
    with SQLiteStore(tmp_path / "a.db") as free, SQLiteStore(tmp_path / "b.db") as bounded:
        _run(Detector(fast_config, free, flush_every=None), events, 200)
        det = Detector(fast_config, bounded, flush_every=None, max_patterns=1000)
        _, held = _run(det, events, 200)
        assert det.evicted == 0 and max(held) > 1000
        np.testing.assert_array_equal(totals(bounded), totals(free))


def test_detached_writes_stay_until_confirmed(tmp_path: Path, fast_config: EngineConfig) -> None:
    """The worker's commits are written by another thread after ``detach_flush``: their keys
    are evicted only once ``committed`` confirms them (a read-back could miss them before)."""
    events = seasonal_stream(sources=4, length=600, plant=False).events
    with SQLiteStore(tmp_path / "a.db") as store:
        det = Detector(fast_config, store, flush_every=None, max_patterns=1000)
        det.process_many(events[:1200])
        keys, deltas, _, seq = det.detach_flush()
        det.process_many(events[1200:1300])
        assert det.evicted == 0 and det.cache.contains(keys).all()
        store.apply(keys, deltas)
        det.committed(seq)
        det.process_many(events[1300:1400])
        assert det.evicted > 0 and not det.cache.contains(keys).all()


def test_max_patterns_is_validated_and_read_from_the_environment() -> None:
    from neurogate.engine.config import env_overrides

    with pytest.raises(ConfigError, match="max_patterns"):
        EngineConfig(max_patterns=10)
    assert env_overrides({"NEUROGATE_MAX_PATTERNS": "5000000"}) == {"max_patterns": "5000000"}
    # not part of the learned state: a store resumes under another bound
    assert "max_patterns" not in EngineConfig().state_settings()

"""bench/stream.py runs end to end on a small backlog, with one worker and with two (a smoke test
of the benchmark itself: its figures are printed, not asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests import kafka_fixtures as kf
from tests.pg_fixtures import PG_ADMIN, REDIS_URL, require_pg, require_redis

kafka_bootstrap = kf.kafka_bootstrap  # fixture, by name
ROOT = Path(__file__).resolve().parent.parent


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_stream", ROOT / "bench" / "stream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_stream_benchmark_runs(kafka_bootstrap: str, tmp_path: Path, workers: int,
                               capsys: pytest.CaptureFixture[str]) -> None:
    require_pg()
    require_redis()
    out = tmp_path / "bench.json"
    rc = load_bench().main([
        "--bootstrap", kafka_bootstrap, "--pg", PG_ADMIN, "--redis", REDIS_URL,
        "--phases", "batched", "--events", "12000", "--per-message", "40", "--sources", "6",
        "--partitions", "2", "--batch-size", "10", "--workers", str(workers),
        "--timeout", "180", "--json", str(out)])
    assert rc == 0
    b = json.loads(out.read_text())["batched"]
    assert b["events"] == 12000 and b["messages"] == 300
    for figure in ("raw_events_per_s", "engine_events_per_s", "worker_events_per_s"):
        assert b[figure] > 0, figure
    assert b["worker_events_per_batch"] < 12000, "a rate needs more than one batch"
    assert b["worker_engine_busy_share"] > 0
    printed = capsys.readouterr().out
    assert "batched >= 80% of engine" in printed and f"{workers} worker" in printed


@pytest.mark.slow
def test_stream_benchmark_latency_phase_and_relay_floor(kafka_bootstrap: str, tmp_path: Path
                                                        ) -> None:
    require_pg()
    require_redis()
    out = tmp_path / "bench.json"
    rc = load_bench().main([
        "--bootstrap", kafka_bootstrap, "--pg", PG_ADMIN, "--redis", REDIS_URL,
        "--phases", "latency", "--rate", "400", "--latency-seconds", "3",
        "--latency-warmup", "3", "--latency-sources", "4", "--spike-every", "20",
        "--partitions", "2", "--timeout", "180", "--json", str(out)])
    assert rc == 0
    got = json.loads(out.read_text())
    lat, relay = got["latency"], got["relay"]
    assert lat["anomalies"] > 0 and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["to_engine_p50_ms"] > 0
    assert relay["messages"] > 0 and 0 < relay["p50_ms"] <= relay["p99_ms"]

"""``neurogate worker|produce|replay|topics|tail`` (neurogate.cli.stream): argument
handling and errors without servers, and the kafka-python tools against the test broker."""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

import orjson
import pytest

from neurogate.cli import stream as cli_stream
from neurogate.stream.settings import WorkerSettings
from tests import kafka_fixtures as kf
from tests.kafka_fixtures import produce, read_all

kafka_bootstrap = kf.kafka_bootstrap  # fixture, by name


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_stream.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_register_adds_the_commands() -> None:
    p = argparse.ArgumentParser(prog="neurogate")
    cli_stream.register(p.add_subparsers(dest="command", required=True))
    for argv in (["worker", "--bootstrap", "k:9092", "--web-port", "7000"],
                 ["produce", "a.csv", "--per-message", "10", "--rate", "500"],
                 ["replay", "--speed", "3600", "--late-labels", "100"],
                 ["replay", "--deadletter", "--reason", "bad_json"],
                 ["topics", "create", "--partitions", "12"],
                 ["tail", "--topic", "deadletter", "--max", "5", "--json"]):
        args = p.parse_args(argv)
        assert callable(args.func) and args.command == argv[0]


@pytest.mark.parametrize("argv", [
    ["produce", "a.jsonl", "--per-message", "0"],
    ["produce", "a.jsonl", "--rate", "-3"],
    ["tail", "--timeout", "nan"],
])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_stream.main(argv)
    assert exc.value.code == 2


def test_bad_settings_are_one_line_errors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["worker", "--set", "worker.batch_size=0"], capsys)
    assert code == 2 and err.strip() == "neurogate: error: worker.batch_size must be >= 1, got 0"
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nbatch = 1\n")
    code, _, err = run(["tail", "--config", str(bad)], capsys)
    assert code == 2 and "unknown setting 'worker.batch'" in err
    code, _, err = run(["produce", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and "input file not found" in err


def test_unreachable_kafka_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from neurogate.stream import kafka_tools
    from tests.pg_fixtures import free_port

    monkeypatch.setattr(kafka_tools, "CONNECT_TIMEOUT", 1.0)
    code, _, err = run(["topics", "list", "--bootstrap", f"127.0.0.1:{free_port()}"], capsys)
    assert code == 2 and err.startswith("neurogate: error:")


# -- against the broker --------------------------------------------------------------------------


def _sets(prefix: str) -> list[str]:
    return [f"--set=worker.{k}_topic={prefix}.{k}" for k in
            ("events", "labels", "anomalies", "deadletter")] + ["--set=worker.partitions=3"]


@pytest.mark.slow
def test_topics_produce_and_tail(kafka_bootstrap: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    common = ["--bootstrap", kafka_bootstrap, *_sets(prefix)]
    code, out, _ = run(["topics", "create", *common], capsys)
    assert code == 0 and out.count("created (3 partitions)") == 4
    code, out, _ = run(["topics", "list", *common], capsys)
    assert code == 0 and out.count("3 partitions") == 4

    data = tmp_path / "events.jsonl"
    lines = [json.dumps({"source": f"s{i % 2}", "ts": 1_700_000_000 + i, "value": i,
                         "id": f"e{i}", "label": i % 2}) for i in range(25)]
    data.write_text("\n".join([*lines, "{broken"]) + "\n")
    code, _, err = run(["produce", str(data), "--per-message", "4", "--late-labels", "5",
                        "-q", *common], capsys)
    assert code == 0
    assert "sent 25 events in 7 messages" in err and "25 labels" in err
    assert "skipped 1 bad input records" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n[]\n")
    code, _, err = run(["produce", str(bad), "-q", *common], capsys)
    assert code == 1 and "sent 0 events" in err
    assert err.strip().splitlines()[-1] == \
        "neurogate: error: every input record was bad (2); nothing was sent"
    msgs = read_all(kafka_bootstrap, f"{prefix}.events")
    assert sum(len(json.loads(m.value)) for m in msgs) == 25
    assert all(len(json.loads(m.value)) <= 4 for m in msgs)
    for m in msgs:
        assert {e["source"] for e in json.loads(m.value)} == {m.key.decode()}
        assert all("label" not in e for e in json.loads(m.value)), "labels arrive late"
    labels = [json.loads(m.value) for m in read_all(kafka_bootstrap, f"{prefix}.labels")]
    assert sorted(rec["id"] for rec in labels) == sorted(f"e{i}" for i in range(25))

    produce(kafka_bootstrap, f"{prefix}.anomalies", [(b"s0", orjson.dumps(
        {"source": "s0", "ts": 1.0, "id": "a", "score": 0.99, "flagged": True,
         "evidence": [{"level": 2, "channel": 0, "encoder": "fixed", "pattern": "00ff",
                       "count": 0, "probability": 0.001, "surprise": 6.9}],
         "explanation": ["pid(1) prior_v(1) ..."], "model_version": "fixed:x"}))])
    code, out, _ = run(["tail", "--from-beginning", "--max", "1", "--timeout", "10", *common],
                       capsys)
    assert code == 0 and "s0  ts=1.0  id=a  score=0.9900" in out
    assert "channel 0, level 2 (steps of 4 events): pattern 00ff seen 0x" in out
    assert "pid(1)" in out


def test_labels_topic_must_be_copartitioned(kafka_bootstrap: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from neurogate.stream.kafka_tools import create_topics

    prefix = f"c{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(bootstrap=kafka_bootstrap, events_topic=f"{prefix}.events",
                              labels_topic=f"{prefix}.labels",
                              anomalies_topic=f"{prefix}.anomalies",
                              deadletter_topic=f"{prefix}.deadletter", partitions=2)
    create_topics(WorkerSettings(**{**settings.__dict__, "labels_topic": "",
                                    "partitions": 3}))
    create_topics(settings)  # labels with 2 partitions, events with 3
    code, _, err = run(["topics", "list", "--bootstrap", kafka_bootstrap, *_sets(prefix)],
                       capsys)
    assert code == 2 and "co-partitioned" in err
    code, _, err = run(["worker", "--bootstrap", kafka_bootstrap, "--wait", "5",
                        "--set=worker.store=memory://", *_sets(prefix)], capsys)
    assert code == 2 and "co-partitioned" in err


@pytest.mark.slow
def test_replay_deadletters(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    common = ["--bootstrap", kafka_bootstrap, *_sets(prefix)]
    assert run(["topics", "create", *common], capsys)[0] == 0
    dead = [
        {"reason": "out_of_order", "topic": f"{prefix}.events", "partition": 0, "offset": 3,
         "index": 0, "error": "x", "raw": '{"source": "s", "ts": 5, "value": 1}',
         "truncated": False},
        {"reason": "bad_json", "topic": f"{prefix}.events", "partition": 0, "offset": 4,
         "index": None, "error": "x", "raw_base64": "/w==", "truncated": False},
        {"reason": "oversized", "topic": f"{prefix}.events", "partition": 0, "offset": 5,
         "index": None, "error": "x", "raw": '{"sou', "truncated": True},
    ]
    produce(kafka_bootstrap, f"{prefix}.deadletter", [(b"s", orjson.dumps(d)) for d in dead])
    code, _, err = run(["replay", "--deadletter", "--reason", "out_of_order", "--timeout", "1.5",
                        *common], capsys)
    assert code == 0 and "re-published 1 dead-lettered records" in err
    code, _, err = run(["replay", "--deadletter", "--timeout", "1.5", *common], capsys)
    assert code == 0 and "re-published 2" in err and "1 truncated ones skipped" in err
    values = sorted(m.value for m in read_all(kafka_bootstrap, f"{prefix}.events"))
    assert values == sorted([b'{"source": "s", "ts": 5, "value": 1}'] * 2 + [b"\xff"])

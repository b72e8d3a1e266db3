"""Worker settings: file, environment and --set in that order; clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurogate.cli.config import load_settings
from neurogate.engine.config import ConfigError
from neurogate.stream.settings import WorkerSettings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "neurogate.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid() -> None:
    engine, worker = load_settings(None, [], {})
    assert worker == WorkerSettings()
    assert worker.position_key("neurogate.events", 3) == "kafka:neurogate.events:3"
    assert engine.threshold == 0.9


def test_precedence_file_then_environment_then_set(tmp_path: Path) -> None:
    path = write(tmp_path, """
[engine]
threshold = 0.9
neuronet.enabled = false
[worker]
bootstrap = "k1:9092,k2:9092"
batch_size = 100
group = "from-file"
""")
    env = {"NEUROGATE_WORKER__BATCH_SIZE": "200", "NEUROGATE_THRESHOLD": "0.95",
           "NEUROGATE_WORKER__COMMIT_INTERVAL": "2.5", "UNRELATED": "x"}
    engine, worker = load_settings(path, ["worker.batch_size=300", "alpha=2"], env)
    assert (worker.bootstrap, worker.group, worker.batch_size, worker.commit_interval) == \
        ("k1:9092,k2:9092", "from-file", 300, 2.5)
    assert (engine.threshold, engine.alpha, engine.neuronet.enabled) == (0.95, 2.0, False)


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\ngroup = "g7"\n')
    assert load_settings(None, [], {"NEUROGATE_CONFIG": str(path)})[1].group == "g7"


@pytest.mark.parametrize(("text", "sets", "env", "message"), [
    ("", ["worker.batch_size=0"], {}, "worker.batch_size must be >= 1"),
    ("", ["worker.batch_size=many"], {}, "worker.batch_size must be int"),
    ("", [], {"NEUROGATE_WORKER__BATCHSIZE": "5"}, "NEUROGATE_WORKER__BATCHSIZE"),
    ("[worker]\nbatchsize = 5\n", [], {}, "unknown setting 'worker.batchsize'"),
    ("[workers]\n", [], {}, "unknown table(s) ['workers']"),
    ("[worker\n", [], {}, "not valid TOML"),
    ("", ["worker.store=mysql://x"], {}, "worker.store"),
    ("", ["worker.bootstrap=localhost"], {}, "worker.bootstrap must be host:port"),
    ("", ["worker.web_port=70000"], {}, "worker.web_port must be 1..65535"),
    ("", ["worker.commit_interval=-1"], {}, "worker.commit_interval must be a positive"),
    ("", ["worker.session_timeout=5", "worker.heartbeat_interval=3"], {},
     "heartbeat_interval must be at most a third"),
    ("", ["worker.labels_topic=neurogate.events"], {}, "topics must be distinct"),
    ("", ["worker.log_level=loud"], {}, "worker.log_level"),
    ("", ["threshold=2"], {}, "threshold must be in (0, 1]"),
    ("", ["worker.batch_size"], {}, "--set expects KEY=VALUE"),
])
def test_bad_values_name_the_setting(tmp_path: Path, text: str, sets: list[str],
                                     env: dict[str, str], message: str) -> None:
    path = write(tmp_path, text) if text else None
    with pytest.raises(ConfigError) as exc:
        load_settings(path, sets, env)
    assert message in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", [], {})


def test_labels_can_be_switched_off() -> None:
    _, worker = load_settings(None, ["worker.labels_topic="], {})
    assert worker.labels_topic == ""

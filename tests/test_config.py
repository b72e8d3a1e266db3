"""EngineConfig: dotted/nested changes, environment overrides, the CLI's layering, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neurogate.cli.config import load_config, setting_paths
from neurogate.cli.reference import reference
from neurogate.engine.config import ConfigError, EngineConfig, _coerce, env_overrides, from_mapping
from neurogate.engine.encoder import FixedEncoderConfig

ENV = {
    "NEUROGATE_THRESHOLD": "0.9",
    "NEUROGATE_NEURONET__ENABLED": "false",
    "NEUROGATE_FIXED__LEVELS": "5",
    "NEUROGATE_NOT_A_SETTING": "1",  # other NEUROGATE_* variables are not ours to judge
    "PATH": "/usr/bin",
}


def test_defaults_are_valid_and_documented_values() -> None:
    cfg = EngineConfig()
    assert (cfg.threshold, cfg.warmup, cfg.suppress_window, cfg.scope) == (0.9, 200, 30, "source")
    assert cfg.neuronet.enabled and cfg.calendar and cfg.extreme_rule
    assert cfg.fixed == FixedEncoderConfig()


def test_env_overrides_pick_our_variables_only() -> None:
    assert env_overrides(ENV) == {
        "threshold": "0.9",
        "neuronet.enabled": "false",
        "fixed.levels": "5",
    }
    cfg = from_mapping(EngineConfig, env_overrides(ENV), base=EngineConfig())
    assert cfg.threshold == 0.9
    assert cfg.neuronet.enabled is False
    assert cfg.fixed.levels == 5
    assert cfg.neuronet.levels == EngineConfig().neuronet.levels  # siblings keep their values


def test_dotted_and_nested_changes() -> None:
    base = EngineConfig()
    dotted = base.replace(**{"neuronet.enabled": False, "neuronet.train_after": "500"})
    nested = base.replace(neuronet={"enabled": "off", "train_after": 500})
    assert dotted == nested
    assert dotted.neuronet.train_after == 500 and not dotted.neuronet.enabled
    assert base.neuronet.enabled  # frozen: replace makes a copy
    assert base.replace(threshold="0.95", scope="global", calibration="rank").scope == "global"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("true", True), ("Yes", True), (" ON ", True),
     ("0", False), ("false", False), ("NO", False), ("off", False)],
)
def test_bool_strings(text: str, value: bool) -> None:
    assert EngineConfig().replace(calendar=text).calendar is value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("none", None), ("", None), ("0.8", 0.8), (0.5, 0.5)],
)
def test_optional_float(text: Any, expected: float | None) -> None:
    assert _coerce(float | None, text, "x") == expected


def test_integers_accept_integral_floats_only() -> None:
    assert EngineConfig().replace(warmup=64.0).warmup == 64
    assert EngineConfig().replace(warmup="64").warmup == 64


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"threshhold": 0.9}, ["'threshhold'", "known:", "threshold"]),
        ({"neuronet.bogus": 1}, ["'neuronet.bogus'"]),
        ({"fixed": {"level": 3}}, ["'fixed.level'"]),
        ({"threshold": "high"}, ["threshold must be float", "'high'"]),
        ({"warmup": "1.5"}, ["warmup must be int"]),
        ({"warmup": 2.5}, ["warmup must be int"]),
        ({"warmup": True}, ["warmup must be int"]),
        ({"neuronet.enabled": "maybe"}, ["neuronet.enabled must be bool"]),
        ({"neuronet.enabled": 1}, ["neuronet.enabled must be bool"]),
        ({"neuronet.levels": "many"}, ["neuronet.levels must be int"]),
        ({"scope": "galaxy"}, ["scope must be one of", "'source'", "'global'"]),
        ({"calibration": "isotonic"}, ["calibration must be one of"]),
        ({"neuronet": 3}, ["neuronet must be a table"]),
        ({"threshold": 0}, ["threshold must be in (0, 1]"]),
        ({"threshold": "1.5"}, ["threshold"]),
        ({"warmup": 1}, ["warmup must be >= 2"]),
        ({"calendar_hours": 5}, ["calendar_hours must divide 24"]),
        ({"top_k": 0}, ["top_k"]),
        ({"suppress_window": -1}, ["suppress_window"]),
        ({"escalation": 0.5}, ["escalation must be 0 (off) or >= 1"]),
        ({"escalation": "nan"}, ["escalation"]),
        ({"late_tolerance": -1}, ["late_tolerance"]),
        ({"alpha": 0}, ["alpha"]),
        ({"neuronet.steps": 0}, ["neuronet.steps"]),
        ({"neuronet.train_events": -1}, ["neuronet.train_events"]),
        ({"neuronet.levels": 11}, ["neuronet.levels"]),
        ({"neuronet.pretrained": "/no/such/file.npz"}, ["neuronet.pretrained", "no such file"]),
        ({"neuronet.reservoir": 0}, ["neuronet.reservoir"]),
        ({"neuronet.retrain_every": -5}, ["neuronet.retrain_every"]),
        ({"fixed.levels": 0}, ["levels"]),
        ({"evidence.seed_weight": -0.5}, ["evidence.seed_weight"]),
        ({"fixed.trend_step": "-0.1"}, ["trend_step"]),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        EngineConfig().replace(**changes)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["range_margin", "extreme_margin", "late_tolerance", "alpha", "alpha0", "posterior_beta",
     "neuronet.margin"],
)
def test_nan_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name.split(".")[-1]):
        EngineConfig().replace(**{name: "nan"})


# -- the CLI's layering: defaults <- file [engine] <- NEUROGATE_* <- --set -----------------------


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "neurogate.toml"
    path.write_text(text)
    return path


def test_layers_in_order_of_precedence(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        "[engine]\nthreshold = 0.5\nwarmup = 64\nsuppress_window = 3\n\n"
        "[engine.neuronet]\nenabled = true\nlevels = 4\n",
    )
    env = {"NEUROGATE_THRESHOLD": "0.9", "NEUROGATE_NEURONET__ENABLED": "false",
           "NEUROGATE_WARMUP": "100"}
    cfg = load_config(path, ["warmup=300", "neuronet.levels = 3"], env)
    assert cfg.threshold == 0.9  # env beats file
    assert cfg.warmup == 300  # --set beats env and file
    assert cfg.suppress_window == 3  # file beats defaults
    assert cfg.neuronet.enabled is False and cfg.neuronet.levels == 3
    assert load_config(None, [], {}) == EngineConfig()


@pytest.mark.parametrize(
    ("toml", "sets", "env", "error", "message"),
    [
        (None, ["threshold"], {}, ConfigError, "--set expects KEY=VALUE"),
        (None, ["threshold=abc"], {}, ConfigError, "threshold must be float"),
        (None, ["nope=1"], {}, ConfigError, "unknown setting 'nope'"),
        (None, [], {"NEUROGATE_WARMUP": "lots"}, ConfigError, "warmup must be int"),
        ("[engine]\nthreshold = 2.0\n", [], {}, ConfigError, "threshold"),
        ("[engine]\nthreshold = \n", [], {}, ConfigError, "not valid TOML"),
        ("threshold = 0.9\n", [], {}, ConfigError, "settings go under [engine]"),
        ("[engine]\n[engine.neuronet]\nenabld = false\n", [], {}, ConfigError, "neuronet.enabld"),
    ],
)
def test_cli_config_errors(
    tmp_path: Path, toml: str | None, sets: list[str], env: dict[str, str],
    error: type[Exception], message: str,
) -> None:
    path = None if toml is None else write_toml(tmp_path, toml)
    with pytest.raises(error) as info:
        load_config(path, sets, env)
    assert message in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml", [], {})


@pytest.mark.parametrize(("name", "nearest"), [
    ("NEUROGATE_TRESHOLD", "NEUROGATE_THRESHOLD"),
    ("NEUROGATE_NEURONET__ENABLE", "NEUROGATE_NEURONET__ENABLED"),
    ("NEUROGATE_WORKER__BATCHSIZE", "NEUROGATE_WORKER__BATCH_SIZE"),
    ("NEUROGATE_PG_URI", "NEUROGATE_PG_URL"),
])
def test_unknown_environment_settings_name_the_nearest(name: str, nearest: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [], {name: "1"})
    assert str(info.value) == (f"unknown setting in environment variable {name}; "
                               f"did you mean {nearest}?")


def test_environment_names_that_are_not_settings() -> None:
    env = {"NEUROGATE_PG_URL": "postgresql://h/db", "NEUROGATE_REDIS_URL": "redis://h",
           "NEUROGATE_STORE_RETRY_SECONDS": "5", "NEUROGATE_TEST_KAFKA": "h:9092",
           "NEUROGATE_WORKER__GROUP": "g", "NEUROGATEWAY": "not ours", "PATH": "/usr/bin"}
    assert load_config(None, [], env) == EngineConfig()
    with pytest.raises(ConfigError, match="NEUROGATE_ZZZ .docs/configuration.md lists"):
        load_config(None, [], {"NEUROGATE_ZZZ": "1"})


def test_config_file_from_the_environment_and_a_preset(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[engine]\nwarmup = 64\n")
    cfg = load_config(None, [], {"NEUROGATE_CONFIG": str(path)},
                      preset={"warmup": 32, "top_k": 3})
    assert (cfg.warmup, cfg.top_k) == (64, 3)  # the file beats the preset


# -- the configuration reference (docs/configuration.md) ---------------------------------------


def test_every_setting_is_documented_with_its_meaning() -> None:
    rows = {}
    for line in reference().splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == setting_paths()
    undocumented = [name for name, cells in rows.items()
                    if not cells[4].removeprefix("*scoring*:").strip()]
    assert undocumented == []
    assert rows["threshold"][2:4] == ["`0.9`", "`NEUROGATE_THRESHOLD`"]
    assert rows["worker.batch_size"][3] == "`NEUROGATE_WORKER__BATCH_SIZE`"


def test_the_committed_reference_is_current() -> None:
    committed = (Path(__file__).resolve().parents[1] / "docs/configuration.md").read_text()
    assert committed == reference(), \
        "stale: run `neurogate config docs --out docs/configuration.md`"

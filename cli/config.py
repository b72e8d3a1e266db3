"""The one configuration loader of every ``neurogate`` command: the engine configuration
(``neurogate.engine.config``) and the worker settings (``neurogate.stream.settings``).

Precedence, lowest first: defaults, a benchmark's preset (``eval`` only), the TOML file's
``[engine]`` and ``[worker]`` tables (``--config``, else ``$NEUROGATE_CONFIG``), environment
variables (``NEUROGATE_THRESHOLD=0.95`` for the engine, ``NEUROGATE_WORKER__BATCH_SIZE=500`` for
the worker), then ``--set key=value`` (``--set worker.bootstrap=broker:19092``). Bad or unknown
values fail with a ``ConfigError`` that names the setting; so does a ``NEUROGATE_*`` variable
that is neither a setting nor one of ``OTHER_VARIABLES`` (naming the nearest setting).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurogate.engine.config import (
    ConfigError,
    EngineConfig,
    env_overrides,
    field_paths,
    from_mapping,
    read_toml,
)
from neurogate.stream.kafka_security import check_security
from neurogate.stream.settings import WorkerSettings, refuse_secret

__all__ = ["CONFIG_ENV", "OTHER_VARIABLES", "load_config", "load_settings", "read_config_file"]

CONFIG_ENV = "NEUROGATE_CONFIG"  # path of the TOML file when no --config is given
PREFIX = "NEUROGATE_"
# NEUROGATE_* variables that are not settings (docs/configuration.md lists them)
OTHER_VARIABLES = {
    CONFIG_ENV: "the TOML file when no --config is given",
    "NEUROGATE_PG_URL": "the PostgreSQL store of `neurogate db` when no --store is given",
    "NEUROGATE_REDIS_URL": "the Redis of a redis+postgresql:// store without ?redis=",
    "NEUROGATE_STORE_RETRY_SECONDS": "seconds a PostgreSQL store call may spend retrying "
                                     "(default 60)",
    "NEUROGATE_NAB_DIR": "the NAB corpus of the test suite",
}
TEST_PREFIX = "NEUROGATE_TEST_"  # the test suite's own switches (tests/kafka_fixtures.py, ...)


@dataclass(frozen=True)
class _WorkerRoot:
    """Only for ``env_overrides``: makes ``NEUROGATE_WORKER__X`` map to ``worker.x``."""

    worker: WorkerSettings = field(default_factory=WorkerSettings)


def _env_name(path: str) -> str:
    return PREFIX + path.upper().replace(".", "__")


def environment(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Engine and worker settings from ``NEUROGATE_*`` variables; a variable that is neither a
    setting nor one of ``OTHER_VARIABLES`` is an error naming the nearest setting (a typo in a
    deployment should not pass silently)."""
    engine = env_overrides(environ)
    worker = {k.removeprefix("worker."): v
              for k, v in env_overrides(environ, _WorkerRoot).items()}
    known = {_env_name(p) for p in engine} | {_env_name("worker." + p) for p in worker}
    for name in environ:
        if (not name.startswith(PREFIX) or name in known or name in OTHER_VARIABLES
                or name.startswith(TEST_PREFIX)):
            continue
        # compared without the shared prefix, which would make every name look close
        valid = [_env_name(p) for p in setting_paths()] + list(OTHER_VARIABLES)
        near = difflib.get_close_matches(name.removeprefix(PREFIX),
                                         [v.removeprefix(PREFIX) for v in valid], n=1)
        hint = f"; did you mean {PREFIX}{near[0]}?" if near else \
            " (docs/configuration.md lists the settings)"
        raise ConfigError(f"unknown setting in environment variable {name}{hint}")
    return engine, worker


def setting_paths() -> list[str]:
    """Every setting's dotted name: engine settings plain, worker settings as ``worker.x``."""
    return sorted(field_paths(EngineConfig)) + sorted(field_paths(_WorkerRoot))


def read_config_file(path: Path) -> dict[str, Any]:
    """The shared TOML file: only [engine] and [worker] tables, each a table."""
    data = read_toml(path)
    unknown = set(data) - {"engine", "worker"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; "
                          "settings go under [engine] or [worker]")
    for table in ("engine", "worker"):
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"{path}: {table} must be a table")
    return data


def _split_sets(sets: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--set KEY=VALUE`` items as engine and worker changes."""
    engine: dict[str, str] = {}
    worker: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        if key.startswith("worker."):
            refuse_secret(key.removeprefix("worker."), "--set")
            worker[key.removeprefix("worker.")] = value.strip()
        else:
            engine[key] = value.strip()
    return engine, worker


def load_settings(
    path: Path | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
) -> tuple[EngineConfig, WorkerSettings]:
    """The engine configuration and worker settings (see the module docstring for the order).

    ``path`` defaults to ``$NEUROGATE_CONFIG`` when that is set; ``preset`` holds engine
    settings between the defaults and the file (a benchmark's).
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    data = read_config_file(path) if path is not None else {}
    where = f"{path}: " if path is not None else ""
    for key in data.get("worker", {}):
        refuse_secret(key, str(path))
    engine = from_mapping(EngineConfig, preset or {}, base=EngineConfig())
    try:
        engine = from_mapping(EngineConfig, data.get("engine", {}), base=engine)
        worker = from_mapping(WorkerSettings, data.get("worker", {}), base=WorkerSettings(),
                              prefix="worker.")
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    engine_env, worker_env = environment(environ)
    engine = from_mapping(EngineConfig, engine_env, base=engine)
    worker = from_mapping(WorkerSettings, worker_env, base=worker, prefix="worker.")
    engine_sets, worker_sets = _split_sets(sets)
    engine = from_mapping(EngineConfig, engine_sets, base=engine)
    worker = from_mapping(WorkerSettings, worker_sets, base=worker, prefix="worker.")
    check_security(worker)  # on the result: its parts may come from different places
    return engine, worker


def load_config(
    path: Path | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    preset: Mapping[str, Any] | None = None,
) -> EngineConfig:
    """The engine configuration alone (``load_settings``' first half)."""
    return load_settings(path, sets, environ, preset=preset)[0]

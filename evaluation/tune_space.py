"""The search space of ``neurogate tune``: which engine settings are searched, over which
ranges, in one typed place (``DEFAULT_SPACE``), and the reader of a user's space file.

A space file is TOML with one ``[space]`` table; each key is a dotted engine setting
(``neurogate.EngineConfig``), each value a range or a list of choices::

    [space]
    threshold = {low = 0.85, high = 0.98}
    alpha = {low = 0.1, high = 10.0, log = true}
    "fixed.levels" = {low = 4, high = 8}
    calendar = [true, false]

A name that is not a setting, a range whose type does not match the setting's, bounds in the
wrong order, or a bound the engine itself rejects (``threshold = {high = 1.5}``) is a
``TuneError`` naming the key, before any trial runs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neurogate.engine.config import ConfigError, EngineConfig, read_toml

__all__ = ["DEFAULT_SPACE", "Param", "SearchSpace", "TuneError", "load_space", "setting_type"]


class TuneError(Exception):
    """A user error in ``neurogate tune`` / ``eval tuned``: one line, exit code 2."""


Scalar = bool | int | float | str


@dataclass(frozen=True)
class Param:
    """One searched setting: a numeric range (``low``..``high``, optionally log-uniform) or a
    list of ``choices``."""

    name: str
    kind: Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Scalar, ...] = ()

    def suggest(self, trial: Any) -> Scalar:
        """The trial's value of this setting (Optuna's suggest API)."""
        if self.kind == "int":
            return int(trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log))
        if self.kind == "float":
            return float(trial.suggest_float(self.name, self.low, self.high, log=self.log))
        return typing.cast(Scalar, trial.suggest_categorical(self.name, list(self.choices)))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (e.g. the engine's default) lies in this parameter's range."""
        if self.kind == "choice":
            return value in self.choices
        return isinstance(value, int | float) and self.low <= value <= self.high

    def describe(self) -> str:
        """``name in [low, high]`` or ``name in {a, b}``, for the report."""
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings, in order; everything else stays at the base configuration."""

    params: tuple[Param, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The dotted names of the searched settings."""
        return tuple(p.name for p in self.params)

    def suggest(self, trial: Any) -> dict[str, Scalar]:
        """One trial's settings."""
        return {p.name: p.suggest(trial) for p in self.params}

    def without(self, name: str) -> SearchSpace:
        """The space without one setting (e.g. ``warmup`` when the data fixes it)."""
        return SearchSpace(tuple(p for p in self.params if p.name != name))

    def fingerprint(self) -> list[dict[str, Any]]:
        """JSON-ready form, stored with a study so a resume with another space is refused."""
        return [dataclasses.asdict(p) for p in self.params]


# The engine's defaults lie inside every range, so the first trial (the base configuration,
# enqueued) is a point of the space. Ranges: threshold 0.8..0.985 is a combined tail
# probability of 2**-4..2**-66 (score = x / (1 + x) with x = -log2 p, engine/scoring.py);
# suppress_window up to 120 rows (10 h of 5-minute data); the encoder's sizes around the
# defaults by a factor of about 2 each way.
DEFAULT_SPACE = SearchSpace((
    Param("threshold", "float", 0.8, 0.985),
    Param("suppress_window", "int", 0, 120),
    Param("top_k", "int", 1, 4),
    Param("warmup", "int", 50, 1000, log=True),
    Param("range_margin", "float", 0.0, 0.4),
    Param("alpha", "float", 0.1, 10.0, log=True),
    Param("alpha0", "float", 0.05, 5.0, log=True),
    Param("calendar", "choice", choices=(True, False)),
    Param("extreme_rule", "choice", choices=(True, False)),
    Param("extreme_margin", "float", 0.0, 0.3),
    Param("fixed.levels", "int", 3, 9),
    Param("fixed.value_bins", "int", 8, 64, log=True),
    Param("fixed.level_bins", "int", 2, 8),
    Param("fixed.trend_step", "float", 0.01, 0.2, log=True),
))


def setting_type(name: str) -> Any:
    """The annotated type of a dotted engine setting; ``TuneError`` if there is none."""
    cls: Any = EngineConfig
    parts = name.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise TuneError(f"search space: {name!r} is not an engine setting; known here: "
                            f"{', '.join(names)}")
        tp = hints[part]
        if dataclasses.is_dataclass(tp):
            if i == len(parts) - 1:
                raise TuneError(f"search space: {name!r} is a table; name one of its settings "
                                f"({name}.<setting>)")
            cls = tp
            continue
        if i != len(parts) - 1:
            raise TuneError(f"search space: {name!r}: {'.'.join(parts[: i + 1])} is not a table")
        return tp
    raise TuneError(f"search space: {name!r} is not an engine setting")  # pragma: no cover


def _fits(tp: Any, v: Any) -> bool:
    """Whether a TOML value is a valid choice for a setting of type ``tp``."""
    if tp is bool or tp is str:
        return isinstance(v, tp)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return tp is float and isinstance(v, int | float) and not isinstance(v, bool)


def _checked(name: str, value: Any) -> None:
    """The engine must accept ``value`` for ``name`` (its own range checks)."""
    try:
        EngineConfig().replace(**{name: value})
    except ConfigError as exc:
        raise TuneError(f"search space: {name} = {value!r} is out of range: {exc}") from None


def _param(name: str, spec: Any) -> Param:
    """One entry of a space file as a ``Param``, checked against the setting's type."""
    tp = setting_type(name)
    if isinstance(spec, list):
        if not spec:
            raise TuneError(f"search space: {name}: the list of choices is empty")
        allowed = typing.get_args(tp) if typing.get_origin(tp) is Literal else None
        for v in spec:
            if not (v in allowed if allowed is not None else _fits(tp, v)):
                want = f"one of {list(allowed)}" if allowed is not None else tp.__name__
                raise TuneError(f"search space: {name}: choice {v!r} is not {want}")
            _checked(name, v)
        spec = [float(v) for v in spec] if tp is float else spec
        return Param(name, "choice", choices=tuple(spec))
    if not isinstance(spec, Mapping):
        raise TuneError(f"search space: {name} must be {{low = .., high = ..[, log = true]}} or "
                        f"a list of choices, got {spec!r}")
    if tp not in (int, float):
        raise TuneError(f"search space: {name} is {getattr(tp, '__name__', tp)}, not a number: "
                        f"give a list of choices")
    unknown = set(spec) - {"low", "high", "log"}
    if unknown or not {"low", "high"} <= set(spec):
        raise TuneError(f"search space: {name} needs low and high (and optionally log), got "
                        f"keys {sorted(spec)}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    for what, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise TuneError(f"search space: {name}.{what} must be a finite number, got {v!r}")
        if tp is int and not float(v).is_integer():
            raise TuneError(f"search space: {name} is an integer setting; {what} = {v!r}")
    if not isinstance(log, bool):
        raise TuneError(f"search space: {name}.log must be true or false, got {log!r}")
    if not low < high:
        raise TuneError(f"search space: {name}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise TuneError(f"search space: {name}: a log range needs low > 0, got {low}")
    for v in (low, high):
        _checked(name, int(v) if tp is int else float(v))
    return Param(name, "int" if tp is int else "float", float(low), float(high), log)


def load_space(path: Path) -> SearchSpace:
    """A user's space file (module docstring); every problem is a ``TuneError``."""
    data = read_toml(path, "search space file", TuneError)
    if set(data) != {"space"} or not isinstance(data["space"], Mapping) or not data["space"]:
        raise TuneError(f"{path}: expected one non-empty [space] table of settings, got "
                        f"{sorted(data)}")
    try:
        return SearchSpace(tuple(_param(k, v) for k, v in _flatten(data["space"]).items()))
    except TuneError as exc:
        raise TuneError(f"{path}: {exc}") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``[space.fixed] levels = ...`` and ``"fixed.levels" = ...`` both give ``fixed.levels``; a
    range table (it has ``low``) is a leaf."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not ({"low", "high", "log"} & set(value)):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out

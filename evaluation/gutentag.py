"""A GutenTAG corpus (the TimeEval group's generator, PyPI ``timeeval-gutentag``): series of 1,
8 and 40 channels with every anomaly kind GutenTAG offers, generated at evaluation time from a
committed YAML (``gutentag.yaml`` beside this file) with a fixed seed, and cached.

The YAML is a GutenTAG generation config plus a ``neurogate`` table: ``seed`` and
``normal-start`` (rows at the start of every series without anomalies, the detectors'
warm-up). Every anomaly must have one kind and an ``exact-position`` at or after the normal
start, so its rows and kind are known from the YAML; after generating a series the labels
GutenTAG wrote must equal those rows (else the generator changed and the run stops).

Series are cached as ``<cache>/<name>-<digest>.npz``, the digest covering the series' config,
the seed and GutenTAG's version, so an edited YAML or another GutenTAG regenerates them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurogate.evaluation.labelled import Incident, LabelledStream

DEFAULT_CORPUS = Path(__file__).with_name("gutentag.yaml")
KINDS = ("amplitude", "extremum", "frequency", "mean", "pattern", "pattern-shift", "platform",
         "trend", "variance", "mode-correlation")


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/neurogate/gutentag`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neurogate" / "gutentag"


@dataclass(frozen=True)
class Series:
    """One series of the corpus as the YAML describes it."""

    name: str
    channels: int
    length: int
    incidents: tuple[Incident, ...]
    config: dict[str, Any]  # the series' GutenTAG config (aliases resolved)


@dataclass(frozen=True)
class Corpus:
    """A parsed corpus YAML: seed, normal start and its series."""

    seed: int
    normal_start: int
    series: tuple[Series, ...]

    def channel_counts(self) -> list[int]:
        """The distinct channel counts, ascending."""
        return sorted({s.channels for s in self.series})


def _incident(name: str, a: dict[str, Any], normal_start: int, channels: int) -> Incident:
    """An anomaly entry of the YAML as an incident, checked against the corpus' rules."""
    kinds = a.get("kinds") or []
    if len(kinds) != 1 or not isinstance(kinds[0], dict) or kinds[0].get("kind") not in KINDS:
        raise ValueError(f"{name}: every anomaly needs exactly one kind of {', '.join(KINDS)}")
    kind = kinds[0]["kind"]
    start, length = a.get("exact-position"), a.get("length")
    if not isinstance(start, int) or not isinstance(length, int) or length < 1:
        raise ValueError(f"{name}: every anomaly needs an integer exact-position and length")
    if start < normal_start:
        raise ValueError(f"{name}: {kind} anomaly at row {start} lies in the normal start "
                         f"(rows before {normal_start})")
    if kind == "extremum" and length != 1:
        raise ValueError(f"{name}: an extremum anomaly is 1 row long (GutenTAG), got {length}")
    channel = int(a.get("channel", 0))
    if not 0 <= channel < channels:
        raise ValueError(f"{name}: anomaly channel {channel} outside 0..{channels - 1}")
    return Incident(kind, channel, start, start + length - 1)


def load_corpus(path: Path = DEFAULT_CORPUS) -> Corpus:
    """Parse and check a corpus YAML (module docstring)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GutenTAG corpus not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    meta = data.get("neurogate") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("seed"), int) \
            or not isinstance(meta.get("normal-start"), int) or meta["normal-start"] < 2:
        raise ValueError(f"{path}: needs a 'neurogate' table with an integer 'seed' and "
                         f"'normal-start' (>= 2)")
    normal = meta["normal-start"]
    series, names = [], set()
    for ts in data.get("timeseries") or []:
        name = ts.get("name")
        if not name or name in names:
            raise ValueError(f"{path}: every series needs a unique name, got {name!r}")
        names.add(name)
        bos = ts.get("base-oscillations")
        if not isinstance(bos, list) or not bos:
            raise ValueError(f"{name}: give the channels as a 'base-oscillations' list")
        length = int(ts.get("length", 0))
        if length <= normal:
            raise ValueError(f"{name}: length {length} leaves nothing after the normal start")
        incidents = tuple(sorted((_incident(name, a, normal, len(bos))
                                  for a in ts.get("anomalies") or []), key=lambda i: i.start))
        if any(i.end >= length for i in incidents):
            raise ValueError(f"{name}: an anomaly runs past the series' end ({length} rows)")
        if any(b.start <= a.end for a, b in zip(incidents, incidents[1:], strict=False)):
            raise ValueError(f"{name}: anomalies overlap")
        series.append(Series(name, len(bos), length, incidents, ts))
    if not series:
        raise ValueError(f"{path}: no series under 'timeseries'")
    return Corpus(meta["seed"], normal, tuple(series))


def _gutentag_version() -> str:
    from gutenTAG import __version__

    return str(__version__)


def _digest(series: Series, seed: int) -> str:
    """A key of what determines the generated data."""
    text = json.dumps({"config": series.config, "seed": seed, "gutentag": _gutentag_version()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _generate_series(series: Series, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Values [n, channels] and labels of one series from GutenTAG (its progress bars muted;
    shown with the error if it fails)."""
    from gutenTAG import GutenTAG

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stderr(chatter):
            out = GutenTAG.from_dict({"timeseries": [series.config]}, seed=seed).generate(
                return_timeseries=True)
    except Exception as exc:
        raise ValueError(f"GutenTAG failed on {series.name}: {exc}\n{chatter.getvalue()[-2000:]}"
                         ) from exc
    assert out is not None
    frame = out[0].timeseries
    labels = frame.pop("is_anomaly").to_numpy(dtype=np.int8)
    return frame.to_numpy(dtype=np.float64), labels


def _check(series: Series, values: np.ndarray, labels: np.ndarray) -> None:
    """The generated series has the YAML's shape and labels exactly the incidents' rows."""
    want = np.zeros(series.length, dtype=np.int8)
    for inc in series.incidents:
        want[inc.start : inc.end + 1] = 1
    if values.shape != (series.length, series.channels) or not np.array_equal(labels, want):
        raise ValueError(f"{series.name}: GutenTAG's output does not match the YAML (shape "
                         f"{values.shape}, {int(labels.sum())} labelled rows, expected "
                         f"{int(want.sum())}): a different GutenTAG version?")
    if not np.isfinite(values).all():
        raise ValueError(f"{series.name}: GutenTAG produced non-finite values")


def load_series(series: Series, seed: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """A series' values and labels, from the cache or generated (and then cached; an
    unreadable cache file is generated again)."""
    path = None if cache is None else Path(cache) / f"{series.name}-{_digest(series, seed)}.npz"
    cached = None
    if path is not None and path.is_file():
        try:
            with np.load(path) as saved:
                cached = saved["values"], saved["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            cached = None  # unreadable (e.g. cut short): generated again and replaced
    if cached is not None:
        values, labels = cached
    else:
        values, labels = _generate_series(series, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, values=values, labels=labels)
            tmp.replace(path)
    _check(series, values, labels)
    return values, labels


def streams(corpus: Corpus, channels: Sequence[int] | None = None,
            cache: Path | None = None) -> dict[int, list[LabelledStream]]:
    """The corpus' series as labelled streams, grouped by channel count (only ``channels``
    when given; each must occur in the corpus). Timestamps are row numbers (no calendar)."""
    wanted = corpus.channel_counts() if channels is None else list(channels)
    missing = sorted(set(wanted) - set(corpus.channel_counts()))
    if missing:
        raise ValueError(f"no series with {', '.join(map(str, missing))} channels in the "
                         f"corpus (it has {', '.join(map(str, corpus.channel_counts()))})")
    out: dict[int, list[LabelledStream]] = {c: [] for c in wanted}
    for s in corpus.series:
        if s.channels not in out:
            continue
        values, labels = load_series(s, corpus.seed, cache)
        out[s.channels].append(LabelledStream(
            s.name, np.arange(s.length, dtype=np.float64), values, labels, s.incidents,
            corpus.normal_start, has_calendar=False))
    return out

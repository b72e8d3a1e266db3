"""Detector state snapshots: everything besides the pattern counts that scoring depends on
(per-source arrays, encoder lifecycles), so a restarted process continues exactly where the
last flush left off. Stored as an ``.npz`` (no pickle) with a JSON header.

This module is the format only: ``Detector.to_state`` gathers the parts (each bank's and each
lifecycle's own ``to_state``) and ``Detector.from_state`` gives them back.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from neurogate.engine.config import EngineConfig

FORMAT = "neurogate.detector-state/1"
META_NAME = "detector/state"
# State-shaping settings added after a store's state may have been written, each with the value
# that reproduces the engine before it: such a state is read as written under that value, so
# it resumes under it (and the refusal names the setting and the value to set).
ADDED_SETTINGS: dict[str, Any] = {"evidence.sustained": 0.0, "evidence.late_period": False,
                                  "evidence.trend": False, "evidence.weekend": False,
                                  "timezone": "UTC"}


def dump(config: EngineConfig, events_seen: int, banks: list[dict[str, Any]],
         arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise a detector's state: one JSON header per bank (field set) and its arrays,
    named ``b<bank>/<name>``."""
    header = {"format": FORMAT, "settings": config.state_settings(),
              "events_seen": events_seen, "banks": banks}
    out = dict(arrays)
    out["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **out)  # type: ignore[arg-type]  # uncompressed: flushes stay fast
    return buf.getvalue()


def load(blob: bytes, config: EngineConfig
         ) -> tuple[int, list[tuple[dict[str, Any], dict[str, np.ndarray]]]]:
    """Read a state written by ``dump`` under the same state-shaping settings as ``config``:
    (events seen, each bank's header and its arrays with the ``b<bank>/`` prefix taken off)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header: dict[str, Any] = json.loads(arrays.pop("header").tobytes())
    if header.get("format") != FORMAT:
        raise ValueError(f"unknown detector state format {header.get('format')!r}")
    _check_settings(header, config)
    banks = []
    for b, info in enumerate(header["banks"]):
        prefix = f"b{b}/"
        banks.append((info, {k[len(prefix):]: v for k, v in arrays.items()
                             if k.startswith(prefix)}))
    return int(header["events_seen"]), banks


def _check_settings(header: dict[str, Any], config: EngineConfig) -> None:
    """Refuse a state written under other state-shaping settings, naming each one."""
    if "settings" not in header:  # written before settings were compared one by one
        if header.get("config") != repr(config):
            raise ValueError("the store holds detector state written with a different engine "
                             "configuration; use the same configuration or start a fresh store")
        return
    saved = {**ADDED_SETTINGS, **header["settings"]}
    now = json.loads(json.dumps(config.state_settings()))  # as the header stores them
    diff = [f"{k} (stored {saved.get(k)!r}, now {now.get(k)!r})"
            for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
    if diff:
        raise ValueError(
            "the store holds detector state learned under other settings: " + "; ".join(diff)
            + ". These shape the learned state: use the stored values or start a fresh store "
            "(scoring-only settings such as threshold may change freely)")

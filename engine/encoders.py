"""Encoders by name: ``"fixed"`` (engine/encoder.py) and ``"neuronet"`` (engine/neuronet.py).

The name is the encoder's ``name``, the table of the configuration that sets it up
(``[fixed]``, ``[neuronet]``), the first part of its artifact's key in the store
(``encoder/<name>/<version>``) and what a saved detector state calls it. ``build`` makes
the encoder a configuration names, ``load`` reads an artifact back, ``restore`` finds the
encoder a saved state names; an unknown name is an error that lists the known ones.

Examples
--------
>>> from neurogate.engine.config import EngineConfig
>>> enc = build("fixed", EngineConfig(), channels=2)
>>> enc.name, load("fixed", enc.to_bytes()).version == enc.version
('fixed', True)
>>> build("neurogate", EngineConfig(), channels=1)
Traceback (most recent call last):
...
ValueError: unknown encoder 'neurogate'; known: fixed, neuronet
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurogate.engine.config import EngineConfig
from neurogate.engine.encoder import Encoder, FixedEncoder
from neurogate.engine.neuronet import NeuroNet

BUILTIN = Path(__file__).resolve().parent / "pretrained" / "neuronet.npz"


def load_pretrained(setting: str, channels: int) -> NeuroNet | None:
    """The NeuroNet named by ``neuronet.pretrained`` ("" none, "builtin", or a file path),
    or None when it is not set or encodes another number of channels."""
    if not setting:
        return None
    path = BUILTIN if setting == "builtin" else Path(setting)
    if not path.is_file():
        raise ValueError(f"neuronet.pretrained: no NeuroNet file at {path}")
    net = NeuroNet.load(path)
    return net if net.channels == channels else None


@dataclass(frozen=True)
class Kind:
    """How an encoder of one name is built from the configuration (None: the configuration
    sets up none, e.g. no pretrained NeuroNet) and read back from its artifact."""

    build: Callable[[EngineConfig, int], Encoder | None]
    load: Callable[[bytes, str], Encoder]


REGISTRY: dict[str, Kind] = {
    "fixed": Kind(lambda config, channels: FixedEncoder(config.fixed, channels=channels),
                  FixedEncoder.from_bytes),
    # a NeuroNet is trained, not built: the configuration can name a pretrained one
    "neuronet": Kind(lambda config, channels: load_pretrained(config.neuronet.pretrained,
                                                              channels),
                     NeuroNet.from_bytes),
}


def kind(name: str) -> Kind:
    """The registry entry of ``name``; ValueError naming the known ones if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(REGISTRY))}"
                         ) from None


def build(name: str, config: EngineConfig, channels: int) -> Encoder | None:
    """The encoder of ``name`` that ``config`` sets up for sources of ``channels`` channels."""
    return kind(name).build(config, channels)


def load(name: str, blob: bytes, where: str = "") -> Encoder:
    """Read an artifact (``Encoder.to_bytes``) of an encoder of ``name``."""
    return kind(name).load(blob, where or f"{name} artifact")


def restore(slot: dict[str, Any], config: EngineConfig, channels: int,
            artifact: Callable[[str], bytes | None]) -> Encoder:
    """The encoder a saved state names (``name``, ``version``, served ``levels``): its
    artifact (``artifact``, the store's ``get_meta``) or else what ``config`` builds (the fixed
    codes; a pretrained NeuroNet serves from the first event, before a flush saved it), which
    must have the saved version."""
    name, version = slot["name"], slot["version"]
    key = f"encoder/{name}/{version}"
    blob = None if name == "fixed" else artifact(key)  # fixed codes are never stored
    enc = load(name, blob, key) if blob is not None else build(name, config, channels)
    if enc is None or enc.version != version:
        if name == "fixed":
            raise ValueError("fixed encoder settings changed since the state was written")
        raise ValueError(f"encoder artifact {name}/{version} missing from store")
    if isinstance(enc, NeuroNet):
        levels = slot.get("levels") or list(enc.levels)
        return enc if len(levels) == enc.config.levels else enc.view(levels)
    return enc

"""Detector state snapshots: everything besides the pattern counts that scoring depends on
(per-source arrays, encoder lifecycle), so a restarted process continues exactly where the
last flush left off. Stored as an ``.npz`` (no pickle) with a JSON header."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from neurogate.engine.bank import Bank
from neurogate.engine.encoder import Encoder, FixedEncoder
from neurogate.engine.neuronet import NeuroNet
from neurogate.engine.shadow import Lifecycle, load_pretrained

if TYPE_CHECKING:
    from neurogate.engine.detector import Detector

FORMAT = "neurogate.detector-state/1"
META_NAME = "detector/state"


def dump(det: Detector) -> bytes:
    """Serialise ``det``'s state (not its counts) to bytes."""
    arrays: dict[str, np.ndarray] = {}
    banks = []
    for b, (fields, bank) in enumerate(det.banks.items()):
        st = bank.state
        for name, arr in st.arrays.items():
            arrays[f"b{b}/{name}"] = arr[: st.size]
        lc = det.lifecycles[fields]
        slots = []
        for s, slot in enumerate(lc.slots):
            arrays[f"b{b}/slot{s}/uni_sum"] = slot.uni_sum
            arrays[f"b{b}/slot{s}/by_label"] = slot.by_label
            slots.append({"name": slot.encoder.name, "version": slot.encoder.version,
                          "trained_at": slot.trained_at, "shadowed": slot.shadowed,
                          "levels": list(getattr(slot.encoder, "levels", []))})
        pending = None
        if lc.pending is not None:  # a job in flight: its payload restarts it on resume
            arrays[f"b{b}/pending"] = np.frombuffer(lc.pending.payload, dtype=np.uint8)
            arrays[f"b{b}/pending_rows"] = lc.pending.rows
            pending = {"started_at": lc.pending.started_at, "due_at": lc.pending.due_at}
        banks.append({
            "fields": list(fields), "sources": bank.sources, "slots": slots,
            "serving": {str(k): v for k, v in lc.serving.items()}, "candidate": lc.candidate,
            "last_train": lc.last_train, "reports": lc.reports, "decisions": lc.decisions,
            "perplexity": lc.perplexity, "pending": pending,
            "aucs": {v: {str(lv): a.tolist() for lv, a in levels.items()}
                     for v, levels in lc.aucs.items()},
        })
    header = {"format": FORMAT, "settings": det.config.state_settings(),
              "events_seen": det.events_seen, "banks": banks}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # uncompressed: flushes stay fast
    return buf.getvalue()


def load(det: Detector, blob: bytes) -> None:
    """Restore a state written by ``dump`` into a fresh detector with the same configuration."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header: dict[str, Any] = json.loads(arrays.pop("header").tobytes())
    if header.get("format") != FORMAT:
        raise ValueError(f"unknown detector state format {header.get('format')!r}")
    _check_settings(header, det)
    det.events_seen = int(header["events_seen"])
    for b, info in enumerate(header["banks"]):
        fields = tuple(info["fields"])
        slots = info["slots"]
        encoders: list[Encoder] = [_encoder(det, s, len(fields)) for s in slots]
        fixed = encoders[0]
        assert isinstance(fixed, FixedEncoder)
        lc = Lifecycle(det.config, fixed, len(fields), fresh=False)
        for enc, s in zip(encoders[1:], slots[1:], strict=True):
            lc._add_slot(enc, int(s["trained_at"]))
        for s, (slot, meta) in enumerate(zip(lc.slots, slots, strict=True)):
            slot.uni_sum = arrays[f"b{b}/slot{s}/uni_sum"]
            slot.by_label = arrays[f"b{b}/slot{s}/by_label"]
            slot.shadowed = int(meta["shadowed"])
        lc.serving = {int(k): int(v) for k, v in info["serving"].items()}
        lc.candidate = info["candidate"]
        lc.last_train = int(info["last_train"])
        lc.reports = list(info["reports"])
        lc.decisions = list(info["decisions"])
        lc.perplexity = dict(info["perplexity"])
        lc.aucs = {v: {int(lv): np.array(a, dtype=np.float64) for lv, a in levels.items()}
                   for v, levels in info["aucs"].items()}
        if info["pending"] is not None:
            lc.resume_job(int(info["pending"]["started_at"]), int(info["pending"]["due_at"]),
                          arrays[f"b{b}/pending_rows"], arrays[f"b{b}/pending"].tobytes())
        bank = Bank(fields, lc.window, det.config)
        bank.given_ranges = det._given_ranges
        size = len(info["sources"])
        bank.state.add(size)
        for name in bank.state.arrays:
            bank.state.arrays[name][:size] = arrays[f"b{b}/{name}"]
        bank.sources = list(info["sources"])
        det.banks[fields] = bank
        det.lifecycles[fields] = lc
        for row, source in enumerate(bank.sources):
            det._sources[source] = (bank, row)


def _check_settings(header: dict[str, Any], det: Detector) -> None:
    """Refuse a state written under other state-shaping settings, naming each one."""
    if "settings" not in header:  # written before settings were compared one by one
        if header.get("config") != repr(det.config):
            raise ValueError("the store holds detector state written with a different engine "
                             "configuration; use the same configuration or start a fresh store")
        return
    saved = header["settings"]
    now = json.loads(json.dumps(det.config.state_settings()))  # as the header stores them
    diff = [f"{k} (stored {saved.get(k)!r}, now {now.get(k)!r})"
            for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
    if diff:
        raise ValueError(
            "the store holds detector state learned under other settings: " + "; ".join(diff)
            + ". These shape the learned state: use the stored values or start a fresh store "
            "(scoring-only settings such as threshold may change freely)")


def _encoder(det: Detector, slot: dict[str, Any], channels: int) -> Encoder:
    if slot["name"] == "fixed":
        enc = FixedEncoder(det.config.fixed, channels=channels)
        if enc.version != slot["version"]:
            raise ValueError("fixed encoder settings changed since the state was written")
        return enc
    blob = det.store.get_meta(f"encoder/{slot['name']}/{slot['version']}")
    if blob is not None:
        net = NeuroNet.from_bytes(blob, f"encoder/{slot['name']}/{slot['version']}")
    else:
        pretrained = load_pretrained(det.config.neuronet.pretrained, channels)
        if pretrained is None or pretrained.version != slot["version"]:
            raise ValueError(f"encoder artifact {slot['name']}/{slot['version']} missing from "
                             "store")
        net = pretrained  # served from the first event, before any flush saved it
    levels = slot.get("levels") or list(net.levels)
    return net if len(levels) == net.config.levels else net.view(levels)

"""Reading a run's result records back (JSONL or CSV, as ``neurogate run --out`` writes them)
and saying in words why an event was flagged: ``neurogate explain``, ``neurogate.detect``'s
explanation column and the HTML report share these words."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FAMILY_WORDS = {
    "patterns": "its recent pattern of values is rare",
    "relation": "{channel} strays from what the other channels predict",
    "deviation": "{channel} is far from {forecast}",
    "stuck": "{channel} repeats one value",  # relation, driven by a stuck channel's repeats
}
# what the deviation family judged its channel against (records' families.deviation.forecast)
FORECAST_WORDS = {
    "baseline": "its usual level",
    "seasonal": "its usual value at this point of its cycle",
    "daily": "its usual value at this time of day",
    "trend": "its local trend",
    "": "what its own history forecasts",  # a record written before the forecast was named
}
# the fixed encoder's trend bins (engine/encoder.py: cut at -trend_step, 0, +trend_step)
TREND_WORDS = ("falling sharply", "falling slightly", "steady or rising slightly",
               "rising sharply")
_JSON_COLUMNS = ("values", "families", "evidence", "explanation")
_BOOL_COLUMNS = ("flagged", "suppressed", "extreme", "escalation")
_FLOAT_COLUMNS = ("ts", "score", "posterior", "threshold")


class NotResults(ValueError):
    """The file is not the output of ``neurogate run --out``."""


# -- reading -------------------------------------------------------------------------------------


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a results file, as the JSONL lines were written (CSV rows are turned back
    into the same types: numbers, booleans, the JSON columns parsed). Raises ``NotResults``."""
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
        f.seek(0)
        if first.lstrip().startswith("{") or path.suffix == ".jsonl":
            yield from _jsonl(path, f)
        else:
            yield from _csv(path, f)


def _jsonl(path: Path, lines: Any) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise NotResults(f"{path}:{n}: not a JSON line (explain reads the .jsonl or .csv "
                             "that neurogate run --out writes)") from None
        if not isinstance(rec, dict) or "score" not in rec or "source" not in rec:
            raise NotResults(f"{path}:{n}: not a neurogate result record (no source/score)")
        yield rec


def _csv(path: Path, f: Any) -> Iterator[dict[str, Any]]:
    import csv  # here, not at the top: the command line starts without it (bench/startup.py)

    reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
    if not {"source", "score", "flagged"} <= set(reader.fieldnames or ()):
        raise NotResults(f"{path}: not a neurogate results file (a .jsonl, or a .csv with the "
                         "columns source, score and flagged, as neurogate run --out writes)")
    for n, row in enumerate(reader, 2):
        rec: dict[str, Any] = {}
        try:
            for key, text in row.items():
                if text in ("", None):
                    continue
                if key in _JSON_COLUMNS:
                    rec[key] = json.loads(text)
                elif key in _BOOL_COLUMNS:
                    rec[key] = text == "True"
                elif key in _FLOAT_COLUMNS:
                    rec[key] = float(text)
                elif key is not None:
                    rec[key] = text
        except (ValueError, json.JSONDecodeError) as exc:
            raise NotResults(f"{path}:{n}: unreadable results row ({exc})") from None
        rec.setdefault("flagged", False)
        yield rec


# -- words ---------------------------------------------------------------------------------------


def summary(rec: dict[str, Any]) -> str:
    """One line saying why a flagged record was flagged ("" when it was not): the new-extreme
    rule, or each evidence family below 1 % tail probability, strongest first.

    >>> summary({"flagged": True, "families": {"patterns": {"p": 0.2},
    ...          "relation": {"p": 2e-5, "channel": "b"}}})
    'b strays from what the other channels predict (tail probability 2e-05)'
    >>> summary({"flagged": True, "families": {"relation": {"p": 1e-9, "channel": "b",
    ...                                                      "stuck": True}}})
    'b repeats one value (tail probability 1e-09)'
    >>> summary({"flagged": True, "families": {"deviation": {"p": 3e-6, "channel": "cpu",
    ...                                                       "forecast": "daily"}}})
    'cpu is far from its usual value at this time of day (tail probability 3e-06)'
    >>> summary({"flagged": True, "families": {"patterns": {"p": 2e-5}}, "interval_events": 5})
    ... # doctest: +NORMALIZE_WHITESPACE
    'its recent pattern of values is rare (tail probability 2e-05, per event;
     the score reads it over its 5 events per score_interval)'
    """
    if not rec.get("flagged"):
        return ""
    if rec.get("extreme"):
        return "a value outside everything seen so far"
    fams = rec.get("families") or {}
    parts = sorted((f["p"], name) for name, f in fams.items() if f["p"] < 0.01)
    if not parts:
        parts = sorted((f["p"], name) for name, f in fams.items())[:1]
    over = (f", per event; the score reads it over its {rec['interval_events']:g} events per "
            "score_interval" if rec.get("interval_events") else "")
    return "; ".join(
        FAMILY_WORDS["stuck" if fams[name].get("stuck") else name].format(
            channel=fams[name].get("channel", "a channel"),
            forecast=FORECAST_WORDS.get(fams[name].get("forecast", ""), FORECAST_WORDS[""]))
        + f" (tail probability {p:.2g}{over})" for p, name in parts)


SPACING_STEPS = 1000  # steps per source read for its spacing (its median settles well before)


def spacing(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Each source's typical time between events (the median of its first SPACING_STEPS steps,
    seconds), from a file that holds every event (``run --all-scores``); {} from flagged events
    alone (their gaps say nothing) or sequence-number timestamps (no ``time``)."""
    last: dict[str, float] = {}
    steps: dict[str, list[float]] = {}
    every = False
    for r in records:
        every = every or not r.get("flagged")
        src, ts = str(r.get("source")), r.get("ts")
        if not r.get("time") or ts is None or len(steps.get(src, ())) >= SPACING_STEPS:
            continue
        if src in last and ts > last[src]:
            steps.setdefault(src, []).append(ts - last[src])
        last[src] = ts
    from statistics import median  # 5 ms to import: only when a file is explained

    return {src: median(s) for src, s in steps.items()} if every else {}


def duration(seconds: float) -> str:
    """A number of seconds, readably.

    >>> duration(90), duration(7200), duration(3 * 86400)
    ('1.5 min', '2 h', '3 d')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def time_scale(ev: dict[str, Any], step: float | None) -> str:
    """The level and the span it reads: level 0 is each event, level l >= 1 the mean of
    2**l events (``dilation``), stepped by that many events.

    >>> time_scale({"level": 3, "dilation": 8, "stream": "level"}, 60.0)
    'level 3 (means of 8 events, 8 min)'
    """
    d = int(ev.get("dilation", 2 ** ev["level"]))
    span = f", {duration(d * step)}" if step else ""
    if ev.get("stream") == "level":
        return f"level {ev['level']} (means of {d} events{span})"
    if ev.get("stream") == "change":
        return "change stream (did the value change from the event before)"
    return f"level {ev['level']} (each event{span})" if d == 1 else \
        f"level {ev['level']} (steps of {d} events{span})"


def _band(u_bin: int, bins: int, rng: list[float] | None, short: bool = False) -> str:
    """Bin 1..bins of the warm-up range, 0 below it, bins + 1 above it, in the value's units
    (``short``: without them)."""
    if u_bin <= 0:
        return "below the warm-up range" + (f" (< {rng[0]:.4g})" if rng and not short else "")
    if u_bin > bins:
        return "above the warm-up range" + (f" (> {rng[1]:.4g})" if rng and not short else "")
    if not rng or short:
        return f"band {u_bin}/{bins}"
    lo, hi = rng
    a, b = lo + (hi - lo) * (u_bin - 1) / bins, lo + (hi - lo) * u_bin / bins
    return f"band {u_bin}/{bins} of the warm-up range ({a:.4g} to {b:.4g})"


def decode(ev: dict[str, Any], code: int, short: bool = False) -> str:
    """One code of an evidence stream in words (engine/encoder.py's fixed codes; a NeuroNet
    code has no fixed meaning and is named by its number); ``short``: bands without units.

    >>> ev = {"stream": "level", "vocab": 24, "range": [0.0, 40.0]}
    >>> decode(ev, 3 * 4 + 3)
    'mean in band 3/4 of the warm-up range (20 to 30), rising sharply'
    >>> decode(ev, 3 * 4 + 3, short=True)
    'band 3/4 rising sharply'
    >>> decode({"stream": "value", "vocab": 34, "range": [0.0, 32.0]}, 33)
    'value above the warm-up range (> 32)'
    """
    kind, vocab, rng = ev.get("stream"), int(ev.get("vocab", 0)), ev.get("range")
    if kind == "value":
        band = _band(code, vocab - 2, rng, short)
        return band if short else f"value {'in ' * band.startswith('band')}{band}"
    if kind == "level":
        band = _band(code // 4, vocab // 4 - 2, rng, short)
        if short:
            return f"{band} {TREND_WORDS[code % 4]}"
        return f"mean {'in ' * band.startswith('band')}{band}, {TREND_WORDS[code % 4]}"
    if kind == "change":
        return "changed" if code else "unchanged"
    return f"code {code} of {vocab}" if vocab else f"code {code}"


def evidence_line(ev: dict[str, Any], step: float | None = None) -> str:
    """One evidence stream of a flagged event in words: channel, time scale, the code now and
    the two before it (its context), how often that was seen, and its surprise."""
    codes = ev.get("codes")
    name = ev.get("field") or (f"channel {ev['channel']}" if ev["channel"] >= 0
                               else "all channels")
    head = f"{name}, {time_scale(ev, step)}"
    if ev.get("encoder", "fixed") != "fixed":
        head += f", {ev['encoder']} encoder"
    if not codes:  # a record written before the codes were recorded
        return (f"{head}: pattern {ev['pattern']} seen {ev['count']}x, "
                f"p={ev['probability']:.3g}, surprise {ev['surprise']:.2f} nats")
    now = decode(ev, codes[2])
    before = ", ".join(decode(ev, c, short=True) for c in codes[:2])
    ctx = ev.get("context_count", 0)
    seen = ("never seen before" if ev["count"] == 0 else
            f"seen {ev['count']} time{'s' if ev['count'] != 1 else ''}")
    p = ev["probability"]  # records keep 6 decimals
    return (f"{head}: {now}, after [{before}]: {seen} in the {ctx} time{'s' if ctx != 1 else ''}"
            f" this context occurred ({f'p={p:.3g}' if p else 'p<1e-06'}, surprise "
            f"{ev['surprise']:.2f} nats)")


USUAL = 1.0  # nats: a stream less surprising than this (p > 0.37) is summed up, not listed


def describe(rec: dict[str, Any], step: float | None = None) -> list[str]:
    """A flagged record as readable lines: header, values, why, then the evidence streams that
    were surprising (at least USUAL nats; the most surprising one always), most first, and how
    many others were as usual."""
    when = f"{rec['time']}  ts={rec.get('ts')}" if rec.get("time") else f"ts={rec.get('ts')}"
    score = rec.get("score")
    lines = [f"{rec['source']}  {when}  id={rec.get('id')}  "
             f"score={score if score is None else f'{score:.4f}'}"
             f"{'  NEW EXTREME' if rec.get('extreme') else ''}"
             f"{'  ESCALATION (the same incident, worse)' if rec.get('escalation') else ''}"
             f"  model={rec.get('model_version')}"]
    values = rec.get("values")
    if values:
        lines.append("  values: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    why = summary(rec)
    if why:
        lines.append(f"  why: {why}")
    if rec.get("posterior") is not None:
        lines.append(f"  log-odds anomaly vs normal: {rec['posterior']:.4f}")
    evidence = sorted(rec.get("evidence", []), key=lambda e: -e.get("surprise", 0.0))
    shown = [ev for k, ev in enumerate(evidence) if k == 0 or ev.get("surprise", 0.0) >= USUAL]
    lines.extend(f"  {evidence_line(ev, step)}" for ev in shown)
    if len(evidence) > len(shown):
        lines.append(f"  {len(evidence) - len(shown)} other code streams as usual "
                     f"(surprise below {USUAL:g} nat each)")
    lines.extend(f"  {text}" for text in rec.get("explanation", []))
    return lines

"""A run as one self-contained HTML page: per source, its values, score, threshold, flags and
incidents, drawn as inline SVG (no script, no network: the file opens anywhere, offline).

``neurogate report RUN.jsonl -o out.html`` draws a run's ``--out`` file (JSONL or CSV; with
``--all-scores`` it has the whole series, else the flagged events only), ``neurogate run
--report out.html`` draws the run as it scores. Memory is bounded whatever the run's length:
per source at most MAX_POINTS points (every k-th event, k doubling as the run grows, so a
spike between two kept points is shown by its flag marker, not by the line), MAX_FLAGS flags
and MAX_INCIDENTS incidents, for at most MAX_SOURCES sources (the others are counted).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurogate.cli.results import NotResults, read_records, summary

if TYPE_CHECKING:
    from neurogate.engine.detector import BatchResult
    from neurogate.engine.events import Event

MAX_POINTS = 2000  # per source: ~2x the pixels of a chart; 2000 x (8 + 8 x fields) bytes
MAX_FLAGS = 2000  # flag markers per source (the rest are counted)
MAX_INCIDENTS = 200  # incidents per source in its table (the rest are counted)
MAX_SOURCES = 200  # sources drawn (a 200-source page is ~10 MB of SVG at most)
MAX_FIELDS = 8  # value charts per source
GAP = 10  # flags at most this many events apart belong to one incident
W, H_VALUES, H_SCORE, PAD = 900, 150, 110, 48  # chart geometry (SVG user units)
COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2")


@dataclass
class Incident:
    """Consecutive flags of a source (at most GAP events apart)."""

    start: float
    end: float
    flags: int
    peak: float
    why: str
    last: float  # event number of its last flag (or its time, in a file of flags only)


@dataclass
class SourceSeries:
    """One source's share of the report, bounded (see the module docstring)."""

    fields: tuple[str, ...]
    events: int = 0
    flagged: int = 0
    threshold: float = math.nan
    calendar: bool = False
    stride: int = 1
    points: list[tuple[float, float, tuple[float | None, ...]]] = field(default_factory=list)
    flags: list[tuple[float, float, tuple[float | None, ...], str]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    incidents_dropped: int = 0

    def add(self, ts: float, score: float, values: tuple[float | None, ...], flagged: bool,
            why: str, gap: float | None) -> None:
        """One event; ``gap``: how many seconds apart two flags of one incident may be (None:
        GAP events, when every event is added)."""
        n = self.events
        self.events += 1
        if n % self.stride == 0:
            self.points.append((ts, score, values))
            if len(self.points) >= MAX_POINTS:
                self.points = self.points[::2]
                self.stride *= 2
        if not flagged:
            return
        self.flagged += 1
        if len(self.flags) < MAX_FLAGS:
            self.flags.append((ts, score, values, why))
        at, most = (float(n), GAP) if gap is None else (ts, gap)
        last = self.incidents[-1] if self.incidents else None
        if last is not None and at - last.last <= most:
            last.end, last.flags, last.last = ts, last.flags + 1, at
            if score > last.peak:
                last.peak, last.why = score, why
        elif len(self.incidents) < MAX_INCIDENTS:
            self.incidents.append(Incident(ts, ts, 1, score, why, at))
        else:
            self.incidents_dropped += 1


class Report:
    """What the page shows, gathered event by event (``add``, ``add_batch``) or from records."""

    def __init__(self, title: str, every_event: bool = True) -> None:
        self.title = title
        self.every_event = every_event  # False: a file of flagged events only
        self.sources: dict[str, SourceSeries] = {}
        self.dropped_sources: set[str] = set()  # bounded by the input's sources, names only

    def add(  # noqa: PLR0913  (one event's columns)
            self, source: str, ts: float | None, fields: tuple[str, ...],
            values: tuple[float | None, ...], score: float | None, flagged: bool,
            threshold: float, calendar: bool, why: str = "", gap: float | None = None) -> None:
        """One event of ``source``: its ``values`` of ``fields`` (a source keeps the fields of
        its first event: a value of another field is not drawn)."""
        if ts is None or score is None:  # rejected events are not drawn
            return
        s = self.sources.get(source)
        if s is None:
            if len(self.sources) >= MAX_SOURCES:
                if len(self.dropped_sources) < 100_000:
                    self.dropped_sources.add(source)
                return
            s = self.sources[source] = SourceSeries(fields)
        s.threshold, s.calendar = threshold, calendar
        if fields != s.fields:
            values = tuple(dict(zip(fields, values, strict=True)).get(f) for f in s.fields)
        s.add(ts, score, values, flagged, why, gap)

    def add_batch(self, events: Sequence[Event], out: BatchResult) -> None:
        """A batch as ``Detector.process_many`` scored it (``run --report``)."""
        # lists, not numpy scalars: 1.7 us an event in all (demo stream, 40,000 events)
        status, score, flagged = out.status.tolist(), out.score.tolist(), out.flagged.tolist()
        for i, e in enumerate(events):
            if status[i] == 2:  # rejected
                continue
            why = summary(out.result(i).as_dict()) if flagged[i] else ""
            self.add(e.source, e.ts, e.fields, e.values, score[i], flagged[i], out.threshold,
                     e.has_calendar, why)

    @classmethod
    def from_file(cls, path: Path, title: str) -> Report:
        """From a run's --out file, read twice (never held in memory): the whole series if the
        file holds every event, else (flags only) incidents merge flags at most GAP times the
        source's smallest gap between two flags apart (consecutive events flag together often
        enough to show the spacing). Raises ``NotResults``."""
        every = False
        gaps: dict[str, float] = {}  # two floats per source of the file
        last: dict[str, float] = {}
        for r in read_records(path):
            every = every or not r.get("flagged")
            src, ts = str(r.get("source")), r.get("ts")
            if ts is not None and src in last and ts > last[src]:
                gaps[src] = min(gaps.get(src, math.inf), ts - last[src])
            if ts is not None:
                last[src] = ts
        rep = cls(title, every_event=every)
        for r in read_records(path):
            src = str(r.get("source"))
            values = r.get("values") or {}
            rep.add(src, r.get("ts"), tuple(values), tuple(values.values()), r.get("score"),
                    bool(r.get("flagged")), float(r.get("threshold", math.nan)),
                    bool(r.get("time")), summary(r) if r.get("flagged") else "",
                    None if every else GAP * gaps.get(src, 0.0))
        return rep

    def html(self) -> str:
        return render(self)


# -- drawing -------------------------------------------------------------------------------------


def _e(text: object) -> str:
    from html import escape  # here: html.entities costs the command line's start 3 ms

    return escape(str(text), quote=True)


def _when(ts: float, calendar: bool) -> str:
    from neurogate.engine.detector import iso_time

    return (iso_time(ts) or f"{ts:g}") if calendar else f"{ts:g}"


class _Axes:
    """Maps (ts, y) into a chart's SVG coordinates."""

    def __init__(self, t0: float, t1: float, y0: float, y1: float, height: int) -> None:
        self.t0, self.t1 = t0, t1 if t1 > t0 else t0 + 1.0
        self.low, self.high = y0, y1  # the data's range (labelled), drawn with 5 % room
        pad = (y1 - y0) * 0.05 or max(abs(y0) * 0.05, 1.0)
        self.y0, self.y1 = y0 - pad, y1 + pad
        self.height = height

    def x(self, t: float) -> float:
        return PAD + (W - PAD - 8) * (t - self.t0) / (self.t1 - self.t0)

    def y(self, v: float) -> float:
        return 8 + (self.height - 28) * (1 - (v - self.y0) / (self.y1 - self.y0))


def _frame(ax: _Axes, calendar: bool, label: str) -> list[str]:
    """Axes box, y range and 3 time labels."""
    bottom = ax.height - 20
    out = [f'<rect class="frame" x="{PAD}" y="8" width="{W - PAD - 8}" height="{bottom - 8}" '
           'fill="none" stroke="#ccc"/>',
           f'<text x="4" y="{ax.y(ax.high) + 4:.1f}" font-size="10">{_e(f"{ax.high:.4g}")}</text>',
           f'<text x="4" y="{ax.y(ax.low) + 4:.1f}" font-size="10">{_e(f"{ax.low:.4g}")}</text>',
           f'<text x="4" y="{(bottom + 8) / 2}" font-size="10" font-weight="bold">'
           f'{_e(label)}</text>']
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        t = ax.t0 + frac * (ax.t1 - ax.t0)
        out.append(f'<text x="{ax.x(t):.1f}" y="{ax.height - 6}" font-size="10" '
                   f'text-anchor="{anchor}">{_e(_when(t, calendar))}</text>')
    return out


def _incident_bands(s: SourceSeries, ax: _Axes) -> list[str]:
    bottom = ax.height - 20
    return [f'<rect class="incident" x="{ax.x(i.start) - 2:.1f}" y="8" '
            f'width="{max(ax.x(i.end) - ax.x(i.start), 0) + 4:.1f}" height="{bottom - 8}" '
            f'fill="#d62728" fill-opacity="0.12"><title>{_e(_incident_text(i, s))}</title></rect>'
            for i in s.incidents]


def _incident_text(i: Incident, s: SourceSeries) -> str:
    return (f"incident {_when(i.start, s.calendar)} to {_when(i.end, s.calendar)}: {i.flags} "
            f"flag(s), peak score {i.peak:.3f}")


def _polyline(pts: list[tuple[float, float]], ax: _Axes, cls: str, colour: str) -> str:
    coords = " ".join(f"{ax.x(t):.1f},{ax.y(v):.1f}" for t, v in pts)
    return (f'<polyline class="{cls}" points="{coords}" fill="none" stroke="{colour}" '
            'stroke-width="1.2"/>')


def _flag_marks(flags: list[tuple[float, float, str]], ax: _Axes, s: SourceSeries) -> list[str]:
    return [f'<circle class="flag" cx="{ax.x(t):.1f}" cy="{ax.y(v):.1f}" r="3.5" fill="#d62728">'
            f'<title>{_e(_when(t, s.calendar))}: {_e(why)}</title></circle>'
            for t, v, why in flags]


def _svg(kind: str, height: int, body: list[str]) -> str:
    return (f'<svg class="chart {kind}" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img">' + "".join(body) + "</svg>")


def _charts(s: SourceSeries) -> list[str]:
    times = [p[0] for p in s.points] + [f[0] for f in s.flags]
    t0, t1 = min(times), max(times)
    out = []
    for k, name in enumerate(s.fields[:MAX_FIELDS]):
        line = [(t, y) for t, _, v in s.points if (y := v[k]) is not None]
        marks = [(t, y, why) for t, _, v, why in s.flags if (y := v[k]) is not None]
        ys = [v for _, v in line] + [v for _, v, _ in marks]
        if not ys:
            continue
        ax = _Axes(t0, t1, min(ys), max(ys), H_VALUES)
        body = [*_frame(ax, s.calendar, name), *_incident_bands(s, ax)]
        if line and s.flagged < s.events:  # a file of flags only has no line to draw
            body.append(_polyline(line, ax, "series", COLOURS[k % len(COLOURS)]))
        body += _flag_marks(marks, ax, s)
        out.append(_svg("values", H_VALUES, body))
    ax = _Axes(t0, t1, 0.0, 1.0, H_SCORE)
    body = [*_frame(ax, s.calendar, "score"), *_incident_bands(s, ax)]
    if s.points and s.flagged < s.events:
        body.append(_polyline([(t, sc) for t, sc, _ in s.points], ax, "score-line", "#444"))
    if not math.isnan(s.threshold):
        y = ax.y(s.threshold)
        body.append(f'<line class="threshold" x1="{PAD}" x2="{W - 8}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="#ff7f0e" stroke-dasharray="5,3"><title>threshold '
                    f'{s.threshold:g}</title></line>')
    body += _flag_marks([(t, sc, why) for t, sc, _, why in s.flags], ax, s)
    out.append(_svg("score", H_SCORE, body))
    return out


def _section(name: str, s: SourceSeries, every_event: bool) -> str:
    shown = (f", {len(s.flags):,} drawn" if len(s.flags) < s.flagged else "")
    parts = [f'<section class="source" data-source="{_e(name)}">',
             f"<h2>{_e(name)}</h2>",
             f'<p class="stats">{f"{s.events:,} events, " if every_event else ""}'
             f'{s.flagged:,} flagged{shown}, {len(s.incidents) + s.incidents_dropped:,} '
             f'incident(s); threshold {s.threshold:g}; values: {_e(", ".join(s.fields))}'
             f'{f"; one point per {s.stride} events" if s.stride > 1 else ""}</p>',
             *_charts(s)]
    if s.incidents:
        rows = "".join(
            f"<tr><td>{_e(_when(i.start, s.calendar))}</td><td>{_e(_when(i.end, s.calendar))}"
            f"</td><td>{i.flags}</td><td>{i.peak:.3f}</td><td>{_e(i.why)}</td></tr>"
            for i in s.incidents)
        more = (f"<p>... and {s.incidents_dropped:,} more incidents</p>"
                if s.incidents_dropped else "")
        parts.append('<table class="incidents"><thead><tr><th>start</th><th>end</th>'
                     "<th>flags</th><th>peak score</th><th>why (at the peak)</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>{more}")
    parts.append("</section>")
    return "\n".join(parts)


_STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px}h2{font-size:16px;margin:28px 0 4px}.stats{color:#555;margin:0 0 6px}
svg{display:block;margin:4px 0;background:#fff}nav a{margin-right:10px}
table{border-collapse:collapse;font-size:12px;margin-top:6px}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
td:not(:last-child){white-space:nowrap}"""


def render(rep: Report) -> str:
    """The page: a summary, a link per source, and a section per source."""
    total = sum(s.events for s in rep.sources.values())
    flagged = sum(s.flagged for s in rep.sources.values())
    note = ("" if rep.every_event else
            '<p class="note">This file holds flagged events only: run with --all-scores (or '
            "use run --report) to draw the whole series.</p>")
    dropped = (f"<p>{len(rep.dropped_sources):,} more sources not drawn (at most "
               f"{MAX_SOURCES} per report).</p>" if rep.dropped_sources else "")
    nav = " ".join(f'<a href="#src-{k}">{_e(name)}</a>'
                   for k, name in enumerate(rep.sources))
    sections = "\n".join(
        _section(name, s, rep.every_event).replace('<section class="source"',
                                                    f'<section id="src-{k}" class="source"', 1)
        for k, (name, s) in enumerate(rep.sources.items()))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(rep.title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{_e(rep.title)}</h1>\n<p class=\"summary\">{len(rep.sources):,} source(s), "
            f"{total:,} events, {flagged:,} flagged. Red dots: flagged events (hover for why); "
            f"shaded: incidents; dashed: the threshold.</p>{note}{dropped}\n<nav>{nav}</nav>\n"
            f"{sections}\n</body></html>\n")


# -- command -------------------------------------------------------------------------------------


def write(rep: Report, path: Path) -> None:
    path.write_text(rep.html(), encoding="utf-8")


def cmd_report(args: argparse.Namespace) -> int:
    """``neurogate report RESULTS -o OUT.html``."""
    from neurogate.cli.boundary import EXIT_OK, UserError

    path = Path(args.results)
    if not path.is_file():
        raise UserError(f"results file not found: {path}")
    out = Path(args.output)
    if not out.parent.exists():
        raise UserError(f"output directory does not exist: {out.parent}")
    try:
        rep = Report.from_file(path, f"neurogate run: {path.name}")
    except NotResults as exc:
        raise UserError(str(exc)) from None
    write(rep, out)
    print(f"wrote report of {len(rep.sources)} source(s) to {out}")
    return EXIT_OK


def register(sub: Any) -> None:
    """``neurogate report RESULTS -o OUT.html``."""
    r = sub.add_parser("report", help="draw a run's --out file as one self-contained HTML page")
    r.add_argument("results", help="a run's --out file (.jsonl, .csv or .tsv; with --all-scores "
                   "for the whole series)")
    r.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    r.set_defaults(func=cmd_report)

"""Numenta Anomaly Benchmark (NAB) scoring, re-implemented from NAB's reference code.

Follows `SCORING.md` of the staged corpus (numenta/NAB @ ea702d75): probationary rows are dropped,
the earliest detection in a label window earns a scaled-sigmoid reward, detections outside windows
cost more the further they are from the previous window, each profile gets one corpus-wide
threshold found by sweeping every distinct anomaly score, and raw totals are normalised so the null
detector scores 0 and the perfect one 100. The corpus is read from the NAB root at run time (its
licence asks for the data to stay with LICENSE.txt); nothing of it is copied into this repository.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypedDict

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
"""Share of each file (capped at 15 % of 5000 rows) given to the detector to learn, not scored."""

NO_DETECTION_THRESHOLD = 1.1
"""Threshold NAB's sweep starts from: above every valid score, so nothing is detected."""


@dataclass(frozen=True)
class Profile:
    """Cost weights of one NAB application profile (NAB never reads tnWeight, so it is not kept)."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: Mapping[str, Profile] = {
    "standard": Profile(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": Profile(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": Profile(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}
"""NAB's three profiles, equal to `config/profiles.json` (see `load_profiles`)."""


def probation_length(n_rows: int) -> int:
    """Rows of NAB's probationary period: min(floor(15 % of the file), 15 % of 5000 = 750)."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * 5000))


@dataclass(frozen=True, eq=False)
class NabFile:
    """One data file of the corpus, its label windows as inclusive row ranges, its probation.

    `probation` is derived from the row count, so it always matches NAB. Windows must be sorted,
    disjoint, at least 2 rows wide (NAB divides by width - 1) and start after the probation (NAB's
    labeller drops windows that don't); the committed labels satisfy all of this.
    """

    name: str
    timestamps: list[str]
    epoch: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]
    probation: int = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.values)
        if len(self.timestamps) != n or len(self.epoch) != n:
            raise ValueError(
                f"{self.name}: timestamps ({len(self.timestamps)}), epoch ({len(self.epoch)}) "
                f"and values ({n}) must have the same length"
            )
        object.__setattr__(self, "probation", probation_length(n))
        first_free = self.probation
        for left, right in self.windows:
            if left < first_free:
                raise ValueError(
                    f"{self.name}: window {(left, right)} starts before row {first_free}; windows "
                    f"must be sorted, disjoint and after the {self.probation}-row probation"
                )
            if right - left < 1 or right >= n:
                raise ValueError(
                    f"{self.name}: window {(left, right)} must span >= 2 rows within 0..{n - 1}"
                )
            first_free = right + 1


@dataclass(frozen=True)
class FileScore:
    """NAB result of one file at one threshold; counts are of scored rows, as in NAB's tables."""

    name: str
    threshold: float
    raw: float
    tp: int
    tn: int
    fp: int
    fn: int
    missed_windows: int


class ProfileResult(TypedDict):
    """Corpus result for one profile: normalised score, its threshold, raw total and row counts."""

    score: float
    threshold: float
    raw: float
    tp: int
    tn: int
    fp: int
    fn: int
    missed_windows: int


def load_profiles(data_dir: Path) -> dict[str, Profile]:
    """Profiles from `<data_dir>/config/profiles.json`, or the built-in `PROFILES` if absent."""
    path = Path(data_dir) / "config" / "profiles.json"
    if not path.is_file():
        return dict(PROFILES)
    try:
        raw = json.loads(path.read_text())
        return {
            name: Profile(
                tp_weight=float(entry["CostMatrix"]["tpWeight"]),
                fp_weight=float(entry["CostMatrix"]["fpWeight"]),
                fn_weight=float(entry["CostMatrix"]["fnWeight"]),
            )
            for name, entry in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{path}: expected {{profile: {{'CostMatrix': {{'tpWeight', 'fpWeight', "
            f"'fnWeight': number}}}}}} ({type(exc).__name__}: {exc})"
        ) from exc


def load_corpus(data_dir: Path) -> list[NabFile]:
    """Read every file listed in `labels/combined_windows.json` of a NAB root, sorted by name.

    Window timestamps are matched to the file's rows exactly (after parsing both as datetimes),
    as NAB does; every CSV under `data/` must have a labels entry and vice versa.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"NAB root {root} is not a directory; expected data/<category>/<name>.csv and "
            "labels/combined_windows.json inside it"
        )
    labels_path = root / "labels" / "combined_windows.json"
    data_root = root / "data"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found; expected NAB's label windows file")
    if not data_root.is_dir():
        raise FileNotFoundError(f"{data_root} not found; expected data/<category>/<name>.csv")
    windows_by_file = _read_windows(labels_path)
    on_disk = {p.relative_to(data_root).as_posix() for p in data_root.glob("*/*.csv")}
    unlabelled = sorted(on_disk - windows_by_file.keys())
    if unlabelled:
        raise ValueError(f"{labels_path} has no entry for data files {unlabelled}")
    return [_load_file(data_root, name, windows_by_file[name]) for name in sorted(windows_by_file)]


def _read_windows(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Parse combined_windows.json: {"<category>/<file>.csv": [[start, end], ...]}."""
    expected = '{"<category>/<name>.csv": [["<start ts>", "<end ts>"], ...]}'
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); expected {expected}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected {expected}")
    windows: dict[str, list[tuple[str, str]]] = {}
    for name, pairs in raw.items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p)
            for p in pairs
        ):
            raise ValueError(f"{path}: entry {name!r} is not a list of [start, end]; {expected}")
        windows[name] = [(start, end) for start, end in pairs]
    return windows


def _load_file(data_root: Path, name: str, raw_windows: list[tuple[str, str]]) -> NabFile:
    """Read one `timestamp,value` CSV and map its label windows to row ranges."""
    path = data_root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; it is listed in the label windows file")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["timestamp", "value"]:
            raise ValueError(f"{path}: header must be 'timestamp,value', got {header}")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        if len(row) != 2:
            raise ValueError(f"{path}: line {line} has {len(row)} fields, expected timestamp,value")
    timestamps = [row[0] for row in rows]
    try:
        stamps = np.array(timestamps, dtype="datetime64[us]")
        values = np.array([row[1] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(
            f"{path}: expected 'YYYY-MM-DD HH:MM:SS' timestamps and numeric values ({exc})"
        ) from exc
    if np.isnat(stamps).any():
        raise ValueError(
            f"{path}: empty or NaT timestamp on line {int(np.isnat(stamps).argmax()) + 2}"
        )
    windows = [
        (_row_of(path, stamps, start), _row_of(path, stamps, end)) for start, end in raw_windows
    ]
    epoch = stamps.astype(np.int64) / 1e6
    return NabFile(name=name, timestamps=timestamps, epoch=epoch, values=values, windows=windows)


def _row_of(path: Path, stamps: np.ndarray, timestamp: str) -> int:
    """The single row whose timestamp equals a window boundary (NAB matches boundaries exactly)."""
    try:
        wanted = np.datetime64(timestamp)
    except ValueError as exc:
        raise ValueError(f"{path}: window boundary {timestamp!r} is not a timestamp") from exc
    rows = np.flatnonzero(stamps == wanted)
    if len(rows) != 1:
        raise ValueError(
            f"{path}: window boundary {timestamp!r} matches {len(rows)} rows, expected exactly one"
        )
    return int(rows[0])


def scaled_sigmoid(y: npt.ArrayLike) -> np.ndarray:
    """NAB's scaledSigmoid, elementwise: 2*sigmoid(-5y) - 1, and exactly -1 for y > 3.

    -1 (a window's left edge) -> 0.98661, 0 (its right edge) -> 0, 1 -> -0.98661.
    """
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 3.0, -1.0, 2.0 * (1.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0)))) - 1.0)


_MAX_TP = float(scaled_sigmoid(-1.0))


def _row_geometry(f: NabFile) -> tuple[np.ndarray, np.ndarray]:
    """Per row: index of its window (-1 outside) and NAB's unweighted sigmoid score.

    Inside a window ending at `right` with `width` rows: S(-(right - i + 1) / width). After a
    window: S(|prevRight - i| / (prevWidth - 1)). Before any window: -1.
    """
    n = len(f.values)
    window_of_row = np.full(n, -1, dtype=np.int64)
    unweighted = np.full(n, -1.0)
    bounds = [*f.windows, (n, n)]
    for k, (left, right) in enumerate(f.windows):
        width = float(right - left + 1)
        inside = np.arange(left, right + 1)
        window_of_row[left : right + 1] = k
        unweighted[left : right + 1] = scaled_sigmoid(-(right - inside + 1) / width)
        after = np.arange(right + 1, bounds[k + 1][0])
        unweighted[right + 1 : bounds[k + 1][0]] = scaled_sigmoid(
            np.abs(right - after) / (width - 1.0)
        )
    return window_of_row, unweighted


def _weighted(window_of_row: np.ndarray, unweighted: np.ndarray, profile: Profile) -> np.ndarray:
    """NAB's per-row sweep score: TP reward in windows (A_TP at a left edge), FP cost outside."""
    return np.where(
        window_of_row >= 0,
        unweighted * profile.tp_weight / _MAX_TP,
        unweighted * profile.fp_weight,
    )


def _checked(scores: npt.ArrayLike, f: NabFile) -> np.ndarray:
    """Scores as float64, one per row, finite and in [0, 1] (NAB's sweep assumes this range)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(f.values),):
        raise ValueError(f"{f.name}: expected {len(f.values)} anomaly scores, got shape {s.shape}")
    if not np.all((s >= 0.0) & (s <= 1.0)):
        raise ValueError(f"{f.name}: anomaly scores must be finite and within [0, 1]")
    return s


def _check_names(all_scores: Mapping[str, npt.ArrayLike], corpus: Sequence[NabFile]) -> None:
    """Require a non-empty corpus and exactly one score array per file."""
    if not corpus:
        raise ValueError("the corpus is empty")
    names = {f.name for f in corpus}
    missing = sorted(names - all_scores.keys())
    extra = sorted(all_scores.keys() - names)
    if missing or extra:
        raise ValueError(f"anomaly scores missing for {missing}, given for unknown files {extra}")


def score_file(scores: npt.ArrayLike, f: NabFile, threshold: float, profile: Profile) -> FileScore:
    """Score one file at `threshold` (a row is a detection when its score >= threshold).

    Each window adds its best (= earliest) detection's reward or -A_FN if missed; each detection
    outside windows adds its FP cost; probationary rows are ignored.
    """
    s = _checked(scores, f)
    window_of_row, unweighted = _row_geometry(f)
    sweep = _weighted(window_of_row, unweighted, profile)
    detected = s >= threshold
    detected[: f.probation] = False
    inside = window_of_row >= 0
    raw = float(sweep[detected & ~inside].sum())
    missed = 0
    for left, right in f.windows:
        hits = sweep[left : right + 1][detected[left : right + 1]]
        if hits.size:
            raw += float(hits.max())
        else:
            raw -= profile.fn_weight
            missed += 1
    tp = int((detected & inside).sum())
    fp = int((detected & ~inside).sum())
    rows_inside = int(inside.sum())
    rows_outside = len(s) - f.probation - rows_inside
    return FileScore(
        name=f.name,
        threshold=float(threshold),
        raw=raw,
        tp=tp,
        tn=rows_outside - fp,
        fp=fp,
        fn=rows_inside - tp,
        missed_windows=missed,
    )


def threshold_curve(
    all_scores: Mapping[str, npt.ArrayLike], corpus: Sequence[NabFile], profile: Profile
) -> tuple[np.ndarray, np.ndarray]:
    """Corpus raw score at every threshold NAB's sweep tries, thresholds in descending order.

    Candidates are NO_DETECTION_THRESHOLD and every distinct scored anomaly score. Rows are taken
    in descending score order, each adding its change to the total: an FP its cost, a window row
    the gain of its window's best detection (the earliest row detected so far, as the reward
    falls along a window), so one sort and one cumulative sum give the whole curve.
    """
    _check_names(all_scores, corpus)
    scores, sweeps, window_ids = [], [], []
    n_windows = 0
    for f in corpus:
        s = _checked(all_scores[f.name], f)
        window_of_row, unweighted = _row_geometry(f)
        p = f.probation
        scores.append(s[p:])
        sweeps.append(_weighted(window_of_row, unweighted, profile)[p:])
        window_ids.append(np.where(window_of_row[p:] >= 0, window_of_row[p:] + n_windows, -1))
        n_windows += len(f.windows)
    s, sweep, gid = np.concatenate(scores), np.concatenate(sweeps), np.concatenate(window_ids)

    order = np.argsort(-s, kind="stable")
    gid_sorted = gid[order]
    delta = np.where(gid_sorted < 0, sweep[order], 0.0)
    # Window rows grouped by window, each group still in descending score order.
    in_window = np.flatnonzero(gid_sorted >= 0)
    grouped = in_window[np.argsort(gid_sorted[in_window], kind="stable")]
    rows, group = order[grouped], gid_sorted[grouped]
    # Running minimum of the row position within each group (offset keeps groups apart).
    span = len(s) + 1
    earliest = group * span - np.maximum.accumulate(group * span - rows)
    previous_best = np.empty(len(rows))
    previous_best[1:] = sweep[earliest[:-1]]
    group_starts = np.ones(len(rows), dtype=bool)
    group_starts[1:] = group[1:] != group[:-1]
    previous_best[group_starts] = -profile.fn_weight
    delta[grouped] = sweep[earliest] - previous_best

    s_sorted = s[order]
    level_ends = np.ones(len(s), dtype=bool)
    level_ends[:-1] = s_sorted[1:] != s_sorted[:-1]
    base = -profile.fn_weight * n_windows
    thresholds = np.r_[NO_DETECTION_THRESHOLD, s_sorted[level_ends]]
    totals = np.r_[base, base + np.cumsum(delta)[level_ends]]
    return thresholds, totals


def optimize_threshold(
    all_scores: Mapping[str, npt.ArrayLike], corpus: Sequence[NabFile], profile: Profile
) -> tuple[float, float]:
    """The corpus-wide threshold maximising the summed raw score, and that score.

    Ties go to the highest threshold, as NAB's stable sort of its descending sweep does.
    """
    thresholds, totals = threshold_curve(all_scores, corpus, profile)
    best = int(np.argmax(totals))
    return float(thresholds[best]), float(totals[best])


def reference_raws(corpus: Sequence[NabFile], profile: Profile) -> tuple[float, float]:
    """Raw totals of NAB's null detector (every window missed) and of the perfect one.

    null = -A_FN * #windows, perfect = A_TP * #windows (NAB counts windows in the labels file).
    """
    n_windows = sum(len(f.windows) for f in corpus)
    return -profile.fn_weight * n_windows, profile.tp_weight * n_windows


def normalise(raw: float, raw_null: float, raw_perfect: float) -> float:
    """NAB score: 100 * (raw - raw_null) / (raw_perfect - raw_null); null -> 0, perfect -> 100."""
    if raw_perfect == raw_null:
        raise ValueError("cannot normalise: perfect and null raw scores are equal (no windows?)")
    return 100.0 * (raw - raw_null) / (raw_perfect - raw_null)


def score_corpus(
    all_scores: Mapping[str, npt.ArrayLike],
    corpus: Sequence[NabFile],
    profiles: Mapping[str, Profile] = PROFILES,
) -> dict[str, ProfileResult]:
    """NAB's final scores: per profile, optimise the threshold, score each file, normalise.

    As in NAB, the reported raw total is the sum of the per-file scores at the chosen threshold.
    """
    _check_names(all_scores, corpus)
    results: dict[str, ProfileResult] = {}
    for name, profile in profiles.items():
        threshold, _ = optimize_threshold(all_scores, corpus, profile)
        files = [score_file(all_scores[f.name], f, threshold, profile) for f in corpus]
        raw = sum(fs.raw for fs in files)
        results[name] = ProfileResult(
            score=normalise(raw, *reference_raws(corpus, profile)),
            threshold=threshold,
            raw=raw,
            tp=sum(fs.tp for fs in files),
            tn=sum(fs.tn for fs in files),
            fp=sum(fs.fp for fs in files),
            fn=sum(fs.fn for fs in files),
            missed_windows=sum(fs.missed_windows for fs in files),
        )
    return results


def write_results(
    out_dir: Path,
    detector_name: str,
    all_scores: Mapping[str, npt.ArrayLike],
    corpus: Sequence[NabFile],
    results: Mapping[str, ProfileResult],
) -> None:
    """Write NAB's results layout: per-file CSVs and `<detector>_scores.json`.

    `<out_dir>/<detector>/<category>/<detector>_<file>.csv` has columns
    timestamp,value,anomaly_score,label (label 1 inside a window); the JSON holds `results`.
    """
    if not detector_name or any(c in detector_name for c in "/\\") or detector_name in {".", ".."}:
        raise ValueError(f"detector name {detector_name!r} must be a plain, non-empty file name")
    _check_names(all_scores, corpus)
    out = Path(out_dir)
    for f in corpus:
        s = _checked(all_scores[f.name], f)
        label = (_row_geometry(f)[0] >= 0).astype(int)
        relative = PurePosixPath(f.name)
        path = out / detector_name / relative.parent / f"{detector_name}_{relative.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            writer.writerows(
                zip(f.timestamps, f.values.tolist(), s.tolist(), label.tolist(), strict=True)
            )
    summary = {name: dict(result) for name, result in results.items()}
    (out / f"{detector_name}_scores.json").write_text(json.dumps(summary, indent=2) + "\n")

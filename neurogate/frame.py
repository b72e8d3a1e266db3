"""pandas in and out: ``detect(frame)`` scores a DataFrame's rows with a fresh detector."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neurogate.cli.results import summary
from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import Detector, Result
from neurogate.engine.events import Event, EventBatch
from neurogate.engine.stores import PatternStore

if TYPE_CHECKING:
    import pandas as pd

def explain(result: Result) -> str:
    """One line saying why an event was flagged ("" when it was not): the new-extreme rule,
    or each evidence family below 1 % tail probability, strongest first
    (``neurogate explain`` decodes the whole record).

    >>> from neurogate.engine.detector import Result
    >>> r = Result(Event("s", 0.0, (1.0, 2.0), ("a", "b")), 0.97, True, 0.9, "scored",
    ...            families={"patterns": 0.2, "relation": 2e-5},
    ...            family_channels={"relation": "b"})
    >>> explain(r)
    'b strays from what the other channels predict (tail probability 2e-05)'
    """
    return summary(result.as_dict()) if result.flagged else ""


def detect(
    frame: pd.DataFrame,
    *,
    time: str | None = None,
    source: str | None = None,
    values: Sequence[str] | None = None,
    config: EngineConfig | None = None,
    store: PatternStore | None = None,
) -> pd.DataFrame:
    """Score every row of ``frame`` (score, then learn, in row order) with a new detector and
    return a copy with the columns ``score`` (0..1; 0 while a source warms up), ``flagged``,
    ``status`` ("scored", "warming" or "rejected") and ``explanation`` (why a flagged row was
    flagged).

    ``time``: a column of timestamps (datetimes or epoch seconds); default the index when it
    is a DatetimeIndex, else row numbers (no calendar). ``source``: a column naming the source
    of each row (default: one source). ``values``: the value columns (default: every numeric
    column but those). ``config``/``store``: as for ``Detector`` (default: the engine's
    defaults, an in-memory store).

    >>> import math
    >>> import pandas as pd
    >>> from neurogate import EngineConfig
    >>> df = pd.DataFrame({"temp": [20 + math.sin(t / 6) for t in range(400)]})
    >>> df.loc[350, "temp"] = 40.0
    >>> cfg = EngineConfig(warmup=120).replace(**{"neuronet.enabled": False})
    >>> out = detect(df, config=cfg)
    >>> list(out.columns)
    ['temp', 'score', 'flagged', 'status', 'explanation']
    >>> out.index[out.flagged].tolist()
    [350]
    >>> out.loc[350, "explanation"]
    'a value outside everything seen so far'
    """
    import pandas as pd

    reserved = {c for c in (time, source) if c is not None}
    for col in reserved | set(values or ()):
        if col not in frame.columns:
            raise KeyError(f"no column {col!r} in the frame (columns: {list(frame.columns)})")
    if values is None:
        values = [c for c in frame.columns
                  if c not in reserved and pd.api.types.is_numeric_dtype(frame[c])]
    if not values:
        raise ValueError("no numeric value column to score; name them with values=[...]")
    fields = tuple(sorted(str(v) for v in values))
    order = [str(v) for v in values]
    data = frame[list(values)].to_numpy(dtype=np.float64)[:, [order.index(f) for f in fields]]
    ts, has_calendar = _timestamps(frame, time)
    sources = (frame[source].astype(str).tolist() if source is not None
               else ["frame"] * len(frame))
    events = [Event(src, float(t), tuple(row), fields, has_calendar=has_calendar)
              for src, t, row in zip(sources, ts, data.tolist(), strict=True)]
    with Detector(config, store, flush_every=None) as det:
        result = det.process_many(EventBatch.from_events(events), now=math.inf)
    out = frame.copy()
    out["score"] = np.nan_to_num(result.score, nan=0.0)
    out["flagged"] = result.flagged
    out["status"] = [result.STATUS[s] for s in result.status]
    out["explanation"] = [explain(result.result(int(i))) if result.flagged[i] else ""
                          for i in range(len(events))]
    return out


def _timestamps(frame: pd.DataFrame, time: str | None) -> tuple[np.ndarray, bool]:
    """Epoch seconds of each row and whether they are real times (calendar features)."""
    import pandas as pd

    col: Any
    if time is not None:
        col = frame[time]
    elif isinstance(frame.index, pd.DatetimeIndex):
        col = frame.index.to_series()
    else:
        return np.arange(len(frame), dtype=np.float64), False
    if pd.api.types.is_datetime64_any_dtype(col):
        stamps = pd.to_datetime(col, utc=True)
        return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), True
    return pd.to_numeric(col).to_numpy(dtype=np.float64), True

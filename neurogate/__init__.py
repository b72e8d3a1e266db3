"""neurogate: streaming anomaly detection for time series.

Each source's recent history is encoded into discrete codes, level by level; a pattern database
counts the codes' n-grams online, and every event is scored (0..1) from how improbable its
patterns are and, for sources with several channels, how far each channel strays from what the
others predict -- calibrated against the source's own history -- **before** it is learned from.

The public API:

* ``Detector`` -- ``learn_one(x)`` / ``score_one(x)`` (River style, ``x`` a dict of field ->
  value), ``process_many(events)`` (score then learn, prequential), ``score_many(events)``
  (score only, learns nothing), a context manager that flushes on exit;
* ``EngineConfig`` -- every setting, typed and checked;
* ``Event`` -- one observation of one source;
* ``open_store(url)`` -- the pattern store: ``memory://``, a SQLite path, ``postgresql://...``
  or ``redis+postgresql://...``;
* ``detect(frame, ...)`` -- a pandas DataFrame in, the same rows with score, flag and
  explanation out.

Examples
--------
>>> import math
>>> import neurogate
>>> cfg = neurogate.EngineConfig(warmup=50).replace(**{"neuronet.enabled": False})
>>> with neurogate.Detector(cfg) as det:
...     for t in range(300):
...         det.learn_one({"temp": 20 + math.sin(t / 6)})
...     usual = det.score_one({"temp": 20 + math.sin(300 / 6)})
...     odd = det.score_one({"temp": 35.0})
>>> usual < 0.9 <= odd
True
"""

from importlib.metadata import PackageNotFoundError, version

from neurogate.engine.config import EngineConfig
from neurogate.engine.detector import BatchResult, Detector, Result
from neurogate.engine.events import Event
from neurogate.engine.stores import open_store
from neurogate.frame import detect

try:
    __version__ = version("neurogate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["BatchResult", "Detector", "EngineConfig", "Event", "Result", "__version__",
           "detect", "open_store"]

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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from neurogate.engine.config import EngineConfig
    from neurogate.engine.detector import BatchResult, Detector, Result
    from neurogate.engine.events import Event
    from neurogate.engine.stores import open_store
    from neurogate.frame import detect

__all__ = ["BatchResult", "Detector", "EngineConfig", "Event", "Result", "__version__",
           "detect", "open_store"]

# Lazy (PEP 562): every `neurogate` command imports this package first, and the engine's
# modules load numpy and numba: eagerly they made `neurogate --help` take 0.66 s instead of
# well under 0.3 s (bench/startup.py; tests/test_packaging.py checks what start-up loads).
_HOME = {
    "EngineConfig": "neurogate.engine.config",
    "BatchResult": "neurogate.engine.detector",
    "Detector": "neurogate.engine.detector",
    "Result": "neurogate.engine.detector",
    "Event": "neurogate.engine.events",
    "open_store": "neurogate.engine.stores",
    "detect": "neurogate.frame",
}


def __getattr__(name: str) -> Any:
    """A public name, imported on first use (then kept in the module)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("neurogate")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0+unknown"
    elif name in _HOME:
        import importlib

        value = getattr(importlib.import_module(_HOME[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

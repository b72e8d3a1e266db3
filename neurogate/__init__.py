"""neurogate: streaming anomaly detection (multi-level discrete codes, a pattern database and
calibrated evidence). The public API lives here; see README.md."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurogate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]

"""Optional dependencies (pyproject.toml's extras): whether one is installed, checked without
importing it, and which extra brings a module that is missing.

The core (the engine, the SQLite store, the command line) needs none of them. Without torch the
NeuroNet is off: the engine serves its fixed codes and says so once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import logging

log = logging.getLogger(__name__)

# top-level module -> the extra that installs it (pyproject.toml)
EXTRA_OF = {
    "torch": "neuronet",
    "psycopg": "postgres", "psycopg_pool": "postgres",
    "redis": "redis",
    "faust": "kafka", "aiokafka": "kafka", "kafka": "kafka", "prometheus_client": "kafka",
    "pysad": "eval", "river": "eval", "sklearn": "eval", "matplotlib": "eval", "pandas": "eval",
    "scipy": "eval", "yaml": "eval", "gutenTAG": "eval", "neurokit2": "eval",
    "optuna": "tune", "sqlalchemy": "tune",
}

NEURONET_OFF = ("NeuroNet off: torch is not installed, so fixed codes serve every level. "
                "Install it with pip install 'neurogate[neuronet]', or set neuronet.enabled=false "
                "(--set neuronet.enabled=false, NEUROGATE_NEURONET__ENABLED=false) to silence "
                "this warning.")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (it is not imported here).

    >>> installed("json"), installed("no_such_module_here")
    (True, False)
    """
    return importlib.util.find_spec(module) is not None


def missing_extra(exc: BaseException) -> str | None:
    """For a ``ModuleNotFoundError`` of a module that an extra provides: what to install.

    >>> missing_extra(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"))
    "psycopg is not installed; it comes with pip install 'neurogate[postgres]'"
    >>> missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
    True
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    root = exc.name.partition(".")[0]
    extra = EXTRA_OF.get(root)
    if extra is None:
        return None
    return f"{root} is not installed; it comes with pip install 'neurogate[{extra}]'"


def neuronet_usable(enabled: bool) -> bool:
    """Whether a NeuroNet may be trained: ``neuronet.enabled`` and torch installed. Enabled
    without torch logs ``NEURONET_OFF`` (once per process) and returns False."""
    if not enabled:
        return False
    if installed("torch"):
        return True
    _warn_neuronet_off()
    return False


@functools.cache
def _warn_neuronet_off() -> None:
    log.warning(NEURONET_OFF)


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads, when torch is installed (without it there is nothing to set)."""
    if installed("torch"):
        import torch

        torch.set_num_threads(threads)

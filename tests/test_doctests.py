"""The examples in the engine's and the evaluation harness' docstrings run and give what they
show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import neurogate.engine as engine
import neurogate.evaluation as evaluation

MODULES = ["neurogate", "neurogate.frame", "neurogate.cli.results"] + sorted(
    m.name for pkg in (engine, evaluation)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

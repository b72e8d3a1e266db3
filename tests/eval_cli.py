"""The `neurogate eval ...` commands in-process, for the evaluation tests."""

from __future__ import annotations

import argparse

from neurogate.cli.boundary import run_command
from neurogate.cli.evaluate import register


def cli(*argv: str) -> int:
    """Parse ``argv`` as `neurogate eval ...` arguments and run the command; its exit code."""
    p = argparse.ArgumentParser(prog="neurogate")
    sub = p.add_subparsers(dest="command", required=True)
    register(sub)
    args = p.parse_args(list(argv))
    return run_command(args)

"""Where the command line meets the terminal: usage errors, command errors and log records
leave the process with every secret masked (``neurogate.engine.redaction``).

The secrets of a command are the passwords in its arguments and in the environment
(``NEUROGATE_PG_URL``, ``NEUROGATE_REDIS_URL``, ``PGPASSWORD``, ...); a driver's error text that
quotes one is scrubbed like a URL the command formats itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from neurogate.engine.extras import missing_extra
from neurogate.engine.redaction import known_secrets, redacting_logs, scrub

__all__ = ["EXIT_INTERNAL", "EXIT_MISSING_EXTRA", "Parser", "command_secrets", "print_error",
           "run_command"]

EXIT_INTERNAL = 1  # an unexpected exception (a bug): Python's own code for an uncaught one
EXIT_MISSING_EXTRA = 1  # the command needs an optional package that is not installed


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors mask URLs' passwords (``unrecognized
    arguments: postgresql://user:PASSWORD@...`` would print one); sub-parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        super().error(scrub(message, known_secrets(sys.argv[1:], os.environ)))


def command_secrets(args: argparse.Namespace | None) -> frozenset[str]:
    """The secrets a command knows: those in its parsed arguments and in the environment."""
    values = vars(args).values() if args is not None else ()
    return known_secrets(values, os.environ)


def print_error(message: object, args: argparse.Namespace | None = None) -> None:
    """``neurogate: error: <message>`` on stderr, with the command's secrets masked."""
    print(f"neurogate: error: {scrub(str(message), command_secrets(args))}", file=sys.stderr)


def run_command(args: argparse.Namespace, handle: Callable[[argparse.Namespace], int],
                argv: Sequence[str] = ()) -> int:
    """Run ``handle(args)`` with its log records scrubbed; a missing optional package is one
    line naming its extra (``EXIT_MISSING_EXTRA``); an unexpected exception prints its
    traceback scrubbed too and exits with ``EXIT_INTERNAL``."""
    secrets = command_secrets(args) | known_secrets(argv, {})
    with redacting_logs(secrets):
        try:
            return handle(args)
        except KeyboardInterrupt:
            print("neurogate: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if (hint := missing_extra(exc)) is not None:
                print_error(hint, args)
                return EXIT_MISSING_EXTRA
            print(scrub(traceback.format_exc(), secrets), file=sys.stderr, end="")
            print("neurogate: internal error (the traceback above); please report it",
                  file=sys.stderr)
            return EXIT_INTERNAL

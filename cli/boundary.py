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
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from neurogate.engine.extras import missing_extra
from neurogate.engine.redaction import known_secrets, redacting_logs, scrub

Command = Callable[[argparse.Namespace], int]

__all__ = ["EXIT_FAILURE", "EXIT_FATAL", "EXIT_OK", "EXIT_USAGE", "Parser", "UserError",
           "command_secrets", "main_of", "print_error", "run_command", "user_errors"]

# The exit codes of every command (README, "Exit codes").
EXIT_OK = 0
# the run failed: every input record was bad, flags differ from --expect, an optional package is
# missing, or an unexpected exception (a bug; Python's own code for an uncaught one)
EXIT_FAILURE = 1
# the command cannot run as asked: arguments, settings, input or output paths, a store or broker
# that cannot be reached (argparse's own code for a usage error)
EXIT_USAGE = 2
EXIT_FATAL = 70  # EX_SOFTWARE: the worker stopped on an error it cannot recover from itself


class UserError(Exception):
    """Something the user can fix: printed as one line (secrets masked), exit ``EXIT_USAGE``.
    The engine's ``ConfigError`` is reported the same way."""


def user_errors(*names: str) -> Callable[[Command], Command]:
    """Mark a command whose exceptions of these classes (qualified names such as
    ``psycopg.Error``, matched along the exception's class hierarchy, so the driver is not
    imported to start the command line) are user errors too."""

    def mark(func: Command) -> Command:
        func.user_errors = names  # type: ignore[attr-defined]
        return func

    return mark


def _is_user_error(exc: BaseException, names: Sequence[str]) -> bool:
    from neurogate.engine.config import ConfigError

    if isinstance(exc, UserError | ConfigError):
        return True
    qualified = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    qualified |= {c.__qualname__ for c in type(exc).__mro__ if c.__module__ == "builtins"}
    return any(n in qualified for n in names)


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


def main_of(build_parser: Callable[[], argparse.ArgumentParser],
            argv: Iterable[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the command; the exit code."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    return run_command(build_parser().parse_args(argv), argv)


def run_command(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """The one guard: run the parsed command ``args.func(args)`` with its log records scrubbed.
    A user error (``UserError``, ``ConfigError`` or a class the command named with
    ``user_errors``) is one line, ``EXIT_USAGE``; a missing optional package is one line naming
    its extra, ``EXIT_FAILURE``; an unexpected exception prints its traceback scrubbed too,
    ``EXIT_FAILURE``."""
    secrets = command_secrets(args) | known_secrets(argv, {})
    func: Command = args.func
    with redacting_logs(secrets):
        try:
            return int(func(args))
        except KeyboardInterrupt:
            print("neurogate: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `neurogate config docs | head`: the reader has enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
            return EXIT_FAILURE
        except Exception as exc:
            if _is_user_error(exc, getattr(func, "user_errors", ())):
                print_error(exc, args)
                return EXIT_USAGE
            if (hint := missing_extra(exc)) is not None:
                print_error(hint, args)
                return EXIT_FAILURE
            print(scrub(traceback.format_exc(), secrets), file=sys.stderr, end="")
            print("neurogate: internal error (the traceback above); please report it",
                  file=sys.stderr)
            return EXIT_FAILURE

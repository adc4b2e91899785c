"""Where errors become exit codes, the one place: :func:`run_command` runs a subcommand of
the `study` command (cli.main) and gives its exit code, by cloudbench.errors.EXIT_CODES.

A command returns 0 or 3 and raises for anything else. It is its own module, not part of
cli.main, so that a subcommand that also runs on its own (cli.analyze) takes the same
handling without importing the command that imports it.
"""

from __future__ import annotations

import argparse
import functools
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from rich.console import Console
from rich.text import Text

from cloudbench.errors import CloudbenchError, Interrupted, Terminated

err_console = Console(stderr=True)

Command = Callable[[argparse.Namespace], int]


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops the study as Ctrl-C does, so the same cleanup runs (the run in flight
    and its kernel killed, completed records kept). A second SIGTERM is not caught: it
    kills at once, for a cleanup that hangs."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (in the main thread, where
    signals are delivered; a SIGTERM that the caller ignores stays ignored)."""
    try:
        before = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread
        before = None
    if before is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run a subcommand and give its exit code: the one place where errors become codes.

    An error the toolkit expects (cloudbench.errors.CloudbenchError) prints `error: ` and
    its message (one line, unwrapped, save a paper's quoted LaTeX log) and exits with its
    class's code, never with a traceback; Ctrl-C exits 130
    and SIGTERM 143, each with a line saying that completed runs are kept. Anything else is
    a bug: Python prints its traceback and exits 1.
    """
    try:
        with _sigterm_raises():
            return func(args)
    except CloudbenchError as exc:
        err_console.print(Text.assemble(("error", "red"), f": {exc}"), highlight=False,
                          soft_wrap=True)
        return exc.code
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        err_console.print(stop.message, highlight=False, soft_wrap=True, markup=False)
        return stop.code


def guarded(func: Command) -> Command:
    """`func` with the `study` command's error handling, for a subcommand that is also
    called on its own (``python -m cloudbench.cli.analyze``, a test's parser)."""

    @functools.wraps(func)
    def command(args: argparse.Namespace) -> int:
        return run_command(func, args)

    return command

"""The `study` command: the one module that wires the core, the runners, the analysis and
the report. Each group of subcommands registers itself from its own module; a command
imports what it drives only when it runs, so `study --help` and `study validate` stay fast.

    study validate | run | status | all      cli.run
    study calibrate                          cli.calibrate
    study analyze | plan                     cli.analyze
    study paper                              cli.paper
    study export colab | import              cli.bundle
    study schedule install | remove | show   cli.schedule

A command returns 0 or 3 (cloudbench.errors.EXIT_CODES) and raises for anything else;
`main` runs it through cli.exits.run_command, the one place where errors become exit codes.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from cloudbench.cli import analyze, bundle, calibrate, paper, run, schedule
from cloudbench.cli.exits import run_command
from cloudbench.errors import EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(textwrap.fill(text.replace("`", ""), 79, initial_indent=f"  {code:>3}  ",
                                     subsequent_indent=" " * 7)
                       for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="study", description="Statistically rigorous cloud-vs-local studies of CNN training.",
        epilog=f"exit codes:\n{codes}", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, calibrate, analyze, paper, bundle, schedule):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())

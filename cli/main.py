"""The `study` command: the one module that wires the core, the runners, the analysis and
the report. Each group of subcommands registers itself from its own module; a command
imports what it drives only when it runs, so `study --help` and `study validate` stay fast.

    study validate | run | status | all      cli.run
    study calibrate                          cli.calibrate
    study analyze | plan                     cli.analyze
    study paper                              cli.paper
    study export colab | import              cli.bundle
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.text import Text

from cloudbench.cli import analyze, bundle, calibrate, paper, run
from cloudbench.study.spec import SpecError
from cloudbench.study.store import StoreError

err_console = Console(stderr=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study", description="Statistically rigorous cloud-vs-local studies of CNN training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, calibrate, analyze, paper, bundle):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, StoreError) as exc:
        err_console.print(Text.assemble(("error", "red"), f": {exc}"), highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted: completed runs are kept; run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())

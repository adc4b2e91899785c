"""`study export colab` and `study import`: the browser path to Colab (runners.bundle)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from cloudbench.cli.args import path_arg
from cloudbench.cli.kfp import register_export as register_export_kfp
from cloudbench.cli.run import repetitions_arg
from cloudbench.study.spec import load_study

console = Console()


def cmd_export_colab(args: argparse.Namespace) -> int:
    from cloudbench.runners.bundle import export_colab

    study = load_study(args.spec)
    path = export_colab(study, args.environment, args.output, args.repetitions)
    console.print(f"[green]exported[/] {escape(str(path))} "
                  f"({path.stat().st_size / 2**20:.1f} MB): open it in Colab, Runtime > Run all, "
                  "then `study import` the archive it downloads")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from cloudbench.runners.bundle import import_archive

    outcome = import_archive(args.archive, args.output, args.spec)
    console.print(f"[green]imported[/] {escape(str(args.archive))}: "
                  f"{len(outcome['added'])} runs added, "
                  f"{len(outcome['unchanged'])} already present, "
                  f"{len(outcome['kept'])} kept (already ok here)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`study export colab ...` and `study import ...`."""
    export = subparsers.add_parser(
        "export", help="write a self-contained notebook that runs an environment elsewhere")
    targets = export.add_subparsers(dest="target", required=True, metavar="TARGET")
    p = targets.add_parser("colab", help="a notebook to run in Colab from the browser")
    p.add_argument("spec", type=path_arg)
    p.add_argument("--environment", required=True, metavar="NAME",
                   help="the colab environment of the study file to run")
    p.add_argument("-o", "--output", type=path_arg, required=True, metavar="NOTEBOOK")
    p.add_argument("--repetitions", type=repetitions_arg, metavar="N",
                   help="repetitions per dataset (overrides the study file)")
    p.set_defaults(func=cmd_export_colab)
    register_export_kfp(targets)

    p = subparsers.add_parser("import", help="check an archive of runs made elsewhere, merge it")
    p.add_argument("archive", type=path_arg)
    p.add_argument("--output", type=path_arg, metavar="DIR",
                   help="results folder (default data/results/<study>)")
    p.add_argument("--spec", type=path_arg, metavar="SPEC",
                   help="the study file (default: the one named in the archive's manifest)")
    p.set_defaults(func=cmd_import)

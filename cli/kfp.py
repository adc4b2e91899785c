"""`study export kfp`: an environment's compiled Kubeflow pipeline, for review (runners.kfp)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from cloudbench.cli.args import path_arg
from cloudbench.cli.run import repetitions_arg
from cloudbench.study.spec import load_study

console = Console()


def cmd_export_kfp(args: argparse.Namespace) -> int:
    from cloudbench.runners.kfp import export_kfp

    study = load_study(args.spec)
    path = export_kfp(study, args.environment, args.output, args.repetitions)
    console.print(f"[green]exported[/] {escape(str(path))}: the pipeline of every run of "
                  f"{escape(args.environment)} (no token in it); `study run` submits it "
                  "block by block")
    return 0


def register_export(targets: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`study export kfp ...`, beside `study export colab` (cli.bundle)."""
    p = targets.add_parser("kfp", help="the compiled Kubeflow Pipelines YAML of an environment")
    p.add_argument("spec", type=path_arg)
    p.add_argument("--environment", required=True, metavar="NAME",
                   help="the kfp environment of the study file")
    p.add_argument("-o", "--output", type=path_arg, required=True, metavar="YAML")
    p.add_argument("--repetitions", type=repetitions_arg, metavar="N",
                   help="repetitions per dataset (overrides the study file)")
    p.set_defaults(func=cmd_export_kfp)

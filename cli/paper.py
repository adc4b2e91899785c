"""`study paper SPEC | --runs RUNS.csv [--output DIR]`: tables, figures and the PDF.

The no-change path matters here: it reads the study file with tomllib only to find the
study's name and hashes the inputs; the full validation (which opens the protocol
notebook) runs only when the paper must be rebuilt.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from cloudbench.cli.args import path_arg
from cloudbench.errors import InputError

DEFAULT_OUTPUT = Path("paper/build")


def _study_name(spec: Path) -> str | None:
    """The study's name straight from the TOML, without validating the file."""
    try:
        return tomllib.loads(spec.read_text(encoding="utf-8"))["study"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def paper_for(spec: Path | None, runs_csv: Path | None, output: Path = DEFAULT_OUTPUT) -> Path:
    """Build (or find up to date) the paper of a study; the PDF's path.

    With `spec`, the runs default to data/results/<name>/runs.csv; with only `runs_csv`
    the study's name comes from the CSV and the methodology from the runs alone.
    """
    if spec is None and runs_csv is None:  # refused input, as argparse refuses an argument
        raise InputError("give a study file or --runs RUNS.csv")
    from cloudbench.paper.build import PaperError, build_paper
    from cloudbench.paper.cache import inputs_digest, up_to_date
    from cloudbench.study.sysdeps import TEX_COMMANDS, ensure_commands

    if runs_csv is None:
        name = _study_name(spec) if spec else None
        if name is None:
            from cloudbench.study.spec import load_study

            name = load_study(spec, check_data=False).name  # raises the precise SpecError
        from cloudbench.study.store import default_results_dir

        runs_csv = default_results_dir(name) / "runs.csv"
    if not runs_csv.is_file():
        raise PaperError(f"no runs table at {runs_csv}; run the study first (study run SPEC)")
    if spec is not None:
        name = _study_name(spec)
        if name is not None:
            folder, pdf = output / name, output / f"{name}.pdf"
            digest = inputs_digest(runs_csv, spec.resolve())
            if up_to_date(folder, pdf, digest):
                return pdf
    ensure_commands(TEX_COMMANDS)
    study = None
    if spec is not None:
        from cloudbench.study.spec import load_study

        study = load_study(spec, check_data=False)
    return build_paper(runs_csv, study, output)


def cmd_paper(args: argparse.Namespace) -> int:
    """Print the PDF's path; a paper that cannot be built raises (cli.main: exit 1)."""
    print(paper_for(args.spec, args.runs, args.output or DEFAULT_OUTPUT))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `paper` to the `study` command."""
    p = subparsers.add_parser("paper", help="tables, figures and the PDF of a study",
                              description="Build paper/build/<study>.pdf from a study's runs; "
                              "nothing is rebuilt when nothing changed.")
    p.add_argument("spec", type=path_arg, nargs="?", help="the study file (TOML)")
    p.add_argument("--runs", type=path_arg, metavar="RUNS.csv",
                   help="the runs table (default data/results/<study>/runs.csv)")
    p.add_argument("--output", type=path_arg, metavar="DIR",
                   help=f"where the paper goes (default {DEFAULT_OUTPUT})")
    p.set_defaults(func=cmd_paper)

"""`study paper SPEC | --runs RUNS.csv [--output DIR] [--format pdf|html|both]`: tables,
figures and the PDF, the self-contained interactive page, or both.

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
#: --format's choices and the files each writes.
FORMAT_CHOICES = {"pdf": ("pdf",), "html": ("html",), "both": ("pdf", "html")}


def _study_name(spec: Path) -> str | None:
    """The study's name straight from the TOML, without validating the file."""
    try:
        return tomllib.loads(spec.read_text(encoding="utf-8"))["study"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def paper_for(spec: Path | None, runs_csv: Path | None, output: Path = DEFAULT_OUTPUT,
              formats: tuple[str, ...] = ("pdf",)) -> Path:
    """Build (or find up to date) the paper of a study in `formats` ("pdf", "html"); the
    first format's path.

    With `spec`, the runs default to data/results/<name>/runs.csv; with only `runs_csv`
    the study's name comes from the CSV and the methodology from the runs alone.
    """
    if spec is None and runs_csv is None:  # refused input, as argparse refuses an argument
        raise InputError("give a study file or --runs RUNS.csv")
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file; --output names the folder the paper goes to",
                         key="--output")
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
            folder = output / name
            paths = [output / f"{name}.{f}" for f in formats]
            digest = inputs_digest(runs_csv, spec.resolve())
            if up_to_date(folder, paths, digest):
                return paths[0]
    if "pdf" in formats:
        ensure_commands(TEX_COMMANDS)
    study = None
    if spec is not None:
        from cloudbench.study.spec import load_study

        study = load_study(spec, check_data=False)
    return build_paper(runs_csv, study, output, formats=formats)


def cmd_paper(args: argparse.Namespace) -> int:
    """Print the paths of what was built; a paper that cannot be built raises (cli.exits:
    exit 1)."""
    formats = FORMAT_CHOICES[getattr(args, "format", None) or "pdf"]
    first = paper_for(args.spec, args.runs, args.output or DEFAULT_OUTPUT, formats)
    for fmt in formats:
        print(first.with_suffix(f".{fmt}"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `paper` to the `study` command."""
    p = subparsers.add_parser("paper", help="tables, figures and the PDF (or page) of a study",
                              description="Build paper/build/<study>.pdf, or the self-contained "
                              "interactive page paper/build/<study>.html, from a study's runs; "
                              "nothing is rebuilt when nothing changed.")
    p.add_argument("spec", type=path_arg, nargs="?", help="the study file (TOML)")
    p.add_argument("--runs", type=path_arg, metavar="RUNS.csv",
                   help="the runs table (default data/results/<study>/runs.csv)")
    p.add_argument("--output", type=path_arg, metavar="DIR",
                   help=f"where the paper goes (default {DEFAULT_OUTPUT})")
    p.add_argument("--format", choices=sorted(FORMAT_CHOICES), default="pdf",
                   help="pdf (the default), html (one self-contained interactive page; no TeX "
                   "needed) or both")
    p.set_defaults(func=cmd_paper)

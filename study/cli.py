"""The `study` command: validate, run, status, calibrate, analyze, plan, paper, all, export,
import."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

import analysis.cli
import paper.cli
import runners.bundle
from study.plan import plan
from study.spec import SpecError, load_study
from study.store import ResultsStore, StoreError, default_results_dir

console = Console()
err_console = Console(stderr=True)


def cmd_validate(args: argparse.Namespace) -> int:
    study = load_study(args.spec)
    jobs = plan(study)
    reps = (study.repetitions if study.repetitions != "auto" else
            f"auto ({study.min_repetitions} to {study.max_repetitions})")
    console.print(f"[green]valid[/]: {args.spec}: study {study.name!r}, "
                  f"{len(study.environments)} environments x {len(study.datasets)} datasets x "
                  f"{reps} repetitions = {len(jobs)} runs planned "
                  f"({study.order} order, seed {study.seed})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from study.scheduler import run_study

    study = load_study(args.spec)
    result = run_study(study, output=args.output, repetitions=args.repetitions, console=console)
    failed = result.failed
    console.print(f"{len(result.executed) - len(failed)} runs ok, {len(failed)} not ok; "
                  f"records in {result.store.records_dir}, table {result.store.csv_path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    study = load_study(args.spec, check_data=False)
    store = ResultsStore(args.output or default_results_dir(study.name))
    records = store.records()
    statuses = {r["run_id"]: r.get("status", "failed") for r in records}
    # An "auto" study may have run more blocks than it planned: show them all.
    ran = max((r.get("block", 0) for r in records), default=0)
    counts: Counter[tuple[str, str, str]] = Counter()
    for job in plan(study, args.repetitions or max(study.planned_repetitions, ran)):
        state = statuses.get(job.run_id, "pending")
        counts[(job.environment, job.dataset, "done" if state == "ok" else
                "pending" if state == "pending" else "failed")] += 1
    table = Table(title=f"{study.name}: {store.root}")
    for col in ("environment", "dataset", "done", "failed", "pending"):
        table.add_column(col, justify="right" if col in ("done", "failed", "pending") else "left")
    for env in study.environments:
        for ds in study.datasets:
            table.add_row(env.name, ds.name, *(str(counts[(env.name, ds.name, s)])
                                               for s in ("done", "failed", "pending")))
    console.print(table)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    from paper.cli import cmd_paper

    cmd_run(args)
    study = load_study(args.spec, check_data=False)
    runs = (args.output or default_results_dir(study.name)) / "runs.csv"
    return cmd_paper(argparse.Namespace(spec=args.spec, runs=runs, output=None))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from study.calibrate import run_calibration

    study = load_study(args.spec)
    summary = run_calibration(study, args.environment, args.repetitions, args.output, console)
    for entry in summary["entries"]:
        fp = entry["false_positive"] or {}
        floor = entry["noise_floor"]
        console.print(
            f"{entry['metric']} on {entry['dataset']}: CV {entry['cv']['A']:.1%} / "
            f"{entry['cv']['B']:.1%}, noise floor of the speed-up "
            f"{'n/a' if floor is None else f'±{floor:.1%}'}, false-positive rate "
            f"{fp.get('rate', float('nan')):.1%} at alpha {summary['alpha']} "
            f"({fp.get('splits', 0)} random splits)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study", description="Statistically rigorous cloud-vs-local studies of CNN training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a study file; run nothing")
    p.add_argument("spec", type=Path)
    p.set_defaults(func=cmd_validate)

    for name, func, text in (("run", cmd_run, "run what is missing of a study"),
                             ("all", cmd_all, "run, analyze and build the paper: the main job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("spec", type=Path)
        p.add_argument("--repetitions", type=int, metavar="N",
                       help="repetitions per environment x dataset (overrides the study file)")
        p.add_argument("--output", type=Path, metavar="DIR",
                       help="results folder (default data/results/<study>)")
        p.set_defaults(func=func)

    p = sub.add_parser("status", help="done / failed / pending per environment x dataset")
    p.add_argument("spec", type=Path)
    p.add_argument("--repetitions", type=int, metavar="N")
    p.add_argument("--output", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("calibrate", help="A/A calibration: one environment as two arms, "
                       "for the noise floor and the false-positive rate")
    p.add_argument("spec", type=Path)
    p.add_argument("--environment", required=True, metavar="NAME")
    p.add_argument("--repetitions", type=int, metavar="N")
    p.add_argument("--output", type=Path, metavar="DIR")
    p.set_defaults(func=cmd_calibrate)

    # Subcommands that live with the part of the toolkit they drive.
    for register in (analysis.cli.register, paper.cli.register, runners.bundle.register):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, StoreError) as exc:
        err_console.print(f"[red]error[/]: {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted: completed runs are kept; run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())

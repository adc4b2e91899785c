"""`study validate | run | status | all`: a study's life, from its file to its runs and paper."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cloudbench.cli.args import path_arg
from cloudbench.errors import EXIT_OK, EXIT_RUNS_NOT_OK
from cloudbench.study.plan import cells, plan
from cloudbench.study.record import FINAL_STATUSES
from cloudbench.study.spec import Study, load_study
from cloudbench.study.store import ResultsStore, default_results_dir

console = Console()


def repetitions_arg(text: str) -> int:
    """--repetitions: a whole number within the study file's bounds, refused otherwise."""
    from cloudbench.study.spec import MAX_REPETITIONS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_REPETITIONS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_REPETITIONS}, got {value}")
    return value


def stop_rule(study: Study) -> Any:
    """The analysis's stopping rule for `repetitions = "auto"`, bound to the study's design."""
    if study.repetitions != "auto":
        return None

    def rule(store: ResultsStore, block: int) -> dict[str, Any] | None:
        from cloudbench.analysis.stopping import stopping_state

        return stopping_state(store.frame(), [e.name for e in study.environments],
                              [d.name for d in study.datasets], block,
                              study.target_halfwidth, study.max_repetitions)

    return rule


def cmd_validate(args: argparse.Namespace) -> int:
    study = load_study(args.spec)
    planned = len(cells(study)) * (study.planned_repetitions + study.warmup)  # no plan built
    reps = (study.repetitions if study.repetitions != "auto" else
            f"auto ({study.min_repetitions} to {study.max_repetitions})")
    configs = study.configurations
    sweep = (f"{len(configs)} configurations x " if study.sweep.parameters else "")
    console.print(f"[green]valid[/]: {escape(str(args.spec))}: study {escape(repr(study.name))}, "
                  f"{len(study.environments)} environments x {len(study.datasets)} datasets x "
                  f"{sweep}{reps} repetitions = {planned} runs planned "
                  f"({study.order} order, seed {study.seed})")
    if study.files or study.files_left_out:
        size = sum(f.size for f in study.files)
        console.print(f"files beside the notebook, copied into every run: {len(study.files)} "
                      f"({size / 2**20:.1f} MB)")
    if study.files_left_out:
        console.print(f"[yellow]left out[/] (over 50 MB each; list them in [protocol] files to "
                      f"copy them): {escape(', '.join(study.files_left_out))}")
    if study.sweep.parameters:
        levels = "; ".join(f"{k} = {list(v)}" for k, v in study.sweep.parameters.items())
        excluded = (f", {len(study.sweep.exclude)} exclusion rule(s)"
                    if study.sweep.exclude else "")
        console.print(f"sweep: {escape(levels)}{excluded}")
    from cloudbench.cli.analyze import small_study_lines

    for line in small_study_lines(study):  # fewer than 8 runs a group: what it can find
        console.print(f"[yellow]warning[/]: {escape(line)}", highlight=False)
    return 0


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 366 * 86400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to a year, got {text!r}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from cloudbench.runners.scheduler import run_study

    study = load_study(args.spec)
    result = run_study(study, output=args.output, repetitions=args.repetitions, console=console,
                       stop_rule=stop_rule(study), wait_lock_s=getattr(args, "wait_lock", None),
                       due=getattr(args, "due", False), wait=getattr(args, "wait", False))
    failed = [r for r in result.failed if r["status"] != "oom"]
    oom = len(result.failed) - len(failed)
    console.print(f"{len(result.executed) - len(result.failed)} runs ok, "
                  + (f"{oom} out of memory, " if oom else "") + f"{len(failed)} not ok; "
                  f"records in {escape(str(result.store.records_dir))}, table "
                  f"{escape(str(result.store.csv_path))}")
    statuses = result.store.statuses()
    missing = [j.run_id for j in plan(study, args.repetitions)
               if statuses.get(j.run_id) not in FINAL_STATUSES]
    if getattr(args, "due", False):  # later slots are not late: only this call's runs count
        missing = [r["run_id"] for r in failed]
    if missing:
        console.print(f"[yellow]{len(missing)} planned run(s) not ok[/]: run the same command "
                      "to retry them")
        return EXIT_RUNS_NOT_OK
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    study = load_study(args.spec, check_data=False)
    store = ResultsStore(args.output or default_results_dir(study.name))
    records = store.records()
    statuses = {r["run_id"]: r.get("status", "failed") for r in records}
    # An "auto" study may have run more blocks than it planned: show them all.
    ran = max((r.get("block", 0) for r in records), default=0)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    states = ("done", "oom", "failed", "pending")
    for job in plan(study, args.repetitions or max(study.planned_repetitions, ran)):
        state = statuses.get(job.run_id, "pending")
        state = ("done" if state == "ok" else state if state in ("pending", "oom") else "failed")
        counts[(job.environment, job.dataset, job.configuration, state)] += 1
    swept = bool(study.sweep.parameters)
    if not any(s == "oom" for *_, s in counts):  # a column only when something ran out
        states = ("done", "failed", "pending")
    table = Table(title=f"{escape(study.name)}: {escape(str(store.root))}")
    for col in ("environment", "dataset", *(["configuration"] if swept else []), *states):
        table.add_column(col, justify="right" if col in states else "left")
    for env, ds, config in cells(study):
        table.add_row(env, ds, *([escape(config)] if swept else []),
                      *(str(counts[(env, ds, config, s)]) for s in states))
    console.print(table)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    from cloudbench.cli.paper import cmd_paper

    ran = cmd_run(args)
    study = load_study(args.spec, check_data=False)
    runs = (args.output or default_results_dir(study.name)) / "runs.csv"
    # the PDF and the interactive page, both
    return cmd_paper(argparse.Namespace(spec=args.spec, runs=runs, output=None,
                                        format="both")) or ran


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="check a study file; run nothing")
    p.add_argument("spec", type=path_arg)
    p.set_defaults(func=cmd_validate)

    for name, func, text in (("run", cmd_run, "run what is missing of a study"),
                             ("all", cmd_all, "run, analyze and build the paper (PDF and page): "
                              "the main job")):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("spec", type=path_arg)
        p.add_argument("--repetitions", type=repetitions_arg, metavar="N",
                       help="repetitions per environment x dataset (overrides the study file)")
        p.add_argument("--output", type=path_arg, metavar="DIR",
                       help="results folder (default data/results/<study>)")
        p.add_argument("--wait-lock", type=seconds_arg, metavar="SECONDS", nargs="?",
                       const=24 * 3600.0, default=None,
                       help="when another study run holds the results folder, wait for it "
                            "(at most SECONDS, default a day) instead of refusing")
        when = p.add_mutually_exclusive_group()
        when.add_argument("--due", action="store_true", help="with a [schedule]: run the "
                          "blocks whose slot has come, then exit (what a timer calls)")
        when.add_argument("--wait", action="store_true", help="with a [schedule]: stay, and "
                          "run each block at its slot")
        p.set_defaults(func=func)

    p = subparsers.add_parser("status", help="done / oom / failed / pending per environment x "
                              "dataset (x configuration)")
    p.add_argument("spec", type=path_arg)
    p.add_argument("--repetitions", type=repetitions_arg, metavar="N")
    p.add_argument("--output", type=path_arg, metavar="DIR")
    p.set_defaults(func=cmd_status)

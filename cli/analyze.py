"""`study analyze` and `study plan`: registered into the study command by :func:`register`.

    study analyze RUNS.csv [--json OUT] [--metric M]... [--alternative ...] [--alpha A]
                           [--procedure NAME] [--equivalence 0.05]
    study plan SPEC --pilot RUNS.csv --effect 5% [--metric train_s] [--alpha A] [--power 0.8]
                    [--equivalence 0.05]
    study simulate [--replicates N] [--power-replicates N] [--jobs J] [--json OUT]
                   [--markdown OUT]

`study plan` (and `study validate`, through :func:`small_study_lines`) warn a study of
fewer than 8 runs a group before any run, and `study plan` gives the robust procedure's
repetitions for the pilot's spread.

Errors in the input (a missing or malformed CSV, an unknown metric, a bad study file) print
one line to stderr and return 2, so scripts can tell them from a crash: each command raises
cloudbench.errors.InputError, and cli.exits's one mapping makes it the exit code. ``python -m
cli.analyze`` runs the two subcommands without the rest of the toolkit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from cloudbench.cli.args import path_arg, seed_arg
from cloudbench.cli.exits import guarded
from cloudbench.data.atomic import write_text_atomic
from cloudbench.data.procedures import (
    DEFAULT_PROCEDURE,
    procedure_descriptions,
    procedure_names,
)
from cloudbench.errors import CloudbenchError, InputError

#: analysis.results.SMALL_STUDY_RUNS, spelled out for the same reason as ALTERNATIVES
SMALL_STUDY_RUNS = 8
# analysis.stats.ALTERNATIVES, spelled out so that registering the subcommands does not
# import scipy.stats (half a second) into every `study` command (a test keeps them equal)
ALTERNATIVES = ("two-sided", "less", "greater")


def __getattr__(name: str) -> Any:
    """``PROCEDURES``: the procedures' names, from their catalogue (data.procedures, which
    imports no scipy either), as it is now."""
    if name == "PROCEDURES":
        return procedure_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _procedure_help() -> str:
    """Each procedure and its one-line description, the default marked (argparse's % escaped)."""
    return "; ".join(f"{name}{' (default)' if name == DEFAULT_PROCEDURE else ''}"
                     + (f": {text}" if text else "")
                     for name, text in procedure_descriptions().items()).replace("%", "%%")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {text}")
    return value


def _margin(text: str) -> float:
    """An equivalence margin: 5% or 0.05 (+-5 %)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a relative margin such as 0.05 or 5%, "
                                         f"got {text}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"the margin must be between 0 and 1 (0.05 is "
                                         f"+-5 %), got {text}")
    return value


@guarded
def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse a runs CSV, print the summary, write the JSON when asked."""
    from cloudbench.analysis.compare import AnalysisError, analyze, load_runs
    from cloudbench.analysis.summary import print_summary

    try:
        frame = load_runs(args.runs, args.metric)
        order = [e.strip() for e in args.order.split(",")] if args.order else None
        repeated = [e for i, e in enumerate(order or ()) if e in order[:i]]
        if repeated:  # pc,pc would compare pc with itself and double the Holm family
            raise AnalysisError(f"--order: environment {repeated[0]!r} is named twice")
        unknown = [e for e in order or () if e not in set(frame["environment"])]
        if unknown:
            raise AnalysisError(f"--order: no environment {unknown[0]!r} in {args.runs}; it "
                                f"has: {', '.join(dict.fromkeys(frame['environment']))}")
        result = analyze(frame, args.metric, alternative=args.alternative, alpha=args.alpha,
                         environments=order, procedure=args.procedure,
                         equivalence=args.equivalence)
        if args.json is not None:
            _write_json(args.json, result.to_dict())
    except OSError as exc:  # the CSV cannot be read, the JSON cannot be written
        raise InputError(str(exc)) from exc
    print_summary(result)
    if args.json is not None:
        print(f"analysis written to {args.json}")
    return 0


@guarded
def cmd_plan(args: argparse.Namespace) -> int:
    """Repetitions per environment for the power asked, from a pilot, per pair and dataset."""
    from rich import box
    from rich.table import Table

    from cloudbench.analysis.compare import AnalysisError, load_runs, with_cells
    from cloudbench.analysis.power import parse_effect, plan_repetitions
    from cloudbench.analysis.summary import make_console
    from cloudbench.study.spec import load_study

    try:
        effect = parse_effect(args.effect)
        study = load_study(args.spec, check_data=False)
        frame = with_cells(load_runs(args.pilot, [args.metric]))
        alpha = args.alpha if args.alpha is not None else study.analysis.alpha
        margin = args.equivalence if args.equivalence is not None \
            else study.analysis.equivalence
        present = set(frame["environment"])
        envs = [e.name for e in study.environments if e.name in present]
        if len(envs) < 2:
            names = ", ".join(e.name for e in study.environments)
            raise AnalysisError(f"{args.pilot}: the pilot needs runs of at least two of the "
                                f"study's environments ({names})")
        datasets = [d for d in dict.fromkeys(frame["dataset"])
                    if d.split(", ")[0] in {s.name for s in study.datasets}]
        if not datasets:
            raise AnalysisError(f"{args.pilot}: no runs of the study's datasets")
        plans = [plan_repetitions(frame, args.metric, a, b, effect, alpha=alpha,
                                  power=args.power, alternative=study.hypothesis,
                                  datasets=datasets, seed=study.seed, margin=margin)
                 for a, b in itertools.combinations(envs, 2)]
        runs = study_runs(study)
        spread = None
        if runs < SMALL_STUDY_RUNS:
            from cloudbench.analysis.power import pilot_spread

            spread = pilot_spread(frame, args.metric)
        if args.json is not None:
            _write_json(args.json, {"plans": plans})
    except CloudbenchError:
        raise
    except (OSError, ValueError) as exc:  # a file that cannot be read or written, the effect
        raise InputError(str(exc)) from exc

    console = make_console()
    table = Table(title=f"{study.name}: repetitions per environment for a {effect:.1%} "
                        f"difference in {args.metric}, power {args.power}, alpha {alpha}, "
                        f"H1 {study.hypothesis}", title_justify="left", box=box.SIMPLE_HEAD)
    for line in small_study_lines(study, spread):  # fewer than 8 runs a group: before any run
        console.print(f"[yellow]warning[/]: {line}", highlight=False)
    names = ["a vs b", "dataset", "pilot n", "median", "sd", "Cohen's d", "t-test",
             "Mann-Whitney", "robust", "ratio CI half-width now"]
    if margin is not None:
        names.append(f"equivalence ±{margin:.0%}")
    for name in names:
        table.add_column(name)
    for plan in plans:
        for row in plan["datasets"]:
            cells = [f"{plan['a']} vs {plan['b']}", row["dataset"],
                     f"{row['n_pilot_a']} / {row['n_pilot_b']}", f"{row['median']:.4g}",
                     "-" if row["sd_pooled"] is None else f"{row['sd_pooled']:.3g}",
                     "-" if row["cohen_d"] is None else f"{row['cohen_d']:.2f}",
                     _n(row["n_t_test"]), _n(row["n_mann_whitney"]), _n(row["n_robust"]),
                     "-" if row["ratio_halfwidth"] is None else f"{row['ratio_halfwidth']:.1%}"]
            if margin is not None:
                cells.append(_n(row["n_equivalence"]))
            table.add_row(*cells)
    console.print(table)
    if margin is not None:
        found = [p["n_equivalence"] for p in plans]
        console.print(
            f"to show equivalence within ±{margin:.0%} (two one-sided tests on log times, "
            f"power {args.power}, if the environments are equally fast): "
            + ("[yellow]not reachable within the limit for some cells[/]" if None in found
               else f"[bold]{max(found)}[/] repetitions per environment and dataset"))
    needed = [p[k] for p in plans for k in ("n_t_test", "n_mann_whitney")]
    if None in needed:
        console.print("[yellow]some cells cannot reach the power within the limit "
                      "(or the pilot is too small): see the table[/]")
    else:
        console.print(f"repetitions needed: [bold]{max(needed)}[/] per environment and dataset "
                      "(the largest over datasets, pairs and both tests; Mann-Whitney's "
                      "applies when the times are not normal)")
        for line in plan_cost(study, frame, max(needed)):
            console.print(line)
    robust = [p["n_robust"] for p in plans]
    console.print("the robust procedure (Yuen's and Brunner-Munzel's tests from 8 runs a "
                  "group), for the pilot's own spread in each environment: "
                  + ("[yellow]not reachable within the limit for some cells[/]"
                     if None in robust else
                     f"[bold]{max(robust)}[/] repetitions per environment and dataset"
                     + (f" (the study plans {study_runs(study)})"
                        if max(robust) > study_runs(study) else "")))
    return 0


def study_runs(study: Any) -> int:
    """The runs per environment and dataset a study file plans: its repetitions, or the
    fewest an "auto" study may stop at."""
    return study.repetitions if isinstance(study.repetitions, int) else study.min_repetitions


def small_study_lines(study: Any, spread: float | None = None) -> list[str]:
    """The small-study warning (analysis.power.small_study) for a study file, before any
    run: nothing from 8 runs per environment and dataset. ``spread``: a pilot's sd of log
    times (default: the reference study's); the family is the datasets x configurations
    of one metric and pair, as the analysis adjusts them."""
    if study_runs(study) >= SMALL_STUDY_RUNS:
        return []
    from cloudbench.analysis.power import REFERENCE_SPREAD, small_study

    found = small_study(study_runs(study), len(study.datasets) * len(study.configurations),
                        study.analysis.alpha, study.hypothesis,
                        spread if spread else REFERENCE_SPREAD, seed=study.seed)
    lines = found.lines() if found else []
    if found and not spread:
        lines[1] += " (the reference study's spread; `study plan` uses a pilot's)"
    if study.repetitions == "auto":
        lines[0] = lines[0].replace("only ", "an \"auto\" study may stop at ", 1)
    return lines


def plan_cost(study: Any, pilot: Any, repetitions: int) -> list[str]:
    """What the recommended repetitions will cost, per priced environment and in all: the
    pilot's median billed time per run (its wall time for older records) at the price."""
    from rich.markup import escape

    cells = len(study.datasets) * len(study.configurations)
    lines, totals = [], {}
    for env in study.environments:
        if env.price is None:
            continue
        runs = pilot[pilot["environment"] == env.name]
        column = next((c for c in ("billed_s", "wall_s") if c in runs and
                       runs[c].notna().any()), None)
        if column is None:
            continue
        per_run = env.price.cost(float(runs[column].median()))
        total = per_run * repetitions * cells
        totals[env.price.currency] = totals.get(env.price.currency, 0.0) + total
        lines.append(f"  {escape(env.name)}: {repetitions * cells} runs x {per_run:.4f} "
                     f"{env.price.currency} = [bold]{total:.2f} {env.price.currency}[/] "
                     f"(at {env.price.per_hour:g} {env.price.currency}/h, "
                     f"{escape(env.price.source)})")
    if not lines:
        return []
    spent = " + ".join(f"{v:.2f} {k}" for k, v in totals.items())
    return ["cost of those repetitions (prices change; see each source):", *lines,
            f"  in all: [bold]{spent}[/]"]


@guarded
def cmd_simulate(args: argparse.Namespace) -> int:
    """The error rates and power of the procedures by simulation (analysis.simulation)."""
    import time

    from cloudbench.analysis import simulation as M

    cells = M.scenarios(sizes=((5, 5), (24, 10)), ratios=(1.0, 9.0, 25.0),
                        effects=(0.0, 0.1)) if args.quick else None
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            print(f"  {done}/{total} scenarios, {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)

    data = M.simulate(cells, replicates=args.replicates, seed=args.seed,
                      n_perm=args.permutations, jobs=args.jobs, progress=progress,
                      power_replicates=args.power_replicates)
    data["settings"]["seconds"] = round(time.perf_counter() - start, 1)
    try:
        if args.json is not None:
            _write_json(args.json, data)
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(args.markdown, M.markdown_tables(data))
    except OSError as exc:
        raise InputError(str(exc)) from exc
    for line in M.summary(data):
        print(line)
    power = data["settings"]["power_replicates"]
    print(f"{len(data['scenarios'])} scenarios x {args.replicates} replicates"
          + (f" ({power} with an effect)" if power != args.replicates else "")
          + f" in {data['settings']['seconds']} s")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


MAX_JOBS = 256  # processes: more fail at the system's limits, not as a refusal


def _jobs(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_JOBS}, got {text}")
    return value


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def register(subparsers: Any) -> None:
    """Add `analyze` and `plan` to an argparse subparsers object (each sets `func`)."""
    p = subparsers.add_parser("analyze", help="hypothesis tests on a runs CSV",
                              description="The procedure's test (--procedure) per metric, "
                                          "dataset (and sweep configuration) and pair of "
                                          "environments, Holm-adjusted within each metric "
                                          "and pair.")
    p.add_argument("runs", type=path_arg, metavar="RUNS.csv")
    p.add_argument("--json", type=path_arg, metavar="OUT", help="write the analysis JSON here")
    p.add_argument("--metric", action="append", metavar="M",
                   help="a metric column (repeatable; default: every numeric one)")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided",
                   help="H1 for a vs b: less means a < b (default two-sided)")
    p.add_argument("--alpha", type=_alpha, default=0.05, metavar="A")
    p.add_argument("--order", metavar="ENV,ENV,...",
                   help="the environments' order, so a is the first of each pair (default: "
                        "as they first appear in the CSV)")
    p.add_argument("--procedure", choices=procedure_names(), default=DEFAULT_PROCEDURE,
                   help=_procedure_help())
    p.add_argument("--equivalence", type=_margin, default=None, metavar="MARGIN",
                   help="a relative margin (0.05 or 5%%) for two one-sided tests of "
                        "equivalence; each comparison then concludes faster, slower, "
                        "equivalent or inconclusive")
    p.set_defaults(func=cmd_analyze)

    p = subparsers.add_parser("plan", help="repetitions needed, from a pilot",
                              description="Repetitions per environment for a given power, "
                                          "by t-test power and Mann-Whitney simulation.")
    p.add_argument("spec", type=path_arg, metavar="SPEC")
    p.add_argument("--pilot", type=path_arg, required=True, metavar="RUNS.csv")
    p.add_argument("--effect", required=True, help="relative difference: 5%% or 0.05")
    p.add_argument("--metric", default="train_s")
    p.add_argument("--alpha", type=_alpha, default=None, metavar="A",
                   help="default: the study's [analysis] alpha")
    p.add_argument("--power", type=_alpha, default=0.8)
    p.add_argument("--equivalence", type=_margin, default=None, metavar="MARGIN",
                   help="also the repetitions to show equivalence within this relative "
                        "margin (default: the study's [analysis] equivalence)")
    p.add_argument("--json", type=path_arg, metavar="OUT", help="write the plan as JSON here")
    p.set_defaults(func=cmd_plan)

    p = subparsers.add_parser("simulate", help="error rates and power of the procedures",
                              description="Type-I error and power of SPSS's procedure, of the "
                                          "robust one (Yuen's and Brunner-Munzel's tests) "
                                          "and of other single tests, by simulation "
                                          "(docs/statistics.md).")
    p.add_argument("--replicates", type=_positive_int, default=40_000,
                   help="per scenario (default 40000: every rate's standard error <= 0.0025)")
    p.add_argument("--power-replicates", type=_positive_int, default=None, metavar="N",
                   help="per scenario with an effect (default: as --replicates)")
    p.add_argument("--permutations", type=_positive_int, default=999,
                   help="relabellings of the permutation test of medians (default 999)")
    p.add_argument("--jobs", type=_jobs, default=1, help="processes (default 1)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--json", type=path_arg, metavar="OUT", help="write the results here")
    p.add_argument("--markdown", type=path_arg, metavar="OUT", help="write the tables here")
    p.add_argument("--quick", action="store_true",
                   help="a few scenarios only, to check the machinery")
    p.set_defaults(func=cmd_simulate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudbench.cli.analyze")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

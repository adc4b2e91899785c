"""`study analyze` and `study plan`: registered into the study command by :func:`register`.

    study analyze RUNS.csv [--json OUT] [--metric M]... [--alternative ...] [--alpha A]
    study plan SPEC --pilot RUNS.csv --effect 5% [--metric train_s] [--alpha A] [--power 0.8]

Errors in the input (a missing or malformed CSV, an unknown metric, a bad study file) print
one line to stderr and return 2, so scripts can tell them from a crash. ``python -m
cli.analyze`` runs the two subcommands without the rest of the toolkit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from data.atomic import write_text_atomic

EXIT_INPUT = 2
# analysis.stats.ALTERNATIVES, spelled out so that registering the subcommands does not
# import scipy.stats (half a second) into every `study` command (a test keeps them equal)
ALTERNATIVES = ("two-sided", "less", "greater")


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INPUT


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"alpha must be between 0 and 1, got {text}")
    return value


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse a runs CSV, print the summary, write the JSON when asked."""
    from analysis.compare import AnalysisError, analyze, load_runs
    from analysis.summary import print_summary

    try:
        frame = load_runs(args.runs, args.metric)
        order = [e.strip() for e in args.order.split(",")] if args.order else None
        result = analyze(frame, args.metric, alternative=args.alternative, alpha=args.alpha,
                         environments=order)
        if args.json is not None:
            _write_json(args.json, result.to_dict())
    except (AnalysisError, OSError) as exc:
        return _fail(exc)
    print_summary(result)
    if args.json is not None:
        print(f"analysis written to {args.json}")
    return 0


def with_configurations(frame: Any) -> Any:
    """A sweep's runs planned per cell: the dataset column then names dataset / configuration
    (the pilot's configurations differ in time, so pooling them would inflate the spread)."""
    if "configuration" not in frame.columns:
        return frame
    config = frame["configuration"].astype("string").fillna("").str.strip()
    return frame.assign(dataset=frame["dataset"].where(config.eq(""),
                                                       frame["dataset"] + " / " + config))


def cmd_plan(args: argparse.Namespace) -> int:
    """Repetitions per environment for the power asked, from a pilot, per pair and dataset."""
    from rich import box
    from rich.table import Table

    from analysis.compare import AnalysisError, load_runs
    from analysis.power import parse_effect, plan_repetitions
    from analysis.summary import make_console
    from study.spec import SpecError, load_study

    try:
        effect = parse_effect(args.effect)
        study = load_study(args.spec, check_data=False)
        frame = with_configurations(load_runs(args.pilot, [args.metric]))
        alpha = args.alpha if args.alpha is not None else study.analysis.alpha
        present = set(frame["environment"])
        envs = [e.name for e in study.environments if e.name in present]
        if len(envs) < 2:
            names = ", ".join(e.name for e in study.environments)
            raise AnalysisError(f"{args.pilot}: the pilot needs runs of at least two of the "
                                f"study's environments ({names})")
        datasets = [d for d in dict.fromkeys(frame["dataset"])
                    if d.split(" / ")[0] in {s.name for s in study.datasets}]
        if not datasets:
            raise AnalysisError(f"{args.pilot}: no runs of the study's datasets")
        plans = [plan_repetitions(frame, args.metric, a, b, effect, alpha=alpha,
                                  power=args.power, alternative=study.hypothesis,
                                  datasets=datasets, seed=study.seed)
                 for a, b in itertools.combinations(envs, 2)]
        if args.json is not None:
            _write_json(args.json, {"plans": plans})
    except (AnalysisError, SpecError, OSError) as exc:
        return _fail(exc)
    except ValueError as exc:  # the effect
        return _fail(exc)

    console = make_console()
    table = Table(title=f"{study.name}: repetitions per environment for a {effect:.1%} "
                        f"difference in {args.metric}, power {args.power}, alpha {alpha}, "
                        f"H1 {study.hypothesis}", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("a vs b", "dataset", "pilot n", "median", "sd", "Cohen's d", "t-test",
                 "Mann-Whitney", "ratio CI half-width now"):
        table.add_column(name)
    for plan in plans:
        for row in plan["datasets"]:
            table.add_row(f"{plan['a']} vs {plan['b']}", row["dataset"],
                          f"{row['n_pilot_a']} / {row['n_pilot_b']}", f"{row['median']:.4g}",
                          "-" if row["sd_pooled"] is None else f"{row['sd_pooled']:.3g}",
                          "-" if row["cohen_d"] is None else f"{row['cohen_d']:.2f}",
                          _n(row["n_t_test"]), _n(row["n_mann_whitney"]),
                          "-" if row["ratio_halfwidth"] is None
                          else f"{row['ratio_halfwidth']:.1%}")
    console.print(table)
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
    return 0


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


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def register(subparsers: Any) -> None:
    """Add `analyze` and `plan` to an argparse subparsers object (each sets `func`)."""
    p = subparsers.add_parser("analyze", help="hypothesis tests on a runs CSV",
                              description="Shapiro-Wilk, then t-test or Mann-Whitney, per "
                                          "metric, dataset and pair of environments.")
    p.add_argument("runs", type=Path, metavar="RUNS.csv")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the analysis JSON here")
    p.add_argument("--metric", action="append", metavar="M",
                   help="a metric column (repeatable; default: every numeric one)")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided",
                   help="H1 for a vs b: less means a < b (default two-sided)")
    p.add_argument("--alpha", type=_alpha, default=0.05, metavar="A")
    p.add_argument("--order", metavar="ENV,ENV,...",
                   help="the environments' order, so a is the first of each pair (default: "
                        "as they first appear in the CSV)")
    p.set_defaults(func=cmd_analyze)

    p = subparsers.add_parser("plan", help="repetitions needed, from a pilot",
                              description="Repetitions per environment for a given power, "
                                          "by t-test power and Mann-Whitney simulation.")
    p.add_argument("spec", type=Path, metavar="SPEC")
    p.add_argument("--pilot", type=Path, required=True, metavar="RUNS.csv")
    p.add_argument("--effect", required=True, help="relative difference: 5%% or 0.05")
    p.add_argument("--metric", default="train_s")
    p.add_argument("--alpha", type=_alpha, default=None, metavar="A",
                   help="default: the study's [analysis] alpha")
    p.add_argument("--power", type=_alpha, default=0.8)
    p.add_argument("--json", type=Path, metavar="OUT", help="write the plan as JSON here")
    p.set_defaults(func=cmd_plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.analyze")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

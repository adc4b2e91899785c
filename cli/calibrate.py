"""`study calibrate`: run one environment as two identical arms, then summarise the noise.

The runs are an ordinary (resumable) study of the arms NAME-A and NAME-B; the summary is
analysis.calibration's, written to calibration.json beside the study's results, where the
paper finds it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from cloudbench.cli.args import path_arg
from cloudbench.cli.run import repetitions_arg
from cloudbench.data.atomic import write_json_atomic
from cloudbench.study.spec import Study, load_study
from cloudbench.study.store import default_results_dir

console = Console()


def calibration_study(study: Study, environment: str, repetitions: int | None) -> Study:
    """The study reduced to one environment, duplicated into arms NAME-A and NAME-B."""
    from cloudbench.analysis.calibration import ARMS

    env = study.environment(environment)
    arms = tuple(dataclasses.replace(env, name=f"{env.name}-{arm}") for arm in ARMS)
    return dataclasses.replace(study, environments=arms, warmup=0,
                               repetitions=repetitions or study.planned_repetitions)


def run_calibration(study: Study, environment: str, repetitions: int | None = None,
                    output: Path | None = None, console: Console | None = None
                    ) -> dict[str, Any]:
    """Run the A/A arms (resumably, like any study) and write calibration.json."""
    from cloudbench.analysis.calibration import summarize
    from cloudbench.analysis.compare import load_runs
    from cloudbench.runners.scheduler import run_study

    root = output or default_results_dir(study.name)
    aa = calibration_study(study, environment, repetitions)
    result = run_study(aa, output=root / "calibration" / environment, console=console)
    frame = load_runs(result.store.csv_path)
    metrics = [m for m in ("train_s", "total_s") if m in frame.columns]
    summary = summarize(frame, environment, metrics, study.analysis.alpha, "two-sided",
                        study.seed, procedure=study.analysis.procedure)
    summary["runs_csv"] = str(result.store.csv_path)
    write_json_atomic(root / "calibration.json", summary)
    return summary


def cmd_calibrate(args: argparse.Namespace) -> int:
    from cloudbench.analysis.calibration import ARMS

    study = load_study(args.spec)
    summary = run_calibration(study, args.environment, args.repetitions, args.output, console)
    for entry in summary["entries"]:
        fp = entry["false_positive"]
        floor = entry["noise_floor"]
        cv = " / ".join(_percent(entry["cv"][arm]) for arm in ARMS)
        rate = "n/a (fewer than 3 runs an arm)" if fp is None else \
            f"{fp['rate']:.1%} at alpha {summary['alpha']} ({fp['splits']} random splits)"
        console.print(
            f"{entry['metric']} on {entry['dataset']}: CV {cv}, noise floor of the speed-up "
            f"{'n/a' if floor is None else f'±{floor:.1%}'}, false-positive rate {rate}",
            markup=False)
    return 0


def _percent(value: float | None) -> str:
    """A CV as a percentage; n/a where it is not defined (one run, or a mean of 0)."""
    return "n/a" if value is None else f"{value:.1%}"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("calibrate", help="A/A calibration: one environment as two arms, "
                              "for the noise floor and the false-positive rate")
    p.add_argument("spec", type=path_arg)
    p.add_argument("--environment", required=True, metavar="NAME")
    p.add_argument("--repetitions", type=repetitions_arg, metavar="N")
    p.add_argument("--output", type=path_arg, metavar="DIR")
    p.set_defaults(func=cmd_calibrate)

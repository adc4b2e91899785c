"""A/A calibration: one environment run as two identical arms.

Any difference between the arms is noise, so the A/A runs show the noise floor of this
machine (how wide the interval of the ratio of medians is when nothing differs) and the
false-positive rate of the whole procedure (Shapiro-Wilk, then t or Mann-Whitney) when
the arms are re-drawn at random many times. The paper reports both when present.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from analysis.compare import analyze, decide, load_runs
from protocols.cnn_protocol import write_json_atomic
from study.scheduler import run_study
from study.spec import Study
from study.store import default_results_dir

ARMS = ("A", "B")
N_SPLITS = 1000


def calibration_study(study: Study, environment: str, repetitions: int | None) -> Study:
    """The study reduced to one environment, duplicated into arms NAME-A and NAME-B."""
    env = study.environment(environment)
    arms = tuple(dataclasses.replace(env, name=f"{env.name}-{arm}") for arm in ARMS)
    return dataclasses.replace(study, environments=arms, warmup=0,
                               repetitions=repetitions or study.planned_repetitions)


def false_positive_rate(a: np.ndarray, b: np.ndarray, alpha: float, alternative: str,
                        rng: np.random.Generator, n_splits: int = N_SPLITS) -> dict[str, Any]:
    """How often the procedure calls two random halves of the pooled A/A runs different."""
    pooled = np.concatenate([a, b])
    hits = 0
    for _ in range(n_splits):
        perm = rng.permutation(pooled)
        _, p = decide(perm[: len(a)], perm[len(a):], alternative, alpha)
        hits += p is not None and p < alpha
    rate = hits / n_splits
    half = 1.96 * np.sqrt(rate * (1 - rate) / n_splits)
    return {"rate": rate, "ci_low": max(0.0, rate - half), "ci_high": min(1.0, rate + half),
            "splits": n_splits, "nominal": alpha}


def summarize(frame: Any, environment: str, metrics: list[str], alpha: float,
              alternative: str, seed: int) -> dict[str, Any]:
    """Noise floor and false-positive rate per metric and dataset, as JSON."""
    arms = [f"{environment}-{arm}" for arm in ARMS]
    analysis = analyze(frame, metrics=metrics, alternative=alternative, alpha=alpha, seed=seed,
                       environments=arms)
    rng = np.random.default_rng(seed)
    entries = []
    for comp in analysis["comparisons"]:
        sub = frame[frame["dataset"] == comp["dataset"]]
        a = sub.loc[sub["environment"] == comp["a"], comp["metric"]].dropna().to_numpy(float)
        b = sub.loc[sub["environment"] == comp["b"], comp["metric"]].dropna().to_numpy(float)
        ratio = comp.get("median_ratio") or {}
        low, high = ratio.get("ci_low"), ratio.get("ci_high")
        entries.append({
            "metric": comp["metric"], "dataset": comp["dataset"], "n_a": len(a), "n_b": len(b),
            "cv": {arm: comp["descriptives"][comp[side]]["cv"]
                   for arm, side in zip(ARMS, "ab", strict=True)},
            "median_ratio": ratio,
            "noise_floor": None if low is None or high is None else (high - low) / 2,
            "test_used": comp["test_used"], "p": comp["p"], "significant": comp["significant"],
            "false_positive": false_positive_rate(a, b, alpha, alternative, rng)
            if min(len(a), len(b)) >= 3 else None})
    return {"environment": environment, "alpha": alpha, "alternative": alternative,
            "arms": arms, "entries": entries}


def run_calibration(study: Study, environment: str, repetitions: int | None = None,
                    output: Path | None = None, console: Console | None = None
                    ) -> dict[str, Any]:
    """Run the A/A arms (resumably, like any study) and write calibration.json."""
    root = output or default_results_dir(study.name)
    aa = calibration_study(study, environment, repetitions)
    result = run_study(aa, output=root / "calibration" / environment, console=console)
    frame = load_runs(result.store.csv_path)
    metrics = [m for m in ("train_s", "total_s") if m in frame.columns]
    summary = summarize(frame, environment, metrics, study.analysis.alpha, "two-sided",
                        study.seed)
    summary["runs_csv"] = str(result.store.csv_path)
    write_json_atomic(root / "calibration.json", summary)
    return summary

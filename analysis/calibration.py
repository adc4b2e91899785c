"""A/A calibration: what the procedure says when the two arms are one environment.

Any difference between the arms is noise, so the A/A runs show the noise floor of the
machine (how wide the interval of the ratio of medians is when nothing differs) and the
false-positive rate of the whole procedure (Shapiro-Wilk, then t or Mann-Whitney) when
the arms are re-drawn at random many times. The rate's interval is Wilson's, which stays
honest at rates near 0 (where the Wald interval collapses to [0, 0]).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from cloudbench.analysis.compare import analyze, decide

ARMS = ("A", "B")
N_SPLITS = 1000


def false_positive_rate(a: np.ndarray, b: np.ndarray, alpha: float, alternative: str,
                        rng: np.random.Generator, n_splits: int = N_SPLITS,
                        procedure: str = "spss") -> dict[str, Any]:
    """How often the procedure ("spss" or "robust") calls two random halves of the pooled
    A/A runs different."""
    pooled = np.concatenate([a, b])
    hits = 0
    for i in range(n_splits):
        perm = rng.permutation(pooled)
        _, p = decide(perm[: len(a)], perm[len(a):], alternative, alpha, procedure, seed=i)
        hits += p is not None and p < alpha
    low, high = proportion_confint(hits, n_splits, alpha=0.05, method="wilson")
    return {"rate": hits / n_splits, "ci_low": float(low), "ci_high": float(high),
            "splits": n_splits, "nominal": alpha, "interval": "wilson"}


def summarize(frame: Any, environment: str, metrics: list[str], alpha: float,
              alternative: str, seed: int, procedure: str = "spss") -> dict[str, Any]:
    """Noise floor and false-positive rate per metric and dataset, as JSON
    (calibration.json, which the paper's calibration table reads), for the procedure."""
    arms = [f"{environment}-{arm}" for arm in ARMS]
    analysis = analyze(frame, metrics=metrics, alternative=alternative, alpha=alpha, seed=seed,
                       environments=arms, procedure=procedure)
    rng = np.random.default_rng(seed)
    entries = []
    for comp in analysis.comparisons:
        sub = frame[frame["dataset"] == comp.dataset]
        a = sub.loc[sub["environment"] == comp.a, comp.metric].dropna().to_numpy(float)
        b = sub.loc[sub["environment"] == comp.b, comp.metric].dropna().to_numpy(float)
        low, high = comp.median_ratio.ci_low, comp.median_ratio.ci_high
        entries.append({
            "metric": comp.metric, "dataset": comp.dataset, "n_a": len(a), "n_b": len(b),
            "cv": {arm: comp.descriptives[env].cv
                   for arm, env in zip(ARMS, (comp.a, comp.b), strict=True)},
            "median_ratio": comp.median_ratio.to_dict(),
            "noise_floor": None if low is None or high is None else (high - low) / 2,
            "test_used": comp.test_used, "p": comp.p, "significant": comp.significant,
            "false_positive": false_positive_rate(a, b, alpha, alternative, rng,
                                                  procedure=procedure)
            if min(len(a), len(b)) >= 3 else None})
    return {"environment": environment, "alpha": alpha, "alternative": alternative,
            "arms": arms, "entries": entries}

"""Calibrations screened for the robust procedure's test (docs/statistics.md).

Not a speed benchmark: the evidence behind "no candidate keeps alpha +- 0.01 in every
scenario". Beside the simulation's own Brunner-Munzel tests (t approximation,
studentized permutation) and Welch's t on log times, it tries the calibrations a reviewer
would suggest next, in every null scenario of analysis.simulation:

- ``bm_df_min``: Brunner-Munzel's statistic against t with min(n_a, n_b) - 1 df, the
  conservative df of Welch's problem, for the liberal small-and-noisy group;
- ``bm_mid_p``: its permutation test with the mid-p (half the relabellings as extreme
  as the data count), for the coarse permutation distribution of 5 vs 5;
- ``welch_log_perm``: Janssen's studentized permutation test of Welch's t on log times
  (every relabelling up to ``EXACT_LIMIT``, else ``EXACT_LIMIT`` random ones), only for
  the designs where the others miss (5 vs 5, 10 vs 10 and the unequal ones).

For each method and alpha it prints the scenarios outside alpha +- 0.01 (at the tables'
precision, analysis.simulation.outside) and ends with one ``method_alpha_misses=K`` line
each. Usage: python bench/screen_robust.py [REPLICATES] (default 10,000: a standard error
of 0.22 points at 5 %).
"""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
from harness import ROOT  # noqa: F401  (puts the toolkit on the path)
from scipy.special import stdtr

from cloudbench.analysis import simulation as sim

EXACT_LIMIT = 2000
SLOW_DESIGNS = {(5, 5), (10, 10), (8, 20), (20, 8), (10, 24), (24, 10)}


def _welch_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ea, eb = a.var(axis=1, ddof=1) / a.shape[1], b.var(axis=1, ddof=1) / b.shape[1]
    return (a.mean(axis=1) - b.mean(axis=1)) / np.sqrt(ea + eb)


def welch_log_perm_p(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    na, nb = x.shape[1], y.shape[1]
    pooled = np.log(np.concatenate((x, y), axis=1))
    observed = np.abs(_welch_t(pooled[:, :na], pooled[:, na:])) * (1 - 1e-12)
    exact = math.comb(na + nb, na) <= EXACT_LIMIT
    if exact:
        members = np.array(list(itertools.combinations(range(na + nb), na)))
    else:
        members = np.argpartition(rng.random((EXACT_LIMIT, na + nb)), na - 1, axis=1)[:, :na]
    in_a = np.zeros((members.shape[0], na + nb), dtype=bool)
    np.put_along_axis(in_a, members, True, axis=1)
    count = np.zeros(x.shape[0])
    for row in in_a:
        count += np.abs(_welch_t(pooled[:, row], pooled[:, ~row])) >= observed
    return count / in_a.shape[0] if exact else (1 + count) / (in_a.shape[0] + 1)


def bm_df_min_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w, _ = sim.brunner_munzel_w(x, y)
    with np.errstate(invalid="ignore"):
        return 2 * stdtr(min(x.shape[1], y.shape[1]) - 1, -np.abs(w))


def bm_mid_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = np.abs(sim.brunner_munzel_w(x, y)[0])
    null, exact = sim._bm_null(x.shape[1], y.shape[1])
    with np.errstate(invalid="ignore"):
        tol = 1e-9 * np.maximum(1.0, np.where(np.isfinite(w), w, 1.0))
    below = np.searchsorted(null, w - tol, side="left")
    upto = np.searchsorted(null, w + tol, side="right")
    return (null.size - upto + 0.5 * (upto - below)) / null.size


def main() -> None:
    replicates = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    methods = ("brunner_munzel", "brunner_munzel_perm", "welch_log_t", "bm_df_min",
               "bm_mid_p", "welch_log_perm")
    misses: dict[tuple[str, float], list[str]] = {(m, a): [] for m in methods
                                                 for a in sim.ALPHAS}
    for cell in sim.scenarios(effects=(0.0,)):
        rng = sim._rng(7, cell)
        x = sim.draw(cell.shape, sim.SPREAD, (replicates, cell.n_a), rng)
        y = sim.draw(cell.shape, sim.SPREAD * math.sqrt(cell.variance_ratio),
                     (replicates, cell.n_b), rng)
        p = {"brunner_munzel": sim.brunner_munzel_p(x, y),
             "brunner_munzel_perm": sim.brunner_munzel_perm_p(x, y),
             "welch_log_t": sim.welch_log_p(x, y), "bm_df_min": bm_df_min_p(x, y),
             "bm_mid_p": bm_mid_p(x, y)}
        if (cell.n_a, cell.n_b) in SLOW_DESIGNS:
            p["welch_log_perm"] = welch_log_perm_p(x, y, rng)
        line = []
        for m, pm in p.items():
            rates = [float(np.mean(pm < a)) for a in sim.ALPHAS]
            line.append(f"{m} {100 * rates[1]:.2f}")
            for a, r in zip(sim.ALPHAS, rates, strict=True):
                if sim.outside(r, a):
                    misses[m, a].append(f"{cell.shape} {cell.n_a}v{cell.n_b} "
                                        f"r{cell.variance_ratio:g}: {100 * r:.2f} %")
        print(f"{cell.key}: " + ", ".join(line), flush=True)
    for (m, a), where in misses.items():
        print(f"{m} at alpha {a:g}: {len(where)} outside: " + "; ".join(where))
    for (m, a), where in misses.items():
        print(f"{m}_{a:g}_misses={len(where)}")


if __name__ == "__main__":
    main()

"""Candidates screened for the robust procedure's test (docs/statistics.md, issue 29).

Not a speed benchmark: the evidence behind the choice of the robust procedure. In every
null scenario of analysis.simulation (variance ratios up to 25, groups from 5 to 50 runs,
the noisier one small or large, four shapes of noise) it measures the type-I error at
alpha .05, two-sided and for each one-sided alternative, of

- ``yuen_10``, ``yuen_20``, ``yuen_25``: Yuen's trimmed Welch test on log times, trimming
  10, 20 or 25 % at each end (analysis.stats.yuen_rows);
- ``welch_log``: Welch's t on log times (Yuen's with no trimming);
- ``bm_t``: Brunner-Munzel's t approximation; ``bm_df_min``: its statistic against t with
  min(n_a, n_b) - 1 df; ``bm_perm``: its studentized permutation test (Neubert and
  Brunner 2007), one-sided from the signed permutation distribution;
- ``iut_perm`` and ``iut_t``: significant only where Yuen's 20 % test and Brunner-Munzel's
  (permutation, or t approximation) both are, in the same direction: p = max of the two
  (an intersection-union test; ``iut_t`` is the robust procedure's test from 8 runs);

and, with ``--power``, their power against a 10 % slowdown of b. For each method it prints
one line per scenario and ends with the largest rates over the scenarios with at least 8
runs a group and the count above 6.5 % (``METHOD_misses=K``).

Usage: python bench/screen_robust.py [REPLICATES] [--power]
(default 10,000 replicates: a standard error of 0.22 points at 5 %).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from harness import ROOT  # noqa: F401  (puts the toolkit on the path)
from scipy.special import stdtr

from cloudbench.analysis import simulation as sim
from cloudbench.analysis import stats as S

BAR, MIN_RUNS, ALPHA = 0.065, 8, 0.05


def sides(t: np.ndarray, df: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """(two-sided, H1 a < b, H1 a > b) p of a t statistic of a - b."""
    with np.errstate(invalid="ignore"):
        return 2 * stdtr(df, -np.abs(t)), stdtr(df, t), stdtr(df, -t)


def candidates(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    lx, ly = np.log(x), np.log(y)
    out = {f"yuen_{round(100 * trim)}": sides(*S.yuen_rows(lx, ly, trim)[:2])
           for trim in (0.1, 0.2, 0.25)}
    out["welch_log"] = sides(*S.yuen_rows(lx, ly, 0.0)[:2])
    w, df = sim.brunner_munzel_w(x, y)  # W > 0: b tends to be larger
    out["bm_t"] = sides(-w, df)
    out["bm_df_min"] = sides(-w, min(x.shape[1], y.shape[1]) - 1)
    p2 = sim.brunner_munzel_perm_p(x, y)
    null, exact = sim._bm_null_signed(x.shape[1], y.shape[1])
    tol = 1e-9 * np.maximum(1.0, np.where(np.isfinite(w), np.abs(w), 1.0))
    counts = (null.size - np.searchsorted(null, w - tol, side="left"),
              np.searchsorted(null, w + tol, side="right"))
    out["bm_perm"] = (p2, *(k / null.size if exact else (1 + k) / (null.size + 1)
                            for k in counts))
    t = S.yuen_rows(lx, ly)[0]
    with np.errstate(invalid="ignore"):
        same = t * w < 0
    for name, bm in (("iut_perm", out["bm_perm"]), ("iut_t", out["bm_t"])):
        y20 = out["yuen_20"]
        out[name] = (np.where(same, np.maximum(y20[0], bm[0]), 1.0),
                     np.maximum(y20[1], bm[1]), np.maximum(y20[2], bm[2]))
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    replicates = int(args[0]) if args else 10_000
    effect = 0.10 if "--power" in sys.argv else 0.0
    worst: dict[str, list[tuple[float, str]]] = {}
    power: dict[str, list[float]] = {}
    for cell in sim.scenarios(effects=(0.0,)):
        rng = sim._rng(7, cell)
        x = sim.draw(cell.shape, sim.SPREAD, (replicates, cell.n_a), rng)
        y = sim.draw(cell.shape, sim.SPREAD * math.sqrt(cell.variance_ratio),
                     (replicates, cell.n_b), rng) * (1 + effect)
        line = []
        for name, ps in candidates(x, y).items():
            rates = [float(np.mean(p < ALPHA)) for p in ps]
            line.append(name + " " + "/".join(f"{100 * r:.2f}" for r in rates))
            if min(cell.n_a, cell.n_b) >= MIN_RUNS:
                worst.setdefault(name, []).extend(
                    (r, f"{cell.key} {side}") for r, side in
                    zip(rates, ("two-sided", "less", "greater"), strict=True))
                power.setdefault(name, []).append(rates[0])
        print(f"{cell.key}: " + ", ".join(line), flush=True)
    for name, found in worst.items():
        top = max(found)
        what = "power" if effect else "type-I error"
        print(f"{name}: largest {what} {100 * top[0]:.2f} % ({top[1]}); mean two-sided "
              f"{100 * float(np.mean(power[name])):.2f} %")
    if not effect:
        for name, found in worst.items():
            print(f"{name}_misses={sum(r > BAR for r, _ in found)}")


if __name__ == "__main__":
    main()

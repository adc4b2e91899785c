"""How many repetitions a study needs, from a pilot (issue 5's `study plan`).

Two answers per dataset and pair of environments, for a relative effect (0.05: the
environments differ by 5 % of the pilot's level) at a power (0.8) and alpha:

- the t-test's, from statsmodels' TTestIndPower with Cohen's d = effect x pilot mean /
  pooled pilot sd;
- Mann-Whitney's, by simulation, because its power depends on the shape of the noise
  (timings are skewed, with slow outliers): pilot residuals (each run minus its group's
  median) are resampled with a little Gaussian smoothing (Silverman's bandwidth, so the
  resamples are not riddled with the ties a plain bootstrap of a small pilot makes), one
  arm is shifted by effect x pilot median, and the same test the analysis would use
  (exact below 50 runs, else asymptotic) is applied 400 times per candidate n. The
  smallest n reaching the power is found by doubling then bisection, on common random
  numbers so that power grows with n instead of jittering.

With an equivalence margin (``[analysis] equivalence``, or ``--equivalence``), a third
answer: the repetitions for the TOST on log values (analysis.equivalence) to show
equivalence at that margin with the power asked, if the environments are in truth equally
fast (ratio 1). Its power is exact for the pooled-variance TOST: the probability that the
(1 - 2 alpha) interval of the mean log difference lies within [log(1 - margin),
log(1 + margin)], integrated over the chi-square distribution of the sample variance
(Owen's Q, as R's PowerTOST computes it), with the pilot's log variances of the two arms
averaged (for equal arms that is Welch's standard error) and df = 2n - 2.

``ratio_halfwidth`` serves ``repetitions = "auto"``: the relative half-width of the
bootstrap 95 % interval of the ratio of medians, which the scheduler compares to its target.

Small studies (issue 29): below 8 runs a group (analysis.results.SMALL_STUDY_RUNS) a
non-significant result is "inconclusive", and :func:`small_study` says before any run
what such a study can find: the robust procedure's power against a 10 % and a 20 %
slowdown at the study's size (by simulation, with the reference study's spread unless a
pilot measured one), and the smallest p its permutation test can give beside what Holm's
correction over the study's datasets needs. :func:`robust_repetitions` is the
repetitions the robust procedure needs for a pilot's own spreads, each environment's kept
(a cloud is noisier than a PC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import integrate
from scipy import stats as sps
from scipy.special import ndtr, stdtrit

from cloudbench.analysis import results as R
from cloudbench.analysis import stats as S

N_SIMULATIONS = 400
N_MAX = 5000  # beyond this the answer is "the effect is too small to detect here"


def parse_effect(text: str | float) -> float:
    """A relative effect from "5%", "5 %" or "0.05"; a bare number must be a fraction."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"effect: expected a percentage such as 5% or a fraction such as "
                         f"0.05, got {text!r}") from None
    if not 0 < value < 1:
        raise ValueError(f"effect: must be between 0 and 100 % (write 5% or 0.05), "
                         f"got {text!r}")
    return value


def _one_sided(alternative: str) -> bool:
    return S.check_alternative(alternative) != "two-sided"


def t_test_repetitions(a: S.Values, b: S.Values, effect: float, alpha: float = 0.05,
                       power: float = 0.8, alternative: str = "two-sided") -> int | None:
    """Repetitions per environment for Student's t to detect effect x pilot mean.

    None when the pilot has fewer than two runs per arm; 2, the minimum, when it shows no
    variance at all (any difference is then detected).
    """
    from statsmodels.stats.power import TTestIndPower

    x, y = S.clean(a), S.clean(b)
    sd = S.pooled_sd(x, y)
    if sd is None:
        return None
    if sd == 0:
        return 2
    d = effect * abs(float(np.mean(np.concatenate((x, y))))) / sd
    try:
        n = TTestIndPower().solve_power(effect_size=d, alpha=alpha, power=power, ratio=1.0,
                                        alternative="larger" if _one_sided(alternative)
                                        else "two-sided")
    except (ValueError, RuntimeError, ArithmeticError):
        return None
    n = float(np.ravel(n)[0])
    return max(2, math.ceil(n)) if math.isfinite(n) else None


class _Arm:
    """Smoothed-bootstrap draws of one arm, one column per simulation. Rows are drawn in
    order and kept, so n runs are always the first n rows: common random numbers across n."""

    def __init__(self, residuals: np.ndarray, bandwidth: float, n_sim: int,
                 rng: np.random.Generator):
        self.residuals, self.bandwidth, self.n_sim, self.rng = residuals, bandwidth, n_sim, rng
        self.rows = np.empty((0, n_sim))

    def first(self, n: int) -> np.ndarray:
        if n > self.rows.shape[0]:
            more = max(n, 2 * self.rows.shape[0]) - self.rows.shape[0]
            idx = (self.rng.random((more, self.n_sim)) * self.residuals.size).astype(np.int64)
            fresh = self.residuals[idx] + self.bandwidth * self.rng.standard_normal(idx.shape)
            self.rows = np.vstack((self.rows, fresh))
        return self.rows[:n]


def _smallest_n(power_at: Callable[[int], float], target: float, n_max: int) -> int | None:
    """The smallest n >= 2 with power_at(n) >= target: doubling, then bisection."""
    low, n = 1, 2
    while power_at(n) < target:
        if n >= n_max:
            return None
        low, n = n, min(2 * n, n_max)
    while n - low > 1:
        mid = (low + n) // 2
        if power_at(mid) >= target:
            n = mid
        else:
            low = mid
    return n


def mann_whitney_repetitions(a: S.Values, b: S.Values, effect: float, alpha: float = 0.05,
                             power: float = 0.8, alternative: str = "two-sided",
                             n_sim: int = N_SIMULATIONS, seed: int = 0,
                             n_max: int = N_MAX) -> int | None:
    """Repetitions per environment for Mann-Whitney to detect a shift of effect x pilot
    median, by simulation from the pilot's residuals (see the module's docstring).

    None when the pilot is too small (fewer than 2 runs per arm) or n_max does not suffice.
    """
    S.check_alternative(alternative)
    x, y = S.clean(a), S.clean(b)
    if x.size < 2 or y.size < 2:
        return None
    residuals = np.concatenate((x - np.median(x), y - np.median(y)))
    shift = effect * abs(float(np.median(np.concatenate((x, y)))))
    iqr = float(np.subtract(*np.percentile(residuals, [75, 25])))
    spread = min(float(residuals.std(ddof=1)), iqr / 1.34) or float(residuals.std(ddof=1))
    bandwidth = 0.9 * spread * residuals.size ** -0.2
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    arm_a, arm_b = _Arm(residuals, bandwidth, n_sim, rng_a), _Arm(residuals, bandwidth, n_sim,
                                                                  rng_b)
    # H1 "greater" (a > b): a is shifted up; otherwise b is (a < b, or either for two-sided)
    up_a = alternative == "greater"
    cache: dict[int, float] = {}

    def power_at(n: int) -> float:
        if n not in cache:
            xa = arm_a.first(n) + (shift if up_a else 0.0)
            xb = arm_b.first(n) + (0.0 if up_a else shift)
            exact = 2 * n < S.EXACT_LIMIT and bandwidth > 0
            res = sps.mannwhitneyu(xa, xb, alternative=alternative, axis=0,
                                   use_continuity=False,
                                   method="exact" if exact else "asymptotic")
            cache[n] = float(np.mean(res.pvalue < alpha))
        return cache[n]

    return _smallest_n(power_at, power, n_max)


def tost_power(n: int, sd_log: float, margin: float, alpha: float = 0.05,
               ratio: float = 1.0) -> float:
    """Power of the TOST on log values with n runs per environment, the log values' sd
    `sd_log` in both, margin +-margin and a true ratio a / b (module docstring).

    The interval d -+ t s c (c = sqrt(2 / n)) lies within [L, U] exactly when
    L + t s c < d < U - t s c; d is normal around log(ratio) with sd sd_log c, and
    s^2 = sd_log^2 V / df with V chi-square on df = 2n - 2 degrees of freedom.
    """
    if n < 2:
        return 0.0
    low, high = math.log(1 - margin), math.log(1 + margin)
    delta = math.log(ratio)
    if sd_log == 0:
        return 1.0 if low < delta < high else 0.0
    df = 2 * n - 2
    c = math.sqrt(2 / n)
    t = float(stdtrit(df, 1 - alpha))
    sigma = sd_log * c
    v_max = df * ((high - low) / (2 * t * c * sd_log)) ** 2  # beyond: the interval is too wide

    def inside(v: float) -> float:
        half = t * c * sd_log * math.sqrt(v / df)
        p = float(ndtr((high - half - delta) / sigma) - ndtr((low + half - delta) / sigma))
        return max(p, 0.0) * float(sps.chi2.pdf(v, df))

    value, _ = integrate.quad(inside, 0.0, v_max, limit=200)
    return float(min(max(value, 0.0), 1.0))


def equivalence_repetitions(a: S.Values, b: S.Values, margin: float, alpha: float = 0.05,
                            power: float = 0.8, ratio: float = 1.0,
                            n_max: int = N_MAX) -> int | None:
    """Repetitions per environment for the TOST on log values to show equivalence within
    +-margin with the power asked, from the pilot's log variances (module docstring).

    None when the pilot has fewer than two runs per arm, a value that is not positive, or
    when n_max runs do not suffice (a true ratio outside the margin never does).
    """
    x, y = S.clean(a), S.clean(b)
    if x.size < 2 or y.size < 2 or not (S.positive(x) and S.positive(y)):
        return None
    sd_log = math.sqrt((np.log(x).var(ddof=1) + np.log(y).var(ddof=1)) / 2)
    if sd_log == 0:
        return 2 if 1 - margin < ratio < 1 + margin else None
    return _smallest_n(lambda n: tost_power(n, sd_log, margin, alpha, ratio), power, n_max)


def ratio_halfwidth(a: S.Values, b: S.Values, conf_level: float = 0.95,
                    n_boot: int = S.DEFAULT_BOOTSTRAP, seed: int = 0) -> float | None:
    """Relative half-width of the bootstrap interval of median(a) / median(b):
    (high - low) / 2 / estimate; None when the ratio or its interval is not defined."""
    ratio = S.median_ratio(a, b, conf_level=conf_level, n_boot=n_boot, seed=seed)
    est, low, high = ratio.estimate, ratio.ci_low, ratio.ci_high
    if est is None or low is None or high is None or est == 0:
        return None
    return (high - low) / 2 / abs(est)


def _sd_log(x: np.ndarray) -> float | None:
    """The sd of the log values of one arm (None below 2 runs or with a value not positive)."""
    return S.num(np.log(x).std(ddof=1)) if x.size > 1 and S.positive(x) else None


def plan_repetitions(frame: pd.DataFrame, metric: str, env_a: str, env_b: str, effect: float,
                     alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided",
                     datasets: Sequence[str] | None = None, seed: int = 0,
                     margin: float | None = None) -> dict[str, Any]:
    """Repetitions for one metric and pair of environments, per dataset of the pilot frame
    (columns environment, dataset and the metric; only usable runs count), and overall: the
    largest over the datasets, since every dataset is run the same number of times: for
    the t-test, Mann-Whitney and the robust procedure (``n_robust``, from each arm's own
    spread of log values, ``sd_log_a`` and ``sd_log_b``). With a margin, also those to show
    equivalence within it (``n_equivalence``)."""
    from cloudbench.analysis.compare import AnalysisError, check_metrics, usable_runs

    check_metrics(frame, [metric])
    frame = usable_runs(frame)
    values = pd.to_numeric(frame[metric], errors="coerce")
    available = list(dict.fromkeys(frame["dataset"].astype(str)))
    rows = []
    wanted = list(datasets if datasets is not None else available)
    for dataset in wanted:
        here = frame["dataset"].astype(str) == dataset
        a = values[here & (frame["environment"].astype(str) == env_a)].to_numpy(float)
        b = values[here & (frame["environment"].astype(str) == env_b)].to_numpy(float)
        a, b = S.clean(a), S.clean(b)
        if a.size == 0 or b.size == 0:
            missing = env_a if a.size == 0 else env_b
            raise AnalysisError(f"pilot: no usable {metric} runs of {missing!r} on {dataset!r}")
        pooled = np.concatenate((a, b))
        sd = S.pooled_sd(a, b)
        rows.append({
            "dataset": dataset, "n_pilot_a": int(a.size), "n_pilot_b": int(b.size),
            "mean": float(pooled.mean()), "median": float(np.median(pooled)),
            "sd_pooled": sd,
            "cohen_d": S.num(effect * abs(pooled.mean()) / sd) if sd else None,
            "n_t_test": t_test_repetitions(a, b, effect, alpha, power, alternative),
            "n_mann_whitney": mann_whitney_repetitions(a, b, effect, alpha, power, alternative,
                                                       seed=seed),
            "ratio_halfwidth": ratio_halfwidth(a, b, seed=seed),
            "sd_log_a": _sd_log(a), "sd_log_b": _sd_log(b),
            "n_robust": robust_repetitions(a, b, effect, alpha, power, alternative,
                                           seed=seed, family=len(wanted)),
        })
        if margin is not None:
            logs = S.positive(a) and S.positive(b)
            rows[-1]["sd_log"] = S.num(math.sqrt((np.log(a).var(ddof=1)
                                                  + np.log(b).var(ddof=1)) / 2)) \
                if logs and a.size > 1 and b.size > 1 else None
            rows[-1]["n_equivalence"] = equivalence_repetitions(a, b, margin, alpha, power)

    def largest(key: str) -> int | None:
        found = [r[key] for r in rows]
        return None if not found or None in found else max(found)

    out = {"metric": metric, "a": env_a, "b": env_b, "effect": effect, "alpha": alpha,
           "power": power, "alternative": alternative, "datasets": rows,
           "n_t_test": largest("n_t_test"), "n_mann_whitney": largest("n_mann_whitney"),
           "n_robust": largest("n_robust")}
    if margin is not None:
        out.update(equivalence=margin, n_equivalence=largest("n_equivalence"))
    return out


# --------------------------------------------------------------------------- small studies


#: The spread of log times assumed before any run: the reference study's, about 8 % (the
#: simulation's group a, analysis.simulation.SPREAD).
REFERENCE_SPREAD = 0.08
SMALL_STUDY_SIMULATIONS = 2000
SLOWDOWNS = (0.10, 0.20)


def robust_power(n_a: int, n_b: int, effect: float, spread_a: float = REFERENCE_SPREAD,
                 spread_b: float | None = None, alpha: float = 0.05,
                 alternative: str = "two-sided", n_sim: int = SMALL_STUDY_SIMULATIONS,
                 seed: int = 0) -> float:
    """The robust procedure's power with n_a and n_b runs when one environment is `effect`
    slower (b, or a for H1 "greater"), log-normal times with these sds of the logs; by
    simulation of the procedure's own test (analysis.simulation.robust_p_rows), seeded."""
    from cloudbench.analysis.simulation import robust_p_rows

    S.check_alternative(alternative)
    rng = np.random.default_rng([seed, n_a, n_b])
    shift = math.log(1 + effect)
    x = spread_a * rng.standard_normal((n_sim, n_a))
    y = (spread_b if spread_b is not None else spread_a) * rng.standard_normal((n_sim, n_b))
    if alternative == "greater":
        x += shift
    else:
        y += shift
    return float(np.mean(robust_p_rows(np.exp(x), np.exp(y), alternative) < alpha))


def smallest_p(n_a: int, n_b: int, alternative: str = "two-sided") -> float:
    """The smallest p the robust procedure's permutation test (below 8 runs a group) can
    give: a complete separation, 1 / C(n_a + n_b, n_a) per tail over every relabelling,
    or 1 / 20,001 over drawn ones; the exact Mann-Whitney test of SPSS's has the same."""
    if S.all_relabellings(n_a, n_b, S.BM_PERMUTATIONS):
        return S.separation_p(n_a, n_b, alternative)
    return 1 / (S.BM_PERMUTATIONS + 1)


@dataclass(frozen=True)
class SmallStudy:
    """What a study of fewer than 8 runs a group can find (:func:`small_study`)."""

    runs: int  # per environment and dataset
    family: int  # comparisons in one Holm family: datasets x configurations
    alpha: float
    alternative: str
    spread: float  # the sd of the log times assumed
    power: dict[float, float]  # slowdown -> the robust procedure's power
    smallest_p: float  # the robust procedure's, with these runs
    needed_p: float  # alpha / family: Holm's first step
    reachable: bool  # whether smallest_p can pass Holm's first step

    def lines(self) -> list[str]:
        """The warning, in plain text: what `study validate` and `study plan` print."""
        power = ", ".join(f"{self.power[e]:.0%} for a {e:.0%} slowdown" for e in self.power)
        out = [f"only {self.runs} run(s) per environment and dataset, fewer than "
               f"{R.SMALL_STUDY_RUNS}: a non-significant comparison will read "
               f"'inconclusive', not 'no difference'",
               f"power of the robust procedure at this size, for one comparison before "
               f"Holm's correction (alpha {self.alpha:g}, {self.alternative}, log times "
               f"with sd {self.spread:.3g}): {power}"]
        holm = (f"Holm's correction over {self.family} comparison(s) per metric and pair "
                f"needs p < {self.needed_p:.3g} for the first rejection")
        out.append(f"the smallest p the robust procedure's permutation test can give with "
                   f"{self.runs} vs {self.runs} runs is {self.smallest_p:.3g}; {holm}"
                   + ("" if self.reachable else ": no difference can ever be significant"))
        return out


def small_study(runs: int, family: int = 1, alpha: float = 0.05,
                alternative: str = "two-sided", spread: float = REFERENCE_SPREAD,
                n_sim: int = SMALL_STUDY_SIMULATIONS, seed: int = 0) -> SmallStudy | None:
    """The small-study warning for `runs` per environment (None from 8 runs on): the robust
    procedure's power against a 10 % and a 20 % slowdown, and whether its smallest p can
    pass Holm's correction over `family` comparisons (a metric's datasets x
    configurations), before any run."""
    if runs >= R.SMALL_STUDY_RUNS:
        return None
    n = max(int(runs), 2)
    low = smallest_p(n, n, alternative)
    needed = alpha / max(family, 1)
    return SmallStudy(runs=int(runs), family=max(family, 1), alpha=alpha,
                      alternative=alternative, spread=spread,
                      power={e: robust_power(n, n, e, spread, spread, alpha, alternative,
                                             n_sim, seed) for e in SLOWDOWNS},
                      smallest_p=low, needed_p=needed, reachable=low < needed)


def pilot_spread(frame: pd.DataFrame, metric: str) -> float | None:
    """The pilot's spread of log values for the small-study warning: the root mean square
    of every environment and dataset's sd of the log values (None without two runs of
    positive values anywhere)."""
    values = pd.to_numeric(frame[metric], errors="coerce")
    sds = [_sd_log(S.clean(v.to_numpy(float)))
           for _, v in values.groupby([frame["environment"], frame["dataset"]])]
    found = [sd for sd in sds if sd is not None]
    return math.sqrt(float(np.mean(np.square(found)))) if found else None


def robust_repetitions(a: S.Values, b: S.Values, effect: float, alpha: float = 0.05,
                       power: float = 0.8, alternative: str = "two-sided",
                       n_sim: int = N_SIMULATIONS, seed: int = 0, n_max: int = 1000,
                       family: int = 1) -> int | None:
    """Repetitions per environment for the robust procedure to detect a relative slowdown
    `effect` with the power asked, from the pilot's own spreads: each arm's log residuals
    (log time minus the arm's median log time), resampled with Gaussian smoothing as
    :func:`mann_whitney_repetitions` does, so a noisy cloud stays noisier than a PC.

    Below 8 runs a group a size counts only if the permutation test's smallest p can pass
    Holm's first step over `family` comparisons (the datasets x configurations of a metric
    and pair): with 4 runs a group its 2/70 never passes .05/2. None when the pilot has
    fewer than 2 runs an arm or a value that is not positive, or when n_max runs do not
    suffice.
    """
    from cloudbench.analysis.simulation import robust_p_rows

    S.check_alternative(alternative)
    x, y = S.clean(a), S.clean(b)
    if x.size < 2 or y.size < 2 or not (S.positive(x) and S.positive(y)):
        return None
    arms = []
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]
    for values, rng in zip((np.log(x), np.log(y)), streams, strict=True):
        residuals = values - np.median(values)
        iqr = float(np.subtract(*np.percentile(residuals, [75, 25])))
        sd = float(residuals.std(ddof=1))
        bandwidth = 0.9 * (min(sd, iqr / 1.34) or sd) * residuals.size ** -0.2
        arms.append(_Arm(residuals, bandwidth, n_sim, rng))
    shift = math.log(1 + effect)
    up_a = alternative == "greater"
    cache: dict[int, float] = {}

    def power_at(n: int) -> float:
        if n < R.SMALL_STUDY_RUNS and smallest_p(n, n, alternative) * max(family, 1) >= alpha:
            return 0.0
        if n not in cache:
            xa = arms[0].first(n).T + (shift if up_a else 0.0)
            xb = arms[1].first(n).T + (0.0 if up_a else shift)
            cache[n] = float(np.mean(robust_p_rows(np.exp(xa), np.exp(xb), alternative)
                                     < alpha))
        return cache[n]

    return _smallest_n(power_at, power, n_max)

"""Statistics for comparing two environments, with SPSS's conventions and R's numbers.

Every function takes plain numeric arrays (NaN is dropped, except where a function says it
keeps positions) and returns a named, typed result of :mod:`analysis.results` (as
scipy.stats returns named results) whose fields are JSON-ready: Python floats and ints,
``None`` where a value cannot be computed (too few observations, constant data), never NaN
and never an exception for small or degenerate samples, because one empty group must not
stop the analysis of a whole study.

Only scipy's public API is used. The exact null distribution of Mann-Whitney's U, which the
exact Hodges-Lehmann interval needs and scipy keeps private, is this module's own
(:class:`ExactU`), computed as R's ``pwilcox`` and ``qwilcox`` compute it.

The conventions are the ones of docs/design.md ("The analysis JSON"): SPSS's for
what is reported (U is the smaller U, W the rank sum of the smaller group, Z without
continuity correction and never positive), R's ``stats`` package for the values, which
``tests/test_stats_parity.py`` checks to 1e-6. ``alternative`` follows R's for ``x=a,
y=b``: "less" means H1: a < b, "greater" means H1: a > b.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr, stdtr

from cloudbench.analysis.results import (
    BrunnerMunzel,
    Descriptives,
    HodgesLehmann,
    KruskalWallis,
    Levene,
    MannWhitney,
    MedianRatio,
    Outliers,
    Ranks,
    ShapiroWilk,
    StudentT,
    WelchLogT,
    WelchT,
    YuenBrunnerMunzel,
    YuenLog,
)

ALTERNATIVES = ("two-sided", "less", "greater")
# The exact Mann-Whitney p and the exact Hodges-Lehmann interval need no ties and
# n_a + n_b below this (docs/design.md); above it the normal approximation is accurate.
EXACT_LIMIT = 50
CV_LIMIT = 0.10  # pyperf warns when the standard deviation exceeds 10 % of the mean
MODIFIED_Z_LIMIT = 3.5  # Iglewicz and Hoaglin's cut-off
TUKEY_K = 1.5
DEFAULT_BOOTSTRAP = 10_000
#: Relabellings of Brunner-Munzel's permutation test: all of them up to this many, else this
#: many at random (the Monte Carlo error of a p of .05 is then 0.0015).
BM_PERMUTATIONS = 20_000
#: Yuen's test trims this share of each group's runs at each end (the usual 20 %).
YUEN_TRIM = 0.2
_R_ROOT_TOL = 1e-4  # wilcox.test's tol.root
_DBL_EPSILON = float(np.finfo(float).eps)

Values = Sequence[float] | np.ndarray


# --------------------------------------------------------------------------- helpers


def clean(x: Values) -> np.ndarray:
    """The finite values of x as a float array (NaN and missing runs dropped)."""
    arr = np.asarray(x, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def num(x: Any) -> float | None:
    """A JSON-safe float: None for NaN, infinity and None."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}, "
                         f"got {alternative!r}")
    return alternative


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence scipy's small-sample and division warnings: the caller reports None instead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _tie_sizes(sorted_values: np.ndarray) -> np.ndarray:
    """Sizes of the runs of equal values in a sorted array (1 for untied values)."""
    if sorted_values.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return np.diff(np.r_[starts, sorted_values.size])


def _tie_term(sizes: np.ndarray) -> float:
    """sum(t^3 - t) over tie groups, the correction in the variance of U and of H."""
    t = sizes.astype(float)
    return float(np.sum(t**3 - t))


# --------------------------------------------------------------------------- describing groups


def descriptives(x: Values) -> Descriptives:
    """n, mean, sd (n - 1), median, quartiles, min, max and CV = sd / mean.

    Quartiles use SPSS's default definition ("weighted average", HAVERAGE), the quantile at
    position p(n + 1): numpy's ``method="weibull"``, R's ``quantile(type = 6)``.
    """
    v = clean(x)
    n = int(v.size)
    if n == 0:
        return Descriptives(n=0)
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else None
    q1, q3 = np.quantile(v, [0.25, 0.75], method="weibull")
    return Descriptives(n=n, mean=mean, sd=sd, median=float(np.median(v)), q1=float(q1),
                        q3=float(q3), min=float(v.min()), max=float(v.max()),
                        cv=num(sd / mean) if sd is not None and mean != 0 else None)


def shapiro_wilk(x: Values) -> ShapiroWilk:
    """Shapiro-Wilk's W and p (scipy's AS R94, as R's shapiro.test).

    None for n < 3 and for constant data, where the test is not defined (R stops there).
    Beyond n = 5000 R refuses and scipy warns that p may be inaccurate; the value is kept.
    """
    v = clean(x)
    if v.size < 3 or np.ptp(v) == 0:
        return ShapiroWilk()
    with _quiet():
        res = sps.shapiro(v)
    return ShapiroWilk(W=num(res.statistic), p=num(res.pvalue))


def modified_z_outliers(x: Values, limit: float = MODIFIED_Z_LIMIT) -> list[int]:
    """Positions (in x, NaN kept in place, never flagged) with |0.6745 (x - median) / MAD| > limit.

    Where the MAD is 0 (more than half the values equal) the mean absolute deviation
    scaled by 1.253314 stands in, as Iglewicz and Hoaglin suggest; if that is 0 too,
    nothing is flagged.
    """
    arr = np.asarray(x, dtype=float).ravel()
    ok = np.isfinite(arr)
    v = arr[ok]
    if v.size < 3:
        return []
    dev = np.abs(arr - np.median(v))
    mad = float(np.median(dev[ok]))
    with np.errstate(invalid="ignore"):
        if mad > 0:
            score = 0.6745 * dev / mad
        else:
            mean_ad = float(np.mean(dev[ok]))
            if mean_ad == 0:
                return []
            score = dev / (1.253314 * mean_ad)
        return np.flatnonzero(ok & (score > limit)).tolist()


def tukey_outliers(x: Values, k: float = TUKEY_K) -> list[int]:
    """Positions outside Tukey's fences [q1 - k IQR, q3 + k IQR] (SPSS's quartiles)."""
    arr = np.asarray(x, dtype=float).ravel()
    ok = np.isfinite(arr)
    v = arr[ok]
    if v.size < 3:
        return []
    q1, q3 = np.quantile(v, [0.25, 0.75], method="weibull")
    low, high = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(ok & ((arr < low) | (arr > high))).tolist()


def outlier_flags(x: Values) -> Outliers:
    """Both rules' flagged positions. Flags only: nothing is ever removed from the analysis."""
    return Outliers(modified_z=tuple(modified_z_outliers(x)), tukey=tuple(tukey_outliers(x)))


def measurement_warnings(x: Values, check_warmup: bool = True, cv_limit: float = CV_LIMIT,
                         warmup_excess: float = 0.10) -> list[str]:
    """pyperf-style warnings about the measurements of one group, x in run order.

    Unstable: the standard deviation is more than ``cv_limit`` of the mean. Warm-up: the
    first run is slower than the median of the others by more than ``warmup_excess`` and by
    more than three robust standard deviations (1.4826 MAD) of the others, the signature of
    caches, tracing or compilation that later runs do not pay (only for timings, where
    larger means slower: pass ``check_warmup=False`` for other metrics).
    """
    v = clean(x)
    out: list[str] = []
    if v.size >= 2 and v.mean() != 0:
        cv = float(v.std(ddof=1) / abs(v.mean()))
        if cv > cv_limit:
            out.append(f"the standard deviation is {100 * cv:.1f} % of the mean "
                       f"(more than {100 * cv_limit:.0f} %): the measurements are unstable; "
                       "look for background load or add repetitions")
    if check_warmup and v.size >= 4:
        rest = v[1:]
        med = float(np.median(rest))
        spread = 1.4826 * float(np.median(np.abs(rest - med)))
        if med > 0 and v[0] > med * (1 + warmup_excess) and v[0] > med + 3 * spread:
            out.append(f"the first run ({v[0]:.4g}) is {100 * (v[0] / med - 1):.0f} % slower "
                       f"than the median of the others ({med:.4g}): consider warm-up runs")
    return out


# --------------------------------------------------------------------------- Mann-Whitney


def _pooled_ranks(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid-ranks of a and b in the pooled sample (ties get their average rank, as in SPSS and R)
    and the sizes of the tie groups."""
    pooled = np.concatenate((a, b))
    return sps.rankdata(pooled), _tie_sizes(np.sort(pooled))


def rank_table(a: Values, b: Values) -> tuple[Ranks, Ranks]:
    """SPSS's "Ranks" table: n, mean rank and sum of ranks of each group in the pooled sample."""
    x, y = clean(a), clean(b)
    ranks, _ = _pooled_ranks(x, y)
    rows = []
    for part in (ranks[:x.size], ranks[x.size:]):
        n = int(part.size)
        rows.append(Ranks(n=n, mean_rank=float(part.mean()) if n else None,
                          sum_ranks=float(part.sum()) if n else None))
    return rows[0], rows[1]


def mann_whitney(a: Values, b: Values, alternative: str = "two-sided") -> MannWhitney:
    """Mann-Whitney U test as SPSS reports it, with R's p-values.

    U is the smaller of U_a and U_b; W (Wilcoxon) the rank sum of the smaller group, or of
    the group with the smaller rank sum when both have the same size; Z uses the
    tie-corrected variance without continuity correction and is never positive.
    p_asymptotic comes from Z (one-sided from the signed Z of a when an alternative is
    given, as R's ``wilcox.test(exact=FALSE, correct=FALSE)``); p_exact from scipy's exact
    distribution of U (``mannwhitneyu(method="exact")``, as R's ``wilcox.test(exact=TRUE)``),
    only when there are no ties and n_a + n_b < 50. r = |Z| / sqrt(N). rank_biserial =
    (U_a - U_b) / (n_a n_b), signed: positive when a tends to be larger than b.
    """
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    na, nb = x.size, y.size
    if na == 0 or nb == 0:
        return MannWhitney()
    ranks, ties = _pooled_ranks(x, y)
    n = na + nb
    rank_a, rank_b = float(ranks[:na].sum()), float(ranks[na:].sum())
    u_a = rank_a - na * (na + 1) / 2
    u_b = na * nb - u_a
    wilcoxon = (rank_a if na < nb else rank_b) if na != nb else min(rank_a, rank_b)
    z = r = p_asymptotic = p_exact = None
    variance = (na * nb / 12) * ((n + 1) - _tie_term(ties) / (n * (n - 1)))
    if variance > 0:  # zero only when every observation is tied
        z_a = (u_a - na * nb / 2) / math.sqrt(variance)
        z = -abs(z_a)
        r = abs(z_a) / math.sqrt(n)
        p_asymptotic = float({"two-sided": min(1.0, 2 * ndtr(-abs(z_a))),
                              "less": ndtr(z_a), "greater": ndtr(-z_a)}[alternative])
    if ties.size == n and n < EXACT_LIMIT:
        res = sps.mannwhitneyu(x, y, alternative=alternative, method="exact")
        p_exact = float(res.pvalue)
    return MannWhitney(U=min(u_a, u_b), W=wilcoxon, Z=z, p_asymptotic=p_asymptotic,
                       p_exact=p_exact, r=r, rank_biserial=(u_a - u_b) / (na * nb))


class ExactU:
    """The exact null distribution of Mann-Whitney's U for groups of m and n without ties.

    ``counts[u]`` is how many of the C(m + n, m) equally likely rank arrangements give
    U = u (u = 0 .. mn), as exact integers; they are the coefficients of the Gaussian
    binomial coefficient [m + n, m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), built one
    factor at a time (a dynamic programme over the size of the first group, each step an
    exact multiplication and division of integer polynomials).

    Probabilities are R's, operation for operation: each count divided by
    ``choose(m + n, n)`` in float64 and summed from the near end (``pwilcox``);
    :meth:`ppf` is ``qwilcox`` with its fuzz of 10 machine epsilons, so an interval's
    order statistics are R's to the last bit. Obtain instances by :func:`exact_u` (cached).
    """

    def __init__(self, m: int, n: int):
        if m < 1 or n < 1:
            raise ValueError(f"ExactU needs two non-empty groups, got m={m}, n={n}")
        self.m, self.n = int(m), int(n)
        self.total = math.comb(self.m + self.n, self.m)
        self.counts = _u_counts(self.m, self.n)
        # R divides each count, a double, by choose(m + n, n), a double: the same here
        self.pmf = self.counts.astype(float) / float(self.total)
        self._acc = np.cumsum(self.pmf)  # sequential sums, as R's loops add them

    @property
    def mn(self) -> int:
        return self.m * self.n

    def cdf(self, q: float) -> float:
        """P(U <= q): R's ``pwilcox(q, m, n)``."""
        return self._pwilcox(q, lower_tail=True)

    def sf(self, q: float) -> float:
        """P(U > q): R's ``pwilcox(q, m, n, lower.tail = FALSE)``."""
        return self._pwilcox(q, lower_tail=False)

    def _pwilcox(self, q: float, lower_tail: bool) -> float:
        q = math.floor(q + 1e-7)
        if q < 0:
            return 0.0 if lower_tail else 1.0
        if q >= self.mn:
            return 1.0 if lower_tail else 0.0
        if q <= self.mn / 2:  # summed over the shorter range, as R does
            p = float(self._acc[q])
        else:
            p = float(self._acc[self.mn - q - 1])
            lower_tail = not lower_tail
        return p if lower_tail else 0.5 - p + 0.5

    def ppf(self, p: float) -> int:
        """R's ``qwilcox(p, m, n)``: the smallest q with P(U <= q) >= p, with R's fuzz."""
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if p == 0:
            return 0
        if p == 1:
            return self.mn
        if p <= 0.5:
            return int(np.searchsorted(self._acc, p - 10 * _DBL_EPSILON, side="left"))
        q = int(np.searchsorted(self._acc, 1 - p + 10 * _DBL_EPSILON, side="right"))
        return self.mn - q

    def pvalue(self, u_a: float, alternative: str = "two-sided") -> float:
        """The exact p of U_a (the U of the first group), as R's ``wilcox.test(exact=TRUE)``:
        "less" is P(U <= U_a), "greater" P(U >= U_a), two-sided twice the nearer tail."""
        check_alternative(alternative)
        if alternative == "less":
            return self.cdf(u_a)
        if alternative == "greater":
            return self.sf(u_a - 1)
        tail = self.sf(u_a - 1) if u_a > self.mn / 2 else self.cdf(u_a)
        return min(2 * tail, 1.0)


def _u_counts(m: int, n: int) -> np.ndarray:
    """counts[u] for u = 0 .. mn: int64 where the total fits, else Python ints (exact)."""
    m, n = min(m, n), max(m, n)  # the distribution is symmetric in m and n
    dtype: Any = np.int64 if math.comb(m + n, m) < 2**62 else object
    work = np.zeros(m * n + m + 1, dtype=dtype)  # room for the factor (1 - q^(n+i))
    work[0] = 1
    for i in range(1, m + 1):
        # [n+i-1, i-1]_q -> [n+i, i]_q: times (1 - q^(n+i)), then divided by (1 - q^i)
        shift = n + i
        work[shift:] = work[shift:] - work[:-shift]
        for r in range(i):  # dividing by (1 - q^i) is a running sum at stride i
            work[r::i] = np.cumsum(work[r::i])
    return work[: m * n + 1]


@functools.lru_cache(maxsize=128)
def exact_u(m: int, n: int) -> ExactU:
    """The exact U distribution for sizes m and n, computed once per pair of sizes."""
    return ExactU(m, n)


# --------------------------------------------------------------------------- Hodges-Lehmann


def _r_zeroin(f: Callable[[float], float], ax: float, bx: float, fa: float, fb: float,
              tol: float = _R_ROOT_TOL, maxit: int = 1000) -> float:
    """R's ``uniroot`` (R_zeroin2 in src/library/stats/src/zeroin.c), operation for operation.

    wilcox.test's asymptotic interval is where this search stops on a step function, so it
    is R's answer only to within ``tol``: the same steps are needed to match R to 1e-6.
    """
    a, b, c, fc = ax, bx, ax, fa
    if fa == 0:
        return a
    if fb == 0:
        return b
    for _ in range(maxit + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):  # swap so that b is the best approximation
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _DBL_EPSILON * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):  # try interpolation
            cb = c - b
            if a == c:  # linear
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # inverse quadratic
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b  # not converged: R warns and returns the last approximation too


def _standardised_shift(x: np.ndarray, y: np.ndarray) -> Callable[[float], float]:
    """R's W(d) in wilcox.test: the tie-corrected standardised rank sum of x - d against y.

    Computed from the sorted samples without ranking the pooled one at every step (the
    root search calls it dozens of times); the rank sum and the tie term are exact
    integers or halves, so the value is R's to the last bit.
    """
    xs, ys = np.sort(x), np.sort(y)
    nx, ny = float(xs.size), float(ys.size)
    scale = nx * ny / 12
    y_ties = _tie_term(_tie_sizes(ys))

    def w(d: float) -> float:
        v = xs - d  # still sorted
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        cx = np.diff(np.r_[starts, v.size])
        below = np.searchsorted(ys, v[starts], "left")
        upto = np.searchsorted(ys, v[starts], "right")
        # U of x - d: the y below each value plus half the y equal to it
        dz = float(np.sum(cx * (below + upto))) / 2 - nx * ny / 2
        cy = upto - below  # y tied with each distinct x - d
        ties = y_ties - _tie_term(cy) + _tie_term(cx + cy)
        return dz / math.sqrt(scale * ((nx + ny + 1) - ties / ((nx + ny) * (nx + ny - 1))))

    return w


def _u_quantile(p: float, m: int, n: int) -> int:
    """R's qwilcox(p, m, n): the smallest q with P(U <= q) >= p (with R's fuzz)."""
    return exact_u(m, n).ppf(p)


def hodges_lehmann(a: Values, b: Values, conf_level: float = 0.95) -> HodgesLehmann:
    """Hodges-Lehmann shift a - b with a two-sided interval, as R's wilcox.test(conf.int=TRUE).

    Exact (Bauer 1972: order statistics of the n_a n_b differences picked by the exact U
    distribution; the estimate is their median) when there are no ties and
    n_a + n_b < 50; otherwise R's asymptotic inversion of the tie-corrected normal test
    without continuity correction (``exact=FALSE, correct=FALSE``), found by the same root
    search as R. The interval is always two-sided, whatever the test's alternative. With
    every observation tied R stops; here the estimate is the difference, the interval None.
    """
    x, y = clean(a), clean(b)
    nx, ny = x.size, y.size
    if nx == 0 or ny == 0:
        return HodgesLehmann()
    alpha = 1 - conf_level
    pooled = np.sort(np.concatenate((x, y)))
    if _tie_sizes(pooled).size == nx + ny and nx + ny < EXACT_LIMIT:
        diffs = np.sort(np.subtract.outer(x, y).ravel())
        qu = max(_u_quantile(alpha / 2, nx, ny), 1)
        ql = nx * ny - qu
        return HodgesLehmann(estimate=float(np.median(diffs)), ci_low=float(diffs[qu - 1]),
                             ci_high=float(diffs[ql]), method="exact")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return HodgesLehmann(estimate=float(x[0] - y[0]), method="asymptotic")
    w = _standardised_shift(x, y)
    mumin, mumax = float(x.min() - y.max()), float(x.max() - y.min())
    w_min, w_max = w(mumin), w(mumax)

    def root(zq: float) -> float:
        if w_min - zq <= 0:
            return mumin
        if w_max - zq >= 0:
            return mumax
        return _r_zeroin(lambda d: w(d) - zq, mumin, mumax, w_min - zq, w_max - zq)

    z = float(sps.norm.isf(alpha / 2))
    estimate = _r_zeroin(w, mumin, mumax, w_min, w_max) if w_min * w_max <= 0 else None
    return HodgesLehmann(estimate=estimate, ci_low=root(z), ci_high=root(-z),
                         method="asymptotic")


# --------------------------------------------------------------------------- parametric tests


def levene(a: Values, b: Values) -> Levene:
    """Levene's test centred on the mean (SPSS's, Levene 1960): F and p."""
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2:
        return Levene()
    with _quiet():
        res = sps.levene(x, y, center="mean")
    return Levene(F=num(res.statistic), p=num(res.pvalue))


def _t_test(x: np.ndarray, y: np.ndarray, equal_var: bool, alternative: str
            ) -> dict[str, float | None]:
    """t, df, p for the alternative, and the mean difference with its two-sided 95 % interval
    (SPSS's t-test table shows it whatever the hypothesis); empty without any variance."""
    with _quiet():
        res = sps.ttest_ind(x, y, equal_var=equal_var)
        t, df = float(res.statistic), float(res.df)
        # one-sided p from the t distribution's cdf (stdtr), as scipy itself computes it
        p = (res.pvalue if alternative == "two-sided"
             else stdtr(df, t) if alternative == "less" else stdtr(df, -t))
        ci = res.confidence_interval(0.95)
    if not math.isfinite(t):  # no variance at all: R stops ("data are essentially constant")
        return {}
    return {"t": num(t), "df": num(df), "p": num(p),
            "mean_difference": float(x.mean() - y.mean()),
            "ci_low": num(ci.low), "ci_high": num(ci.high)}


def pooled_sd(a: Values, b: Values) -> float | None:
    """The pooled standard deviation of Student's t and Cohen's d (None below 2 runs a group)."""
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2:
        return None
    ss = np.sum((x - x.mean()) ** 2) + np.sum((y - y.mean()) ** 2)
    return math.sqrt(ss / (x.size + y.size - 2))


def student_t(a: Values, b: Values, alternative: str = "two-sided") -> StudentT:
    """Student's t-test with pooled variance (R's t.test(var.equal=TRUE)) and Cohen's d,
    (mean_a - mean_b) / pooled sd."""
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2:
        return StudentT()
    out = _t_test(x, y, True, alternative)
    if not out:
        return StudentT()
    sd = pooled_sd(x, y)
    return StudentT(cohen_d=num((x.mean() - y.mean()) / sd) if sd else None, **out)


def welch_t(a: Values, b: Values, alternative: str = "two-sided") -> WelchT:
    """Welch's t-test (R's t.test default) with Welch-Satterthwaite df."""
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2:
        return WelchT()
    return WelchT(**_t_test(x, y, False, alternative))


def positive(x: Values) -> bool:
    """Whether every value can be logged (times, memory): tests on log scale need it."""
    v = clean(x)
    return bool(v.size) and bool(np.all(v > 0))


def welch_log_t(a: Values, b: Values, alternative: str = "two-sided",
                conf_level: float = 0.95) -> WelchLogT:
    """Welch's t on log values: a test of the ratio of geometric means a / b, which is the
    ratio of medians where the log times are symmetric, and its two-sided interval.

    A speed-up is a ratio, and timing noise grows with the time, so on the log scale a
    constant speed-up is a constant shift with spreads that differ less; Welch's df keep it
    honest when they still differ (a noisy cloud). None where a value is not positive.
    """
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2 or not (positive(x) and positive(y)):
        return WelchLogT()
    lx, ly = np.log(x), np.log(y)
    out = _t_test(lx, ly, False, alternative)
    if not out:
        return WelchLogT()
    with _quiet():
        res = sps.ttest_ind(lx, ly, equal_var=False)
        ci = res.confidence_interval(conf_level)
    return WelchLogT(t=out["t"], df=out["df"], p=out["p"],
                     ratio=num(math.exp(out["mean_difference"])),
                     ci_low=num(np.exp(ci.low)), ci_high=num(np.exp(ci.high)))


def yuen_rows(x: np.ndarray, y: np.ndarray, trim: float = YUEN_TRIM
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Yuen's (1974) trimmed-means Welch test per row: t, df, the difference of the trimmed
    means x - y and its standard error; one formula for the analysis and the simulation.

    Each group of n loses g = floor(trim n) values at each end (R's ``mean(x, trim)``),
    keeping h = n - 2g; its squared standard error is d = (n - 1) s_w^2 / (h (h - 1)) with
    s_w^2 the variance of the sample winsorized at the same g; t = (m_x - m_y) /
    sqrt(d_x + d_y) on Welch-Satterthwaite's df (d_x + d_y)^2 / (d_x^2 / (h_x - 1) +
    d_y^2 / (h_y - 1)). With trim 0 it is Welch's t.
    """
    parts = []
    for v in (np.atleast_2d(x), np.atleast_2d(y)):
        n = v.shape[1]
        g = int(math.floor(trim * n))
        h = n - 2 * g
        s = np.sort(v, axis=1)
        wins = np.clip(s, s[:, [g]], s[:, [n - g - 1]])
        with np.errstate(all="ignore"):  # 1e300 squared: inf, and the test says None
            d = (n - 1) * wins.var(axis=1, ddof=1) / (h * (h - 1))
        parts.append((s[:, g:n - g].mean(axis=1), d, h))
    (mx, dx, hx), (my, dy, hy) = parts
    with np.errstate(all="ignore"):
        se = np.sqrt(dx + dy)
        t = (mx - my) / se
        df = (dx + dy) ** 2 / (dx**2 / (hx - 1) + dy**2 / (hy - 1))
    return t, df, mx - my, se


def _t_p(t: float, df: float, alternative: str) -> float:
    """The p of a t statistic for the alternative ("less": H1 a < b, so t small)."""
    if alternative == "two-sided":
        return float(min(1.0, 2 * stdtr(df, -abs(t))))
    return float(stdtr(df, t) if alternative == "less" else stdtr(df, -t))


def yuen_log_t(a: Values, b: Values, alternative: str = "two-sided",
               trim: float = YUEN_TRIM, conf_level: float = 0.95) -> YuenLog:
    """Yuen's trimmed-means Welch test on log values (:func:`yuen_rows`): a test of the ratio
    of the groups' trimmed geometric means, exp(trimmed mean of log a - that of log b), with
    its two-sided interval (95 % by default).

    Why: a speed-up is a ratio and timing noise grows with the time (the log scale); the
    trimmed mean ignores the slowest and fastest fifth of the runs, so a background job's
    slow run moves it little; Welch's df for a noisier cloud. Its null is equal trimmed
    means of the logs. None where a value is not positive, a group has fewer than 2 runs,
    or neither group varies after winsorizing.
    """
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    if x.size < 2 or y.size < 2 or not (positive(x) and positive(y)):
        return YuenLog(trim=trim)
    t, df, diff, se = (float(v[0]) for v in yuen_rows(np.log(x), np.log(y), trim))
    if not (math.isfinite(t) and math.isfinite(df)) or se == 0:
        return YuenLog(trim=trim)
    half = float(sps.t.ppf(0.5 + conf_level / 2, df)) * se
    return YuenLog(t=num(t), df=num(df), p=num(_t_p(t, df, alternative)), trim=trim,
                   ratio=_exp(diff), ci_low=_exp(diff - half), ci_high=_exp(diff + half),
                   conf_level=conf_level)


def _exp(x: float) -> float | None:
    """exp(x), None beyond float range (a ratio of 1e300 to 2: no JSON number holds it)."""
    return num(np.exp(x)) if x < 709 else None


def yuen_brunner_munzel(a: Values, b: Values, alternative: str = "two-sided",
                        trim: float = YUEN_TRIM) -> YuenBrunnerMunzel:
    """The robust procedure's test from 8 runs a group: Yuen's test on log values and
    Brunner-Munzel's (its t approximation), rejecting only where both reject, in the same
    direction: p = max(p_yuen, p_brunner_munzel), and 1 where their statistics point in
    opposite directions.

    An intersection-union test (Berger 1982): its null is the union "equal trimmed means
    of the logs, or P(a < b) + P(a = b) / 2 = 1/2", so its error is at most that of either
    test wherever either keeps alpha: Yuen's where the trimmed geometric means are equal
    (slow outliers move them where they leave P(a < b) alone) and Brunner-Munzel's where
    one environment tends to be as fast as the other (with a small, noisy group its t
    approximation rejects up to 7 % at alpha .05). docs/statistics.md has the numbers.
    """
    check_alternative(alternative)
    yuen = yuen_log_t(a, b, alternative, trim)
    bm = brunner_munzel(a, b, alternative, n_perm=None)
    if yuen.p is None or bm.p is None:
        return YuenBrunnerMunzel(yuen=yuen, brunner_munzel=bm)
    # W is positive when b tends to be larger, Yuen's t when a's trimmed mean is
    w_sign = 0.0 if bm.estimate is None else bm.estimate - 0.5
    same = (yuen.t or 0.0) * w_sign < 0
    p = max(yuen.p, bm.p) if same or alternative != "two-sided" else 1.0
    return YuenBrunnerMunzel(p=float(p), same_direction=bool(same), yuen=yuen,
                             brunner_munzel=bm)


def separation_p(n_a: int, n_b: int, alternative: str = "two-sided",
                 a_below: bool = True) -> float:
    """The p of a complete separation (every a below every b, or above), where
    Brunner-Munzel's variance estimate is 0 and its statistic infinite: the exact
    probability of so extreme a split under exchangeability, 1 / C(N, n_a) per tail
    (Mann-Whitney's exact p for U = 0). One-sided against the separation's direction: 1."""
    check_alternative(alternative)
    tail = 1 / math.comb(n_a + n_b, n_a)
    if alternative == "two-sided":
        return min(1.0, 2 * tail)
    return tail if (alternative == "less") == a_below else 1.0


def _midranks_of_sorted(r: np.ndarray) -> np.ndarray:
    """Mid-ranks within each row of a row-wise non-decreasing array, without sorting: each
    run of equal values gets the mean of its positions (1-based)."""
    n = r.shape[1]
    idx = np.arange(n)
    start = np.ones(r.shape, dtype=bool)
    start[:, 1:] = r[:, 1:] != r[:, :-1]
    first = np.maximum.accumulate(np.where(start, idx, 0), axis=1)
    end = np.ones(r.shape, dtype=bool)
    end[:, :-1] = start[:, 1:]
    last = np.minimum.accumulate(np.where(end, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return (first + last) / 2 + 1


def brunner_munzel_statistic(ra: np.ndarray, rb: np.ndarray, sorted_rows: bool = False
                             ) -> np.ndarray:
    """Brunner-Munzel's statistic per row, from the pooled (mid-)ranks of each group's
    members, in Brunner and Munzel's (2000) form: the placements R - R_internal give each
    group's variance S_i^2, and W = (mean R_b - mean R_a) / (sqrt(N) sigma_BF) with
    sigma_BF^2 = N (S_a^2 / (n_a n_b^2) + S_b^2 / (n_b n_a^2)); +-inf for a complete
    separation, NaN when every value is tied.

    Internal ranks are the ranks of the pooled ranks within the group, so a relabelling of
    the pooled ranks (the permutation test) needs no data at all; ``sorted_rows``: each row
    is non-decreasing (positions of the sorted pooled sample), so they need no sort either.
    """
    return brunner_munzel_t(ra, rb, sorted_rows)[0]


def brunner_munzel_t(ra: np.ndarray, rb: np.ndarray, sorted_rows: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Brunner-Munzel's statistic and the df of its t approximation per row (Satterthwaite:
    (n_a S_a^2 + n_b S_b^2)^2 / ((n_a S_a^2)^2 / (n_a - 1) + (n_b S_b^2)^2 / (n_b - 1)));
    see :func:`brunner_munzel_statistic`."""
    ra, rb = np.atleast_2d(ra), np.atleast_2d(rb)
    na, nb = ra.shape[1], rb.shape[1]
    if sorted_rows:
        ia, ib = _midranks_of_sorted(ra), _midranks_of_sorted(rb)
    else:
        ia, ib = sps.rankdata(ra, axis=1), sps.rankdata(rb, axis=1)
    sa = (ra - ia).var(axis=1, ddof=1)
    sb = (rb - ib).var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = (na + nb) * np.sqrt(sa / (na * nb**2) + sb / (nb * na**2))
        w = (rb.mean(axis=1) - ra.mean(axis=1)) / se
        va, vb = na * sa, nb * sb
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return w, df


#: Elements of relabelling arrays held at once (rows x N): bounds the memory of the
#: permutation test however many runs there are.
_CHUNK_ELEMENTS = 2_000_000


def all_relabellings(n_a: int, n_b: int, limit: int) -> bool:
    """Whether the splits of N into n_a and n_b number at most ``limit`` (then all are used)."""
    return math.comb(n_a + n_b, n_a) <= limit


def relabellings(n_a: int, n_b: int, limit: int, rng: np.random.Generator,
                 chunk_elements: int = _CHUNK_ELEMENTS
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Splits of the positions 0..N-1 into groups of n_a and n_b, each row in increasing
    order, in chunks: all of them when they are at most ``limit`` (all_relabellings),
    else ``limit`` drawn at random (each a uniform random subset, by partitioning random
    keys: linear in N)."""
    n = n_a + n_b
    rows = max(1, chunk_elements // n)
    if all_relabellings(n_a, n_b, limit):
        combos = itertools.combinations(range(n), n_a)
        while True:
            block = list(itertools.islice(combos, rows))
            if not block:
                return
            in_a = np.zeros((len(block), n), dtype=bool)
            np.put_along_axis(in_a, np.array(block, dtype=np.int64), True, axis=1)
            yield _split(in_a, n_a, n_b)
    else:
        left = limit
        while left > 0:
            m = min(rows, left)
            keys = rng.random((m, n))
            in_a = np.zeros((m, n), dtype=bool)
            np.put_along_axis(in_a, np.argpartition(keys, n_a - 1, axis=1)[:, :n_a], True,
                              axis=1)
            yield _split(in_a, n_a, n_b)
            left -= m


def _split(in_a: np.ndarray, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each group, row by row, in increasing order (nonzero is row-major)."""
    m = in_a.shape[0]
    return (np.nonzero(in_a)[1].reshape(m, n_a), np.nonzero(~in_a)[1].reshape(m, n_b))


def brunner_munzel(a: Values, b: Values, alternative: str = "two-sided",
                   n_perm: int | None = BM_PERMUTATIONS, seed: int | Sequence[int] = 0
                   ) -> BrunnerMunzel:
    """Brunner-Munzel's test of P(a < b) + P(a = b) / 2 = 1/2: a rank test that, unlike
    Mann-Whitney's, does not assume the two spreads equal (the nonparametric Behrens-Fisher
    problem), and the robust procedure's test.

    ``statistic``, ``df`` and ``p`` are the t approximation (scipy's, as R's lawstat and
    brunnermunzel packages); ``p_permutation`` is Neubert and Brunner's (2007) studentized
    permutation test, which keeps alpha with few runs where the t approximation does not:
    the statistic against its values over every relabelling of the pooled ranks when there
    are at most ``n_perm`` (``permutations`` says how many, ``exact`` true), else over
    ``n_perm`` random ones (p = (1 + #{as extreme}) / (n_perm + 1)), seeded; None skips it.

    ``statistic`` is positive when b tends to be larger; ``estimate`` is the relative effect
    P(a < b) + P(a = b) / 2; "less" is H1: a tends to be smaller than b. With a complete
    separation the statistic is infinite (None here) and the t approximation's p is
    :func:`separation_p`; with every value tied nothing is computable.
    """
    check_alternative(alternative)
    x, y = clean(a), clean(b)
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        return BrunnerMunzel()
    ranks = sps.rankdata(np.concatenate((x, y)))
    estimate = float((ranks[nx:].mean() - (ny + 1) / 2) / nx)
    w = float(brunner_munzel_statistic(ranks[:nx], ranks[nx:])[0])
    if math.isnan(w):  # every value tied
        return BrunnerMunzel(estimate=estimate)
    with _quiet():
        res = sps.brunnermunzel(x, y, alternative=alternative)
    df = p = None
    if math.isfinite(w):
        ux, uy = ranks[:nx] - sps.rankdata(x), ranks[nx:] - sps.rankdata(y)
        vx, vy = nx * float(np.var(ux, ddof=1)), ny * float(np.var(uy, ddof=1))
        df = num((vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1)))
        p = num(res.pvalue)
    else:  # complete separation
        p = separation_p(nx, ny, alternative, a_below=w > 0)
    out = BrunnerMunzel(statistic=num(res.statistic) if math.isfinite(w) else None, df=df,
                        p=p, estimate=estimate)
    if n_perm is None:
        return out
    pooled = np.sort(ranks)  # relabel positions of the sorted sample: rows stay sorted
    tol = 1e-9 * max(1.0, abs(w)) if math.isfinite(w) else 0.0
    extreme = count = 0
    for members, others in relabellings(nx, ny, n_perm, np.random.default_rng(seed)):
        null = brunner_munzel_statistic(pooled[members], pooled[others], sorted_rows=True)
        null = np.where(np.isnan(null), 0.0, null)
        if alternative == "two-sided":
            extreme += int(np.sum(np.abs(null) >= abs(w) - tol))
        elif alternative == "less":  # H1: a smaller, so W large
            extreme += int(np.sum(null >= w - tol))
        else:
            extreme += int(np.sum(null <= w + tol))
        count += null.size
    exact = all_relabellings(nx, ny, n_perm)
    p_perm = extreme / count if exact else (1 + extreme) / (count + 1)
    return replace(out, p_permutation=float(p_perm), permutations=count, exact=exact)


def kruskal_wallis(groups: Sequence[Values]) -> KruskalWallis:
    """Kruskal-Wallis H (tie-corrected, as R's kruskal.test), df = k - 1 over non-empty groups.

    The result names no metric, dataset or environments: the analysis adds them.
    """
    data = [v for v in (clean(g) for g in groups) if v.size]
    if len(data) < 2 or np.ptp(np.concatenate(data)) == 0:
        return KruskalWallis(df=len(data) - 1 if data else None)
    with _quiet():
        res = sps.kruskal(*data)
    return KruskalWallis(H=num(res.statistic), df=len(data) - 1, p=num(res.pvalue))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment; None entries stay None and do not count.

    The same as statsmodels' multipletests(method="holm") and R's p.adjust("holm") (both
    checked in the tests), written out because multipletests runs gc.collect() on every
    call, 40 ms each in a large process: most of the analysis time of a 10,000-run study.
    """
    present = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if present:
        p = np.array([pvalues[i] for i in present], dtype=float)
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1))
        adjusted = np.empty_like(p)
        adjusted[order] = np.minimum(stepped, 1.0)
        for i, value in zip(present, adjusted, strict=True):
            out[i] = float(value)
    return out


# --------------------------------------------------------------------------- ratio of medians


def bootstrap_medians(x: Values, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` bootstrap resamples of x, drawn in O(n_boot) without resampling.

    A resample's sorted indices into sorted x are floor(n U_(k)) for order statistics of n
    uniforms, and U_(k) ~ Beta(k, n + 1 - k); the next one is U_(k) + (1 - U_(k)) Beta(1, n - k).
    So the median of a resample (the middle order statistic, or the mean of the two middle
    ones for even n) has exactly the distribution of the percentile bootstrap's, at a cost
    that does not grow with n: 10,000 draws on 10,000 runs take milliseconds.
    """
    xs = np.sort(clean(x))
    n = xs.size
    if n == 0:
        return np.full(n_boot, np.nan)
    k = (n + 1) // 2
    u = rng.beta(k, n + 1 - k, n_boot)
    low = xs[np.minimum((u * n).astype(np.int64), n - 1)]
    if n % 2:
        return low
    u2 = u + (1 - u) * rng.beta(1, n - k, n_boot)
    return (low + xs[np.minimum((u2 * n).astype(np.int64), n - 1)]) / 2


def ratio_from_draws(median_a: float | None, median_b: float | None, draws_a: np.ndarray,
                     draws_b: np.ndarray, conf_level: float = 0.95) -> MedianRatio:
    """The ratio of medians a / b and its percentile interval from bootstrap medians."""
    if median_a is None or median_b is None or median_b == 0:
        return MedianRatio()
    estimate = median_a / median_b
    if np.any(draws_b == 0) or not np.all(np.isfinite(draws_a)):
        return MedianRatio(estimate=num(estimate))
    tail = (1 - conf_level) / 2
    low, high = np.quantile(draws_a / draws_b, [tail, 1 - tail])
    return MedianRatio(estimate=num(estimate), ci_low=num(low), ci_high=num(high))


def median_ratio(a: Values, b: Values, conf_level: float = 0.95,
                 n_boot: int = DEFAULT_BOOTSTRAP, seed: int | Sequence[int] = 0
                 ) -> MedianRatio:
    """Ratio of medians a / b (the speed-up of b over a for timings) with a percentile
    bootstrap interval, each group resampled independently; seeded, so reproducible."""
    x, y = clean(a), clean(b)
    rng = np.random.default_rng(seed)
    med_a = float(np.median(x)) if x.size else None
    med_b = float(np.median(y)) if y.size else None
    return ratio_from_draws(med_a, med_b, bootstrap_medians(x, n_boot, rng),
                            bootstrap_medians(y, n_boot, rng), conf_level)

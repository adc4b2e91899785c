"""Operating characteristics of the test procedures, measured by simulation (`study simulate`).

A test chosen by a pre-test (Shapiro-Wilk, then Levene, then Student's or Welch's t, else
Mann-Whitney: SPSS's procedure, the reference study's) does not keep its nominal error rate
in every case. This module measures, for the scenarios timing data show, how often each
procedure rejects H0 when it is true (type-I error) and when the environments differ
(power), beside the single tests a robust procedure could use instead.

Scenarios (:func:`scenarios`): a shape of the noise, two group sizes, a variance ratio
and an effect. Run times are ``m * noise`` with m = 1 (every test here is scale-free); the
noise of group a has a spread s = ``SPREAD`` = 0.08 (about the coefficient of variation of
the reference study's times) and group b's is ``sqrt(variance_ratio)`` times wider, so b is
the noisier environment (the cloud); ``effect`` multiplies b's times (0.10: b is 10 %
slower). The shapes:

- ``normal``: ``1 + s Z`` (redrawn where not positive, which at these spreads does not
  happen in practice);
- ``lognormal``: ``exp(s Z)``;
- ``heavy``: ``exp(s T3 / sqrt(3))``, Student's t with 3 degrees of freedom on the log
  scale (sd s): a heavy tail on both sides;
- ``outliers``: ``exp(s Z + log(1.5) B)``, B ~ Bernoulli(0.1): one run in ten is 1.5 times
  slower (a background job), alike in both environments, which differ only in the spread
  of their ordinary noise.

H0 is "neither environment tends to be faster": in every null scenario the difference of
the two noises is symmetric (on the raw scale for ``normal``, on the log scale for the
others), so P(a < b) = 1/2 exactly, Brunner-Munzel's null. It is also the same median
(except with slow outliers, where the noisier group's median is 1.8 % higher at variance
ratio 9), the same geometric mean (except with normal noise, where the noisier group's is
up to 2.8 % lower) and, with normal noise only, the same mean (a log-normal or heavy-tailed
group's mean grows with its spread). A test of another parameter can therefore reject more
often than alpha in some scenarios because its own null is false there; the tables of
docs/statistics.md say where.

The methods (:data:`METHODS`), all two-sided: ``spss`` (the procedure, at the same alpha
for its pre-tests), ``student_t``, ``welch_t``, ``mann_whitney`` (exact p below 50 runs,
as the analysis), ``welch_log_t`` (Welch's t on log times), ``brunner_munzel`` (its t
approximation), ``brunner_munzel_perm`` (its studentized permutation test, Neubert and
Brunner 2007) and ``median_permutation`` (a permutation test of the ratio of medians,
``n_permutations`` random relabellings per sample). Each is vectorised over replicates;
the permutation test of medians draws a fresh set of relabellings for every block of
``PERMUTATION_BLOCK`` replicates (a relabelling of sorted positions gives the permuted
medians' positions whatever the data, so a set serves a whole block at the cost of a
gather), and the studentized permutation distribution, which without ties does not depend
on the data, is computed once per pair of sizes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.special import stdtr

from cloudbench.analysis import stats as S
from cloudbench.analysis.procedures import load_procedure
from cloudbench.analysis.procedures import robust as robust_rule
from cloudbench.analysis.procedures import spss as spss_rule
from cloudbench.data.procedures import UnknownProcedureError, procedure_names

SHAPES = ("normal", "lognormal", "heavy", "outliers")
#: (n_a, n_b): balanced from 5 to 30 runs, and unequal in both directions (b is the noisier
#: group, so (10, 24) has the larger spread in the larger group and (24, 10) in the smaller).
#: Issue 29 added the designs of a quiet PC beside a noisy cloud with failed runs: 10 vs 30,
#: 8 vs 40, 10 vs 50 and 12 vs 24, each way round, and variance ratios of 16 and 25.
SIZES = ((5, 5), (10, 10), (15, 15), (20, 20), (24, 24), (30, 30),
         (10, 24), (24, 10), (8, 20), (20, 8), (10, 30), (30, 10), (8, 40), (40, 8),
         (10, 50), (50, 10), (12, 24), (24, 12))
VARIANCE_RATIOS = (1.0, 3.0, 9.0, 16.0, 25.0)
EFFECTS = (0.0, 0.10, 0.20)
ALPHAS = (0.01, 0.05, 0.10)
METHODS = ("spss", "robust", "student_t", "welch_t", "mann_whitney", "welch_log_t",
           "yuen_log_t", "brunner_munzel", "brunner_munzel_perm", "yuen_brunner_munzel",
           "median_permutation")
#: The methods whose one-sided type-I errors (H1 a < b, and a > b) are counted too: the
#: robust procedure and the tests it is made of or was chosen against.
ONE_SIDED = ("robust", "welch_log_t", "yuen_log_t", "brunner_munzel", "brunner_munzel_perm",
             "yuen_brunner_munzel")
ONE_SIDED_ALTERNATIVES = ("less", "greater")
METHOD_NAMES = {"spss": "SPSS procedure", "student_t": "Student's t", "welch_t": "Welch's t",
                "mann_whitney": "Mann-Whitney", "welch_log_t": "Welch's t on log times",
                "yuen_log_t": "Yuen's t on log times",
                "brunner_munzel": "Brunner-Munzel",
                "brunner_munzel_perm": "Brunner-Munzel, permutation",
                "yuen_brunner_munzel": "Yuen and Brunner-Munzel",
                "median_permutation": "permutation, ratio of medians",
                "robust": "robust procedure"}
SPREAD = 0.08
OUTLIER_SHARE = 0.10
OUTLIER_FACTOR = 1.5
DEFAULT_REPLICATES = 40_000  # the largest standard error of a rate, at 0.5, is 0.0025
DEFAULT_PERMUTATIONS = 999
PERMUTATION_BLOCK = 250
#: Relabellings behind the studentized permutation distribution of Brunner-Munzel's
#: statistic: all of them up to this many, else this many at random.
BM_RELABELLINGS = 200_000
BLOCK = 2000
FORMAT = "cloudbench-simulation"
#: 2 added one-sided rejections (``one_sided``) and the robust procedure's methods; 1 is
#: still read (its scenarios have two-sided rejections only).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: The shipped results, which the paper reads (nearest scenario).
SHIPPED = Path(__file__).resolve().parent / "simulated_rates.json"


@dataclass(frozen=True)
class Scenario:
    """One cell of the simulation: noise shape, group sizes, var(b) / var(a), effect."""

    shape: str
    n_a: int
    n_b: int
    variance_ratio: float
    effect: float = 0.0

    @property
    def key(self) -> str:
        return (f"{self.shape}:{self.n_a}x{self.n_b}:r{self.variance_ratio:g}:"
                f"e{self.effect:g}")


def scenarios(shapes: Sequence[str] = SHAPES, sizes: Sequence[tuple[int, int]] = SIZES,
              ratios: Sequence[float] = VARIANCE_RATIOS,
              effects: Sequence[float] = EFFECTS) -> list[Scenario]:
    """Every combination, in a fixed order (the order of the tables)."""
    return [Scenario(shape, n_a, n_b, float(r), float(e)) for e in effects for shape in shapes
            for n_a, n_b in sizes for r in ratios]


# --------------------------------------------------------------------------- the noise


def draw(shape: str, spread: float, size: tuple[int, int], rng: np.random.Generator
         ) -> np.ndarray:
    """Run times with median 1 and the given spread (see the module's docstring)."""
    if shape == "normal":
        values = 1 + spread * rng.standard_normal(size)
        bad = values <= 0
        while bad.any():
            values[bad] = 1 + spread * rng.standard_normal(int(bad.sum()))
            bad = values <= 0
        return values
    if shape == "lognormal":
        return np.exp(spread * rng.standard_normal(size))
    if shape == "heavy":
        return np.exp(spread * rng.standard_t(3, size) / math.sqrt(3))
    if shape == "outliers":
        slow = rng.random(size) < OUTLIER_SHARE
        return np.exp(spread * rng.standard_normal(size) + math.log(OUTLIER_FACTOR) * slow)
    raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")


# --------------------------------------------------------------------------- the tests, vectorised


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=1), x.var(axis=1, ddof=1)


def _two_sided_t(t: np.ndarray, df: np.ndarray | float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return 2 * stdtr(df, -np.abs(t))


def student_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Student's t (pooled variance), one p per row."""
    na, nb = x.shape[1], y.shape[1]
    (mx, vx), (my, vy) = _moments(x), _moments(y)
    pooled = ((na - 1) * vx + (nb - 1) * vy) / (na + nb - 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mx - my) / np.sqrt(pooled * (1 / na + 1 / nb))
    return _two_sided_t(t, na + nb - 2)


def welch_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch's t with Welch-Satterthwaite df, one p per row."""
    na, nb = x.shape[1], y.shape[1]
    (mx, vx), (my, vy) = _moments(x), _moments(y)
    ex, ey = vx / na, vy / nb
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mx - my) / np.sqrt(ex + ey)
        df = (ex + ey) ** 2 / (ex**2 / (na - 1) + ey**2 / (nb - 1))
    return _two_sided_t(t, df)


def levene_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Levene's test centred on the mean: with two groups its F is Student's t squared on
    the absolute deviations from each group's mean."""
    return student_p(np.abs(x - x.mean(axis=1, keepdims=True)),
                     np.abs(y - y.mean(axis=1, keepdims=True)))


def _shapiro_takes_axis() -> bool:
    try:
        sps.shapiro(np.ones((1, 3)) + np.arange(3), axis=1)
    except TypeError:  # scipy before 1.13: one sample per call
        return False
    return True


_SHAPIRO_AXIS = _shapiro_takes_axis()


def shapiro_p(x: np.ndarray) -> np.ndarray:
    """Shapiro-Wilk's p per row (scipy's, as the analysis); along the axis where scipy can,
    which is seven times faster than a call per sample."""
    if _SHAPIRO_AXIS:
        return np.asarray(sps.shapiro(x, axis=1).pvalue, dtype=float)
    return np.array([sps.shapiro(row).pvalue for row in x], dtype=float)


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney's p as the analysis takes it: exact below 50 runs (no ties here), else
    asymptotic without continuity correction."""
    exact = x.shape[1] + y.shape[1] < S.EXACT_LIMIT
    res = sps.mannwhitneyu(x, y, axis=1, method="exact" if exact else "asymptotic",
                           use_continuity=False)
    return np.asarray(res.pvalue, dtype=float)


def brunner_munzel_w(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brunner-Munzel's statistic W and its t approximation's df per row, from the pooled
    ranks (analysis.stats.brunner_munzel_t)."""
    ranks = sps.rankdata(np.concatenate((x, y), axis=1), axis=1)
    return S.brunner_munzel_t(ranks[:, :x.shape[1]], ranks[:, x.shape[1]:])


def brunner_munzel_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brunner-Munzel's p per row (its t approximation, the closed form of
    analysis.stats.brunner_munzel_t); a complete separation, where its variance is 0, gets
    the toolkit's p (analysis.stats.separation_p)."""
    w, df = brunner_munzel_w(x, y)
    p = _two_sided_t(w, df)
    bad = ~np.isfinite(w)
    if bad.any():
        p[bad] = S.separation_p(x.shape[1], y.shape[1])
    return p


@functools.lru_cache(maxsize=64)
def _bm_null(n_a: int, n_b: int, limit: int = BM_RELABELLINGS) -> tuple[np.ndarray, bool]:
    """|W| over every relabelling of the ranks 1..N into groups of n_a and n_b, or over
    ``limit`` random ones; and whether it is every one. Without ties the permutation
    distribution of the studentized statistic is the same for every sample, so one serves
    the whole scenario (a relabelling that separates the groups gives infinity)."""
    rng = np.random.default_rng([n_a, n_b, limit])
    parts = [np.abs(S.brunner_munzel_statistic(members + 1.0, others + 1.0, sorted_rows=True))
             for members, others in S.relabellings(n_a, n_b, limit, rng)]
    w = np.concatenate(parts)
    return np.sort(np.where(np.isnan(w), 0.0, w)), S.all_relabellings(n_a, n_b, limit)


def brunner_munzel_perm_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brunner-Munzel's studentized permutation test (Neubert and Brunner 2007), two-sided:
    |W| against its permutation distribution (:func:`_bm_null`), for samples without ties."""
    w = np.abs(brunner_munzel_w(x, y)[0])
    null, exact = _bm_null(x.shape[1], y.shape[1])
    with np.errstate(invalid="ignore"):
        cut = np.where(np.isfinite(w), w - 1e-9 * np.maximum(1.0, w), w)
    extreme = null.size - np.searchsorted(null, cut, side="left")
    return extreme / null.size if exact else (1 + extreme) / (null.size + 1)


def welch_log_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return welch_p(np.log(x), np.log(y))


@functools.lru_cache(maxsize=64)
def _bm_null_signed(n_a: int, n_b: int, limit: int = BM_RELABELLINGS
                    ) -> tuple[np.ndarray, bool]:
    """W (signed) over the same relabellings as :func:`_bm_null`, sorted: the one-sided
    permutation tests' distribution."""
    rng = np.random.default_rng([n_a, n_b, limit])
    parts = [S.brunner_munzel_statistic(members + 1.0, others + 1.0, sorted_rows=True)
             for members, others in S.relabellings(n_a, n_b, limit, rng)]
    w = np.concatenate(parts)
    return np.sort(np.where(np.isnan(w), 0.0, w)), S.all_relabellings(n_a, n_b, limit)


def _t_sides(t: np.ndarray, df: np.ndarray | float) -> dict[str, np.ndarray]:
    """One-sided p of a t statistic of a - b: "less" (H1 a < b) and "greater"."""
    with np.errstate(invalid="ignore"):
        return {"less": stdtr(df, t), "greater": stdtr(df, -t)}


def robust_p(x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """The robust procedure's two-sided p per row (analysis.procedures.robust): the
    intersection-union test of Yuen's and Brunner-Munzel's from 8 runs a group, else the
    permutation test."""
    if robust_rule.large_enough(x.shape[1], y.shape[1]):
        return p["yuen_brunner_munzel"]
    return p["brunner_munzel_perm"]


def robust_p_rows(x: np.ndarray, y: np.ndarray, alternative: str = "two-sided"
                  ) -> np.ndarray:
    """The robust procedure's p per row for any alternative, and nothing else: what
    analysis.power simulates for a study's size (without SPSS's pre-tests or the other
    methods)."""
    S.check_alternative(alternative)
    if robust_rule.large_enough(x.shape[1], y.shape[1]):
        t, df_y = S.yuen_rows(np.log(x), np.log(y))[:2]
        w, df_w = brunner_munzel_w(x, y)
        with np.errstate(invalid="ignore"):
            if alternative == "two-sided":
                p_bm = _two_sided_t(w, df_w)
                p_y = _two_sided_t(t, df_y)
            else:
                p_bm = _t_sides(-w, df_w)[alternative]
                p_y = _t_sides(t, df_y)[alternative]
            separated = ~np.isfinite(w)  # the exact tail, as the analysis
            p_bm[separated] = [S.separation_p(x.shape[1], y.shape[1], alternative,
                                              a_below=bool(v > 0)) for v in w[separated]]
            both = np.maximum(p_y, p_bm)
            return np.where(t * w < 0, both, 1.0) if alternative == "two-sided" else both
    if alternative == "two-sided":
        return brunner_munzel_perm_p(x, y)
    w = brunner_munzel_w(x, y)[0]
    null, exact = _bm_null_signed(x.shape[1], y.shape[1])
    tol = 1e-9 * np.maximum(1.0, np.where(np.isfinite(w), np.abs(w), 1.0))
    k = (null.size - np.searchsorted(null, w - tol, side="left") if alternative == "less"
         else np.searchsorted(null, w + tol, side="right"))
    return k / null.size if exact else (1 + k) / (null.size + 1)


def one_sided_p(x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray]
                ) -> dict[str, dict[str, np.ndarray]]:
    """{method: {"less": p, "greater": p}} per row for :data:`ONE_SIDED`, from the same
    statistics as the two-sided tests ("less": H1 a < b, as the analysis)."""
    w, df = brunner_munzel_w(x, y)  # positive when b tends to be larger
    lx, ly = np.log(x), np.log(y)
    out = {"welch_log_t": _t_sides(*S.yuen_rows(lx, ly, 0.0)[:2]),
           "yuen_log_t": _t_sides(*S.yuen_rows(lx, ly)[:2]),
           "brunner_munzel": _t_sides(-w, df)}
    separated = ~np.isfinite(w)
    if separated.any():  # the exact tail of a complete separation, as the analysis
        for side in ONE_SIDED_ALTERNATIVES:
            out["brunner_munzel"][side][separated] = [
                S.separation_p(x.shape[1], y.shape[1], side, a_below=bool(v > 0))
                for v in w[separated]]
    null, exact = _bm_null_signed(x.shape[1], y.shape[1])
    tol = 1e-9 * np.maximum(1.0, np.where(np.isfinite(w), np.abs(w), 1.0))
    count = {"less": null.size - np.searchsorted(null, w - tol, side="left"),  # W large
             "greater": np.searchsorted(null, w + tol, side="right")}
    out["brunner_munzel_perm"] = {
        side: k / null.size if exact else (1 + k) / (null.size + 1) for side, k in count.items()}
    out["yuen_brunner_munzel"] = {side: np.maximum(out["yuen_log_t"][side],
                                                   out["brunner_munzel"][side])
                                  for side in ONE_SIDED_ALTERNATIVES}
    pick = "yuen_brunner_munzel" if robust_rule.large_enough(x.shape[1], y.shape[1]) \
        else "brunner_munzel_perm"
    out["robust"] = out[pick]
    return out


def _median_positions(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions (in a sorted sample) of the middle one or two members of each row of a
    sorted array of positions."""
    n = members.shape[1]
    return members[:, (n - 1) // 2], members[:, n // 2]


class _Relabellings:
    """Random splits of N sorted positions into n_a and n_b: the positions of each part's
    median(s), the same for every sample since the data are sorted first."""

    def __init__(self, n_a: int, n_b: int, n_perm: int, rng: np.random.Generator):
        order = np.argsort(rng.random((n_perm, n_a + n_b)), axis=1)
        in_a = np.zeros(order.shape, dtype=bool)
        np.put_along_axis(in_a, order[:, :n_a], True, axis=1)
        a_pos = np.sort(order[:, :n_a], axis=1)
        b_pos = np.argsort(in_a, axis=1, kind="stable")[:, :n_b]  # False first, in order
        self.a = _median_positions(a_pos)
        self.b = _median_positions(b_pos)


def _median_of(s: np.ndarray, where: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return (s[:, where[0]] + s[:, where[1]]) / 2


def median_permutation_p(x: np.ndarray, y: np.ndarray, n_perm: int,
                         rng: np.random.Generator, block: int = PERMUTATION_BLOCK
                         ) -> np.ndarray:
    """Permutation test of the ratio of medians: |log(median a / median b)| against its
    distribution over ``n_perm`` random relabellings; p = (1 + #{as extreme}) / (n_perm + 1)."""
    observed = np.abs(np.log(np.median(x, axis=1) / np.median(y, axis=1)))
    pooled = np.sort(np.concatenate((x, y), axis=1), axis=1)
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], block):
        rows = slice(start, start + block)
        split = _Relabellings(x.shape[1], y.shape[1], n_perm, rng)
        s = pooled[rows]
        stat = np.abs(np.log(_median_of(s, split.a) / _median_of(s, split.b)))
        extreme = stat >= observed[rows, None] * (1 - 1e-12)
        out[rows] = (1 + extreme.sum(axis=1)) / (n_perm + 1)
    return out


def yuen_log_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Yuen's 20 %-trimmed Welch test on log times (analysis.stats.yuen_rows), two-sided."""
    return _two_sided_t(*S.yuen_rows(np.log(x), np.log(y))[:2])


def yuen_brunner_munzel_p(x: np.ndarray, y: np.ndarray, yuen: np.ndarray,
                          bm: np.ndarray) -> np.ndarray:
    """The intersection-union test of analysis.stats.yuen_brunner_munzel, two-sided: the
    larger p where the two statistics point the same way, else 1."""
    t = S.yuen_rows(np.log(x), np.log(y))[0]
    w = brunner_munzel_w(x, y)[0]
    with np.errstate(invalid="ignore"):
        same = t * w < 0  # Yuen's t is negative, W positive, when a is the faster
    return np.where(same, np.maximum(yuen, bm), 1.0)


def p_values(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
             n_perm: int = DEFAULT_PERMUTATIONS) -> dict[str, np.ndarray]:
    """Every single test's p per row, the robust procedure's, and the pre-tests SPSS's
    procedure needs."""
    p = {"student_t": student_p(x, y), "welch_t": welch_p(x, y),
         "mann_whitney": mann_whitney_p(x, y), "welch_log_t": welch_log_p(x, y),
         "yuen_log_t": yuen_log_p(x, y), "brunner_munzel": brunner_munzel_p(x, y),
         "brunner_munzel_perm": brunner_munzel_perm_p(x, y),
         "median_permutation": median_permutation_p(x, y, n_perm, rng),
         "shapiro_a": shapiro_p(x), "shapiro_b": shapiro_p(y), "levene": levene_p(x, y)}
    p["yuen_brunner_munzel"] = yuen_brunner_munzel_p(x, y, p["yuen_log_t"],
                                                     p["brunner_munzel"])
    p["robust"] = robust_p(x, y, p)
    return p


def spss_p(p: dict[str, np.ndarray], alpha: float) -> np.ndarray:
    """SPSS's procedure's p per row: the test that the analysis' own rule
    (analysis.procedures.spss.spss_choice) chooses from the pre-tests' p."""
    choice = spss_rule.spss_choice(p["shapiro_a"], p["shapiro_b"], p["levene"], alpha)
    return np.choose(choice, [p[test] for test in spss_rule.SPSS_TESTS])


# --------------------------------------------------------------------------- one scenario


def _rng(seed: int, scenario: Scenario) -> np.random.Generator:
    """A stream per scenario: results do not depend on which others run, or in what order."""
    return np.random.default_rng([seed, zlib.crc32(scenario.key.encode())])


def run_scenario(scenario: Scenario, replicates: int = DEFAULT_REPLICATES, seed: int = 0,
                 n_perm: int = DEFAULT_PERMUTATIONS, alphas: Sequence[float] = ALPHAS,
                 methods: Sequence[str] = METHODS) -> dict[str, Any]:
    """Rejections of every method at every alpha in one scenario."""
    rng = _rng(seed, scenario)
    spread_b = SPREAD * math.sqrt(scenario.variance_ratio)
    counts = {m: [0] * len(alphas) for m in methods}
    sided = [m for m in ONE_SIDED if m in methods]
    one = {(m, side): [0] * len(alphas) for m in sided for side in ONE_SIDED_ALTERNATIVES}
    done = 0
    while done < replicates:
        rows = min(BLOCK, replicates - done)
        x = draw(scenario.shape, SPREAD, (rows, scenario.n_a), rng)
        y = draw(scenario.shape, spread_b, (rows, scenario.n_b), rng) * (1 + scenario.effect)
        p = p_values(x, y, rng, n_perm)
        p1 = one_sided_p(x, y, p) if sided else {}
        for i, alpha in enumerate(alphas):
            for m in methods:
                pm = spss_p(p, alpha) if m == "spss" else p[m]
                counts[m][i] += int(np.sum(pm < alpha))
            for m, side in one:
                one[m, side][i] += int(np.sum(p1[m][side] < alpha))
        done += rows

    def by_alpha(c: list[int]) -> dict[str, int]:
        return dict(zip((f"{a:g}" for a in alphas), c, strict=True))

    out = {**asdict(scenario), "replicates": replicates,
           "rejections": {m: by_alpha(c) for m, c in counts.items()}}
    if sided:
        out["one_sided"] = {m: {side: by_alpha(one[m, side]) for side in ONE_SIDED_ALTERNATIVES}
                            for m in sided}
    return out


def _run_one(args: tuple[Scenario, int, int, int]) -> dict[str, Any]:
    scenario, replicates, seed, n_perm = args
    return run_scenario(scenario, replicates, seed, n_perm)


def simulate(cells: Iterable[Scenario] | None = None, replicates: int = DEFAULT_REPLICATES,
             seed: int = 0, n_perm: int = DEFAULT_PERMUTATIONS, jobs: int = 1,
             progress: Callable[[int, int], None] | None = None,
             power_replicates: int | None = None) -> dict[str, Any]:
    """Every scenario (all of :func:`scenarios` by default), on ``jobs`` processes.

    ``power_replicates``: fewer replicates for the scenarios with an effect (power needs
    less precision than a type-I error near alpha); by default as many as the others.
    Returns the simulation JSON: the settings, and per scenario the rejections of each
    method at each alpha (``rate`` and ``se`` are derived by :func:`rate`).
    """
    cells = list(scenarios() if cells is None else cells)
    power = power_replicates or replicates
    # the slowest first, so that the last process is not left with the largest scenario
    work = sorted(((c, replicates if c.effect == 0 else power, seed, n_perm) for c in cells),
                  key=lambda w: -w[1] * (w[0].n_a + w[0].n_b))
    order = {c.key: i for i, c in enumerate(cells)}
    results: list[dict[str, Any]] = []
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, res in enumerate(pool.map(_run_one, work, chunksize=1)):
                results.append(res)
                if progress:
                    progress(i + 1, len(work))
    else:
        for i, item in enumerate(work):
            results.append(_run_one(item))
            if progress:
                progress(i + 1, len(work))
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "settings": {"replicates": replicates, "power_replicates": power,
                         "seed": seed, "permutations": n_perm,
                         "spread_a": SPREAD, "outlier_share": OUTLIER_SHARE,
                         "outlier_factor": OUTLIER_FACTOR, "alphas": list(ALPHAS),
                         "methods": list(METHODS), "one_sided": list(ONE_SIDED),
                         "cpus": os.cpu_count(), "jobs": jobs},
            "scenarios": sorted(results, key=lambda r: order[_key(r)])}


# --------------------------------------------------------------------------- reading results


def _key(cell: dict[str, Any]) -> str:
    return Scenario(cell["shape"], cell["n_a"], cell["n_b"], cell["variance_ratio"],
                    cell["effect"]).key


def rate(cell: dict[str, Any], method: str, alpha: float = 0.05,
         alternative: str = "two-sided") -> tuple[float, float]:
    """(rejection rate, its binomial standard error) of a method in a simulated scenario,
    two-sided or for a one-sided alternative ("less": H1 a < b; :data:`ONE_SIDED` only)."""
    k = (cell["rejections"][method] if alternative == "two-sided"
         else cell["one_sided"][method][alternative])[f"{alpha:g}"]
    n = cell["replicates"]
    r = k / n
    return r, math.sqrt(r * (1 - r) / n)


def load(path: str | Path = SHIPPED) -> dict[str, Any]:
    """A simulation JSON (the shipped one by default), checked for its format."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT or \
            data.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: not a {FORMAT} JSON of version "
                         f"{' or '.join(map(str, READABLE_VERSIONS))}")
    return data


def nearest(data: dict[str, Any], n_a: int, n_b: int, variance_ratio: float,
            effect: float = 0.0) -> list[dict[str, Any]]:
    """The simulated scenarios nearest to groups of n_a and n_b runs whose variances are in
    the ratio var(b) / var(a), one per shape.

    A two-sided test's error does not change when a and b swap, so a ratio below 1 is read
    as its inverse with the sizes swapped. Nearness is on the log scale of each size and of
    the ratio (24 is nearer 20 than 30 is to 24).
    """
    if variance_ratio < 1:
        n_a, n_b, variance_ratio = n_b, n_a, 1 / variance_ratio
    cells = [c for c in data["scenarios"] if math.isclose(c["effect"], effect)]
    if not cells:
        return []

    def distance(c: dict[str, Any]) -> float:
        return (abs(math.log(c["n_a"] / max(n_a, 1))) + abs(math.log(c["n_b"] / max(n_b, 1)))
                + abs(math.log(c["variance_ratio"] / max(variance_ratio, 1e-12))))

    best = min(distance(c) for c in cells)
    return [c for c in cells if math.isclose(distance(c), best)]


def worst_error(data: dict[str, Any], method: str, alpha: float = 0.05,
                cells: Iterable[dict[str, Any]] | None = None) -> tuple[float, dict[str, Any]]:
    """The largest distance |rate - alpha| of a method's type-I error over the null scenarios
    (or the given ones), and the scenario where it is."""
    found = [c for c in (cells if cells is not None else data["scenarios"])
             if c["effect"] == 0]
    worst = max(found, key=lambda c: abs(rate(c, method, alpha)[0] - alpha))
    return abs(rate(worst, method, alpha)[0] - alpha), worst


# --------------------------------------------------------------------------- tables


def _percent(x: float) -> str:
    return f"{100 * x:.1f}"


def outside(r: float, alpha: float, tolerance: float = 0.01) -> bool:
    """Whether a rate is outside alpha +- tolerance at the precision the tables show (0.1
    percentage point, about the standard error of a rate near alpha)."""
    return abs(round(100 * r, 1) - 100 * alpha) > 100 * tolerance + 1e-9


def markdown_tables(data: dict[str, Any], alpha: float = 0.05,
                    methods: Sequence[str] | None = None) -> str:
    """The type-I error and power tables of docs/statistics.md, in percent."""
    methods = list(methods or data["settings"]["methods"])
    head = ("| shape | n a | n b | var ratio | " + " | ".join(METHOD_NAMES[m] for m in methods)
            + " |\n|" + "---|" * (4 + len(methods)) + "\n")
    cells = data["scenarios"]
    null = [c for c in cells if c["effect"] == 0]
    out = [f"Type-I error (%) at alpha = {alpha:g}; cells outside {_percent(alpha - 0.01)} "
           f"to {_percent(alpha + 0.01)} % are in bold.\n\n", head]
    for c in null:
        row = []
        for m in methods:
            r, _ = rate(c, m, alpha)
            text = _percent(r)
            row.append(f"**{text}**" if outside(r, alpha) else text)
        out.append(f"| {c['shape']} | {c['n_a']} | {c['n_b']} | {c['variance_ratio']:g} | "
                   + " | ".join(row) + " |\n")
    effects = sorted({c["effect"] for c in cells if c["effect"] > 0})
    if effects:
        by_key = {(c["shape"], c["n_a"], c["n_b"], c["variance_ratio"], c["effect"]): c
                  for c in cells}
        names = " / ".join(f"{e:.0%}" for e in effects)
        out += [f"\nPower (%) at alpha = {alpha:g}, b's times {names} longer (each cell: "
                f"{names}).\n\n", head]
        for c in null:
            row = []
            for m in methods:
                parts = []
                for e in effects:
                    hit = by_key.get((c["shape"], c["n_a"], c["n_b"], c["variance_ratio"], e))
                    parts.append("-" if hit is None else _percent(rate(hit, m, alpha)[0]))
                row.append(" / ".join(parts))
            out.append(f"| {c['shape']} | {c['n_a']} | {c['n_b']} | {c['variance_ratio']:g} "
                       "| " + " | ".join(row) + " |\n")
    sided = [m for m in data["settings"].get("one_sided", ()) if m in methods]
    if sided and null and "one_sided" in null[0]:
        out += [f"\nOne-sided type-I error (%) at alpha = {alpha:g} (each cell: H1 a < b / "
                f"H1 a > b); cells above {_percent(BAR)} % are in bold.\n\n",
                "| shape | n a | n b | var ratio | "
                + " | ".join(METHOD_NAMES[m] for m in sided)
                + " |\n|" + "---|" * (4 + len(sided)) + "\n"]
        for c in null:
            row = []
            for m in sided:
                parts = []
                for side in ONE_SIDED_ALTERNATIVES:
                    r, _ = rate(c, m, alpha, side)
                    parts.append(f"**{_percent(r)}**" if above(r) else _percent(r))
                row.append(" / ".join(parts))
            out.append(f"| {c['shape']} | {c['n_a']} | {c['n_b']} | {c['variance_ratio']:g} "
                       "| " + " | ".join(row) + " |\n")
    return "".join(out)


#: Issue 29's bar: a type-I error at alpha .05 of at most 6.5 %, two-sided and one-sided,
#: in every scenario with at least this many runs a group.
BAR = 0.065
BAR_RUNS = 8


def above(r: float, bar: float = BAR) -> bool:
    """Whether a rate is above the bar at the precision the tables show."""
    return round(100 * r, 1) > 100 * bar + 1e-9


def bar_table(data: dict[str, Any], alpha: float = 0.05, min_runs: int = BAR_RUNS,
              bar: float = BAR) -> str:
    """The table the robust procedure was chosen from: per method, the largest type-I
    error over the null scenarios with at least `min_runs` runs a group, two-sided and (for
    :data:`ONE_SIDED`) one-sided, where it is, how many scenarios are above `bar`, the range
    with fewer runs, and the mean power over the same scenarios."""
    cells = data["scenarios"]
    large = [c for c in cells if min(c["n_a"], c["n_b"]) >= min_runs]
    null = [c for c in large if c["effect"] == 0]
    few = [c for c in cells if min(c["n_a"], c["n_b"]) < min_runs and c["effect"] == 0]
    effects = sorted({c["effect"] for c in large if c["effect"] > 0})
    out = [f"| method | largest two-sided type-I error (%), {min_runs}+ runs a group | "
           f"largest one-sided (%) | scenario-sides above {_percent(bar)} % | below "
           f"{min_runs} runs, two-sided (%) | mean power (%) at "
           f"{' / '.join(f'{e:.0%}' for e in effects)} |\n"
           "|---|---|---|---|---|---|\n"]
    sided = data["settings"].get("one_sided", ())

    def where(c: dict[str, Any]) -> str:
        return f"{c['shape']} {c['n_a']} vs {c['n_b']}, ratio {c['variance_ratio']:g}"

    for m in data["settings"]["methods"]:
        two = max(null, key=lambda c: rate(c, m, alpha)[0])
        r2 = rate(two, m, alpha)[0]
        missed = sum(above(rate(c, m, alpha)[0], bar) for c in null)
        one = "-"
        if m in sided and "one_sided" in null[0]:
            pairs = [(rate(c, m, alpha, side)[0], side, c) for c in null
                     for side in ONE_SIDED_ALTERNATIVES]
            r1, side, c1 = max(pairs, key=lambda t: t[0])
            missed += sum(above(r, bar) for r, _, _ in pairs)
            one = f"{_percent(r1)} ({where(c1)}, H1 a {'<' if side == 'less' else '>'} b)"
        small = [rate(c, m, alpha)[0] for c in few]
        power = [np.mean([rate(c, m, alpha)[0] for c in large if c["effect"] == e])
                 for e in effects]
        out.append(f"| {METHOD_NAMES[m]} | {_percent(r2)} ({where(two)}) | {one} | {missed} | "
                   + (f"{_percent(min(small))} to {_percent(max(small))}" if small else "-")
                   + " | " + " / ".join(_percent(v) for v in power) + " |\n")
    return "".join(out)


def worst_rate(data: dict[str, Any], method: str, alpha: float = 0.05,
               min_runs: int = BAR_RUNS) -> float:
    """The largest type-I error of a method, two-sided or one-sided, over the null
    scenarios with at least `min_runs` runs a group: what the bar is set on."""
    null = [c for c in data["scenarios"] if c["effect"] == 0
            and min(c["n_a"], c["n_b"]) >= min_runs]
    rates = [rate(c, method, alpha)[0] for c in null]
    if method in data["settings"].get("one_sided", ()):
        rates += [rate(c, method, alpha, side)[0] for c in null
                  for side in ONE_SIDED_ALTERNATIVES]
    return max(rates)


def summary(data: dict[str, Any], alpha: float = 0.05) -> list[str]:
    """One line per method: the type-I error's range over the null scenarios, where it is
    worst, how many scenarios are outside alpha +- 0.01, and the mean power."""
    lines = []
    null = [c for c in data["scenarios"] if c["effect"] == 0]
    for m in data["settings"]["methods"]:
        rates = [rate(c, m, alpha)[0] for c in null]
        miss, worst = worst_error(data, m, alpha)
        missed = sum(outside(r, alpha) for r in rates)
        power = {e: np.mean([rate(c, m, alpha)[0] for c in data["scenarios"]
                             if c["effect"] == e])
                 for e in sorted({c["effect"] for c in data["scenarios"] if c["effect"] > 0})}
        lines.append(
            f"{METHOD_NAMES[m]}: type-I error {_percent(min(rates))} to {_percent(max(rates))} %"
            f" ({missed} of {len(null)} scenarios outside {_percent(alpha - 0.01)} to "
            f"{_percent(alpha + 0.01)} %; worst {_percent(rate(worst, m, alpha)[0])} % in "
            f"{worst['shape']} {worst['n_a']} vs {worst['n_b']}, variance ratio "
            f"{worst['variance_ratio']:g}); mean power "
            + ", ".join(f"{_percent(v)} % at {e:.0%}" for e, v in power.items()))
    return lines


# --------------------------------------------------------------------------- for the paper


def procedure_method(procedure: str) -> str | None:
    """The method whose simulated rates are a procedure's (its ``simulated``: "spss" for
    SPSS's, "brunner_munzel_perm" for the robust one); None for a procedure that is not
    simulated or not known."""
    try:
        return getattr(load_procedure(procedure), "simulated", None)
    except UnknownProcedureError:
        return None


def __getattr__(name: str) -> Any:
    """``PROCEDURE_METHOD``: {procedure: :func:`procedure_method`} over the catalogue now."""
    if name == "PROCEDURE_METHOD":
        return {p: procedure_method(p) for p in procedure_names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ProcedureError:
    """The simulated type-I error of a procedure for a study's comparisons: the range over
    the nearest simulated scenario of each comparison and over the shapes of noise."""

    procedure: str
    alpha: float
    low: float
    high: float
    #: (n_a, n_b, variance ratio) of each distinct nearest scenario, in order.
    scenarios: tuple[tuple[int, int, float], ...]
    shapes: tuple[str, ...]


def procedure_error(groups: Iterable[tuple[int, int, float]], procedure: str,
                    alpha: float = 0.05, data: dict[str, Any] | None = None
                    ) -> ProcedureError | None:
    """For comparisons given as (n_a, n_b, var(b) / var(a)): the procedure's simulated
    type-I error in the nearest scenario of each (every shape), from the shipped results.

    None when the results lack this alpha or the procedure, or no comparison has two
    groups of at least two runs with some spread.
    """
    data = data if data is not None else load()
    method = procedure_method(procedure)
    if method not in data["settings"]["methods"] or \
            not any(math.isclose(alpha, a) for a in data["settings"]["alphas"]):
        return None
    alpha = next(a for a in data["settings"]["alphas"] if math.isclose(alpha, a))
    rates: list[float] = []
    found: list[tuple[int, int, float]] = []
    shapes: list[str] = []
    for n_a, n_b, ratio in groups:
        if n_a < 2 or n_b < 2 or not math.isfinite(ratio) or ratio <= 0:
            continue
        for cell in nearest(data, n_a, n_b, ratio):
            rates.append(rate(cell, method, alpha)[0])
            shapes.append(cell["shape"])
            key = (cell["n_a"], cell["n_b"], float(cell["variance_ratio"]))
            if key not in found:
                found.append(key)
    if not rates:
        return None
    return ProcedureError(procedure, alpha, min(rates), max(rates), tuple(found),
                          tuple(dict.fromkeys(shapes)))

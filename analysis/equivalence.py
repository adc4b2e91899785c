"""Equivalence: is "no significant difference" evidence that two environments are as fast?

A non-significant result from a few noisy runs may only mean too few runs. With a stated
margin (``[analysis] equivalence = 0.05``: within +-5 %) two one-sided tests (TOST,
Schuirmann 1987) ask the question the other way round: H0 is "the ratio a / b is at most
1 - margin or at least 1 + margin", rejected when both one-sided tests reject at alpha,
which is when the (1 - 2 alpha) interval of the ratio (90 % at alpha .05) lies within
[1 - margin, 1 + margin].

The ratio is that of geometric means, by Welch's t on log values: a speed-up is a ratio,
timing noise grows with the time, and a cloud is noisier than a PC, so the log scale with
Welch's standard error is where the t distribution holds best (docs/statistics.md). TOSTER's
``tsum_TOST`` and statsmodels' ``ttost_ind(usevar="unequal")`` on log values compute the
same two tests.

The conclusion of a comparison combines both questions: a significant difference (the
procedure's test, Holm-adjusted) says which environment is faster (or lower); otherwise the
TOST says "equivalent within +-margin" or "inconclusive: more runs needed". No adjustment
across datasets is made for the TOST: "equivalent in every dataset" is an intersection-union
claim, which needs none (Berger 1982).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.special import stdtr, stdtrit

from cloudbench.analysis import stats as S
from cloudbench.analysis.results import Equivalence

METHOD = "welch_log_t"


def check_margin(margin: float) -> float:
    """A relative margin: 0.05 is +-5 %; it must leave the lower bound 1 - margin positive."""
    value = float(margin)
    if not 0 < value < 1:
        raise ValueError(f"equivalence margin must be between 0 and 1 (0.05 is +-5 %), "
                         f"got {margin}")
    return value


def tost_log(a: S.Values, b: S.Values, margin: float, alpha: float = 0.05) -> Equivalence:
    """TOST of the ratio of geometric means a / b against [1 - margin, 1 + margin].

    With d the difference of mean log values, se Welch's standard error and df
    Welch-Satterthwaite's: t_lower = (d - log(1 - margin)) / se, p_lower = P(T >= t_lower);
    t_upper = (d - log(1 + margin)) / se, p_upper = P(T <= t_upper); p = max of the two.
    The interval is exp(d -+ t(1 - alpha, df) se). None values (not equivalent) where a
    value is not positive or a group has fewer than 2 values or no spread.
    """
    margin = check_margin(margin)
    out = Equivalence(margin=margin, method=METHOD, conf_level=1 - 2 * alpha)
    x, y = S.clean(a), S.clean(b)
    if x.size < 2 or y.size < 2 or not (S.positive(x) and S.positive(y)):
        return out
    lx, ly = np.log(x), np.log(y)
    ex, ey = lx.var(ddof=1) / lx.size, ly.var(ddof=1) / ly.size
    d = float(lx.mean() - ly.mean())
    se = math.sqrt(ex + ey)
    if se == 0:
        return replace(out, ratio=math.exp(d))
    df = (ex + ey) ** 2 / (ex**2 / (lx.size - 1) + ey**2 / (ly.size - 1))
    t_lower = (d - math.log(1 - margin)) / se
    t_upper = (d - math.log(1 + margin)) / se
    p_lower = float(stdtr(df, -t_lower))
    p_upper = float(stdtr(df, t_upper))
    p = max(p_lower, p_upper)
    half = float(stdtrit(df, 1 - alpha)) * se
    return replace(out, ratio=math.exp(d), ci_low=math.exp(d - half),
                   ci_high=math.exp(d + half), df=float(df), t_lower=t_lower,
                   t_upper=t_upper, p_lower=p_lower, p_upper=p_upper, p=p,
                   equivalent=p < alpha)


def conclude(eq: Equivalence, significant: bool, lower: bool | None, timing: bool
             ) -> Equivalence:
    """The four-way conclusion: a significant difference says which way ("faster" or
    "slower" for a time, "lower" or "higher" otherwise, of a relative to b), else the TOST
    says "equivalent" or "inconclusive" (more runs needed)."""
    if significant and lower is not None:
        word = ("faster" if lower else "slower") if timing else ("lower" if lower else "higher")
    else:
        word = "equivalent" if eq.equivalent else "inconclusive"
    return replace(eq, conclusion=word)

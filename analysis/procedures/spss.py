"""SPSS's procedure, the reference study's: a pre-test chooses the test of each comparison.

:func:`spss_choice` is the rule, written once: the analysis applies it to one comparison
(:data:`SPSS`, through analysis.compare) and the simulation to a whole block of simulated
samples at once (analysis.simulation.spss_p), so the error rates that docs/statistics.md
and the paper state are those of the very rule the analysis applies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from cloudbench.analysis.procedures import Pair

#: The tests the rule chooses among; :func:`spss_choice` gives positions in this tuple.
SPSS_TESTS = ("student_t", "welch_t", "mann_whitney")
STUDENT, WELCH, MANN_WHITNEY = range(3)

#: A p, None (not computable), or an array of them (None and NaN alike: not computable).
PValues = ArrayLike | None


def _p(values: PValues) -> np.ndarray:
    return np.asarray(values, dtype=float)  # None -> NaN, which is neither > nor < alpha


def spss_choice(shapiro_a: PValues, shapiro_b: PValues,
                levene: PValues | Callable[[], PValues], alpha: float) -> np.ndarray:
    """The test SPSS's procedure uses, as positions in :data:`SPSS_TESTS`, elementwise:
    Student's t where both groups pass Shapiro-Wilk (p > alpha), Welch's t instead where
    Levene's test also rejects equal variances (p < alpha), Mann-Whitney where either group
    fails or cannot be checked (p None or NaN: fewer than 3 runs, constant values).

    `levene` may be a function giving its p, called only where some pair of groups is
    normal: the test is not needed otherwise, and a caller of one comparison saves it.
    """
    normal = (_p(shapiro_a) > alpha) & (_p(shapiro_b) > alpha)
    if callable(levene):
        levene = levene() if normal.any() else None
    unequal = _p(levene) < alpha
    return np.where(normal, np.where(unequal, WELCH, STUDENT), MANN_WHITNEY)


class Spss:
    """The procedure object of the catalogue's "spss" (analysis.procedures.Procedure)."""

    simulated = "spss"  # analysis.simulation's method "spss" applies spss_choice

    def choose(self, pair: Pair) -> str:
        return SPSS_TESTS[int(spss_choice(pair["shapiro_a"].p, pair["shapiro_b"].p,
                                          lambda: pair["levene"].p, pair.alpha))]


SPSS = Spss()

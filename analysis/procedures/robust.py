"""The robust procedure: Brunner-Munzel's studentized permutation test for every comparison.

Neubert and Brunner (2007): Brunner-Munzel's statistic against its values over the
relabellings of the pooled ranks, every one when there are at most 20,000
(analysis.stats.BM_PERMUTATIONS), else 20,000 drawn from the comparison's seed (the
analysis seed and the comparison's names), so the p is reproducible. It kept its type-I
error best across the simulated scenarios while losing least power (analysis.simulation,
docs/statistics.md), needs no positive values and handles ties.
"""

from __future__ import annotations

from cloudbench.analysis.procedures import Pair


class Robust:
    """The procedure object of the catalogue's "robust" (analysis.procedures.Procedure)."""

    simulated = "brunner_munzel_perm"  # analysis.simulation's vectorised same test

    def choose(self, pair: Pair) -> str:
        return "brunner_munzel"


ROBUST = Robust()

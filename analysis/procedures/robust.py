"""The robust procedure: a test that keeps alpha where cloud timings live, by group size.

- From :data:`MIN_RUNS` (8) runs in each group, with positive values: Yuen's 20 %-trimmed
  Welch test on log values *and* Brunner-Munzel's test (its t approximation), significant
  only where both are, in the same direction (analysis.stats.yuen_brunner_munzel, an
  intersection-union test). Its null is "equal trimmed means of the log times, or
  P(a < b) + P(a = b) / 2 = 1/2"; a rejection says both that a's trimmed geometric mean
  time differs from b's and that a run of a tends to be faster (or slower) than one of b.
  On the simulated grid (variance ratios up to 25, groups from 8 to 50 with the noisier one
  small or large, normal, log-normal, heavy-tailed and slow-outlier noise) its type-I
  error at alpha .05 stayed at or under 4.7 % two-sided and 5.2 % one-sided, where Yuen's
  test alone reached 10.1 % one-sided (slow outliers move the trimmed means) and
  Brunner-Munzel's 6.7 % (t approximation) and 7.1 % (permutation) with a small, noisy
  group; it costs about 4 points of power against either (docs/statistics.md).
- Below that, or with a value that is not positive: Brunner-Munzel's studentized
  permutation test (Neubert and Brunner 2007), over every relabelling of the pooled ranks
  when there are at most 20,000 (analysis.stats.BM_PERMUTATIONS: up to 8 vs 8, 5 vs 15),
  else 20,000 drawn from the comparison's seed; with 5 runs a group it keeps 4.4 to 6.1 %
  where Yuen's test reaches 7 %.

The speed ratio's interval is Yuen's: the ratio of the trimmed geometric means a / b
(analysis.results.YuenLog), whichever test decides.
"""

from __future__ import annotations

from cloudbench.analysis import stats as S
from cloudbench.analysis.procedures import Pair

#: Runs a group needs for Yuen's test (with Brunner-Munzel's); below, the permutation test.
MIN_RUNS = 8


def large_enough(n_a: int, n_b: int) -> bool:
    """Whether both groups have the runs for the test of 8 runs and more."""
    return min(n_a, n_b) >= MIN_RUNS


class Robust:
    """The procedure object of the catalogue's "robust" (analysis.procedures.Procedure)."""

    simulated = "robust"  # analysis.simulation's vectorised same choice

    def choose(self, pair: Pair) -> str:
        if large_enough(pair.x.size, pair.y.size) and S.positive(pair.x) and \
                S.positive(pair.y):
            return "yuen_brunner_munzel"
        return "brunner_munzel"


ROBUST = Robust()

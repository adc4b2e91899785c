"""A procedure written in the tests, as a user would write one: Welch's t for every
comparison (one module; registering it is the other half, tests/test_procedures.py)."""

from __future__ import annotations

from cloudbench.analysis.procedures import Pair


class WelchOnly:
    """Welch's t whatever the pre-tests say."""

    description = "Welch's t for every comparison"
    simulated = None  # no simulated rates: the paper then states none

    def choose(self, pair: Pair) -> str:
        return "welch_t"


WELCH = WelchOnly()

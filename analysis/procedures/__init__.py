"""The analysis' procedures: which test each comparison uses, one module per procedure.

The names, descriptions and the module of each are in the catalogue (data.procedures),
which the study file and the commands read without importing the analysis; the
implementations are here (:mod:`.spss`, :mod:`.robust`), and :func:`load_procedure` is
the one place that imports one by name. A procedure is an object with

- ``choose(pair)``: the name of the test the comparison uses (a key of :class:`Pair`:
  "mann_whitney", "student_t", "welch_t", "brunner_munzel" or "yuen_brunner_munzel"),
  asking `pair` only for the results the choice needs;
- ``simulated``: the method of analysis.simulation whose simulated rates are this
  procedure's, or None where it is not simulated (the paper then states no error rate).

A new procedure is a module with such an object plus its registration in the catalogue.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from cloudbench.analysis import stats as S
from cloudbench.analysis.results import Result
from cloudbench.data.procedures import procedure

#: How :class:`Pair` computes each result a procedure may ask for, from the two samples.
_COMPUTE: dict[str, Callable[[Pair], Result]] = {
    "shapiro_a": lambda p: S.shapiro_wilk(p.x),
    "shapiro_b": lambda p: S.shapiro_wilk(p.y),
    "levene": lambda p: S.levene(p.x, p.y),
    "mann_whitney": lambda p: S.mann_whitney(p.x, p.y, p.alternative),
    "student_t": lambda p: S.student_t(p.x, p.y, p.alternative),
    "welch_t": lambda p: S.welch_t(p.x, p.y, p.alternative),
    "brunner_munzel": lambda p: S.brunner_munzel(p.x, p.y, p.alternative, seed=p.seed),
    "yuen_brunner_munzel": lambda p: S.yuen_brunner_munzel(p.x, p.y, p.alternative),
}


class Pair:
    """The two samples of one comparison and its settings, with each test's result computed
    on first use and kept: the full analysis passes in what it already has (the groups'
    Shapiro-Wilk, every test it reports), and the A/A calibration's many splits compute
    only what the choice asks for."""

    def __init__(self, x: np.ndarray, y: np.ndarray, alternative: str, alpha: float,
                 seed: int | Sequence[int] = 0, known: dict[str, Result] | None = None):
        self.x, self.y = x, y
        self.alternative, self.alpha, self.seed = alternative, alpha, seed
        self._results: dict[str, Result] = dict(known or {})

    def __getitem__(self, name: str) -> Result:
        if name not in self._results:
            self._results[name] = _COMPUTE[name](self)
        return self._results[name]

    def computed(self, name: str) -> Result | None:
        """The result of `name` if anything asked for it (or it was passed in), else None."""
        return self._results.get(name)


class Procedure(Protocol):
    """What the analysis needs of a procedure (the module's docstring)."""

    simulated: str | None

    def choose(self, pair: Pair) -> str:
        ...


def load_procedure(name: str) -> Procedure:
    """The implementation registered under `name` in the catalogue (imported on first use);
    data.procedures.UnknownProcedureError naming the known procedures otherwise."""
    target: Any = procedure(name).target
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target

"""The catalogue of analysis procedures: each one's name, one-line description and module.

A procedure decides which test each comparison of the analysis uses (analysis.procedures
holds the implementations). The study file (``[analysis] procedure``), ``study analyze
--procedure`` and the analysis JSON's reader all take a procedure by name, and the study
layer may not import the analysis (tests/test_layering.py), so the names live here, below
both, with where each implementation is: a ``"module:attribute"`` that only the analysis
imports (:func:`cloudbench.analysis.procedures.load_procedure`). Standard library only,
like the rest of this package, so reading the names costs no scipy import.

A new procedure is one module plus one registration: a line of :data:`BUILT_IN` for the
toolkit's own; an entry point in the group ``cloudbench.procedures`` for another package's
(``[project.entry-points."cloudbench.procedures"]``, ``name = "module:attribute"``; an entry
point names no description, so help texts show none for it); or :func:`register_procedure`
at run time (a test, a notebook), with a description or the implementation's own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from cloudbench.errors import InputError

ENTRY_POINT_GROUP = "cloudbench.procedures"
#: The procedure of a study file, a command or a JSON that names none: the reference study's.
DEFAULT_PROCEDURE = "spss"


@dataclass(frozen=True)
class Procedure:
    """One catalogue entry. ``target`` is the implementation, or ``"module:attribute"``
    where the analysis finds it (analysis.procedures.Procedure says what it must have)."""

    name: str
    description: str
    target: Any


class UnknownProcedureError(InputError, ValueError):
    """A procedure name the catalogue does not have; the message names the known ones."""


#: The toolkit's own procedures, in the order help texts list them (the default first).
BUILT_IN = (
    Procedure("spss", "SPSS's, the reference study's: Shapiro-Wilk in both groups at alpha, "
              "then Student's t (Welch's when Levene's test rejects equal variances at "
              "alpha) if both look normal, else Mann-Whitney",
              "cloudbench.analysis.procedures.spss:SPSS"),
    Procedure("robust", "from 8 runs a group, Yuen's 20 % trimmed test on log times and "
              "Brunner-Munzel's test, significant only where both are; below, "
              "Brunner-Munzel's studentized permutation test (Neubert and Brunner 2007)",
              "cloudbench.analysis.procedures.robust:ROBUST"),
)

_registered: dict[str, Procedure] = {}


def register_procedure(name: str, target: Any, description: str = "") -> None:
    """Add (or replace) a procedure: its implementation, or "module:attribute" imported by
    the analysis on first use. A description left empty is the implementation's own
    ``description`` attribute where it has one."""
    if not description and not isinstance(target, str):
        description = str(getattr(target, "description", ""))
    _registered[name] = Procedure(name, description, target)


@functools.cache
def _entry_points() -> tuple[Procedure, ...]:
    """Other packages' procedures (their entry points), read once: the analysis' A/A
    calibration looks a procedure up thousands of times."""
    return tuple(Procedure(ep.name, "", ep.value)
                 for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def _catalogue() -> dict[str, Procedure]:
    """Every procedure: the built-in ones (which an installed package cannot replace), the
    entry points, then those registered at run time (which replace any other)."""
    found = {p.name: p for p in _entry_points()}
    found.update({p.name: p for p in BUILT_IN})
    order = [p.name for p in BUILT_IN] + sorted(found.keys() - {p.name for p in BUILT_IN})
    return {name: found[name] for name in order} | _registered


def procedure_names() -> tuple[str, ...]:
    """The known procedures' names: the built-in ones first, the default first of all."""
    return tuple(_catalogue())


def procedure(name: str) -> Procedure:
    """The catalogue entry of `name`; :class:`UnknownProcedureError` naming the known ones."""
    found = _catalogue().get(name)
    if found is None:
        raise UnknownProcedureError(f"no procedure {name!r}; known procedures: "
                                    f"{', '.join(procedure_names())}")
    return found


def procedure_descriptions() -> dict[str, str]:
    """Name -> one-line description, for help texts ("" where an entry point gives none)."""
    return {name: p.description for name, p in _catalogue().items()}

"""What a protocol notebook offers the study: its parameters, its phases and its metrics.

Any parameterised notebook can be a protocol, unchanged but for cell tags:

* ``parameters`` (papermill's tag): the cell the study's parameters override;
* ``phase:NAME``: the cell's kernel-side execution time counts towards the record's
  ``NAME_s`` (several cells may share a name; untagged cells go to ``other_s``);
* ``metrics``: the cell's last expression is a dict of numbers, whose keys become columns.

The toolkit's own protocol (cnn_train.ipynb) needs no tags: it declares ``record_path`` and
writes its own record with the toolkit's helper. Everything is checked here before a run,
with errors that name the notebook, the cell (its index and first line) and the tag.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudbench.errors import InputError
from cloudbench.study.imports import skip_slow_optional_imports

PHASE_PREFIX = "phase:"
METRICS_TAG = "metrics"
PHASE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Names a phase may not take: they are the record's other timing columns.
RESERVED_PHASES = ("other", "total", "wall", "first_epoch", "train_nowarm")
#: The conventional phases, in the order the analysis and the paper know them.
KNOWN_PHASES = ("import", "load", "build", "train", "eval")
#: The parameter that marks a notebook writing its own record (the built-in protocol).
RECORD_PARAMETER = "record_path"


class NotebookError(InputError, ValueError):
    """A notebook that cannot be a protocol; the message names the cell and the tag."""


@dataclass(frozen=True)
class Cell:
    index: int  # among all cells, from 0, as Jupyter shows them
    first_line: str
    phase: str | None
    metrics: bool


#: The kinds a notebook may declare for a parameter, and the Python types they accept.
KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                      "bool": (bool,)}


@dataclass(frozen=True)
class Rule:
    """What one parameter accepts, as its notebook declares it (metadata cloudbench.parameters).

    The study file is checked against it before anything runs, so a value the protocol
    cannot use (an unknown model, epochs = 0) never costs a study its machine time.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is refused, or None when it is accepted."""
        if value is None:
            return None if self.nullable else "must not be empty"
        kinds = KINDS[self.kind]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            return f"expected {self.kind}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of: {', '.join(map(str, self.choices))}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum:g}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}, got {value}"
        return None


@dataclass(frozen=True)
class Protocol:
    """A notebook as the study sees it."""

    path: Path
    parameters: frozenset[str]
    cells: tuple[Cell, ...]  # the code cells
    rules: dict[str, Rule] = field(default_factory=dict)  # declared in its metadata

    @property
    def writes_record(self) -> bool:
        """The built-in way: the notebook writes its record to `record_path` itself."""
        return RECORD_PARAMETER in self.parameters

    @property
    def phases(self) -> tuple[str, ...]:
        """Phase names in notebook order (each once)."""
        return tuple(dict.fromkeys(c.phase for c in self.cells if c.phase))

    @property
    def metrics_cell(self) -> Cell | None:
        return next((c for c in self.cells if c.metrics), None)


def describe(cell: Cell | int, first_line: str = "") -> str:
    """"cell 4 (`model.fit(x, y)`)": how errors point at a cell."""
    if isinstance(cell, Cell):
        cell, first_line = cell.index, cell.first_line
    return f"cell {cell}" + (f" (`{first_line}`)" if first_line else "")


def first_line(source: str | list[str]) -> str:
    """A cell's first non-blank line, shortened (a notebook file may hold a list of lines)."""
    source = "".join(source) if isinstance(source, list) else source
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def _phase_of(path: Path, index: int, line: str, tags: list[str]) -> str | None:
    phases = [t for t in tags if t.startswith(PHASE_PREFIX)]
    if len(phases) > 1:
        raise NotebookError(f"{path}: {describe(index, line)} has two phase tags "
                            f"({', '.join(phases)}); a cell belongs to one phase")
    if not phases:
        return None
    name = phases[0][len(PHASE_PREFIX):]
    if not PHASE_NAME.match(name):
        raise NotebookError(f"{path}: {describe(index, line)}: tag {phases[0]!r} is not "
                            "phase:NAME with NAME in lower case letters, digits and '_' "
                            "(for example phase:train)")
    if name in RESERVED_PHASES:
        raise NotebookError(f"{path}: {describe(index, line)}: tag {phases[0]!r} names a "
                            f"column the toolkit computes itself ({name}_s); choose another")
    return name


def _rules(path: Path, metadata: Any, parameters: frozenset[str]) -> dict[str, Rule]:
    """The notebook's declared parameter rules: metadata {"cloudbench": {"parameters": {NAME:
    {"kind": int|float|str|bool, "min", "max", "choices", "nullable"}}}}."""
    declared = (metadata or {}).get("cloudbench", {}).get("parameters", {})
    if not isinstance(declared, dict):
        raise NotebookError(f"{path}: metadata cloudbench.parameters must be an object")
    rules = {}
    for name, raw in declared.items():
        where = f"{path}: metadata cloudbench.parameters.{name}"
        if name not in parameters:
            raise NotebookError(f"{where}: not a parameter of the notebook's parameters cell")
        if not isinstance(raw, dict) or raw.get("kind") not in KINDS or set(raw) - {
                "kind", "min", "max", "choices", "nullable"}:
            raise NotebookError(f"{where}: expected {{\"kind\": {' | '.join(KINDS)}, \"min\", "
                                "\"max\", \"choices\", \"nullable\"}")
        choices = raw.get("choices")
        rules[name] = Rule(kind=raw["kind"], minimum=raw.get("min"), maximum=raw.get("max"),
                           choices=tuple(choices) if isinstance(choices, list) else None,
                           nullable=bool(raw.get("nullable", False)))
    return rules


def inspect(path: Path) -> Protocol:
    """Read and check a notebook; NotebookError names what is wrong and where."""
    skip_slow_optional_imports()
    import nbformat
    import papermill

    if not path.is_file():
        raise NotebookError(f"notebook not found: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types
        raise NotebookError(f"{path} is not a readable notebook: {exc}") from exc
    cells: list[Cell] = []
    has_parameters = False
    for index, cell in enumerate(nb.cells):
        tags = list(cell.get("metadata", {}).get("tags", []))
        line = first_line(cell.get("source", ""))
        if cell.get("cell_type") != "code":
            if any(t.startswith(PHASE_PREFIX) or t == METRICS_TAG for t in tags):
                raise NotebookError(f"{path}: {describe(index, line)} is a "
                                    f"{cell.get('cell_type')} cell; only code cells are timed")
            continue
        has_parameters |= "parameters" in tags
        cells.append(Cell(index, line, _phase_of(path, index, line, tags), METRICS_TAG in tags))
    if not has_parameters:
        raise NotebookError(f"{path} has no cell tagged 'parameters'; papermill needs one to "
                            "inject the study's parameters")
    metrics = [c for c in cells if c.metrics]
    if len(metrics) > 1:
        raise NotebookError(f"{path}: {describe(metrics[1])} is a second cell tagged "
                            f"'metrics' (the first is {describe(metrics[0])}); keep one")
    parameters = frozenset(papermill.inspect_notebook(str(path)))
    protocol = Protocol(path, parameters, tuple(cells),
                        _rules(path, nb.metadata, parameters))
    if not protocol.writes_record and not protocol.phases:
        raise NotebookError(
            f"{path} has no cell tagged phase:NAME, so nothing in it would be timed. Tag the "
            "cells that do the work, e.g. phase:import, phase:load, phase:build, phase:train "
            "and phase:eval, and the cell whose last expression is a dict of the results "
            "(such as {'test_accuracy': acc}) 'metrics'")
    return protocol

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

import re
from dataclasses import dataclass
from pathlib import Path

from study.imports import skip_slow_optional_imports

PHASE_PREFIX = "phase:"
METRICS_TAG = "metrics"
PHASE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Names a phase may not take: they are the record's other timing columns.
RESERVED_PHASES = ("other", "total", "wall", "first_epoch", "train_nowarm")
#: The conventional phases, in the order the analysis and the paper know them.
KNOWN_PHASES = ("import", "load", "build", "train", "eval")
#: The parameter that marks a notebook writing its own record (the built-in protocol).
RECORD_PARAMETER = "record_path"


class NotebookError(ValueError):
    """A notebook that cannot be a protocol; the message names the cell and the tag."""


@dataclass(frozen=True)
class Cell:
    index: int  # among all cells, from 0, as Jupyter shows them
    first_line: str
    phase: str | None
    metrics: bool


@dataclass(frozen=True)
class Protocol:
    """A notebook as the study sees it."""

    path: Path
    parameters: frozenset[str]
    cells: tuple[Cell, ...]  # the code cells

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
    protocol = Protocol(path, frozenset(papermill.inspect_notebook(str(path))), tuple(cells))
    if not protocol.writes_record and not protocol.phases:
        raise NotebookError(
            f"{path} has no cell tagged phase:NAME, so nothing in it would be timed. Tag the "
            "cells that do the work, e.g. phase:import, phase:load, phase:build, phase:train "
            "and phase:eval, and the cell whose last expression is a dict of the results "
            "(such as {'test_accuracy': acc}) 'metrics'")
    return protocol

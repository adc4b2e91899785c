"""What a protocol notebook offers the study: its parameters, its phases and its metrics.

Any parameterised notebook can be a protocol, unchanged but for cell tags:

* ``parameters`` (papermill's tag): the cell the study's parameters override (a notebook
  without one runs as it is, and takes no parameters);
* ``phase:NAME``: the cell's kernel-side execution time counts towards the record's
  ``NAME_s`` (several cells may share a name; untagged cells go to ``other_s``);
* ``metrics``: the cell's last expression is a dict of numbers, whose keys become columns;
  or, when it ends in a statement, the numbers it assigns (``test_loss, test_acc =
  model.evaluate(...)``; a dict of numbers assigned gives its keys), read after the run;
* ``colab-only``: the cell runs only on Colab runners (``drive.mount``, ``files.upload``);
* ``skip``: the cell never runs in a study (a download replaced by a file beside it).

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
#: Cells that run only on a Colab runner (drive.mount, files.upload, google.colab imports).
COLAB_ONLY_TAG = "colab-only"
#: Cells that never run in a study (a download the study replaced by a file, a plot).
SKIP_TAG = "skip"
PHASE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Names a phase may not take: they are the record's other timing columns.
RESERVED_PHASES = ("other", "total", "wall", "first_epoch", "train_nowarm")
#: The conventional phases, in the order the analysis and the paper know them.
KNOWN_PHASES = ("import", "load", "build", "train", "eval")
#: The parameter that marks a notebook writing its own record (the built-in protocol).
RECORD_PARAMETER = "record_path"
#: The kernel of a notebook that names none (Colab saves notebooks without a kernelspec).
DEFAULT_KERNEL = "python3"


class NotebookError(InputError, ValueError):
    """A notebook that cannot be a protocol; the message names the cell and the tag."""


@dataclass(frozen=True)
class Cell:
    index: int  # among all cells, from 0, as Jupyter shows them
    first_line: str
    phase: str | None
    metrics: bool
    runs_on: str = "all"  # all | colab (tagged colab-only) | never (tagged skip)
    #: A metrics cell that ends in a statement, not an expression: the names it assigns
    #: (``test_loss, test_acc = model.evaluate(...)``), read when the notebook has run.
    assigns: tuple[str, ...] = ()


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
    language: str = "python"  # inferred when the notebook names none (Colab's notebooks)
    kernel_name: str | None = None  # its kernelspec's; None when it names no kernel

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

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The names whose values are the run's results, when the metrics cell assigns
        them rather than ending in a dict (read after the last cell has run)."""
        cell = self.metrics_cell
        return cell.assigns if cell is not None else ()

    def dropped_cells(self, on_colab: bool) -> frozenset[int]:
        """The indices of the cells a run leaves out: `skip` always, `colab-only` off Colab."""
        return frozenset(c.index for c in self.cells
                         if c.runs_on == "never" or (c.runs_on == "colab" and not on_colab))


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


def _runs_on(path: Path, index: int, line: str, tags: list[str]) -> str:
    """Where a cell runs. A cell that some runs leave out cannot be timed, hold the
    parameters or the metrics: the runs would then differ in what they measure."""
    where = [t for t in (COLAB_ONLY_TAG, SKIP_TAG) if t in tags]
    if len(where) > 1:
        raise NotebookError(f"{path}: {describe(index, line)} is tagged both 'colab-only' and "
                            "'skip'; keep one")
    if not where:
        return "all"
    clash = [t for t in tags if t.startswith(PHASE_PREFIX) or t in (METRICS_TAG, "parameters")]
    if clash:
        raise NotebookError(f"{path}: {describe(index, line)} is tagged {where[0]!r} and "
                            f"{clash[0]!r}: a cell some runs leave out cannot be timed or hold "
                            "the parameters or metrics; move that code to a cell of its own")
    return "colab" if where[0] == COLAB_ONLY_TAG else "never"


def _rules(path: Path, metadata: dict[str, Any],
           parameters: frozenset[str]) -> dict[str, Rule]:
    """The notebook's declared parameter rules: metadata {"cloudbench": {"parameters": {NAME:
    {"kind": int|float|str|bool, "min", "max", "choices", "nullable"}}}}."""
    own = metadata.get("cloudbench", {})
    if not isinstance(own, dict):
        raise NotebookError(f"{path}: metadata.cloudbench must be an object, got "
                            f"{_kind(own)}")
    declared = own.get("parameters", {})
    if not isinstance(declared, dict):
        raise NotebookError(f"{path}: metadata cloudbench.parameters must be an object")
    rules = {}
    for name, raw in declared.items():
        where = f"{path}: metadata cloudbench.parameters.{name}"
        if name not in parameters:
            raise NotebookError(f"{where}: not a parameter of the notebook's parameters cell")
        if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) \
                or raw["kind"] not in KINDS or set(raw) - {
                "kind", "min", "max", "choices", "nullable"}:
            raise NotebookError(f"{where}: expected {{\"kind\": {' | '.join(KINDS)}, \"min\", "
                                "\"max\", \"choices\", \"nullable\"}")
        for bound in ("min", "max"):
            value = raw.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, int | float) or not math.isfinite(value)):
                raise NotebookError(f"{where}.{bound}: must be a finite number, got {value!r}")
        choices = raw.get("choices")
        if choices is not None and (not isinstance(choices, list) or not choices or any(
                isinstance(c, dict | list) for c in choices)):
            raise NotebookError(f"{where}.choices: must be a non-empty list of values, got "
                                f"{choices!r}")
        if not isinstance(raw.get("nullable", False), bool):
            raise NotebookError(f"{where}.nullable: must be true or false, got "
                                f"{raw['nullable']!r}")
        rules[name] = Rule(kind=raw["kind"], minimum=raw.get("min"), maximum=raw.get("max"),
                           choices=tuple(choices) if choices is not None else None,
                           nullable=raw.get("nullable", False))
    return rules


def _kind(value: Any) -> str:
    """How an error names what it found instead: "a string", "null"..."""
    if value is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _read_json(path: Path) -> dict[str, Any]:
    """The notebook file as JSON, or an error that says where it stops being JSON."""
    import json

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NotebookError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    try:
        nb = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NotebookError(f"{path} is not a notebook: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path} is not a notebook: invalid JSON at line {exc.lineno}, "
                            f"column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise NotebookError(f"{path} is not a notebook: its JSON is nested too deep") from exc
    if not isinstance(nb, dict):
        raise NotebookError(f"{path} is not a notebook: expected a JSON object, got "
                            f"{_kind(nb)}")
    return nb


def _check_structure(path: Path, nb: dict[str, Any]) -> None:
    """The keys of nbformat 4 that the toolkit, papermill and nbclient read, with their
    types: what would otherwise surface as a traceback deep inside one of them."""
    version = nb.get("nbformat")
    if isinstance(version, bool) or not isinstance(version, int):
        raise NotebookError(f"{path}: key nbformat must be an integer (4), got {_kind(version)}")
    if version != 4:
        raise NotebookError(f"{path}: nbformat {version} is not supported; save it as nbformat "
                            "4 (Jupyter does so on save; or: jupyter nbconvert --to notebook "
                            "--nbformat 4 --output NEW.ipynb OLD.ipynb)")
    metadata = nb.get("metadata", {})
    if not isinstance(metadata, dict):
        raise NotebookError(f"{path}: key metadata must be an object, got {_kind(metadata)}")
    for key in ("kernelspec", "language_info"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, dict):
            raise NotebookError(f"{path}: key metadata.{key} must be an object, got "
                                f"{_kind(value)}")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookError(f"{path}: key cells must be a list, got {_kind(cells)}")
    for index, cell in enumerate(cells):
        where = f"{path}: cell {index}"
        if not isinstance(cell, dict):
            raise NotebookError(f"{where} must be an object, got {_kind(cell)}")
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"{where}: key cell_type must be code, markdown or raw, got "
                                f"{cell.get('cell_type')!r}")
        source = cell.get("source", "")
        if not isinstance(source, str) and not (
                isinstance(source, list) and all(isinstance(s, str) for s in source)):
            raise NotebookError(f"{where}: key source must be a string or a list of strings, "
                                f"got {_kind(source)}")
        where = f"{path}: {describe(index, first_line(source))}"
        cell_metadata = cell.get("metadata", {})
        if not isinstance(cell_metadata, dict):
            raise NotebookError(f"{where}: key metadata must be an object, got "
                                f"{_kind(cell_metadata)}")
        tags = cell_metadata.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            found = _kind(tags) if not isinstance(tags, list) else "a list with " + _kind(
                next(t for t in tags if not isinstance(t, str)))
            raise NotebookError(f"{where}: key metadata.tags must be a list of strings (such "
                                f"as [\"phase:train\"]), got {found}")


def language(path: Path, metadata: dict[str, Any]) -> str:
    """The notebook's language: language_info, else the kernelspec's, else Python for a
    notebook that names no language at all (Colab and the tensorflow/docs tooling save
    such notebooks, and every kernel the toolkit starts is a Python one)."""
    for key, field_name in (("language_info", "name"), ("kernelspec", "language")):
        name = (metadata.get(key) or {}).get(field_name)
        if name is None:
            continue
        if not isinstance(name, str):
            raise NotebookError(f"{path}: key metadata.{key}.{field_name} must be a string, "
                                f"got {_kind(name)}")
        if name.lower() != "python":
            raise NotebookError(f"{path}: metadata.{key}.{field_name} says the notebook is "
                                f"{name!r}; the toolkit runs Python notebooks")
        return "python"
    return "python"


def inspect(path: Path) -> Protocol:
    """Read and check a notebook; NotebookError names what is wrong and where.

    Every key the toolkit reads is checked for its type first, so a malformed notebook
    is refused with the notebook, the cell and the key, never a traceback.
    """
    skip_slow_optional_imports()
    import nbformat
    import papermill

    if not path.is_file():
        raise NotebookError(f"notebook not found: {path}")
    raw = _read_json(path)
    _check_structure(path, raw)
    metadata = raw.get("metadata", {})
    kernel = (metadata.get("kernelspec") or {}).get("name")
    if kernel is not None and not isinstance(kernel, str):
        raise NotebookError(f"{path}: key metadata.kernelspec.name must be a string, got "
                            f"{_kind(kernel)}")
    lang = language(path, metadata)
    try:
        nb = nbformat.from_dict(raw)
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
        runs_on = _runs_on(path, index, line, tags)
        if "parameters" in tags:
            _check_syntax(path, index, cell.get("source", ""))
            has_parameters = True
        assigns = _assigned_names(path, index, cell.get("source", "")) \
            if METRICS_TAG in tags else ()
        cells.append(Cell(index, line, _phase_of(path, index, line, tags), METRICS_TAG in tags,
                          runs_on, assigns))
    metrics = [c for c in cells if c.metrics]
    if len(metrics) > 1:
        raise NotebookError(f"{path}: {describe(metrics[1])} is a second cell tagged "
                            f"'metrics' (the first is {describe(metrics[0])}); keep one")
    parameters = frozenset(_parameters(path, raw, papermill) if has_parameters else ())
    protocol = Protocol(path, parameters, tuple(cells),
                        _rules(path, metadata, parameters), language=lang,
                        kernel_name=kernel)
    if protocol.writes_record and protocol.phases:
        raise NotebookError(
            f"{path}: the parameters cell declares {RECORD_PARAMETER!r}, the built-in "
            "protocol's way of writing its own record, and the notebook also has phase tags, "
            "the way of a notebook timed by the toolkit. Rename the parameter (the toolkit "
            f"would pass its own path in {RECORD_PARAMETER!r}), or remove the phase tags")
    if not protocol.writes_record and not protocol.phases:
        also = "" if has_parameters else " and no cell tagged 'parameters'"
        raise NotebookError(
            f"{path} has no cell tagged phase:NAME{also}, so nothing in it would be timed. Tag the "
            "cells that do the work, e.g. phase:import, phase:load, phase:build, phase:train "
            "and phase:eval, and the cell whose last expression is a dict of the results "
            "(such as {'test_accuracy': acc}) 'metrics'")
    return protocol


def _python(source: str | list[str]) -> str:
    """A cell's code as Python: IPython's own rewriting of magics and `!` commands (where
    IPython is not installed, a cell magic's cell and each line magic read as nothing)."""
    text = "".join(source) if isinstance(source, list) else source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        if text.lstrip().startswith("%%"):
            return ""
        return "\n".join(line[:len(line) - len(line.lstrip())] + "pass"
                         if line.lstrip().startswith(("%", "!")) else line
                         for line in text.splitlines())
    return TransformerManager().transform_cell(text)


def _assigned_names(path: Path, index: int, source: str | list[str]) -> tuple[str, ...]:
    """For a metrics cell ending in a statement: the plain names its top-level statements
    assign, in order (its results); () when it ends in an expression (the dict form)."""
    import ast

    try:
        body = ast.parse(_python(source)).body
    except (SyntaxError, ValueError):
        return ()  # the run reports the cell's own error
    if not body or isinstance(body[-1], ast.Expr) and not _is_print(body[-1]):
        return ()
    names: dict[str, None] = {}
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names[leaf.id] = None
    if not names:
        text = first_line(source)
        raise NotebookError(f"{path}: {describe(index, text)} is tagged 'metrics' but neither "
                            "ends in a dict of numbers nor assigns a result (such as "
                            "test_loss, test_acc = model.evaluate(...))")
    return tuple(n for n in names if not n.startswith("_"))


def _is_print(node: Any) -> bool:
    import ast

    return isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) \
        and node.value.func.id == "print"


def _check_syntax(path: Path, index: int, source: str | list[str]) -> None:
    """The parameters cell must compile (after IPython's own rewriting of magics): papermill
    reads it line by line and would take a broken one, and every run would then fail."""
    text = "".join(source) if isinstance(source, list) else source
    try:
        compile(_python(text), f"cell {index}", "exec")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise NotebookError(f"{path}: {describe(index, first_line(text))}: the cell tagged "
                            f"'parameters' is not valid Python: {getattr(exc, 'msg', exc)}"
                            + (f" (line {line})" if line else "")) from exc


def _parameters(path: Path, nb: dict[str, Any], papermill: Any) -> dict[str, Any]:
    """The parameters cell's names, as papermill reads them. papermill wants the notebook's
    language and kernel in its metadata; one that names none is inspected as the Python it
    is (and runs in the DEFAULT_KERNEL unless the study names another)."""
    import json
    import tempfile

    source = path
    metadata = nb.get("metadata", {})
    kernelspec = metadata.get("kernelspec") or {}
    if not (metadata.get("language_info") or {}).get("name") and not kernelspec.get(
            "language") or not kernelspec.get("name"):
        copy = {**nb, "metadata": {**metadata, "language_info": {"name": "python"},
                                   "kernelspec": {"name": DEFAULT_KERNEL, **kernelspec}}}
        with tempfile.NamedTemporaryFile("w", suffix=".ipynb", delete=False,
                                         encoding="utf-8") as fh:
            json.dump(copy, fh)
        source = Path(fh.name)
    try:
        return papermill.inspect_notebook(str(source))
    except Exception as exc:  # papermill's own errors have no common base
        raise NotebookError(f"{path}: papermill cannot read its parameters: {exc}") from exc
    finally:
        if source != path:
            source.unlink(missing_ok=True)

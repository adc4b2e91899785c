"""Malformed notebooks: refused with the notebook, the cell and the key, never a traceback.

A researcher's notebook comes from Colab, a tutorial or a hand edit; whatever its JSON holds,
checking it either gives a protocol or a NotebookError that says what to fix. The property
test mutates a valid tagged notebook anywhere (a key's value replaced by any JSON value, a
key removed, the text cut short); the named cases are the ones users met.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.cli.main import main
from cloudbench.study.notebook import NotebookError, Protocol, inspect

from conftest import examples


def code(source: str, *tags: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(source)) % 10**8}",
            "metadata": {"tags": list(tags)}, "outputs": [], "source": source}


VALID: dict[str, Any] = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"},
                 "language_info": {"name": "python"},
                 "cloudbench": {"parameters": {"epochs": {"kind": "int", "min": 1}}}},
    "cells": [
        {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# A tutorial"},
        code("epochs = 2", "parameters"),
        code("import math", "phase:import"),
        code("total = sum(range(epochs))", "phase:train"),
        code("{'loss': 0.5}", "metrics"),
    ],
}


def write(folder: Path, nb: Any, name: str = "nb.ipynb") -> Path:
    path = folder / name
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb), encoding="utf-8")
    return path


def check(path: Path) -> Protocol | NotebookError:
    """What the toolkit makes of it: a protocol or its own error, and nothing else."""
    try:
        return inspect(path)
    except NotebookError as exc:
        assert str(path) in str(exc)
        return exc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["phase:train", "parameters", "metrics",
                                              "phase:", "phase:Train", "python", "int"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["kind", "min", "max", "choices", "nullable", "tags", "name", "language"]),
        children, max_size=4),
    max_leaves=12)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, as the keys and indices that reach it."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_gives_a_protocol_or_a_clear_error(tmp_path: Path, data: st.DataObject
                                                        ) -> None:
    nb = copy.deepcopy(VALID)
    where = data.draw(st.sampled_from(paths(nb)[1:]))
    parent = nb
    for key in where[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[where[-1]]
    else:
        parent[where[-1]] = data.draw(json_values)
    check(write(tmp_path, nb))


@settings(max_examples=examples(100), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(json.dumps(VALID))), junk=st.text(max_size=5))
def test_a_damaged_file_gives_a_clear_error(tmp_path: Path, cut: int, junk: str) -> None:
    damaged = json.dumps(VALID)[:cut] + junk
    result = check(write(tmp_path, damaged))
    try:
        json.loads(damaged)
    except ValueError:
        assert isinstance(result, NotebookError)


def mutate(change: str) -> dict[str, Any]:
    nb = copy.deepcopy(VALID)
    exec(change, {"nb": nb})  # a one-line edit, as a hand would make it
    return nb


@pytest.mark.parametrize(("change", "message"), [
    ("nb['nbformat'] = 3", "nbformat 3 is not supported"),
    ("nb['cells'][3]['metadata']['tags'] = None",
     "cell 3 (`total = sum(range(epochs))`): key metadata.tags must be a list of strings"),
    ("nb['cells'][3]['metadata']['tags'] = 'phase:train'", "got a string"),
    ("nb['cells'][3]['metadata']['tags'] = ['phase:train', 7]", "got a list with an integer"),
    ("nb['metadata']['cloudbench'] = 'yes'", "metadata.cloudbench must be an object"),
    ("nb['metadata']['cloudbench']['parameters']['epochs']['min'] = '1'",
     "cloudbench.parameters.epochs.min: must be a finite number, got '1'"),
    ("nb['metadata']['cloudbench']['parameters']['epochs']['choices'] = 'xy'",
     "cloudbench.parameters.epochs.choices: must be a non-empty list"),
    ("nb['cells'][2]['source'] = 7", "cell 2: key source must be a string or a list"),
    ("nb['cells'] = {}", "key cells must be a list"),
    ("nb['metadata']['kernelspec'] = 'python3'", "metadata.kernelspec must be an object"),
    ("nb['metadata']['language_info'] = {'name': 'R'}", "the toolkit runs Python notebooks"),
    ("nb['cells'][1]['source'] = 'epochs = ('", "the cell tagged 'parameters' is not valid"),
    ("nb['cells'][1]['source'] = 'epochs = 2\\nrecord_path = None'",
     "declares 'record_path'"),
])
def test_each_malformed_notebook_is_refused_by_name(tmp_path: Path, change: str,
                                                    message: str) -> None:
    result = check(write(tmp_path, mutate(change)))
    assert isinstance(result, NotebookError) and message in str(result), result


def test_a_notebook_saved_without_language_is_a_python_notebook(tmp_path: Path) -> None:
    """As Colab and the tensorflow/docs tooling save them: kernelspec without language, no
    language_info; or no kernelspec at all."""
    bare = mutate("del nb['metadata']['language_info']; del nb['metadata']['kernelspec']"
                  "['language']")
    protocol = check(write(tmp_path, bare))
    assert isinstance(protocol, Protocol), protocol
    assert protocol.language == "python" and protocol.kernel_name == "python3"
    assert protocol.parameters == {"epochs"} and protocol.phases == ("import", "train")
    none = mutate("del nb['metadata']['language_info']; del nb['metadata']['kernelspec']")
    protocol = check(write(tmp_path, none, "none.ipynb"))
    assert isinstance(protocol, Protocol) and protocol.kernel_name is None


def test_validate_names_the_notebook_and_exits_2(tmp_path: Path, capsys) -> None:
    notebook = write(tmp_path, mutate("nb['cells'][3]['metadata']['tags'] = None"))
    spec = tmp_path / "study.toml"
    spec.write_text(f'[study]\nname = "x"\nrepetitions = 2\n[protocol]\nnotebook = '
                    f'"{notebook}"\n[[datasets]]\nname = "s"\nsource = "shapes"\n'
                    '[[environments]]\nname = "pc"\n', encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nb.ipynb" in err and "metadata.tags" in err


def test_colab_only_and_skip_cells_are_left_out_where_they_do_not_run(tmp_path: Path) -> None:
    nb = mutate("nb['cells'] += [" + repr(code("from google.colab import drive", "colab-only"))
                + ", " + repr(code("!wget https://example.org/data.npz", "skip")) + "]")
    protocol = check(write(tmp_path, nb))
    assert isinstance(protocol, Protocol)
    assert protocol.dropped_cells(on_colab=False) == {5, 6}
    assert protocol.dropped_cells(on_colab=True) == {6}


@pytest.mark.parametrize(("tags", "message"), [
    (["colab-only", "phase:train"], "cannot be timed"),
    (["skip", "metrics"], "cannot be timed"),
    (["skip", "colab-only"], "both 'colab-only' and 'skip'"),
])
def test_cells_left_out_cannot_be_measured(tmp_path: Path, tags: list[str], message: str
                                           ) -> None:
    nb = mutate("nb['cells'].append(" + repr(code("x = 1", *tags)) + ")")
    result = check(write(tmp_path, nb))
    assert isinstance(result, NotebookError) and message in str(result)


def test_a_notebook_without_a_parameters_cell_runs_as_it_is(tmp_path: Path) -> None:
    """A tutorial as it comes, with phase tags only: nothing to inject, nothing refused."""
    protocol = check(write(tmp_path, mutate("nb['cells'][1]['metadata']['tags'] = []; "
                                            "del nb['metadata']['cloudbench']")))
    assert isinstance(protocol, Protocol) and protocol.parameters == frozenset()
    spec = tmp_path / "study.toml"
    spec.write_text(f'[study]\nname = "x"\n[protocol]\nnotebook = "{tmp_path / "nb.ipynb"}"\n'
                    '[protocol.parameters]\nepochs = 3\n[[environments]]\nname = "pc"\n',
                    encoding="utf-8")
    from cloudbench.study.spec import SpecError, load_study
    with pytest.raises(SpecError, match="protocol.parameters.epochs: nb.ipynb has no cell "
                                        "tagged 'parameters' to take it"):
        load_study(spec)

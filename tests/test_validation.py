"""Validation that asks the protocol, and a fuzz of the study-file loader.

Every case here was once accepted by `study validate` and then failed every run of the
study (or crashed the command): each must now be refused before anything runs, with the
file, the key and what is allowed. The fuzz test generates study files and asserts that
each either loads or raises the toolkit's own SpecError, never another exception.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudbench.study.notebook import Rule
from cloudbench.study.spec import SpecError, load_study

from conftest import examples

BASE = {
    "study": {"name": "v", "repetitions": 2},
    "protocol": {"notebook": "protocols/cnn_train.ipynb"},
    "datasets": [{"name": "shapes", "images": 60}],
    "environments": [{"name": "pc"}],
}


def toml(value: Any) -> str:
    """A TOML value (inline), for the generated files."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml(v)}" for k, v in value.items()) \
            + "}"
    raise TypeError(value)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    lines = []
    for table, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines += [f"[[{table}]]", *(f"{json.dumps(k)} = {toml(v)}" for k, v in
                                            item.items())]
        else:
            lines += [f"[{table}]", *(f"{json.dumps(k)} = {toml(v)}" for k, v in body.items())]
    path = tmp_path / "study.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_(**changes: Any) -> dict[str, Any]:
    """BASE with `section.key` (or `environments.0.key`) set."""
    data = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        parts = dotted.split("__")
        target: Any = data
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        target[parts[-1]] = value
    return data


@pytest.mark.parametrize(("changes", "key", "message"), [
    ({"study__name": "n" * 300}, "study.name", "at most 64 characters"),
    ({"environments__0__name": "e" * 100}, "environments[0].name", "at most 64"),
    ({"environments__0__env": {"A=B": "1"}}, "environments[0].env.A=B", "not a variable name"),
    ({"environments__0__env": {"": "1"}}, "environments[0].env", "not a variable name"),
    ({"environments__0__env": {"X": "a\x00b"}}, "environments[0].env.X", "NUL"),
    ({"study__seed": -1}, "study.seed", "must be from 0"),
    ({"study__seed": 2**32}, "study.seed", "must be from 0"),
    ({"protocol__parameters": {"epochs": 0}}, "protocol.parameters.epochs", "at least 1"),
    ({"protocol__parameters": {"epochs": "8"}}, "protocol.parameters.epochs", "expected int"),
    ({"protocol__parameters": {"model": "resnet"}}, "protocol.parameters.model",
     "is not one of: shapes_cnn"),
    ({"protocol__parameters": {"batch_size": 0}}, "protocol.parameters.batch_size",
     "at least 1"),
    ({"environments__0__parameters": {"batch_size": -4}},
     "environments[0].parameters.batch_size", "at least 1"),
    ({"sweep": {"batch_size": [32, 0]}}, "sweep.batch_size[1]", "at least 1"),
    ({"environments__0__kernel": "no-such-kernel"}, "environments[0].kernel",
     "no Jupyter kernel"),
    ({"datasets": [{"name": "shapes", "images": 10**12}]}, "datasets[0].images",
     "this machine has"),
    ({"analysis": {"metrics": ["train_s", "trian_s"]}}, "analysis.metrics[1]",
     "'trian_s' is not a column"),
    ({"study__repetitions": "auto", "study__min_repetitions": 40},
     "study.min_repetitions", "must not exceed"),
    ({"study__timeout_s": float("nan")}, "study.timeout_s", "finite"),
    ({"study__repetitions": 10000, "sweep": {"batch_size": list(range(1, 201))}},
     "study.repetitions", "2000000 runs planned"),
    ({"environments__0__timeout_s": float("inf")}, "environments[0].timeout_s", "finite"),
])
def test_what_would_fail_every_run_is_refused_first(tmp_path: Path, changes, key,
                                                    message) -> None:
    with pytest.raises(SpecError) as err:
        load_study(write(tmp_path, with_(**changes)))
    assert err.value.key == key, str(err.value)
    assert message in str(err.value) and str(tmp_path / "study.toml") in str(err.value)


def test_declared_values_within_the_rules_are_accepted(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, with_(protocol__parameters={
        "model": "lstm", "epochs": 3, "layers": 2, "units": 8},
        sweep={"batch_size": [16, 32]})))
    assert study.parameters["model"] == "lstm"


def test_a_notebooks_rules_are_checked_themselves(tmp_path: Path) -> None:
    assert Rule("int", minimum=1).problem(True) == "expected int, got bool True"
    assert Rule("float", maximum=1).problem(2) == "must be at most 1, got 2"
    assert Rule("int", nullable=True).problem(None) is None
    nb = json.loads(Path("protocols/cnn_train.ipynb").read_text())
    nb["metadata"]["cloudbench"]["parameters"]["nope"] = {"kind": "int"}
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(nb))
    with pytest.raises(SpecError) as err:
        load_study(write(tmp_path, with_(protocol__notebook=str(bad))))
    assert err.value.key == "protocol.notebook" and "cloudbench.parameters.nope" in str(err.value)


# --------------------------------------------------------------------------- fuzz

KEYS = {
    "study": ["name", "repetitions", "seed", "order", "hypothesis", "timeout_s", "retries",
              "warmup", "max_repetitions", "min_repetitions", "target_halfwidth", "kernel",
              "bogus"],
    "protocol": ["notebook", "parameters"],
    "datasets": ["name", "source", "images", "path", "size", "color", "test_fraction"],
    "environments": ["name", "runner", "env", "gpu", "tpu", "backend", "machine", "timeout_s",
                     "parameters", "price", "price_per_hour", "memory_limit_mb", "url"],
    "sweep": ["batch_size", "model", "epochs", "exclude", "seed"],
    "analysis": ["metrics", "alpha", "language", "procedure", "equivalence"],
}
scalars = st.one_of(
    st.integers(min_value=-2**40, max_value=2**40), st.floats(allow_nan=True),
    st.booleans(), st.text(max_size=12),
    st.sampled_from(["shapes", "pc", "auto", "fnn", "local", "jupyter", "colab", "kfp",
                     "two-sided", "tensorflow", "t4", "en", "x" * 80, "[/x]", "../..", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["epochs", "model", "batch_size", "A", "images", "a b", ""]), inner, max_size=3)),
    max_leaves=6)


@st.composite
def study_files(draw: st.DrawFn) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    for section, keys in KEYS.items():
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            value = draw(values)
            if section in ("datasets", "environments"):
                data[section][0][key] = value
            else:
                data.setdefault(section, {})[key] = value
    return data


#: More examples for a longer hunt: CLOUDBENCH_HYPOTHESIS_SCALE=20 (tests/conftest.examples)
EXAMPLES = examples(150)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=study_files())
def test_any_study_file_loads_or_is_refused_with_a_key(tmp_path: Path, data) -> None:
    try:
        path = write(tmp_path, data)
    except (TypeError, ValueError):  # a value TOML cannot write: not a study file
        return
    try:
        load_study(path, check_data=False)
    except SpecError as exc:
        assert str(path) in str(exc)


def test_the_fuzz_writer_round_trips() -> None:
    import tomllib

    text = textwrap.dedent(f"""
        a = {toml([1, 2.5, "x", {"k": True}])}
        b = {toml(float("nan"))}
    """)
    parsed = tomllib.loads(text)
    assert parsed["a"] == [1, 2.5, "x", {"k": True}] and math.isnan(parsed["b"])

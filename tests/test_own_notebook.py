"""A researcher's own notebook as the protocol: no toolkit import, timed by its cell tags."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from remote_support import ColabStandIn, Gateway, colab, gateway  # noqa: F401 - fixtures
from rich.console import Console

from cloudbench.paper.build import build_paper
from cloudbench.runners.phases import kernel_seconds
from cloudbench.runners.scheduler import run_study
from cloudbench.study import sysdeps
from cloudbench.study.notebook import NotebookError, inspect
from cloudbench.study.spec import SpecError, load_study

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "study" / "examples" / "own_notebook"
PHASES = ["import_s", "load_s", "build_s", "train_s", "eval_s"]


def tagged(*cells: tuple[str, list[str]]) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    for source, tags in cells:
        cell = new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def study_of(tmp_path: Path, notebook: Path, environments: str = "", name: str = "own",
             repetitions: int = 2) -> Path:
    shutil.copytree(EXAMPLE / "images", tmp_path / "images", dirs_exist_ok=True)
    envs = environments or '[[environments]]\nname = "a"\n[[environments]]\nname = "b"\n'
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f"""
[study]
name = "{name}"
repetitions = {repetitions}
timeout_s = 120
[protocol]
notebook = "{notebook}"
[[datasets]]
name = "shapes"
source = "folder"
path = "{tmp_path / 'images'}"
{envs}
""", encoding="utf-8")
    return spec


def run(spec: Path, out: Path):
    return run_study(load_study(spec), output=out, console=Console(file=io.StringIO()))


def test_the_example_runs_and_its_phases_are_its_cells_kernel_times(tmp_path: Path) -> None:
    spec = study_of(tmp_path, EXAMPLE / "shapes_softmax.ipynb")
    result = run(spec, tmp_path / "out")
    assert [r["status"] for r in result.executed] == ["ok"] * 4, \
        [r["error"] for r in result.executed]
    frame = pd.read_csv(tmp_path / "out" / "runs.csv")
    for column in [*PHASES, "other_s", "total_s", "train_client_s", "test_accuracy",
                   "test_loss", "host_id", "cpu_model", "peak_rss_mb"]:
        assert frame[column].notna().all(), column
    assert (frame["test_accuracy"] > 0.34).all()  # above chance on three classes
    record = result.executed[0]
    nb = json.loads((tmp_path / "out" / "notebooks" / f"{record['run_id']}.ipynb").read_text())
    by_phase: dict[str, float] = {}
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        if cell["cell_type"] != "code" or "cloudbench-fingerprint" in tags:
            continue
        phase = next((t[6:] for t in tags if t.startswith("phase:")), "other")
        by_phase[phase] = by_phase.get(phase, 0.0) + kernel_seconds(cell)
    for phase, seconds in by_phase.items():
        assert record[f"{phase}_s"] == pytest.approx(seconds, abs=1e-5)
    assert record["total_s"] == pytest.approx(sum(by_phase.values()), abs=1e-5)
    # Kernel-side time excludes the client: papermill's own durations are longer.
    assert record["total_client_s"] > record["total_s"]
    # The notebook got the dataset's folder and no parameter it did not declare.
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"]["tags"])
    assert "dataset" in "".join(injected["source"])
    assert "record_path" not in "".join(injected["source"])
    assert "accelerator" not in "".join(injected["source"])

    # The paper: its phases in notebook order with their cells, the shares figure, and by
    # default train_s, total_s and the metrics cell's keys.
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])
    pdf = build_paper(tmp_path / "out" / "runs.csv", load_study(spec), tmp_path / "paper")
    folder = tmp_path / "paper" / "own"
    analysed = json.loads((folder / "analysis.json").read_text())
    assert {c["metric"] for c in analysed["comparisons"]} == {
        "train_s", "total_s", "test_accuracy", "test_loss"}
    phases = (folder / "tables" / "phases.tex").read_text()
    rows = [line.split(" & ")[0] for line in phases.splitlines() if "\\texttt{" in line]
    assert rows == ["import", "load", "build", "train", "eval"]
    assert "5: def softmax(z):" in phases.replace("\\texttt{", "").replace("}", "")
    assert (folder / "figures" / "phases.pdf").is_file()
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "imports nothing of the toolkit" in text and "Share of each phase" in text


def test_a_notebook_without_tags_is_refused_with_the_tags_to_add(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    nbformat.write(tagged(("x = 1", ["parameters"]), ("y = x + 1", [])), path)
    with pytest.raises(SpecError) as info:
        load_study(study_of(tmp_path, path))
    message = str(info.value)
    assert "protocol.notebook" in message and str(path) in message
    assert "phase:train" in message and "'metrics'" in message


@pytest.mark.parametrize(("tags", "wanted"), [
    (["phase:Train"], "cell 1 (`y = 2`): tag 'phase:Train' is not phase:NAME"),
    (["phase:a", "phase:b"], "cell 1 (`y = 2`) has two phase tags"),
    (["phase:total"], "names a column the toolkit computes itself (total_s)"),
])
def test_malformed_phase_tags_name_the_cell_and_the_tag(tmp_path: Path, tags: list[str],
                                                        wanted: str) -> None:
    path = tmp_path / "bad.ipynb"
    nbformat.write(tagged(("x = 1", ["parameters"]), ("y = 2", tags)), path)
    with pytest.raises(NotebookError, match=None) as info:
        inspect(path)
    assert wanted in str(info.value) and str(path) in str(info.value)


def test_a_metrics_cell_that_is_not_a_dict_of_numbers_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "m.ipynb"
    nbformat.write(tagged(("x = 1", ["parameters"]), ("import time", ["phase:train"]),
                          ('{"accuracy": "high"}', ["metrics"])), path)
    result = run(study_of(tmp_path, path, repetitions=1), tmp_path / "out")
    assert [r["status"] for r in result.executed] == ["failed", "failed"]
    error = result.executed[0]["error"]
    assert "the metrics cell 2" in error and "'accuracy': 'high' is not a number" in error


def test_a_failing_cell_names_its_phase(tmp_path: Path) -> None:
    path = tmp_path / "f.ipynb"
    nbformat.write(tagged(("x = 1", ["parameters"]), ("import math", ["phase:import"]),
                          ("raise ValueError('no data')", ["phase:load"])), path)
    result = run(study_of(tmp_path, path, repetitions=1), tmp_path / "out")
    error = result.executed[0]["error"]
    assert result.executed[0]["status"] == "failed"
    assert error.startswith("cell 2 (phase:load, `raise ValueError('no data')`): ValueError: "
                            "no data"), error


def test_the_same_notebook_in_a_colab_vm_gives_the_same_columns(
        colab: ColabStandIn, tmp_path: Path) -> None:  # noqa: F811
    environments = '[[environments]]\nname = "here"\n[[environments]]\nname = "vm"\n' \
                   'runner = "colab"\n'
    spec = study_of(tmp_path, EXAMPLE / "shapes_softmax.ipynb", environments, repetitions=1)
    result = run(spec, tmp_path / "out")
    by_env = {r["environment"]: r for r in result.executed}
    assert {r["status"] for r in by_env.values()} == {"ok"}, [r["error"] for r in by_env.values()]
    assert {k for k in by_env["here"] if k.endswith("_s")} == \
        {k for k in by_env["vm"] if k.endswith("_s")}
    assert by_env["vm"]["test_accuracy"] == by_env["here"]["test_accuracy"]
    # The executed notebook came back with its timing metadata.
    nb = json.loads((tmp_path / "out" / "notebooks" / "vm+shapes+r001.ipynb").read_text())
    train = [c for c in nb["cells"] if "phase:train" in c["metadata"].get("tags", [])]
    assert by_env["vm"]["train_s"] == pytest.approx(sum(kernel_seconds(c) for c in train),
                                                   abs=1e-5)


def test_the_same_notebook_through_a_kernel_gateway_gives_the_same_columns(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("OWN_GATEWAY_TOKEN", gateway.token)
    environments = (f'[[environments]]\nname = "here"\n[[environments]]\nname = "lab"\n'
                    f'runner = "jupyter"\nurl = "{gateway.url}"\n'
                    'token_env = "OWN_GATEWAY_TOKEN"\n')
    spec = study_of(tmp_path, EXAMPLE / "shapes_softmax.ipynb", environments, repetitions=1)
    result = run(spec, tmp_path / "out")
    by_env = {r["environment"]: r for r in result.executed}
    assert {r["status"] for r in by_env.values()} == {"ok"}, [r["error"] for r in by_env.values()]
    timing = {k for k in by_env["here"] if k.endswith("_s")}
    assert timing == {k for k in by_env["lab"] if k.endswith("_s")}
    assert set(PHASES) <= timing
    assert by_env["lab"]["test_accuracy"] == by_env["here"]["test_accuracy"]  # same seed
    assert by_env["lab"]["runner"] == "jupyter" and by_env["lab"]["host_id"]

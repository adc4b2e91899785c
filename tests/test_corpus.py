"""Real notebooks someone else wrote, as a researcher brings them: TensorFlow's tutorials.

Each is tensorflow/docs's own notebook with only tags added and its download line replaced
by a file beside it read through a relative path (tests/corpus/SOURCES.md). A study names
the notebook and no [[datasets]]; it runs here and on a Jupyter Kernel Gateway on
loopback, the files travel into every run's working folder, what the notebook saves is
kept under artifacts/<run_id>/, and the paper names the notebook and its phases.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from remote_support import Gateway, gateway  # noqa: F401 - fixture
from rich.console import Console

from cloudbench.paper.build import build_paper
from cloudbench.runners.scheduler import run_study
from cloudbench.study import sysdeps
from cloudbench.study.spec import load_study

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
REGRESSION = ROOT / "study" / "examples" / "tf_regression"

pytestmark = pytest.mark.slow  # TensorFlow in every run


def copy_notebook(source: Path, tmp_path: Path) -> Path:
    """The tutorial's folder as the researcher has it: the notebook and its data file."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    return next(folder.glob("*.ipynb"))


def study(tmp_path: Path, notebook: Path, environments: str, name: str) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f'[study]\nname = "{name}"\nrepetitions = 1\ntimeout_s = 600\n'
                    f'[protocol]\nnotebook = "{notebook}"\n{environments}', encoding="utf-8")
    return spec


def run(spec: Path, out: Path):
    return run_study(load_study(spec), output=out, console=Console(file=io.StringIO()))


def test_the_beginner_tutorial_runs_here_and_on_a_gateway(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("CORPUS_TOKEN", gateway.token)
    notebook = copy_notebook(CORPUS / "tf_beginner", tmp_path)
    spec = study(tmp_path, notebook, '[[environments]]\nname = "pc"\n[[environments]]\n'
                 f'name = "lab"\nrunner = "jupyter"\nurl = "{gateway.url}"\n'
                 'token_env = "CORPUS_TOKEN"\n', "beginner")
    loaded = load_study(spec)
    assert [d.name for d in loaded.datasets] == ["beginner"]
    assert [f.name for f in loaded.files] == ["mnist.npz"]
    result = run(spec, tmp_path / "out")
    records = {r["environment"]: r for r in result.executed}
    assert {r["status"] for r in records.values()} == {"ok"}, \
        [r["error"] for r in records.values()]
    for record in records.values():
        assert {"import_s", "load_s", "build_s", "train_s", "eval_s"} <= set(record)
        assert record["train_s"] > 0 and record["dataset"] == "beginner"
    assert records["lab"]["runner"] == "jupyter"
    # The data file was read through its relative path on the server too, and the
    # server's run folder was removed after the run.
    assert not list((gateway.remote_dir / "runs" / "beginner").glob("*.home"))


def test_the_classification_tutorial_reports_its_results_and_the_paper_names_it(
        tmp_path: Path) -> None:
    notebook = copy_notebook(CORPUS / "tf_classification", tmp_path)
    spec = study(tmp_path, notebook, '[[environments]]\nname = "pc"\n[[environments]]\n'
                 'name = "one-thread"\nenv = { TF_NUM_INTRAOP_THREADS = "1" }\n',
                 "classification")
    out = tmp_path / "out"
    result = run(spec, out)
    assert {r["status"] for r in result.executed} == {"ok"}, \
        [r["error"] for r in result.executed]
    for record in result.executed:  # what its metrics cell assigns, and its own phase
        assert 0 <= record["test_acc"] <= 1 and record["test_loss"] > 0
        assert record["predict_s"] > 0
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])
    pdf = build_paper(out / "runs.csv", load_study(spec), tmp_path / "paper")
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert "Running classification.ipynb on pc and one-thread" in text  # the notebook's title
    assert "convolutional" not in text  # not the built-in protocol's network
    assert "predict_s" in text and "test_acc" in text
    assert "fashion.npz (" in text  # the data: the notebook's own file, with size and hash
    assert json.loads((tmp_path / "paper" / "classification" / "analysis.json").read_text())


def test_the_regression_tutorial_keeps_what_it_saves(tmp_path: Path) -> None:
    """`!pip install -q seaborn`, `%%time`, seaborn plots, DataFrames and model.save."""
    notebook = copy_notebook(REGRESSION, tmp_path)
    spec = study(tmp_path, notebook, '[[environments]]\nname = "pc"\n', "regression")
    out = tmp_path / "out"
    [record] = run(spec, out).executed
    assert record["status"] == "ok", record["error"]
    saved = out / "artifacts" / record["run_id"] / "dnn_model.keras"
    assert saved.is_file() and saved.stat().st_size > 1000
    assert record["artifacts"] >= 1 and record["dnn_model"] > 0 and record["save_s"] > 0
    assert not (notebook.parent / "dnn_model.keras").exists()  # the researcher's folder
    runs = pd.read_csv(out / "runs.csv")
    assert {"save_s", "dnn_model", "horsepower_model"} <= set(runs.columns)
    assert "epoch_s" not in runs.columns  # no empty built-in columns for a tagged notebook

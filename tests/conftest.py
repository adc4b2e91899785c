"""Shared fixtures: small study files and a fast stand-in protocol with a real kernel."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "cnn_train.ipynb"

# A protocol with the real notebook's runner parameters that runs in a second, so the
# scheduler's behaviour (order, resume, failures) is tested against a real kernel quickly.
QUICK_PARAMETERS = """\
record_path = "record.json"
seed = 0
dataset = {}
accelerator = "cpu"
sleep_s = 0.0
fail_on = ""
"""
QUICK_BODY = """\
import json, os, time
start = time.perf_counter()
if fail_on and fail_on in record_path + json.dumps(dataset) + str(seed):
    raise RuntimeError(f"deliberate failure for {fail_on}")
time.sleep(sleep_s)
record = {"train_s": time.perf_counter() - start, "total_s": time.perf_counter() - start,
          "test_accuracy": 0.5, "test_loss": 1.0, "epoch_s": [0.1], "seed": seed,
          "marker_env": os.environ.get("MARKER", "")}
tmp = record_path + ".tmp"
with open(tmp, "w") as fh:
    json.dump(record, fh)
os.replace(tmp, record_path)
"""


def write_quick_notebook(path: Path, body: str = QUICK_BODY) -> Path:
    params = new_code_cell(QUICK_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(body)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


@pytest.fixture
def quick_notebook(tmp_path: Path) -> Path:
    return write_quick_notebook(tmp_path / "quick.ipynb")


def write_study(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture
def quick_study(tmp_path: Path, quick_notebook: Path):
    """A factory: a two-environment study on the quick notebook, with extra TOML appended."""

    def make(name: str = "quick", repetitions: int = 2, parameters: str = "",
             extra: str = "", environments: str | None = None) -> Path:
        envs = environments or """
            [[environments]]
            name = "a"
            env = { MARKER = "from-a" }

            [[environments]]
            name = "b"
            env = { MARKER = "from-b" }
        """
        return write_study(tmp_path / f"{name}.toml", f"""
            [study]
            name = "{name}"
            repetitions = {repetitions}
            seed = 7
            timeout_s = 120
            {extra}
            [protocol]
            notebook = "{quick_notebook}"
            [protocol.parameters]
            {parameters}
            [[datasets]]
            name = "shapes"
            source = "shapes"
            images = 60
            {textwrap.dedent(envs)}
        """)

    return make

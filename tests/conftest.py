"""Shared fixtures: small study files and fast stand-in protocols that run in a real kernel.

The marker `slow` means "runs TensorFlow" (or JAX or PyTorch): the tests that execute the
real protocol notebook (protocols/cnn_train.ipynb) end to end, one per runner path (local,
jupyter, colab, kfp) and per backend, and the few others that import TensorFlow or Keras
themselves. Every other test runs a quick
notebook in a real kernel (papermill, a fresh kernel per run, the runner's timeout and
failure handling all included), so

    pytest -m "not slow"    # everything but TensorFlow: transports, staging, resuming,
                            # failures, run order, Colab sessions, bundles, token scrubbing
    pytest -m slow          # only what runs TensorFlow (the real protocol on each path)

The quick notebooks have the real protocol's parameters: `write_quick_notebook` (the
scheduler's tests) the runner's ones, and `write_quick_protocol` all of them; the latter also
imports the protocol's helper code (`cloudbench.data.datasets`,
`cloudbench.protocols.cnn_protocol`), loads the dataset and writes the fingerprint fields
without TensorFlow, so a remote kernel that cannot see this repository runs it only if the
runner staged that code.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "cnn_train.ipynb"

# A protocol with the real notebook's runner parameters that runs in a second, so the
# scheduler's behaviour (order, resume, failures) is tested against a real kernel quickly.
# fixed_train_s > 0 replaces the measured train_s by a value fixed by the seed, for tests of
# statistics on the records (the stopping rule) that must not depend on the machine's load.
QUICK_PARAMETERS = """\
record_path = "record.json"
seed = 0
dataset = {}
accelerator = "cpu"
sleep_s = 0.0
fail_on = ""
fixed_train_s = 0.0
"""
QUICK_BODY = """\
import json, os, time
start = time.perf_counter()
if fail_on and fail_on in record_path + json.dumps(dataset) + str(seed):
    raise RuntimeError(f"deliberate failure for {fail_on}")
time.sleep(sleep_s)
measured = time.perf_counter() - start
train_s = fixed_train_s * (1 + seed % 5 / 20) if fixed_train_s else measured
record = {"train_s": train_s, "total_s": max(train_s, measured),
          "test_accuracy": 0.5, "test_loss": 1.0, "epoch_s": [0.1], "seed": seed,
          "marker_env": os.environ.get("MARKER", "")}
tmp = record_path + ".tmp"
with open(tmp, "w") as fh:
    json.dump(record, fh)
os.replace(tmp, record_path)
"""


def protocol_parameters() -> str:
    """The source of the real protocol's cell tagged `parameters`."""
    nb = nbformat.read(PROTOCOL, as_version=4)
    [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell.source + "\n"


# The real protocol's phases without TensorFlow: the same parameters (so any study of the
# real notebook runs it), the same imports of the helper code (so a remote kernel needs the
# staged code), the dataset loaded and split, the record with the fingerprint fields that
# need no TensorFlow. Before it sleeps it leaves `<record_path>.started`, so a test can tell
# that the kernel was inside the cell.
QUICK_PROTOCOL_EXTRA = """\
sleep_s = 0.0
fail_on = ""
"""
QUICK_PROTOCOL_BODY = """\
import json, os, platform, time
start = time.perf_counter()
from cloudbench.data.datasets import load_dataset
from cloudbench.protocols import cnn_protocol as protocol
if fail_on and fail_on in record_path + json.dumps(dataset) + str(seed):
    raise RuntimeError(f"deliberate failure for {fail_on}")
if accelerator != "cpu":
    raise protocol.DeviceError(f"this environment asks for a {accelerator.upper()}; the "
                               "quick protocol runs on the CPU only")
x_train, y_train, x_test, y_test, class_names = load_dataset(dataset, seed)
x_train, y_train = protocol.trim_to_multiple(x_train, y_train, trim_multiple)
x_test, y_test = protocol.trim_to_multiple(x_test, y_test, trim_multiple)
open(record_path + ".started", "w").close()
time.sleep(sleep_s)
train_s = time.perf_counter() - start
record = {
    "train_s": train_s, "epoch_s": [train_s], "first_epoch_s": train_s,
    "total_s": time.perf_counter() - start, "test_loss": 1.0, "test_accuracy": 0.5,
    "n_train": int(len(y_train)), "n_test": int(len(y_test)), "n_classes": len(class_names),
    "model": model, "epochs": epochs, "batch_size": batch_size, "seed": seed,
    "peak_rss_mb": protocol.peak_rss_mb(), "peak_gpu_mb": None,
    "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}",
    "cpu_model": protocol.cpu_model(), "cpu_count": os.cpu_count(),
    "ram_gb": protocol.ram_gb(), "accelerator": accelerator,
    "device_name": protocol.cpu_model(), "host_id": protocol.host_id(),
    "helpers": protocol.__file__, "marker_env": os.environ.get("MARKER", ""),
}
protocol.write_json_atomic(record_path, record)
"""


def write_quick_notebook(path: Path, body: str = QUICK_BODY,
                         parameters: str = QUICK_PARAMETERS) -> Path:
    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(body)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


def write_quick_protocol(path: Path) -> Path:
    """The quick protocol (QUICK_PROTOCOL_BODY) with all the real protocol's parameters."""
    return write_quick_notebook(path, QUICK_PROTOCOL_BODY,
                                protocol_parameters() + QUICK_PROTOCOL_EXTRA)


@pytest.fixture
def quick_notebook(tmp_path: Path) -> Path:
    return write_quick_notebook(tmp_path / "quick.ipynb")


@pytest.fixture(scope="session")
def quick_protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick protocol notebook, once per session (read-only: an archive checks its hash)."""
    return write_quick_protocol(tmp_path_factory.mktemp("quick-protocol") / "quick_protocol.ipynb")


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


def examples(default: int) -> int:
    """Hypothesis examples of a property test: `default` in CI (a few hundred), times
    CLOUDBENCH_HYPOTHESIS_SCALE for a longer hunt: ``CLOUDBENCH_HYPOTHESIS_SCALE=20
    bin/tox -e tests -- -n 0 -k "hostile or property"``."""
    return max(1, int(default * float(os.environ.get("CLOUDBENCH_HYPOTHESIS_SCALE", "1"))))

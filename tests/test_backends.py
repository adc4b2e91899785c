"""Keras 3's backends in the protocol: the same notebook on TensorFlow, JAX and torch.

The slow tests run protocols/cnn_train.ipynb with papermill in a fresh kernel per backend
(a kernel runs one backend: Keras reads KERAS_BACKEND once), on a tiny generated set, and
check that the record names the backend really in force, that a JAX or torch run never
loads TensorFlow, and that each workload is the network it says (its parameter count,
worked out here by hand). The model-structure checks run Keras in a subprocess, so the
pytest process never imports Keras with a backend other tests do not expect. The others
check configure_backend and the device checks with stand-in modules, without a framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cloudbench.protocols import cnn_protocol

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocols" / "cnn_train.ipynb"
TINY = {"source": "shapes", "name": "shapes", "images": 60, "test_fraction": 1 / 3}
SHAPE, CLASSES = (28, 28, 1), 3  # the generated shapes: 28x28 grayscale, three classes
#: The record's keys before backends (one test checks they are all still written).
OLD_KEYS = {"import_s", "load_s", "build_s", "train_s", "epoch_s", "first_epoch_s",
            "train_nowarm_s", "eval_s", "total_s", "test_loss", "test_accuracy", "n_train",
            "n_test", "n_params", "model", "epochs", "batch_size", "seed", "peak_rss_mb",
            "peak_gpu_mb", "python", "tensorflow", "keras", "os", "cpu_model", "cpu_count",
            "ram_gb", "accelerator", "device_name", "host_id"}
NEW_KEYS = {"backend", "backend_version", "allocator", "peak_gpu_nvml_mb"}
ALLOCATOR_VARIABLES = ("KERAS_BACKEND", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_GPU_ALLOCATOR",
                       "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                       "XLA_PYTHON_CLIENT_ALLOCATOR", "PYTORCH_CUDA_ALLOC_CONF")


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def conv(channels: int, filters: int, kernel: int = 3) -> int:
    return kernel * kernel * channels * filters + filters


def lstm(n_in: int, units: int) -> int:
    return 4 * (units * (n_in + units) + units)


def expected_params(model: str, layers: int | None = None, units: int = 64) -> int:
    """The parameter count of each workload on 28x28x1, three classes, by hand."""
    if model == "fnn":
        depth = 6 if layers is None else layers
        return (dense(28 * 28, units) + (depth - 1) * dense(units, units)
                + dense(units, CLASSES))
    if model == "lstm":
        depth = 1 if layers is None else layers
        return (lstm(28, units) + (depth - 1) * lstm(units, units) + dense(units, CLASSES))
    if model == "simple_cnn":  # filters 16, doubling; pooling 28 -> 14 -> 7 -> 3 -> 1
        depth, side, channels, total = 2 if layers is None else layers, 28, 1, 0
        for block in range(depth):
            total += conv(channels, 16 * 2**block)
            channels = 16 * 2**block
            side = side // 2 if side >= 2 else side
        return total + dense(side * side * channels, 64) + dense(64, CLASSES)
    if model == "vgg_small":  # 32-64-128, two convs a block; pooling 28 -> 14 -> 7 -> 3
        widths, channels, total = (32, 64, 128), 1, 0
        for width in widths:
            total += conv(channels, width) + conv(width, width)
            channels = width
        return total + dense(3 * 3 * 128, 128) + dense(128, CLASSES)
    raise ValueError(model)


# (backend, model, layers): every backend and every new workload at least once, each kernel
# on a different one, so a backend-specific layer bug shows.
RUNS = [("tensorflow", "vgg_small", None), ("jax", "lstm", 2), ("jax", "fnn", 3),
        ("torch", "simple_cnn", 3)]


def run_protocol(tmp_path: Path, backend: str, model: str, layers: int | None) -> dict[str, Any]:
    """The real notebook under papermill, in a fresh kernel, as the local runner starts it."""
    record_path = tmp_path / "record.json"
    parameters = {"record_path": str(record_path), "seed": 3, "dataset": TINY,
                  "accelerator": "cpu", "backend": backend, "model": model, "layers": layers,
                  "epochs": 2, "batch_size": 16}
    (tmp_path / "parameters.json").write_text(json.dumps(parameters), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARIABLES}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(tmp_path))
    code = textwrap.dedent(f"""
        import json, papermill
        papermill.execute_notebook({str(PROTOCOL)!r}, {str(tmp_path / "executed.ipynb")!r},
            parameters=json.load(open({str(tmp_path / "parameters.json")!r})),
            cwd={str(tmp_path)!r}, progress_bar=False, kernel_name="python3")
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(record_path.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "model", "layers"), RUNS,
                         ids=[f"{b}-{m}" for b, m, _ in RUNS])
def test_the_protocol_runs_on_each_backend(tmp_path: Path, backend: str, model: str,
                                           layers: int | None) -> None:
    record = run_protocol(tmp_path, backend, model, layers)
    assert OLD_KEYS | NEW_KEYS <= set(record)
    assert record["backend"] == backend  # keras.backend.backend(), the one in force
    version = record["backend_version"]  # the module's __version__: its distribution's
    assert version in {metadata.version(d) for d in metadata.packages_distributions()[backend]}
    if backend == "tensorflow":
        assert record["tensorflow"] == version
        assert record["allocator"] == "TF_FORCE_GPU_ALLOW_GROWTH=true"
    else:
        assert record["tensorflow"] is None  # never imported: it would distort the timings
        assert record["allocator"] == {"jax": "XLA_PYTHON_CLIENT_PREALLOCATE=false",
                                       "torch": "torch caching allocator (default)"}[backend]
    assert record["model"] == model and record["n_params"] == expected_params(model, layers)
    assert record["import_s"] > 0 and record["first_epoch_s"] > 0 and record["train_s"] > 0
    assert len(record["epoch_s"]) == 2 and record["train_nowarm_s"] == record["epoch_s"][1]
    assert 0 <= record["test_accuracy"] <= 1 and record["n_train"] + record["n_test"] == 60
    assert record["peak_gpu_mb"] is None and record["peak_gpu_nvml_mb"] is None  # a CPU run
    print(f"\n{backend} {model}: import_s {record['import_s']:.2f}, first epoch "
          f"{record['first_epoch_s']:.2f}, second epoch {record['epoch_s'][1]:.3f}")


STRUCTURE = """
import json, sys
import keras
from cloudbench.protocols import cnn_protocol as p

def kinds(model):
    return [type(layer).__name__ for layer in model.layers]

out = {}
for name, layers in [("fnn", 3), ("fnn", None), ("simple_cnn", 3), ("simple_cnn", 5),
                     ("simple_cnn", None), ("lstm", 2), ("vgg_small", None),
                     ("shapes_cnn", None), ("fashion_cnn", None)]:
    net = p.build_model(name, (28, 28, 1), 3, layers=layers)
    out[f"{name}-{layers}"] = {"kinds": kinds(net), "params": net.count_params(),
                               "sequences": [getattr(x, "return_sequences", None)
                                             for x in net.layers if type(x).__name__ == "LSTM"]}
try:
    p.build_model("shapes_cnn", (28, 28, 1), 3, layers=3)
except ValueError as exc:
    out["refused"] = str(exc)
out["tensorflow_loaded"] = "tensorflow" in sys.modules
print(json.dumps(out))
"""


@pytest.mark.slow
def test_build_model_layer_counts() -> None:
    """Depth as asked, pooling skipped when too small, and today's networks unchanged."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", STRUCTURE], env=env, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["fnn-3"]["kinds"] == ["Flatten"] + ["Dense"] * 4  # three hidden, one head
    assert got["fnn-3"]["params"] == expected_params("fnn", 3)
    assert got["fnn-None"]["kinds"].count("Dense") == 7  # FNN-6 and its head
    cnn3 = got["simple_cnn-3"]["kinds"]
    assert cnn3.count("Conv2D") == 3 and cnn3.count("MaxPooling2D") == 3
    assert got["simple_cnn-3"]["params"] == expected_params("simple_cnn", 3)
    cnn5 = got["simple_cnn-5"]["kinds"]  # 28 14 7 3 1: a fifth pooling would leave nothing
    assert cnn5.count("Conv2D") == 5 and cnn5.count("MaxPooling2D") == 4
    assert got["lstm-2"]["sequences"] == [True, False]
    assert got["lstm-2"]["params"] == expected_params("lstm", 2)
    vgg = got["vgg_small-None"]["kinds"]
    assert vgg.count("Conv2D") == 6 and vgg.count("MaxPooling2D") == 3
    assert got["vgg_small-None"]["params"] == expected_params("vgg_small")
    # Existing studies' networks, as before the backends (their parameter counts then).
    assert got["simple_cnn-None"]["params"] == 105411 == expected_params("simple_cnn")
    assert got["simple_cnn-None"]["kinds"] == ["Conv2D", "MaxPooling2D", "Conv2D",
                                               "MaxPooling2D", "Flatten", "Dense", "Dropout",
                                               "Dense"]
    assert got["shapes_cnn-None"]["params"] == 779
    assert got["fashion_cnn-None"]["params"] == 1617671
    assert "fixed depth" in got["refused"]
    assert got["tensorflow_loaded"] is False


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No backend or allocator variable set, and no Keras loaded; all restored afterwards."""
    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    return monkeypatch


def test_configure_backend_sets_the_backend_and_the_allocator(clean_env: Any) -> None:
    assert cnn_protocol.configure_backend("tensorflow") == "TF_FORCE_GPU_ALLOW_GROWTH=true"
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    clean_env.delenv("KERAS_BACKEND")
    assert cnn_protocol.configure_backend("jax") == "XLA_PYTHON_CLIENT_PREALLOCATE=false"
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    clean_env.delenv("KERAS_BACKEND")
    assert cnn_protocol.configure_backend("torch") == "torch caching allocator (default)"


def test_configure_backend_keeps_the_users_allocator_settings(clean_env: Any) -> None:
    clean_env.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")
    assert cnn_protocol.configure_backend("tensorflow") == "TF_FORCE_GPU_ALLOW_GROWTH=false"
    clean_env.delenv("KERAS_BACKEND")
    clean_env.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", ".5")
    assert cnn_protocol.configure_backend("jax") == ("XLA_PYTHON_CLIENT_PREALLOCATE=false; "
                                                     "XLA_PYTHON_CLIENT_MEM_FRACTION=.5")
    clean_env.delenv("KERAS_BACKEND")
    clean_env.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    assert (cnn_protocol.configure_backend("torch")
            == "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")


def test_configure_backend_refuses_a_conflicting_backend(clean_env: Any) -> None:
    clean_env.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(cnn_protocol.BackendError, match="KERAS_BACKEND is 'jax' in this "
                       "kernel, but the environment asks for backend 'torch'"):
        cnn_protocol.configure_backend("torch")
    assert cnn_protocol.configure_backend("jax") == "XLA_PYTHON_CLIENT_PREALLOCATE=false"
    with pytest.raises(cnn_protocol.BackendError, match="unknown backend 'mxnet'"):
        cnn_protocol.configure_backend("mxnet")
    clean_env.delenv("KERAS_BACKEND")
    keras = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "tensorflow"))
    clean_env.setitem(sys.modules, "keras", keras)
    with pytest.raises(cnn_protocol.BackendError, match="Keras was imported with the "
                       "'tensorflow' backend before the protocol could select 'jax'"):
        cnn_protocol.configure_backend("jax")
    assert "KERAS_BACKEND" not in os.environ  # refused: nothing changed


def _stub(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> None:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_device_checks_of_jax_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins answer as on a machine without an accelerator: never a silent CPU run."""
    cpu = types.SimpleNamespace(platform="cpu", device_kind="cpu")
    _stub(monkeypatch, "jax", devices=lambda: [cpu])
    _stub(monkeypatch, "torch", cuda=types.SimpleNamespace(is_available=lambda: False))
    for backend in ("jax", "torch"):
        strategy = cnn_protocol.check_device("cpu", backend)
        with strategy.scope():  # the notebook's `with strategy.scope():` still works
            pass
    with pytest.raises(cnn_protocol.DeviceError, match="asks for a GPU, but JAX runs on 'cpu'"):
        cnn_protocol.check_device("gpu", "jax")
    with pytest.raises(cnn_protocol.DeviceError, match="asks for a TPU, but JAX runs on"):
        cnn_protocol.check_device("tpu", "jax")
    with pytest.raises(cnn_protocol.DeviceError, match=r"torch finds none \(torch.cuda"):
        cnn_protocol.check_device("gpu", "torch")
    with pytest.raises(cnn_protocol.DeviceError, match="torch backend cannot use one"):
        cnn_protocol.check_device("tpu", "torch")
    gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")
    _stub(monkeypatch, "jax", devices=lambda: [gpu])
    assert isinstance(cnn_protocol.check_device("gpu", "jax"), cnn_protocol.NoStrategy)


def test_peak_gpu_nvml_reads_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cnn_protocol.peak_gpu_nvml_mb("cpu") is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: no reading, no error
    assert cnn_protocol.peak_gpu_nvml_mb("gpu") is None
    procs = [types.SimpleNamespace(pid=os.getpid() + 1, usedGpuMemory=2**30),
             types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=300 * 2**20)]
    calls: list[str] = []
    _stub(monkeypatch, "pynvml", nvmlInit=lambda: calls.append("init"),
          nvmlShutdown=lambda: calls.append("shutdown"), nvmlDeviceGetCount=lambda: 1,
          nvmlDeviceGetHandleByIndex=lambda i: i,
          nvmlDeviceGetComputeRunningProcesses=lambda handle: procs)
    assert cnn_protocol.peak_gpu_nvml_mb("gpu") == 300.0 and calls == ["init", "shutdown"]
    procs.pop()
    assert cnn_protocol.peak_gpu_nvml_mb("gpu") is None  # NVML does not see this process

    def no_driver() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    _stub(monkeypatch, "pynvml", nvmlInit=no_driver)
    assert cnn_protocol.peak_gpu_nvml_mb("gpu") is None


def test_the_helpers_load_no_framework() -> None:
    """The notebook imports them first, before it has chosen Keras's backend."""
    code = ("import sys, cloudbench.protocols.cnn_protocol\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT).stdout
    assert out.strip() == "[]"

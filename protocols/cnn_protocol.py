"""Helper code imported by the protocol notebook: models, timing, device checks, the record.

It runs inside the timed kernel, locally or on a remote host, so it keeps to the standard
library and numpy at import time; Keras and its backend (TensorFlow, JAX or torch) are
imported lazily, inside the functions, so the notebook can time their import and so a JAX
or torch run never loads TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import time
from typing import Any

from cloudbench.data.atomic import write_json_atomic  # noqa: F401  (the notebook writes its record with it)
from cloudbench.errors import InfrastructureError
from cloudbench.protocols.fingerprint import cpu_model, host_id, peak_rss_mb, ram_gb  # noqa: F401

MODELS = ("shapes_cnn", "fashion_cnn", "simple_cnn", "fnn", "lstm", "vgg_small")
#: Keras 3's backends; each is also the name of the module Keras runs on.
BACKENDS = ("tensorflow", "jax", "torch")
#: The device-memory settings that make peaks comparable: no framework grabs the whole
#: device up front (TensorFlow's default, JAX's 75 % preallocation), so a peak is what the
#: run needed. torch's caching allocator needs nothing (we report max_memory_allocated).
ALLOCATOR_DEFAULTS: dict[str, dict[str, str]] = {
    "tensorflow": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"},
    "jax": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
    "torch": {},
}
#: Further variables that change a backend's allocator: reported when the user set them.
ALLOCATOR_VARIABLES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("TF_FORCE_GPU_ALLOW_GROWTH", "TF_GPU_ALLOCATOR"),
    "jax": ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
            "XLA_PYTHON_CLIENT_ALLOCATOR"),
    "torch": ("PYTORCH_CUDA_ALLOC_CONF",),
}
#: Models whose depth the `layers` parameter sets, with their default depth.
DEFAULT_LAYERS = {"simple_cnn": 2, "fnn": 6, "lstm": 1, "vgg_small": 3}


class DeviceError(InfrastructureError, RuntimeError):
    """The environment asked for an accelerator that the kernel does not have."""


class BackendError(InfrastructureError, RuntimeError):
    """The kernel cannot run the asked-for Keras backend (another one is set or loaded)."""


def configure_backend(backend: str) -> str:
    """Select Keras's backend before Keras is imported; return the allocator settings.

    Sets KERAS_BACKEND, and the allocator variables of ALLOCATOR_DEFAULTS that the user has
    not set, so peak device memory means the same under every backend. A conflicting
    KERAS_BACKEND, or Keras already imported with another backend, is refused: the run
    would silently measure a different framework than its environment says. The text
    returned ("TF_FORCE_GPU_ALLOW_GROWTH=true") is the record's `allocator`.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    current = os.environ.get("KERAS_BACKEND")
    if current and current != backend:
        raise BackendError(f"KERAS_BACKEND is {current!r} in this kernel, but the environment "
                           f"asks for backend {backend!r}; set the backend in one place only")
    keras = sys.modules.get("keras")
    if keras is not None:
        loaded = keras.backend.backend()
        if loaded != backend:
            raise BackendError(f"Keras was imported with the {loaded!r} backend before the "
                               f"protocol could select {backend!r}; a kernel runs one backend, "
                               "so start a fresh kernel")
    os.environ["KERAS_BACKEND"] = backend
    for name, value in ALLOCATOR_DEFAULTS[backend].items():
        os.environ.setdefault(name, value)
    return allocator_text(backend)


def allocator_text(backend: str) -> str:
    """The allocator variables in force for `backend`, as NAME=value pairs."""
    pairs = [f"{name}={os.environ[name]}" for name in ALLOCATOR_VARIABLES[backend]
             if name in os.environ]
    if backend == "torch" and not pairs:
        return "torch caching allocator (default)"
    return "; ".join(pairs)


def import_backend(backend: str) -> Any:
    """The backend's own module, once Keras is imported; refuses a backend not in force.

    The notebook calls it in its import phase, so import_s includes the backend's import
    (Keras loads it anyway) and no other framework is loaded beside it.
    """
    import keras

    in_force = keras.backend.backend()
    if in_force != backend:
        raise BackendError(f"Keras runs on the {in_force!r} backend, but the environment asks "
                           f"for {backend!r}; call configure_backend before importing Keras")
    return importlib.import_module(backend)


def set_random_seed(seed: int, backend: str = "tensorflow") -> None:
    """keras.utils.set_random_seed: Python, numpy, Keras's generator and the backend's seed.

    Keras also seeds TensorFlow whenever it is installed, importing it to do so; under JAX
    or torch that import would cost seconds and memory that a TensorFlow-free run must not
    pay, so there TensorFlow is hidden for the call (it seeds nothing such a run uses).
    """
    import keras

    if backend == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # its import now fails
    try:
        keras.utils.set_random_seed(seed)
    finally:
        if sys.modules.get("tensorflow", "") is None:
            del sys.modules["tensorflow"]
    # Keras now takes TensorFlow for absent in this kernel, which is the truth of a JAX or
    # torch run (each run has a fresh kernel, so nothing later depends on it).


def _pool_fits(size: int, smallest: int) -> bool:
    """Whether a 2x2 pooling keeps the feature map at least `smallest` wide."""
    return size // 2 >= smallest


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, filters: int = 16,
                kernel_size: int = 3, dense_units: int = 64, layers: int | None = None,
                units: int = 64) -> Any:
    """The named architectures of the protocol, compiled with adam.

    `layers` sets the depth of simple_cnn (conv blocks), fnn (dense layers), lstm (stacked
    LSTMs) and vgg_small (conv blocks); None is the model's default (DEFAULT_LAYERS), which
    keeps simple_cnn the network that existing studies ran. `units` is the width of fnn
    and lstm.
    """
    import keras

    kl = keras.layers
    depth = DEFAULT_LAYERS.get(name, 0) if layers is None else layers
    if layers is not None and name not in DEFAULT_LAYERS and name in MODELS:
        raise ValueError(f"model {name!r} has a fixed depth; `layers` applies to "
                         f"{', '.join(DEFAULT_LAYERS)} only (leave it None)")
    if isinstance(depth, bool) or not isinstance(depth, int) or (
            name in DEFAULT_LAYERS and depth < 1):
        raise ValueError(f"layers must be a positive whole number, got {layers!r}")
    side = min(input_shape[0], input_shape[1]) if len(input_shape) >= 2 else 0

    if name == "shapes_cnn":
        body = [kl.Conv2D(4, 3, activation="relu", padding="same"), kl.MaxPooling2D(),
                kl.Conv2D(4, 3, activation="relu", padding="same"), kl.MaxPooling2D(),
                kl.Flatten()]
    elif name == "fashion_cnn":  # the Colab tutorial's network, block for block
        body = []
        for width in (64, 128, 256):
            body += [kl.BatchNormalization(),
                     kl.Conv2D(width, (5, 5), padding="same", activation="elu"),
                     kl.MaxPooling2D(pool_size=(2, 2)), kl.Dropout(0.25)]
        body += [kl.Flatten(), kl.Dense(256), kl.Activation("elu"), kl.Dropout(0.5)]
    elif name == "simple_cnn":  # depth 2: conv, pool, conv (twice as wide), pool
        body = []
        for block in range(depth):
            body.append(kl.Conv2D(filters * 2**block, kernel_size, activation="relu",
                                  padding="same"))
            if _pool_fits(side, 1):  # as the two-block network always pooled
                body.append(kl.MaxPooling2D())
                side //= 2
        body += [kl.Flatten(), kl.Dense(dense_units, activation="relu"), kl.Dropout(0.25)]
    elif name == "fnn":  # the thesis's FNN-6: dense layers on the flattened pixels
        body = [kl.Flatten(), *(kl.Dense(units, activation="relu") for _ in range(depth))]
    elif name == "lstm":  # the rows of the image as a sequence, read top to bottom
        height, width, channels = input_shape
        body = [kl.Reshape((height, width * channels))]
        body += [kl.LSTM(units, return_sequences=i < depth - 1) for i in range(depth)]
    elif name == "vgg_small":  # the Kubeflow thesis's VGG-like CIFAR-10 network
        body = []
        for block in range(depth):
            width = 32 * 2**block
            body += [kl.Conv2D(width, 3, activation="relu", padding="same"),
                     kl.Conv2D(width, 3, activation="relu", padding="same")]
            if _pool_fits(side, 2):  # 28x28 grayscale: 14, 7, 3
                body.append(kl.MaxPooling2D((2, 2)))
                side //= 2
            body.append(kl.Dropout(0.2))
        body += [kl.Flatten(), kl.Dense(128, activation="relu"), kl.Dropout(0.2)]
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    model = keras.Sequential([keras.Input(shape=input_shape), *body,
                              kl.Dense(n_classes, activation="softmax")], name=name)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def epoch_timer() -> Any:
    """A Keras callback that keeps each epoch's wall time (perf_counter)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


class NoStrategy:
    """The stand-in for tf.distribute's strategy under JAX and torch: `with .scope():` works."""

    def scope(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return "NoStrategy()"


def check_device(accelerator: str, backend: str = "tensorflow") -> Any:
    """Verify the asked-for accelerator, as the Colab tutorial does; return a strategy.

    A run that silently falls back to the CPU would corrupt the comparison, so it fails.
    Under TensorFlow the strategy is tf.distribute's (a TPUStrategy on a TPU); under JAX and
    torch Keras places the model itself, so it is a NoStrategy.
    """
    if backend == "jax":
        return _check_jax(accelerator)
    if backend == "torch":
        return _check_torch(accelerator)
    if backend != "tensorflow":
        raise BackendError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    import tensorflow as tf

    if accelerator == "gpu":
        name = tf.test.gpu_device_name()
        if not name:
            raise DeviceError("this environment asks for a GPU, but TensorFlow finds none "
                              "(tf.test.gpu_device_name() is empty)")
        return tf.distribute.get_strategy()
    if accelerator == "tpu":
        try:
            address = os.environ.get("COLAB_TPU_ADDR")
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=f"grpc://{address}" if address else "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise DeviceError(
                f"this environment asks for a TPU, but none was found: {exc}") from exc
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _check_jax(accelerator: str) -> NoStrategy:
    import jax

    if accelerator in ("gpu", "tpu"):
        try:
            platform_name = jax.devices()[0].platform
        except RuntimeError as exc:
            raise DeviceError(f"this environment asks for a {accelerator.upper()}, but JAX "
                              f"finds no device: {exc}") from exc
        found = "gpu" if platform_name in ("gpu", "cuda", "rocm") else platform_name
        if found != accelerator:
            raise DeviceError(f"this environment asks for a {accelerator.upper()}, but JAX "
                              f"runs on {platform_name!r} (jax.devices()[0].platform)")
    return NoStrategy()


def _check_torch(accelerator: str) -> NoStrategy:
    import torch

    if accelerator == "tpu":
        raise DeviceError("this environment asks for a TPU, but Keras's torch backend cannot "
                          "use one; use the tensorflow or jax backend")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise DeviceError("this environment asks for a GPU, but torch finds none "
                          "(torch.cuda.is_available() is False)")
    return NoStrategy()


def trim_to_multiple(x: Any, y: Any, multiple: int) -> tuple[Any, Any]:
    """TPUs want batches in multiples of 128; the tutorial trims both sets likewise."""
    if multiple and multiple > 1:
        n = (len(y) // multiple) * multiple
        if n == 0:
            raise ValueError(f"fewer than {multiple} examples; cannot trim to a multiple")
        return x[:n], y[:n]
    return x, y


def _device_name(accelerator: str, backend: str) -> str:
    """The accelerator's name as the backend in force reports it; the CPU's otherwise."""
    if accelerator == "gpu":
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return details.get("device_name", gpus[0].name)
        elif backend == "jax":
            import jax

            return jax.devices()[0].device_kind
        elif backend == "torch":
            import torch

            return torch.cuda.get_device_name(0)
    elif accelerator == "tpu":
        if backend == "tensorflow":
            import tensorflow as tf

            tpus = tf.config.list_logical_devices("TPU")
            return f"TPU x{len(tpus)}" if tpus else "TPU"
        if backend == "jax":
            import jax

            devices = jax.devices()
            return f"{devices[0].device_kind} x{len(devices)}"
    return cpu_model()


def fingerprint(accelerator: str, backend: str = "tensorflow") -> dict[str, Any]:
    """Hardware and software of the kernel that ran the protocol (docs/design.md's fields).

    The record's `backend` is the one Keras really runs on (keras.backend.backend()), read
    from Keras rather than taken from the `backend` asked for (import_backend has refused
    any difference by now); `tensorflow` is None unless TensorFlow was loaded, which a JAX
    or torch run avoids.
    """
    import keras

    in_force = keras.backend.backend()
    module = importlib.import_module(in_force)  # already loaded by Keras: no cost
    tf = sys.modules.get("tensorflow")
    return {
        "python": platform.python_version(),
        "tensorflow": getattr(tf, "__version__", None) if tf is not None else None,
        "keras": keras.__version__, "backend": in_force,
        "backend_version": getattr(module, "__version__", ""),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "ram_gb": ram_gb(),
        "accelerator": accelerator, "device_name": _device_name(accelerator, in_force),
        "host_id": host_id(),
    }


def peak_gpu_mb(accelerator: str, backend: str = "tensorflow") -> float | None:
    """The backend's own peak of device memory in use (MB); None on a CPU or unknown.

    TensorFlow's and JAX's BFC allocators and torch's caching allocator each count the bytes
    their tensors held at most, so with ALLOCATOR_DEFAULTS the three are comparable.
    """
    if accelerator != "gpu":
        return None
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        elif backend == "jax":
            import jax

            peak = (jax.devices()[0].memory_stats() or {})["peak_bytes_in_use"]
        elif backend == "torch":
            import torch

            peak = torch.cuda.max_memory_allocated()
        else:
            return None
    except Exception:  # a missing counter must not cost the run its record
        return None
    return round(peak / 2**20, 1)


def peak_gpu_nvml_mb(accelerator: str) -> float | None:
    """The device memory NVML says this process holds (MB), the same way for every backend.

    Read at the end of the run; none of the three allocators hands memory back to the
    device, so it is the process's high-water mark, CUDA context and allocator caches
    included. None without a GPU, without pynvml (nvidia-ml-py), or where NVML cannot see
    this process (a container's own process ids); it never raises.
    """
    if accelerator != "gpu":
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: a missing reading, not a failed run
        return None
    try:
        pid, used, found = os.getpid(), 0, False
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    used, found = used + proc.usedGpuMemory, True
        return round(used / 2**20, 1) if found else None
    except Exception:  # a driver that cannot list processes (some vGPUs, MIG)
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()

"""Helper code imported by the protocol notebook: models, timing, device checks, the record.

It runs inside the timed kernel, locally or on a remote host, so it keeps to the standard
library, numpy and TensorFlow, and imports TensorFlow lazily so the notebook can time it.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from data.atomic import write_json_atomic  # noqa: F401  (the notebook writes its record with it)
from protocols.fingerprint import cpu_model, host_id, peak_rss_mb, ram_gb  # noqa: F401

MODELS = ("shapes_cnn", "fashion_cnn", "simple_cnn")


class DeviceError(RuntimeError):
    """The environment asked for an accelerator that the kernel does not have."""


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, filters: int = 16,
                kernel_size: int = 3, dense_units: int = 64) -> Any:
    """The named architectures of the protocol, compiled with adam."""
    import keras
    from keras import layers

    if name == "shapes_cnn":
        body = [layers.Conv2D(4, 3, activation="relu", padding="same"), layers.MaxPooling2D(),
                layers.Conv2D(4, 3, activation="relu", padding="same"), layers.MaxPooling2D(),
                layers.Flatten()]
    elif name == "fashion_cnn":  # the Colab tutorial's network, block for block
        body = []
        for width in (64, 128, 256):
            body += [layers.BatchNormalization(),
                     layers.Conv2D(width, (5, 5), padding="same", activation="elu"),
                     layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25)]
        body += [layers.Flatten(), layers.Dense(256), layers.Activation("elu"),
                 layers.Dropout(0.5)]
    elif name == "simple_cnn":
        body = [layers.Conv2D(filters, kernel_size, activation="relu", padding="same"),
                layers.MaxPooling2D(),
                layers.Conv2D(filters * 2, kernel_size, activation="relu", padding="same"),
                layers.MaxPooling2D(), layers.Flatten(),
                layers.Dense(dense_units, activation="relu"), layers.Dropout(0.25)]
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    model = keras.Sequential([keras.Input(shape=input_shape), *body,
                              layers.Dense(n_classes, activation="softmax")], name=name)
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


def check_device(accelerator: str) -> Any:
    """Verify the asked-for accelerator, as the Colab tutorial does; return a strategy.

    A run that silently falls back to the CPU would corrupt the comparison, so it fails.
    """
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


def trim_to_multiple(x: Any, y: Any, multiple: int) -> tuple[Any, Any]:
    """TPUs want batches in multiples of 128; the tutorial trims both sets likewise."""
    if multiple and multiple > 1:
        n = (len(y) // multiple) * multiple
        if n == 0:
            raise ValueError(f"fewer than {multiple} examples; cannot trim to a multiple")
        return x[:n], y[:n]
    return x, y


def fingerprint(accelerator: str) -> dict[str, Any]:
    """Hardware and software of the kernel that ran the protocol (DESIGN.md's fields)."""
    import keras
    import tensorflow as tf

    device_name = cpu_model()
    if accelerator == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            device_name = details.get("device_name", gpus[0].name)
    elif accelerator == "tpu":
        tpus = tf.config.list_logical_devices("TPU")
        device_name = f"TPU x{len(tpus)}" if tpus else "TPU"
    return {
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "ram_gb": ram_gb(),
        "accelerator": accelerator, "device_name": device_name, "host_id": host_id(),
    }


def peak_gpu_mb(accelerator: str) -> float | None:
    if accelerator != "gpu":
        return None
    import tensorflow as tf

    try:
        return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    except (ValueError, RuntimeError):
        return None

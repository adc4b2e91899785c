"""Datasets: generated shapes, image folders, and Keras built-ins when offline."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloudbench.data.datasets import SHAPE_CLASSES, DatasetError, generate_shapes, load_dataset


def test_shapes_are_deterministic_balanced_and_split_two_to_one() -> None:
    x1, y1 = generate_shapes(90, seed=3)
    x2, y2 = generate_shapes(90, seed=3)
    assert x1.shape == (90, 28, 28, 1) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [30, 30, 30]
    assert not np.array_equal(x1, generate_shapes(90, seed=4)[0])
    x_train, y_train, x_test, y_test, classes = load_dataset(
        {"source": "shapes", "images": 90}, seed=1)
    assert (len(y_train), len(y_test)) == (60, 30) and classes == list(SHAPE_CLASSES)
    # the images belong to the dataset; the run's seed only draws the split
    other = load_dataset({"source": "shapes", "images": 90}, seed=2)
    assert sorted(map(bytes, x_train)) != sorted(map(bytes, other[0]))
    both = np.concatenate([x_train, x_test])
    assert sorted(map(bytes, both)) == sorted(map(bytes, np.concatenate(other[:1] + other[2:3])))


def test_folder_images_are_resized_per_class(tmp_path: Path) -> None:
    for k, cls in enumerate(("cars", "vans", "bikes")):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (80 + i, 50), (k * 80, i * 30, 0)).save(tmp_path / cls / f"{i}.jpg")
    config = {"source": "folder", "path": str(tmp_path), "size": [28, 21], "color": "rgb"}
    x_train, y_train, x_test, y_test, classes = load_dataset(config, seed=0)
    assert classes == ["bikes", "cars", "vans"]
    assert x_train.shape[1:] == (21, 28, 3) and len(y_train) + len(y_test) == 12
    gray = load_dataset({**config, "color": "grayscale"}, seed=0)
    assert gray[0].shape[1:] == (21, 28, 1)


class _Loader:
    def __init__(self, result: object):
        self.result = result

    def load_data(self) -> object:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def _stub_keras(monkeypatch: pytest.MonkeyPatch, result: object) -> None:
    """A `keras` module whose mnist loader returns or raises `result` (no TensorFlow)."""
    keras = types.ModuleType("keras")
    keras.datasets = types.SimpleNamespace(mnist=_Loader(result))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras", keras)


def test_keras_download_errors_become_a_clear_dataset_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _stub_keras(monkeypatch, OSError("[Errno 111] Connection refused"))
    with pytest.raises(DatasetError) as info:
        load_dataset({"source": "keras", "keras_name": "mnist"}, 0)
    message = str(info.value)
    assert message.startswith("Keras dataset 'mnist' is not cached")
    assert "(OSError: [Errno 111] Connection refused)" in message
    assert "network connection" in message and 'source = "folder"' in message


def test_keras_datasets_get_a_channel_axis_and_the_image_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    train = (np.zeros((12, 28, 28), np.uint8), np.arange(12).reshape(-1, 1) % 3)
    test = (np.ones((6, 28, 28), np.uint8), np.arange(6).reshape(-1, 1) % 3)
    _stub_keras(monkeypatch, (train, test))
    x_train, y_train, x_test, y_test, classes = load_dataset(
        {"source": "keras", "keras_name": "mnist", "images": 9}, 0)
    assert x_train.shape == (9, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    assert y_train.shape == (9,) and y_train.dtype == np.int64 and classes == ["0", "1", "2"]


@pytest.mark.slow
def test_keras_dataset_offline_gives_a_clear_error(tmp_path: Path) -> None:
    """Real Keras (so TensorFlow), offline: the download goes to a closed local port.

    No network is used. The stubbed tests above check the message without TensorFlow.
    """
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "HOME": str(tmp_path),
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = ("from cloudbench.data.datasets import load_dataset, DatasetError\n"
            "try:\n    load_dataset({'source': 'keras', 'keras_name': 'mnist'}, 0)\n"
            "except DatasetError as exc:\n    print('ERROR', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300).stdout
    assert "ERROR Keras dataset 'mnist' is not cached" in out
    assert "network connection" in out and 'source = "folder"' in out

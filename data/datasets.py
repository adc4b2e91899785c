"""Image datasets for the protocol: generated shapes, image folders and Keras built-ins.

This module runs inside the kernel that is being timed (locally or on a remote host), so it
depends only on numpy and Pillow, and it never downloads anything unless asked for a Keras
dataset that is not cached.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cloudbench.errors import InputError

SHAPE_CLASSES = ("triangle", "rectangle", "ellipse")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class DatasetError(InputError, ValueError):
    """A dataset that cannot be loaded, with the file or folder that is at fault."""


Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def _draw_shape(kind: str, rng: np.random.Generator, side: int = 28) -> np.ndarray:
    from PIL import Image, ImageDraw

    scale = 4  # draw large, then shrink: anti-aliased edges like real photographs
    big = side * scale
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    size = rng.uniform(0.35, 0.8) * big / 2
    cx, cy = rng.uniform(size * 0.7, big - size * 0.7, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    fill = int(rng.integers(140, 256))
    if kind == "ellipse":
        a, b = size, size * rng.uniform(0.45, 1.0)
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    elif kind == "rectangle":
        w, h = size, size * rng.uniform(0.4, 1.0)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    else:
        t = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.3, 0.3, size=3)
        pts = np.stack([size * np.cos(t), size * np.sin(t)], axis=1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = pts @ rot.T + [cx, cy]
    draw.polygon([tuple(p) for p in pts], fill=fill)
    small = img.resize((side, side), Image.Resampling.LANCZOS)
    arr = np.asarray(small, dtype=np.float32)
    arr += rng.normal(0, 12, size=arr.shape)  # sensor noise, so the task is not trivial
    return np.clip(arr, 0, 255).astype(np.uint8)


def generate_shapes(images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`images` 28x28 grayscale shapes, balanced over the classes, fully determined by seed."""
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % len(SHAPE_CLASSES)
    rng.shuffle(labels)
    x = np.stack([_draw_shape(SHAPE_CLASSES[k], rng) for k in labels])[..., None]
    return x, labels.astype(np.int64)


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"{root}: expected one subfolder per class (at least 2), "
                           f"found {len(classes)}")
    return classes


def _images_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"class folder {folder} holds no images "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _read_image(path: Path, size: tuple[int, int], color: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if color == "grayscale" else "RGB")
            img = img.resize(size, Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc
    return arr[..., None] if arr.ndim == 2 else arr


def load_folder(root: Path, size: tuple[int, int], color: str,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One subfolder per class; every image resized to `size` = (width, height)."""
    classes = _class_folders(root)
    xs, ys = [], []
    for k, folder in enumerate(classes):
        for f in _images_in(folder):
            xs.append(_read_image(f, size, color))
            ys.append(k)
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    if limit is not None and limit < len(y):
        keep = np.random.default_rng(0).permutation(len(y))[:limit]
        x, y = x[keep], y[keep]
    return x, y, [c.name for c in classes]


def load_keras(name: str, limit: int | None = None) -> Split:
    """A Keras built-in; it is downloaded once into ~/.keras/datasets when online."""
    import keras

    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # urllib, socket and http errors all end here
        raise DatasetError(
            f"Keras dataset {name!r} is not cached in ~/.keras/datasets and could not be "
            f"downloaded ({type(exc).__name__}: {exc}); this needs a network connection once, "
            "or use source = \"folder\" with the images on disk") from exc
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    y_train, y_test = y_train.reshape(-1).astype(np.int64), y_test.reshape(-1).astype(np.int64)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[: max(1, limit // 3)], y_test[: max(1, limit // 3)]
    classes = [str(k) for k in range(int(y_train.max()) + 1)]
    return x_train, y_train, x_test, y_test, classes


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           classes: list[str]) -> Split:
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test], classes


def load_dataset(config: dict[str, Any], seed: int) -> Split:
    """The protocol's entry point: (x_train, y_train, x_test, y_test, class_names), uint8."""
    source = config.get("source", "shapes")
    fraction = float(config.get("test_fraction", 1 / 3))
    if source == "shapes":
        # The images depend on the dataset, not on the run: every run sees the same set.
        x, y = generate_shapes(int(config.get("images", 600)), seed=0)
        return _split(x, y, fraction, seed, list(SHAPE_CLASSES))
    if source == "folder":
        size = tuple(config.get("size", (28, 28)))
        x, y, classes = load_folder(Path(config["path"]), (size[0], size[1]),
                                    config.get("color", "grayscale"), config.get("images"))
        return _split(x, y, fraction, seed, classes)
    if source == "keras":
        return load_keras(config.get("keras_name", config.get("name")), config.get("images"))
    raise DatasetError(f"unknown dataset source {source!r}")


def check_dataset(config: dict[str, Any]) -> None:
    """Fail early on what would fail in every run: missing folders, empty classes, bad files."""
    if config.get("source") != "folder":
        return
    for folder in _class_folders(Path(config["path"])):
        for f in _images_in(folder):
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(f) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise DatasetError(f"cannot decode image {f}: {exc}") from exc

"""Rebuild the corpus of real tutorial notebooks from their upstream sources.

    python tests/corpus/make_corpus.py PATH/TO/tensorflow-docs-checkout

Each notebook is tensorflow/docs's own file (site/en/tutorials/..., Apache License 2.0,
parts MIT as their cells say), changed only as a researcher would to time it with the
toolkit: cell tags added (`phase:*`, `metrics`), outputs cleared, and the one line that
downloads the data replaced by a read of a file beside the notebook through a relative
path. The data files are generated here with the shapes and columns of the originals
(MNIST, Fashion-MNIST and UCI Auto MPG cannot be downloaded in tests), small enough to
train in seconds. SOURCES.md lists the upstream commit and every change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "study" / "examples"
UPSTREAM = "site/en/tutorials/"

#: notebook -> (upstream path, where it goes, {cell index: tags}, {old line: new line})
CORPUS = {
    "beginner": ("quickstart/beginner.ipynb", HERE / "tf_beginner",
                 {7: ["phase:import"], 9: ["phase:load"], 11: ["phase:build"],
                  22: ["phase:build"], 24: ["phase:train"], 26: ["phase:eval"]},
                 {"(x_train, y_train), (x_test, y_test) = mnist.load_data()":
                  "with np.load('mnist.npz') as f:  # was: mnist.load_data() (a download)\n"
                  "    (x_train, y_train), (x_test, y_test) = "
                  "(f['x_train'], f['y_train']), (f['x_test'], f['y_test'])",
                  "import tensorflow as tf\n": "import tensorflow as tf\nimport numpy as np\n"}),
    "classification": ("keras/classification.ipynb", HERE / "tf_classification",
                       {6: ["phase:import"], 9: ["phase:load"], 25: ["phase:load"],
                        30: ["phase:build"], 32: ["phase:build"], 35: ["phase:train"],
                        38: ["phase:eval", "metrics"], 41: ["phase:predict"],
                        42: ["phase:predict"]},
                       {"(train_images, train_labels), (test_images, test_labels) = "
                        "fashion_mnist.load_data()":
                        "with np.load('fashion.npz') as f:  # was: fashion_mnist.load_data()\n"
                        "    (train_images, train_labels), (test_images, test_labels) = (\n"
                        "        (f['x_train'], f['y_train']), (f['x_test'], f['y_test']))"}),
    "regression": ("keras/regression.ipynb", EXAMPLES / "tf_regression",
                   {6: ["phase:import"], 7: ["phase:import"], 8: ["phase:import"],
                    11: ["phase:load"], 16: ["phase:load"], 18: ["phase:load"],
                    19: ["phase:load"], 21: ["phase:load"], 27: ["phase:load"],
                    56: ["phase:eval", "metrics"], 95: ["phase:build"],
                    96: ["phase:train"], 99: ["phase:eval"], 109: ["phase:save"]},
                   {"url = 'http://archive.ics.uci.edu/ml/machine-learning-databases/"
                    "auto-mpg/auto-mpg.data'":
                    "url = 'auto-mpg.data'  # was the UCI repository's URL (a download)"}),
}


def digits(seed: int, n_train: int = 600, n_test: int = 200) -> dict[str, np.ndarray]:
    """28x28 uint8 images of 10 classes: a fixed stroke pattern per class, shifted and
    noisy, so a small network learns them in a few epochs (as it learns MNIST)."""
    rng = np.random.default_rng(seed)
    templates = np.zeros((10, 28, 28))
    for k in range(10):
        for _ in range(3):
            r0, c0 = rng.integers(4, 20, size=2)
            if rng.random() < 0.5:
                templates[k, r0:r0 + 3, c0:c0 + rng.integers(4, 9)] = 1
            else:
                templates[k, r0:r0 + rng.integers(4, 9), c0:c0 + 3] = 1
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        shifts = rng.integers(-3, 4, size=(n, 2))
        images = np.stack([np.roll(templates[y], tuple(s), axis=(0, 1))
                           for y, s in zip(labels, shifts, strict=True)])
        images = images * rng.uniform(150, 255, size=(n, 1, 1))
        images += (rng.random((n, 28, 28)) < 0.15) * 200
        out[f"x_{split}"] = np.clip(images, 0, 255).astype(np.uint8)
        out[f"y_{split}"] = labels
    return out


def auto_mpg(seed: int = 3, n: int = 398) -> str:
    """UCI Auto MPG's format: whitespace-separated columns, '?' for a missing horsepower,
    the car's name after a tab; values drawn with the original's ranges and relations."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        cylinders = int(rng.choice([4, 4, 4, 6, 6, 8, 8, 3, 5]))
        displacement = cylinders * rng.uniform(20, 45)
        horsepower = displacement * rng.uniform(0.35, 0.6) + 20
        weight = 1500 + displacement * rng.uniform(6, 9) + rng.normal(0, 150)
        acceleration = 25 - horsepower / 12 + rng.normal(0, 1.5)
        year = int(rng.integers(70, 83))
        origin = int(rng.choice([1, 1, 1, 2, 3]))
        mpg = max(9.0, 55 - weight / 160 + (year - 70) * 0.7 + rng.normal(0, 2.5))
        hp = "?" if i % 66 == 5 else f"{horsepower:.1f}"
        lines.append(f"{mpg:.1f}   {cylinders}   {displacement:.1f}      {hp}      "
                     f"{weight:.1f}      {acceleration:.1f}   {year}  {origin}\t\"car {i}\"")
    return "\n".join(lines) + "\n"


def build(checkout: Path, name: str) -> Path:
    upstream, folder, tags, replace = CORPUS[name]
    raw = subprocess.run(["git", "-C", str(checkout), "show", f"HEAD:{UPSTREAM}{upstream}"],
                         capture_output=True, text=True, check=True).stdout
    nb = json.loads(raw)
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            source = "".join(cell["source"])
            for old, new in replace.items():
                source = source.replace(old, new)
            cell["source"] = source.splitlines(keepends=True)
        if index in tags:
            assert cell["cell_type"] == "code", (name, index)
            cell.setdefault("metadata", {})["tags"] = tags[index]
    changed = sum("".join(c["source"]) != "".join(o["source"])
                  for c, o in zip(nb["cells"], json.loads(raw)["cells"], strict=True))
    assert changed == len({old for old in replace}), (name, changed)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(upstream).name
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def main(checkout: Path) -> None:
    for name in CORPUS:
        print(build(checkout, name))
    np.savez_compressed(HERE / "tf_beginner" / "mnist.npz", **digits(1))
    np.savez_compressed(HERE / "tf_classification" / "fashion.npz", **digits(2))
    (EXAMPLES / "tf_regression" / "auto-mpg.data").write_text(auto_mpg(), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

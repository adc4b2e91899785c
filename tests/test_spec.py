"""Study-file validation: every bad input is refused with the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

from cloudbench.cli.main import main
from cloudbench.study.spec import SpecError, load_study

from conftest import PROTOCOL, write_study

GOOD = f"""
[study]
name = "t"
repetitions = 3
[protocol]
notebook = "{PROTOCOL}"
[protocol.parameters]
model = "shapes_cnn"
epochs = 1
[[datasets]]
name = "shapes"
source = "shapes"
images = 90
[[environments]]
name = "pc"
runner = "local"
"""


def refuse(tmp_path: Path, text: str, *fragments: str) -> SpecError:
    path = write_study(tmp_path / "bad.toml", text)
    with pytest.raises(SpecError) as info:
        load_study(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_good_study_loads(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path / "good.toml", GOOD))
    assert study.name == "t" and study.repetitions == 3
    assert study.datasets[0].images == 90 and study.environments[0].runner == "local"
    assert study.parameters == {"model": "shapes_cnn", "epochs": 1}


def test_demo_study_is_valid() -> None:
    study = load_study(PROTOCOL.parent.parent / "study" / "demo.toml")
    assert len(study.environments) == 2 and study.repetitions >= 10


@pytest.mark.parametrize("example", sorted((PROTOCOL.parent.parent / "study" / "examples")
                                           .glob("*.toml")), ids=lambda p: p.stem)
def test_example_studies_are_valid(example: Path) -> None:
    assert load_study(example).environments


def test_unknown_key(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace("repetitions = 3", "repetitions = 3\nrepetition = 4"),
           "study.repetition", "unknown key")


def test_unknown_key_in_environment(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD + 'gpus = "t4"\n', "environments[0].gpus", "unknown key")


def test_wrong_type(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace("repetitions = 3", 'repetitions = "three"'),
           "study.repetitions", "'three'")
    refuse(tmp_path, GOOD.replace("images = 90", "images = true"), "datasets[0].images", "int")


def test_bad_choice(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace('runner = "local"', 'runner = "ssh"'),
           "environments[0].runner", "'ssh'", "local")


def test_env_values_must_be_strings(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD + "env = { OMP_NUM_THREADS = 2 }\n",
           "environments[0].env.OMP_NUM_THREADS")


def test_missing_notebook(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace(str(PROTOCOL), str(tmp_path / "nope.ipynb")),
           "protocol.notebook", "not found", "nope.ipynb")


def test_notebook_without_parameters_cell(tmp_path: Path) -> None:
    nb_path = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), nb_path)
    refuse(tmp_path, GOOD.replace(str(PROTOCOL), str(nb_path)),
           "protocol.notebook", "no cell tagged 'parameters'")


def test_parameter_names_must_be_identifiers(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace("epochs = 1", '"epochs; import os" = 1'),
           "protocol.parameters.epochs; import os", "identifiers")
    refuse(tmp_path, GOOD.replace("epochs = 1", "class = 1"), "protocol.parameters.class")


def test_parameter_unknown_to_the_notebook(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace("epochs = 1", "epoch = 1"),
           "protocol.parameters.epoch", "not a parameter of cnn_train.ipynb")


def test_reserved_parameter(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace("epochs = 1", 'record_path = "x"'),
           "protocol.parameters.record_path", "reserved")


def _folder_study(tmp_path: Path, root: Path) -> str:
    return GOOD.replace('source = "shapes"\nimages = 90',
                        f'source = "folder"\npath = "{root}"\nsize = [28, 21]')


def _image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(root / cls / f"{i}.png")
    return root


def test_folder_dataset_loads(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    study = load_study(write_study(tmp_path / "ok.toml", _folder_study(tmp_path, root)))
    assert study.datasets[0].size == (28, 21) and study.datasets[0].path == root


def test_missing_dataset_folder(tmp_path: Path) -> None:
    refuse(tmp_path, _folder_study(tmp_path, tmp_path / "missing"),
           "datasets[0].path", "not found", "missing")


def test_empty_class_folder(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "birds").mkdir()
    refuse(tmp_path, _folder_study(tmp_path, root), "datasets[0].path", "birds", "no images")


def test_undecodable_image(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    (root / "dogs" / "broken.jpg").write_bytes(b"this is not a jpeg")
    refuse(tmp_path, _folder_study(tmp_path, root), "datasets[0].path", "broken.jpg",
           "cannot decode")


def test_keras_dataset_name(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD.replace('name = "shapes"\nsource = "shapes"',
                                  'name = "imagenet"\nsource = "keras"'),
           "datasets[0].name", "not a Keras dataset")


def test_duplicate_names(tmp_path: Path) -> None:
    refuse(tmp_path, GOOD + '[[environments]]\nname = "pc"\n', "environments", "'pc'", "twice")


def test_invalid_toml(tmp_path: Path) -> None:
    refuse(tmp_path, "[study\nname=", "not valid TOML")


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_study(tmp_path / "good.toml", GOOD)
    assert main(["validate", str(good)]) == 0
    bad = write_study(tmp_path / "bad.toml", GOOD.replace("epochs = 1", "epoch = 1"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "protocol.parameters.epoch" in err

"""The files beside a notebook: which travel into every run, and studies without datasets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
import pytest

from cloudbench.study.files import FilesError, choose_files, parse_size
from cloudbench.study.manifest import build_manifest
from cloudbench.study.spec import OWN_DATA, SpecError, load_study

from conftest import write_quick_notebook


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def test_the_default_is_the_notebook_folder_less_what_is_never_input(tmp_path: Path) -> None:
    root = tree(tmp_path / "nb", {"nb.ipynb": b"{}", "fashion.npz": b"x" * 10,
                                  "data/train.csv": b"a,b\n", ".git/config": b"",
                                  ".ipynb_checkpoints/nb.ipynb": b"", "data/.hidden": b"",
                                  "__pycache__/m.pyc": b"", "results/demo/runs.csv": b"",
                                  "helpers.py": b"pass\n"})
    files, left_out = choose_files(root, root / "nb.ipynb", None, file_cap=100)
    assert [f.name for f in files] == ["data/train.csv", "fashion.npz", "helpers.py"]
    assert left_out == () and files[1].size == 10
    assert files[1].sha256() == hashlib.sha256(b"x" * 10).hexdigest()
    files, left_out = choose_files(root, root / "nb.ipynb", None, file_cap=9)
    assert [f.name for f in files] == ["data/train.csv", "helpers.py"]
    assert left_out == ("fashion.npz",)


def test_globs_choose_files_and_folders_and_stay_inside(tmp_path: Path) -> None:
    root = tree(tmp_path / "nb", {"nb.ipynb": b"{}", "a.npz": b"1", "b.npz": b"2",
                                  "imgs/x/1.png": b"p", "other.txt": b""})
    files, _ = choose_files(root, root / "nb.ipynb", ("*.npz", "imgs"))
    assert [f.name for f in files] == ["a.npz", "b.npz", "imgs/x/1.png"]
    for bad, message in (("*.csv", "matches no file"), ("../x", "stay inside"),
                         ("/etc/passwd", "stay inside")):
        with pytest.raises(FilesError, match=message):
            choose_files(root, root / "nb.ipynb", (bad,))
    (root / "link").symlink_to(tmp_path)
    tree(tmp_path, {"secret.txt": b"s"})
    with pytest.raises(FilesError, match="leads outside"):
        choose_files(root, root / "nb.ipynb", ("link/secret.txt",))


def test_the_cap_names_the_largest_files_and_what_to_do(tmp_path: Path) -> None:
    root = tree(tmp_path / "nb", {"nb.ipynb": b"{}", "big.bin": b"x" * 3000, "s.txt": b"y"})
    with pytest.raises(FilesError, match=r"over the cap .*largest: big\.bin.*\[protocol\] files"):
        choose_files(root, root / "nb.ipynb", None, cap=1000)


@pytest.mark.parametrize(("text", "expected"), [("50MB", 50 * 10**6), ("1.5 GiB", 3 * 2**29),
                                                ("0", 0), (0, 0), ("2kib", 2048),
                                                (12, 12)])
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["fifty", "-1MB", "1 TB", True, -3, "1e3MB"])
def test_sizes_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)  # type: ignore[arg-type]


def tagged_notebook(path: Path) -> Path:
    """A researcher's notebook: tags only, its data read by a relative path."""
    cells = [nbformat.v4.new_code_cell("epochs = 1", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("import numpy as np", metadata={"tags": ["phase:load"]}),
             nbformat.v4.new_code_cell("{'loss': 0.5}", metadata={"tags": ["metrics"]})]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def own_study(folder: Path, extra: str = "", datasets: str = "") -> Path:
    notebook = tagged_notebook(folder / "My Notebook.ipynb")
    spec = folder / "study.toml"
    spec.write_text(f'[study]\nname = "own"\nrepetitions = 2\n[protocol]\nnotebook = '
                    f'"{notebook}"\n{extra}\n{datasets}\n[[environments]]\nname = "pc"\n',
                    encoding="utf-8")
    return spec


def test_a_study_without_datasets_runs_on_the_notebooks_own_data(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "fashion.npz").write_bytes(b"z" * 100)
    study = load_study(own_study(folder))
    [dataset] = study.datasets
    assert dataset.name == "My-Notebook" and dataset.source == OWN_DATA
    assert [f.name for f in study.files] == ["fashion.npz"]
    manifest = build_manifest(study)
    assert manifest["files"] == [{"name": "fashion.npz", "bytes": 100,
                                  "sha256": hashlib.sha256(b"z" * 100).hexdigest()}]
    assert manifest["datasets"] == [{"name": "My-Notebook", "source": "notebook",
                                     "test_fraction": pytest.approx(1 / 3)}]


def test_files_keys_are_checked(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    for extra, key, message in (('files = ["*.npz"]', "protocol.files", "matches no file"),
                                ("files = [1]", "protocol.files", "list of globs"),
                                ('keep_artifacts = "lots"', "protocol.keep_artifacts",
                                 "a size such as")):
        with pytest.raises(SpecError, match=f"{key}: .*{message}"):
            load_study(own_study(folder, extra))
    study = load_study(own_study(folder, 'keep_artifacts = "1MB"'))
    assert study.keep_artifacts == 10**6


def test_a_notebook_writing_its_own_record_still_needs_a_dataset(tmp_path: Path) -> None:
    notebook = write_quick_notebook(tmp_path / "quick.ipynb")
    spec = tmp_path / "s.toml"
    spec.write_text(f'[study]\nname = "b"\n[protocol]\nnotebook = "{notebook}"\n'
                    '[[environments]]\nname = "pc"\n', encoding="utf-8")
    with pytest.raises(SpecError, match="datasets: at least one is needed: quick.ipynb"):
        load_study(spec)


@pytest.mark.parametrize("name", ["a\x00b.toml", "x" * 5000 + ".toml"])
def test_unusable_paths_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="cannot be read|not found"):
        load_study(name)


def test_toml_nested_too_deep_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "deep.toml"
    spec.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match="nested too deep"):
        load_study(spec)


def test_a_results_folder_beside_the_notebook_is_never_input(tmp_path: Path) -> None:
    root = tree(tmp_path / "nb", {"nb.ipynb": b"{}", "data.csv": b"1",
                                  "out/records/a.json": b"{}", "out/manifest.json": b"{}",
                                  "busy/.lock": b"", "busy/runs.csv": b""})
    files, _ = choose_files(root, root / "nb.ipynb", None)
    assert [f.name for f in files] == ["data.csv"]

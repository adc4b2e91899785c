"""The Kaggle stand-in (tests/standin/kaggle) behaves as kaggle 2.2.5's own code does.

It is what the Kaggle runner's tests will run against, so its own behaviour is pinned here:
`import kaggle` loads it from the path, credentials are found (or missed) as the real client
finds them, a pushed version runs its notebook (papermill, a tiny notebook: no TensorFlow)
with its dataset under ../input and moves QUEUED -> RUNNING -> COMPLETE/ERROR, and the
scripted faults (429, queued-then-error, a push error) come out as the real client's errors.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from requests.exceptions import HTTPError

STANDIN = Path(__file__).resolve().parent / "standin"
SLUG = "standin/cloudbench-block-1"


def _drop_kaggle_modules() -> None:
    for name in [n for n in sys.modules if n == "kaggle" or n.startswith("kaggle.")]:
        del sys.modules[name]


@pytest.fixture
def load_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Callable[..., ModuleType]]:
    """Import the stand-in afresh, after setting up credentials (as a process would at start)."""
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    state = tmp_path / "state"
    monkeypatch.setenv("KAGGLE_STANDIN_STATE", str(state))
    monkeypatch.syspath_prepend(str(STANDIN))
    loaded: list[ModuleType] = []

    def load(**env: str) -> ModuleType:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        _drop_kaggle_modules()
        module = importlib.import_module("kaggle")
        loaded.append(module)
        return module

    yield load
    if loaded:
        left = importlib.import_module("kaggle._standin").stop_all(state)
        assert left == [], f"stand-in workers still running at the end: {left}"
    _drop_kaggle_modules()


def legacy_key() -> dict[str, str]:
    return {"KAGGLE_USERNAME": "standin", "KAGGLE_KEY": "0123456789abcdef"}


def write_kernel(folder: Path, cells: list[str], datasets: tuple[str, ...] = (),
                 **meta: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, folder / "block.ipynb")
    metadata = {"id": SLUG, "title": "cloudbench block 1", "code_file": "block.ipynb",
                "language": "python", "kernel_type": "notebook", "is_private": True,
                "enable_gpu": False, "enable_internet": False,
                "dataset_sources": list(datasets), **meta}
    (folder / "kernel-metadata.json").write_text(json.dumps(metadata))
    return folder


def write_dataset(folder: Path, ref: str = "standin/cloudbench-data") -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "data.txt").write_text("42\n")
    (folder / "images" / "a.txt").write_text("a\n")
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"id": ref, "title": "cloudbench data", "licenses": [{"name": "CC0-1.0"}]}))
    return folder


def wait_status(api: object, kernel: str, timeout: float = 120) -> list[str]:
    """The statuses seen until the version ended (each change once)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.kernels_status(kernel)  # type: ignore[attr-defined]
        name = response.status.name
        if not seen or seen[-1] != name:
            seen.append(name)
        if name in ("COMPLETE", "ERROR"):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{kernel} still {seen} after {timeout} s")


def test_import_loads_the_standin_and_authenticates_on_import(load_kaggle) -> None:
    kaggle = load_kaggle(**legacy_key())
    assert kaggle.STANDIN and Path(kaggle.__file__).is_relative_to(STANDIN)
    assert kaggle.__version__ == "2.2.5"
    assert kaggle.api.config_values["username"] == "standin"
    assert kaggle.api.config_values["auth_method"] == "LEGACY_API_KEY"


def test_a_pushed_version_runs_its_notebook_with_its_dataset(load_kaggle,
                                                             tmp_path: Path) -> None:
    kaggle = load_kaggle(**legacy_key())
    api = kaggle.api
    created = api.dataset_create_new(str(write_dataset(tmp_path / "data")), dir_mode="zip")
    assert (created.status, created.error, created.ref) == ("ok", None, "standin/cloudbench-data")
    assert api.dataset_status("standin/cloudbench-data") == "ready"
    again = api.dataset_create_new(str(tmp_path / "data"))
    assert again.status == "error" and "is already in use by a dataset" in again.error
    folder = write_kernel(tmp_path / "kernel", [
        "import json, os\nprint('hello from the block')",
        "value = int(open('../input/cloudbench-data/data.txt').read())\n"
        "assert os.path.exists('../input/cloudbench-data/images/a.txt')\n"
        "json.dump({'value': value, 'cwd': os.path.basename(os.getcwd())},"
        " open('record.json', 'w'))"], datasets=("standin/cloudbench-data",))
    response = api.kernels_push(str(folder), timeout="600")
    assert (response.error, response.versionNumber, response.version_number) == (None, 1, 1)
    assert response.url == f"https://www.kaggle.com/code/{SLUG}"
    assert api.kernels_output(SLUG, str(tmp_path / "early")) == ([], None)
    assert wait_status(api, SLUG) in (["QUEUED", "RUNNING", "COMPLETE"],
                                      ["RUNNING", "COMPLETE"], ["QUEUED", "COMPLETE"])
    files, token = api.kernels_output(f"{SLUG}/1", str(tmp_path / "out"))
    assert token is None
    names = sorted(Path(f).name for f in files)
    assert names == ["cloudbench-block-1.log", "record.json"]
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record == {"value": 42, "cwd": "working"}
    log = json.loads((tmp_path / "out" / "cloudbench-block-1.log").read_text())
    assert {"stream_name", "time", "data"} <= set(log[0])
    assert "hello from the block" in "".join(e["data"] for e in log)


def test_a_failing_notebook_ends_in_error_with_its_traceback_in_the_log(
        load_kaggle, tmp_path: Path) -> None:
    kaggle = load_kaggle(**legacy_key())
    folder = write_kernel(tmp_path / "kernel", ["raise RuntimeError('deliberate failure')"])
    kaggle.api.kernels_push(str(folder))
    assert wait_status(kaggle.api, SLUG)[-1] == "ERROR"
    files, _ = kaggle.api.kernels_output(SLUG, str(tmp_path / "out"))
    log = Path(files[-1]).read_text()
    assert "deliberate failure" in log


def test_scripted_faults(load_kaggle, tmp_path: Path) -> None:
    kaggle = load_kaggle(**legacy_key())
    from kaggle import _standin
    state = _standin.state_dir()
    folder = write_kernel(tmp_path / "kernel", ["print('never runs')"])

    _standin.set_control(state, rate_limit=1, retry_after="7")
    with pytest.raises(HTTPError) as caught:
        kaggle.api.kernels_push(str(folder))
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert str(caught.value).startswith("429 Client Error: Too Many Requests for url: ")

    _standin.set_control(state, queued_then_error="Kernel failed: out of GPU quota",
                         queue_s=0.5)
    assert kaggle.api.kernels_push(str(folder)).version_number == 1  # the 429 saved nothing
    assert wait_status(kaggle.api, SLUG) == ["QUEUED", "ERROR"]
    status = kaggle.api.kernels_status(SLUG)
    assert status.failure_message == status.failureMessage == "Kernel failed: out of GPU quota"

    _standin.set_control(state, push_error="Notebook not found")
    failed = kaggle.api.kernels_push(str(folder))
    assert (failed.error, failed.version_number) == ("Notebook not found", None)
    made = [c["call"] for c in _standin.calls(state)]
    assert made[:2] == made[-1:] * 2 == ["kernels_push"] * 2
    assert set(made[2:-1]) == {"kernels_status"}


def test_missing_credentials_as_the_real_client_reports_them(
        load_kaggle, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kaggle = load_kaggle()  # no token, no kaggle.json, no KAGGLE_USERNAME/KAGGLE_KEY
    capsys.readouterr()
    fresh = kaggle.KaggleApi()
    with pytest.raises(SystemExit) as caught:
        fresh.authenticate()
    assert caught.value.code == 1
    assert capsys.readouterr().out.startswith("Authentication required to call the Kaggle API.")
    with pytest.raises(ValueError, match="Cannot access kernel"):
        kaggle.api.kernels_status(SLUG)
    with pytest.raises(HTTPError) as denied:
        kaggle.api.kernels_push(str(write_kernel(tmp_path / "k", ["1"])))
    assert denied.value.response.status_code == 401
    # importing created the config folder, as the real class body does
    assert (Path.home() / ".config" / "kaggle").is_dir()


def test_credentials_from_kaggle_json_and_from_a_token(load_kaggle, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "kaggle.json").write_text('{"username": "alice", "key": "k"}')
    (config / "kaggle.json").chmod(0o600)
    kaggle = load_kaggle(KAGGLE_CONFIG_DIR=str(config))
    assert kaggle.api.config == str(config / "kaggle.json")
    assert kaggle.api.config_values["username"] == "alice"
    kaggle = load_kaggle(KAGGLE_API_TOKEN="KGAT_0123")
    assert kaggle.api.config_values["auth_method"] == "ACCESS_TOKEN"


def test_push_validates_as_the_real_client(load_kaggle, tmp_path: Path) -> None:
    kaggle = load_kaggle(**legacy_key())
    with pytest.raises(ValueError, match="Title must be at least five characters"):
        kaggle.api.kernels_push(str(write_kernel(tmp_path / "a", ["1"], title="abc")))
    with pytest.raises(ValueError, match="Kernel slug must be at least five characters"):
        kaggle.api.kernels_push(str(write_kernel(tmp_path / "b", ["1"], id="standin/abc")))
    with pytest.raises(ValueError, match="Metadata file not found"):
        kaggle.api.kernels_push(str(tmp_path))
    assert kaggle.api.kernels_push(str(write_kernel(tmp_path / "c", ["1"], dataset_sources=[
        "standin/no-such-data"]))).invalidDatasetSources == ["standin/no-such-data"]
    wait_status(kaggle.api, SLUG)

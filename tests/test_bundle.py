"""The browser path: an exported notebook runs headless here and imports; bad archives do not."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from remote_support import HIDE_REPO, records, write_study

import cloudbench.runners.bundle as bundle
from cloudbench.cli.main import main

COLAB = {"name": "vm", "runner": "colab"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, quick_protocol: Path) -> dict[str, Path]:
    """A study, its bundle for the colab environment, and the archive the bundle made.

    The bundle runs under papermill with a Python that cannot import this repo (no
    google.colab either), so it works from what it carries, and writes its archive locally.
    Its protocol is the quick one, which imports the helper code the bundle carries.
    """
    root = tmp_path_factory.mktemp("bundle")
    spec = write_study(root / "study.toml", [{"name": "pc", "runner": "local"}, COLAB],
                       name="exported", repetitions=1, notebook=quick_protocol)
    notebook = root / "bundle.ipynb"
    assert main(["export", "colab", str(spec), "--environment", "vm", "-o", str(notebook)]) == 0
    vm = root / "vm"
    vm.mkdir()
    env = {**os.environ, "PYTHONPATH": str(HIDE_REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(notebook), str(root / "executed.ipynb"),
         "-p", "archive_dir", str(root / "archives"), "--cwd", str(vm), "--no-progress-bar"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [archive] = (root / "archives").glob("*.zip")
    return {"root": root, "spec": spec, "notebook": notebook, "archive": archive,
            "executed": root / "executed.ipynb"}


def test_metadata_requests_the_accelerator(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [{**COLAB, "name": "t4", "gpu": "t4"},
                                                 {**COLAB, "name": "tpu", "tpu": "v5e1"},
                                                 {"name": "pc", "runner": "local"}])
    for env, accelerator, kind in (("t4", "GPU", "T4"), ("tpu", "TPU", "V5E1")):
        out = tmp_path / f"{env}.ipynb"
        assert main(["export", "colab", str(spec), "--environment", env, "-o", str(out)]) == 0
        meta = nbformat.read(out, as_version=4).metadata
        assert meta["accelerator"] == accelerator and meta["colab"]["gpuType"] == kind
    assert main(["export", "colab", str(spec), "--environment", "pc",
                 "-o", str(tmp_path / "pc.ipynb")]) == 2  # not a colab environment


def test_the_bundle_runs_headless_and_imports_cleanly(exported: dict[str, Path],
                                                      tmp_path: Path) -> None:
    executed = exported["executed"].read_text()
    assert "archive written to" in executed and "vm+shapes+r001: ok, train" in executed
    out = tmp_path / "results"
    assert main(["import", str(exported["archive"]), "--output", str(out)]) == 0
    assert sorted(records(out)) == ["vm+shapes+r001"]  # only the exported environment's runs
    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["runner"] == "colab" and rec["host_id"]
    # The protocol ran on the helper code the bundle carried, unpacked in the "VM".
    assert Path(rec["helpers"]).is_relative_to(exported["root"] / "vm" / "cloudbench")
    assert (out / "notebooks" / "vm+shapes+r001.ipynb").exists()
    assert (out / "manifest.json").exists()

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert main(["import", str(exported["archive"]), "--output", str(out)]) == 0
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert after == before  # importing the same archive twice changes nothing


def repack(archive: Path, dest: Path, *, files: dict[str, bytes | None] | None = None,
           manifest: Callable[[dict[str, Any]], None] | None = None, rehash: bool = True,
           raw: list[tuple[str, bytes]] | None = None) -> Path:
    """A tampered copy: replaced, added or removed files, an edited manifest."""
    with zipfile.ZipFile(archive) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(content.pop("manifest.json"))
    for name, data in (files or {}).items():
        if data is None:
            content.pop(name, None)
        else:
            content[name] = data
    if manifest:
        manifest(meta)
    if rehash:
        meta["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in content.items()}
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("manifest.json", json.dumps(meta))
        for name, data in [*content.items(), *(raw or [])]:
            zf.writestr(name, data)
    return dest


def record_bytes(archive: Path, **changes: Any) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        rec = json.loads(zf.read("records/vm+shapes+r001.json"))
    return json.dumps({**rec, **changes}).encode()


TAMPERING: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "format version": (lambda a, d: repack(a, d, manifest=lambda m: m.update(format_version=99)),
                       "format version 99 is not supported"),
    "study name": (lambda a, d: repack(a, d, manifest=lambda m: m.update(study="other")),
                   "runs of study 'other'"),
    "notebook hash": (lambda a, d: repack(a, d, manifest=lambda m: m.update(
        notebook_sha256="0" * 64)), "protocol notebook differs"),
    "parameters": (lambda a, d: repack(a, d, manifest=lambda m: m["parameters"].update(
        epochs=50)), "protocol parameters"),
    "duplicate run id": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r002.json": record_bytes(a)}), "appears more than once"),
    "absolute path": (lambda a, d: repack(a, d, raw=[("/tmp/evil.json", b"{}")]),
                      "unsafe path '/tmp/evil.json'"),
    "parent path": (lambda a, d: repack(a, d, raw=[("records/../../evil.json", b"{}")]),
                    "unsafe path 'records/../../evil.json'"),
    "edited record": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, train_s=0.001)}, rehash=False),
        "changed after packing"),
    "foreign run": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, environment="pc")}),
        "is not a run of environment 'vm'"),
    "unplanned repetition": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": None,
        "records/vm+shapes+r999.json": record_bytes(a, run_id="vm+shapes+r999", block=999,
                                                    repetition=999)}),
        "'vm+shapes+r999' is not a planned run"),
    "block contradicts the run id": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, block=2)}),
        "contradict its run id"),
    "ok without timings": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, train_s=None, total_s=None)}),
        "status ok without train_s or total_s"),
    "a timing that is text": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, train_s="fast")}),
        "train_s must be a finite number, got 'fast'"),
    "a negative time": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, total_s=-5)}),
        "total_s = -5 is out of range"),
    "accuracy over 1": (lambda a, d: repack(a, d, files={
        "records/vm+shapes+r001.json": record_bytes(a, test_accuracy=7.5)}),
        "test_accuracy = 7.5 is out of range"),
    "not a zip": (lambda a, d: (d.write_bytes(b"PK not really"), d)[1], "not a zip archive"),
    "no manifest": (lambda a, d: (zipfile.ZipFile(d, "w").close(), d)[1], "no manifest.json"),
}


@pytest.mark.parametrize("rule", sorted(TAMPERING))
def test_a_tampered_archive_is_refused_and_nothing_merged(
        rule: str, exported: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    make, reason = TAMPERING[rule]
    bad = make(exported["archive"], tmp_path / "bad.zip")
    out = tmp_path / "results"
    out.mkdir()
    (out / "runs.csv").write_text("run_id,status\nearlier+run+r001,ok\n")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code = main(["import", str(bad), "--output", str(out), "--spec", str(exported["spec"])])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and reason in err, err
    assert (out / "runs.csv").read_text() == "run_id,status\nearlier+run+r001,ok\n"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_an_archive_over_the_size_limit_is_refused(exported: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bundle, "MAX_ARCHIVE_BYTES", 1000)
    out = tmp_path / "results"
    assert main(["import", str(exported["archive"]), "--output", str(out)]) == 2
    assert "over the size limit" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_a_manifest_cannot_make_import_open_another_file(tmp_path: Path) -> None:
    with pytest.raises(bundle.ArchiveError, match="pass it with --spec"):
        bundle.find_spec({"study_path": "/etc/passwd", "study_file": "passwd"}, None)
    found = bundle.find_spec({"study_path": "/etc/passwd", "study_file": "demo.toml"}, None)
    assert found.name == "demo.toml" and found != Path("/etc/passwd")
    spec = tmp_path / "mine.toml"
    spec.write_text("")
    assert bundle.find_spec({"study_path": str(spec), "study_file": "mine.toml"}, None) == spec

"""Staging: the protocol's helper code and folder datasets, packed for a host that cannot see ours.

A remote kernel (a Jupyter server, a Colab VM, an exported notebook) imports the same
`protocols` and `data` packages as a local run and reads the same images. They travel as one
deterministic zip whose name is the hash of its content, so a host that already unpacked a
given version is never sent it again, and two versions never mix.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cloudbench
from cloudbench import errors
from cloudbench.data.atomic import write_bytes_atomic
from cloudbench.data.datasets import IMAGE_SUFFIXES
from cloudbench.study.spec import PROJECT_ROOT, Dataset, Study

#: The archive a VM packs of its runs (an exported notebook's, or a Colab session's).
EXPORT_FILE = "export.json"
ARCHIVE_FORMAT = "cloudbench-archive"
ARCHIVE_VERSION = 1
ARCHIVE_DIRS = ("records", "attempts", "notebooks", "logs")

IMPORT_NAME = "cloudbench"
#: What the protocol notebook imports: enough for a remote kernel.
KERNEL_PACKAGES = ("protocols", "data")
#: What also runs the runs inside a VM (the local runner, the store, the study types).
VM_PACKAGES = ("study", "runners", "protocols", "data")
DATASETS_DIR = "datasets"
#: Where the notebook's own files (study.files) land, relative to the staged root.
FILES_DIR = "files"
NOTEBOOK_DIR = "notebook"
COMPLETE_MARKER = ".complete"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# Unpacks a stage zip once, atomically, refusing unsafe names. It is sent as source to hosts
# that do not have our code yet (a kernel, a VM), so it uses the standard library only.
UNPACK_SOURCE = '''
def _cloudbench_unpack(archive, dest):
    import os, shutil, uuid, zipfile
    marker = os.path.join(dest, ".complete")
    if os.path.isfile(marker):
        return os.path.abspath(dest)
    tmp = dest.rstrip("/") + ".tmp-" + uuid.uuid4().hex[:8]
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            parts = name.replace("\\\\", "/").split("/")
            if name.startswith("/") or ".." in parts or ":" in parts[0]:
                raise ValueError("unsafe name in the staged archive: " + name)
        zf.extractall(tmp)
    open(os.path.join(tmp, ".complete"), "w").close()
    try:
        os.replace(tmp, dest)
    except OSError:  # another kernel unpacked the same version first
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.abspath(dest)
'''


@dataclass(frozen=True)
class Stage:
    """Files to stage (archive name -> bytes) and the hash that names their version."""

    files: dict[str, bytes]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return digest.hexdigest()

    @property
    def version(self) -> str:
        """A short folder name for this content on the remote host."""
        return self.sha256[:16]

    def zip_bytes(self) -> bytes:
        """The same content always gives the same bytes (fixed times, sorted names)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(self.files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, self.files[name])
        return buffer.getvalue()

    def write_zip(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_bytes_atomic(path, self.zip_bytes())
        return path


def toolkit_files(packages: tuple[str, ...]) -> dict[str, bytes]:
    """The Python sources of our packages (never results, caches or notebooks' outputs),
    laid out as installed: ``cloudbench/__init__.py`` and ``cloudbench/<package>/...``."""
    files = {f"{IMPORT_NAME}/__init__.py": Path(cloudbench.__file__).read_bytes()}
    files[f"{IMPORT_NAME}/errors.py"] = Path(errors.__file__).read_bytes()  # data/ imports it
    for package in packages:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            rel = path.relative_to(PROJECT_ROOT)
            if "__pycache__" in rel.parts or rel.parts[:2] == ("data", "results"):
                continue
            files[f"{IMPORT_NAME}/{rel.as_posix()}"] = path.read_bytes()
    return files


def dataset_dir(dataset: Dataset) -> str:
    """Where a folder dataset lands, relative to the staged root."""
    return f"{DATASETS_DIR}/{dataset.name}"


def dataset_files(study: Study) -> dict[str, bytes]:
    """The images of every folder dataset, as the loader would read them (one folder a class)."""
    files: dict[str, bytes] = {}
    for ds in study.datasets:
        if ds.source != "folder" or ds.path is None:
            continue
        for path in sorted(ds.path.rglob("*")):
            rel = path.relative_to(ds.path)
            if (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and len(rel.parts) == 2
                    and not rel.parts[0].startswith(".")):
                files[f"{dataset_dir(ds)}/{rel.as_posix()}"] = path.read_bytes()
    return files


def protocol_files(study: Study) -> dict[str, bytes]:
    """The files the notebook reads beside it (study.files), under FILES_DIR."""
    return {f"{FILES_DIR}/{f.name}": f.path.read_bytes() for f in study.files}


def build_stage(study: Study, packages: tuple[str, ...] = KERNEL_PACKAGES,
                extra: dict[str, bytes] | None = None) -> Stage:
    """Helper code, folder datasets, the notebook's own files and any extra files (the
    notebook, the study) in one."""
    return Stage({**toolkit_files(packages), **dataset_files(study), **protocol_files(study),
                  **(extra or {})})


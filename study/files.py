"""The files a notebook reads beside it: chosen once, hashed once, staged to every runner.

A researcher's notebook opens `fashion.npz` or `data/train.csv` by a relative path, as it
did in Jupyter. Each run's kernel starts in a working folder of its own; these files are
copied there, on this machine and on every remote one, so the relative paths hold. They
are `[protocol] files` (globs relative to the notebook's folder) or, by default, the whole
notebook folder less what is never input (results, caches, hidden folders), within a cap.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cloudbench.errors import InputError

#: Everything a study copies into each run, at most (per study, all files together).
FILES_CAP_BYTES = 200 * 2**20
#: By default (no [protocol] files), a single file larger than this is left out, and said.
FILE_SIZE_CAP = 50 * 2**20
#: What a run may leave in its working folder to be kept under artifacts/<run_id>/.
DEFAULT_KEEP_ARTIFACTS = 50 * 2**20
#: Folders of a notebook's folder that are never the notebook's input.
SKIPPED_DIRS = frozenset({"__pycache__", "results", "build", "artifacts", "node_modules"})
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*\Z", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


class FilesError(InputError, ValueError):
    """The files cannot be chosen; the message says which glob or file, and why."""


@dataclass(frozen=True)
class ProtocolFile:
    """One file as the run's working folder holds it."""

    name: str  # relative to the working folder (and to the notebook's folder), POSIX form
    path: Path
    size: int

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(2**20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def parse_size(text: str | int) -> int:
    """"50MB", "1.5 GiB", 0 or a number of bytes, as bytes; ValueError when it is none."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as \"50MB\", got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"must not be negative, got {text}")
        return text
    found = _SIZE.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"expected a size such as \"50MB\" or \"1GiB\", got {text!r}")
    return int(float(found.group(1)) * _UNITS[(found.group(2) or "b").lower()])


def _is_results(folder: Path) -> bool:
    """A study's results folder (records/ with a manifest, or the lock of a run), wherever
    --output put it: never the notebook's input."""
    return (folder / "records").is_dir() and (folder / "manifest.json").is_file() or (
        folder / ".lock").is_file()


def _walk(folder: Path) -> list[Path]:
    """The notebook folder's files, less hidden and skipped folders and results folders."""
    found: list[Path] = []
    for current, dirs, names in os.walk(folder):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS
                         and not _is_results(here / d))
        found += [here / n for n in sorted(names) if not n.startswith(".")]
    return sorted(p for p in found if p.is_file())


def choose_files(folder: Path, notebook: Path, globs: tuple[str, ...] | None,
                 cap: int = FILES_CAP_BYTES, also_not: tuple[Path, ...] = (),
                 file_cap: int = FILE_SIZE_CAP) -> tuple[tuple[ProtocolFile, ...], tuple[str, ...]]:
    """The files to copy beside the notebook, sorted by name, and those left out.

    `globs` None: every file of the notebook's folder, recursively, less hidden and
    skipped folders, the notebook itself, `also_not` (the study file) and single files
    over `file_cap` (returned as left out, for the caller to say so). Each glob must match
    a file inside the folder. Together over `cap`: refused, with the files to list.
    """
    folder = folder.resolve()
    excluded = {p.resolve() for p in (notebook, *also_not)}
    chosen: dict[str, Path] = {}
    if globs is None:
        candidates = _walk(folder)
    else:
        candidates = []
        for pattern in globs:
            if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
                raise FilesError(f"{pattern!r} must be relative to the notebook's folder "
                                 f"{folder} and stay inside it")
            matched = [p for p in sorted(folder.glob(pattern)) if p.is_file()]
            matched += [f for p in sorted(folder.glob(pattern)) if p.is_dir()
                        for f in sorted(p.rglob("*")) if f.is_file()]
            if not matched:
                raise FilesError(f"{pattern!r} matches no file in {folder}")
            candidates += matched
    for path in candidates:
        resolved = path.resolve()
        if resolved in excluded:
            continue
        if not resolved.is_relative_to(folder):
            raise FilesError(f"{path} leads outside the notebook's folder {folder}")
        chosen.setdefault(path.relative_to(folder).as_posix(), path)
    files = tuple(ProtocolFile(name, path, path.stat().st_size)
                  for name, path in sorted(chosen.items()))
    left_out = tuple(f.name for f in files if globs is None and f.size > file_cap)
    files = tuple(f for f in files if f.name not in left_out)
    total = sum(f.size for f in files)
    if total > cap:
        largest = sorted(files, key=lambda f: -f.size)[:3]
        raise FilesError(
            f"the files beside the notebook come to {total / 2**20:.1f} MB, over the cap of "
            f"{cap / 2**20:.0f} MB that is copied into every run (largest: "
            f"{', '.join(f'{f.name} {f.size / 2**20:.1f} MB' for f in largest)}); list the "
            "files the notebook reads in [protocol] files, e.g. files = [\"*.npz\"]")
    return files, left_out

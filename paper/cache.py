"""The paper's build cache: one hash over every input, so an unchanged paper is never rebuilt.

The inputs are runs.csv and what the results store keeps beside it (manifest, calibration),
the study file, and every file of the toolkit that shapes the output: the report's and the
analysis's code, the core's study and record code, the templates and the language files.
They are found by listing those folders, never by a hand-kept list that a new module could
miss.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cloudbench.errors import InputError
from cloudbench.study.manifest import toolkit_version

ROOT = Path(__file__).resolve().parent.parent
#: The folders whose files shape the paper, and which of their files do.
SOURCES = {"paper": ("*.py", "templates/*", "lang/*"), "analysis": ("*.py",),
           "study": ("*.py",)}
STAMP = "build.json"


def source_files() -> list[Path]:
    """Every file of SOURCES (listed, so a new module or template is never missed)."""
    return sorted({p for folder, patterns in SOURCES.items() for pattern in patterns
                   for p in (ROOT / folder).glob(pattern) if p.is_file()})


def study_name_from_csv(runs_csv: Path) -> str:
    """The study's name from the CSV's `study` column, else the CSV's folder name.

    Reads only the first data row: this runs on the no-change path, where time counts.
    """
    try:
        with runs_csv.open(newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh), None) or {}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{runs_csv}: cannot be read as a runs table: {why}") from exc
    name = (row.get("study") or "").strip()
    return safe_name(name) or safe_name(runs_csv.resolve().parent.name) or "runs"


def safe_name(text: str) -> str:
    """A name from data made fit to be a file name inside the output folder: letters,
    digits, '_', '.' and '-' only, no leading dot, at most 64 characters ("../../x" and
    "a/b" can never become paths)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-")
    return cleaned[:64]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inputs_digest(runs_csv: Path, study_file: Path | None, extra: str = "") -> str:
    """One hash over every input of the paper, so an unchanged paper is never rebuilt:
    runs.csv and what lies beside it (manifest, calibration), the study file, the
    templates and the report's code."""
    h = hashlib.sha256(toolkit_version().encode())
    files: list[Path | None] = [runs_csv, study_file, *beside(runs_csv)]
    files += source_files()
    for path in files:
        h.update(b"\0" + (str(path.name).encode() if path else b"-") + b"\0")
        if path is not None and path.is_file():
            h.update(_sha256(path.read_bytes()).encode())
    h.update(extra.encode())
    return h.hexdigest()


def _read_stamp(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _format_of(path: Path) -> str:
    return path.suffix.lstrip(".")


def up_to_date(folder: Path, outputs: Path | list[Path], digest: str) -> bool:
    """Whether every output (the PDF, the page) exists and was built from these inputs."""
    paths = [outputs] if isinstance(outputs, Path) else list(outputs)
    stamp = _read_stamp(folder)
    built = set(stamp.get("formats", ["pdf"]))
    return stamp.get("digest") == digest and all(
        p.is_file() and _format_of(p) in built for p in paths)


def beside(runs_csv: Path) -> tuple[Path, Path]:
    """The manifest and the A/A calibration the results store keeps beside runs.csv."""
    return runs_csv.parent / "manifest.json", runs_csv.parent / "calibration.json"


def write_stamp(folder: Path, digest: str, built_at: str,
                formats: tuple[str, ...] = ("pdf",)) -> None:
    """Record the build: its inputs' digest and the formats now built from them (those of
    an earlier build of the same inputs still count)."""
    from cloudbench.data.atomic import write_text_atomic

    stamp = _read_stamp(folder)
    kept = stamp.get("formats", ["pdf"]) if stamp.get("digest") == digest else []
    write_text_atomic(folder / STAMP, json.dumps({
        "digest": digest, "builds": int(stamp.get("builds", 0)) + 1,
        "formats": sorted(set(kept) | set(formats)), "built_at": built_at}, indent=2) + "\n")


def build_count(out_dir: Path, name: str) -> int:
    """How many times this paper was built (the stamp's counter): for tests and benchmarks."""
    return int(_read_stamp(Path(out_dir) / name).get("builds", 0))

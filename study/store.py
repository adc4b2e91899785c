"""The results store: one JSON record per run, runs.csv derived from them, the manifest.

Records are the truth and are written atomically, so a killed study loses at most the run
in flight. runs.csv is derived: :meth:`ResultsStore.write_csv` rebuilds it from the records
(a study does so when it starts, which also mends a table a kill left behind), and each new
record then updates it from memory (a line appended when the columns stay the same), so a
long study never re-reads its records after every run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudbench.data.atomic import atomic_path, write_json_atomic
from cloudbench.errors import InputError
from cloudbench.study import layout
from cloudbench.study.layout import default_results_dir
from cloudbench.study.record import (
    COLUMNS,
    OCCASIONAL_FIELDS,
    RUNNER_FIELDS,
    STATUSES,
    RecordError,
    RunRecord,
    upgrade,
)

__all__ = ["COLUMNS", "STATUSES", "ResultsStore", "StoreError", "default_results_dir"]
MIN_FREE_MB = 50
#: A temporary name of data.atomic: "." + the target's name + "." + mkstemp's 8 characters.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")

if TYPE_CHECKING:
    import pandas as pd

    from cloudbench.study.spec import Environment


class StoreError(InputError, RuntimeError):
    """The results folder cannot take the study's records."""


class ResultsStore:
    """data/results/<study>/: records/, attempts/, notebooks/, logs/, runs.csv, manifest.json."""

    def __init__(self, root: Path):
        # Absolute, because kernels run in their own working folder and write records here.
        self.root = Path(root).absolute()
        self.records_dir = self.root / layout.RECORDS
        self.attempts_dir = self.root / layout.ATTEMPTS
        self.notebooks_dir = self.root / layout.NOTEBOOKS
        self.logs_dir = self.root / layout.LOGS
        self.work_dir = self.root / layout.WORK
        self.csv_path = self.root / "runs.csv"
        self.manifest_path = self.root / "manifest.json"
        self._rows: dict[str, dict[str, Any]] | None = None  # runs.csv, in memory
        self._header: list[str] = []
        # Machines run concurrently (runners.scheduler), each in its own thread: one writer
        # at a time keeps runs.csv and the attempts free of lost updates.
        self._lock = threading.RLock()
        self.unsaved: list[dict[str, Any]] = []  # finished runs no disk would take

    def prepare(self) -> None:
        """Create the folders and prove they are writable before the first run, not after."""
        try:
            for folder in (self.records_dir, self.attempts_dir, self.notebooks_dir,
                           self.logs_dir, self.work_dir):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"results folder {self.root} is not writable: {exc.strerror or exc}"
                             ) from exc
        self._remove_leftovers()
        self._restore_unsaved()
        free_mb = shutil.disk_usage(self.root).free / 2**20
        if free_mb < MIN_FREE_MB:
            raise StoreError(f"results folder {self.root} has only {free_mb:.0f} MB free; "
                             f"at least {MIN_FREE_MB} MB are needed for records and notebooks")

    def _remove_leftovers(self) -> None:
        """What a killed study leaves behind: temporary files of writes it did not finish
        (data.atomic's `.NAME.XXXXXXXX` names, never read) and the working folders of the
        runs in flight (their kernel connection files included, which hold a key)."""
        for folder in (self.root, self.records_dir, self.attempts_dir, self.notebooks_dir):
            for path in folder.glob(".*"):
                if path.is_file() and _TEMP_NAME.match(path.name):
                    path.unlink(missing_ok=True)
        for path in self.work_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def record_path(self, run_id: str) -> Path:
        return self.records_dir / f"{run_id}.json"

    def notebook_path(self, run_id: str) -> Path:
        return layout.notebook_file(self.notebooks_dir, run_id)

    def log_path(self, run_id: str) -> Path:
        return layout.log_file(self.logs_dir, run_id)

    def runner_paths(self, environment: Environment) -> layout.RunnerPaths:
        """What the environment's runner may write, instead of the store itself."""
        return layout.RunnerPaths.under(self.root, environment.name, environment.runner)

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Keep the newest attempt under records/ and any earlier one under attempts/.

        A folder that cannot take it (disk full, no permission) stops the study with a
        StoreError naming the folder; the finished run is kept elsewhere (`unsaved_dir`) and
        comes back into the results when the study starts again, so it is not lost.
        """
        record = upgrade(record)  # as records() reads it back: runs.csv stays a rebuild
        with self._lock:
            try:
                self._write_record(record)
            except OSError as exc:
                kept = self._keep_unsaved(record)
                raise StoreError(
                    f"cannot write to the results folder {self.root} ({exc.strerror or exc}); "
                    f"the study stops. The finished run {record['run_id']} is kept in "
                    f"{kept} and is restored when the study runs again") from exc

    @property
    def unsaved_dir(self) -> Path:
        """Where finished runs go that the results folder could not take: another disk."""
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "cloudbench-unsaved" / f"{self.root.name}-{key}"

    def _keep_unsaved(self, record: dict[str, Any]) -> str:
        try:
            write_json_atomic(self.unsaved_dir / f"{record['run_id']}.json", record)
            return str(self.unsaved_dir)
        except OSError:
            self.unsaved.append(record)
            return "this process's memory only (the temporary folder is not writable either)"

    def _restore_unsaved(self) -> None:
        """Bring back the finished runs a full or unwritable folder could not take."""
        if not self.unsaved_dir.is_dir():
            return
        for path in sorted(self.unsaved_dir.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if not self.record_path(record["run_id"]).exists():
                write_json_atomic(self.record_path(record["run_id"]), record)
            path.unlink()
        shutil.rmtree(self.unsaved_dir, ignore_errors=True)

    def _write_record(self, record: dict[str, Any]) -> None:
        current = self.record_path(record["run_id"])
        if current.exists():
            old = json.loads(current.read_text(encoding="utf-8"))
            self.attempts_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.attempts_dir / f"{old['run_id']}.{old.get('attempt', 1)}.json",
                              old)
        write_json_atomic(current, record)
        self._update_csv(record)

    def write_attempt(self, record: Mapping[str, Any]) -> None:
        """A failed try that will be retried: kept for the record, never counted as a run."""
        with self._lock:
            write_json_atomic(
                self.attempts_dir / f"{record['run_id']}.{record['attempt']}.json",
                dict(record))

    def amend(self, amendments: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Add fields to stored records (a runner's per-block figures, such as Colab's
        compute units, known only when the block is over), under the store's lock.

        A field a record has already is never replaced, and the record must stay valid;
        runs.csv follows. Returns the run ids that changed.
        """
        changed = []
        with self._lock:
            for run_id, fields in amendments.items():
                path = self.record_path(run_id)
                if not path.is_file():
                    continue
                record = json.loads(path.read_text(encoding="utf-8"))
                new = {k: v for k, v in fields.items() if k not in record}
                if not new:
                    continue
                write_json_atomic(path, RunRecord({**record, **new}).to_dict())
                changed.append(run_id)
            if changed:
                self.write_csv()
        return changed

    def last_attempt(self, run_id: str) -> int:
        """The attempt number of the newest try of a run, 0 if it never ran."""
        path = self.record_path(run_id)
        tries = [int(p.suffixes[-2][1:]) for p in self.attempts_dir.glob(f"{run_id}.*.json")]
        if path.exists():
            tries.append(json.loads(path.read_text(encoding="utf-8")).get("attempt", 1))
        return max(tries, default=0)

    def has_records(self) -> bool:
        return self.records_dir.is_dir() and any(self.records_dir.glob("*.json"))

    def records(self) -> list[dict[str, Any]]:
        out = []
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                out.append(upgrade(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, json.JSONDecodeError, RecordError) as exc:
                raise StoreError(f"unreadable record {path}: {exc}") from exc
        return out

    def statuses(self) -> dict[str, str]:
        return {r["run_id"]: r.get("status", "failed") for r in self.records()}

    def frame(self, records: list[dict[str, Any]] | None = None) -> pd.DataFrame:
        """The records as a table, in runs.csv's columns and order (epoch_s as JSON text)."""
        import pandas as pd  # here: every `study` command imports the store

        rows = [_row(r) for r in (self.records() if records is None else records)]
        frame = pd.DataFrame(rows)
        frame = frame.reindex(columns=_columns(rows))
        if not frame.empty:
            frame = frame.sort_values(["block", "started_at"], kind="stable")
        return frame

    def write_csv(self) -> Path:
        """Rebuild runs.csv from the records on disk (atomically); later records update it."""
        with self._lock:
            self._rows = {r["run_id"]: _row(r) for r in self.records()}
            self._rewrite_csv()
        return self.csv_path

    def _update_csv(self, record: dict[str, Any]) -> None:
        if self._rows is None or not self.csv_path.exists():
            self.write_csv()
            return
        row = _row(record)
        new = row["run_id"] not in self._rows
        self._rows[row["run_id"]] = row
        if new and self._header and _filled(row) <= set(self._header):
            # One write of one whole line with O_APPEND: a kill leaves the line or nothing.
            fd = os.open(self.csv_path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, _csv_lines(self._header, [row]).encode("utf-8"))
            finally:
                os.close(fd)
        else:
            self._rewrite_csv()

    def _rewrite_csv(self) -> None:
        rows = sorted((self._rows or {}).values(),
                      key=lambda r: (_sort_number(r.get("block")), str(r.get("started_at") or "")))
        self._header = _columns(rows)
        text = ",".join(self._header) + "\n" + _csv_lines(self._header, rows)
        try:
            if self.csv_path.read_text(encoding="utf-8") == text:
                return  # a rerun with nothing new writes nothing
        except (OSError, UnicodeDecodeError):
            pass
        with atomic_path(self.csv_path) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        with self._lock:
            write_json_atomic(self.manifest_path, manifest)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a runs.csv row: lists and tables as JSON text."""
    return {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in record.items()}


def _filled(row: dict[str, Any]) -> set[str]:
    return {k for k, v in row.items() if v is not None and v != ""}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """The schema's columns that some run filled (the runner's own always), in the
    schema's order, then a protocol's own, sorted: a notebook that never fills epoch_s or
    batch_size gets no such empty columns."""
    filled = set().union(*(_filled(r) for r in rows)) if rows else set()
    keep = [c for c in COLUMNS if c in RUNNER_FIELDS or c in filled]
    keep += [c for c in OCCASIONAL_FIELDS if c in filled]
    return keep + sorted(filled - set(keep))


def _sort_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _csv_lines(header: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in header])
    return buffer.getvalue()

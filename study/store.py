"""The results store: one JSON record per run, runs.csv derived from them, the manifest.

Records are the truth and are written atomically, so a killed study loses at most the run
in flight. runs.csv is derived: :meth:`ResultsStore.write_csv` rebuilds it from the records
(a study does so when it starts, which also mends a table a kill left behind), and each new
record then updates it from memory (a line appended when the columns stay the same), so a
long study never re-reads its records after every run.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudbench.data.atomic import atomic_path, write_json_atomic, write_text_atomic
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
    check,
    upgrade,
)

__all__ = ["COLUMNS", "STATUSES", "ResultsStore", "StoreError", "default_results_dir"]
MIN_FREE_MB = 50
#: A temporary name of data.atomic: "." + the target's name + "." + mkstemp's 8 characters.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")
#: An earlier try's name under attempts/: the run id, the attempt number, ".json".
_ATTEMPT_NAME = re.compile(r"(?P<rid>.+)\.(?P<attempt>[1-9][0-9]{0,5})\.json")
#: Where files that are not the store's own (a record that does not match its name, a
#: list, a stray `{}`, NaN, a malformed attempt's name) are moved, each with a note.
REJECTED = "rejected"

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
        #: Files refused when read, path -> why: never merged, never counted as runs.
        self.rejected: dict[Path, str] = {}
        #: How a refused file is reported (once per file): a line on stderr by default.
        self.notify: Callable[[str], None] = _warn
        self._sync_each = True  # False inside batch(): one sync at its end
        self._batch_written = False

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
        self._set_aside_rejected()
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
            record, _ = _read_record_file(path, path.stem)
            if record is not None and not self.record_path(record["run_id"]).exists():
                write_json_atomic(self.record_path(record["run_id"]), record)
            path.unlink()
        shutil.rmtree(self.unsaved_dir, ignore_errors=True)

    def _write_record(self, record: dict[str, Any]) -> None:
        current = self.record_path(record["run_id"])
        old, why = _read_record_file(current, record["run_id"]) if current.exists() \
            else (None, None)
        if why is not None:
            self._set_aside(current, why)
        if old is not None:
            self.attempts_dir.mkdir(parents=True, exist_ok=True)
            self._write_json(self.attempts_dir / f"{old['run_id']}.{old.get('attempt', 1)}.json",
                             old)
        self._write_json(current, record)
        self._update_csv(record)

    def _write_json(self, path: Path, data: Mapping[str, Any]) -> None:
        if self._sync_each:
            write_json_atomic(path, data)
        else:  # write_json_atomic's text, without its fsync
            write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str)
                              + "\n")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many records at once (an imported archive): each still written atomically, but
        synced to disk once at the end instead of one by one (an fsync per record made
        20,000 records take minutes), and runs.csv rebuilt once at the end, streaming
        (:meth:`rebuild_csv`), instead of kept in memory: memory stays flat however many
        records come. A crash before the end can lose only records that the archive gives
        again; an empty or torn file is refused when read."""
        self._sync_each = False
        self._batch_written = False
        try:
            yield
        finally:
            self._sync_each = True
            if self._batch_written or not self.csv_path.exists():
                self.rebuild_csv()
                os.sync()

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
                record = self.read_record(run_id)
                if record is None:
                    continue
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
        tries = []
        for path in self.attempts_dir.glob(f"{glob.escape(run_id)}.*.json"):
            match = _ATTEMPT_NAME.fullmatch(path.name)
            if match and match["rid"] == run_id:  # a name not the store's own is no try
                tries.append(int(match["attempt"]))
        record = self.read_record(run_id)
        if record is not None:
            attempt = record.get("attempt", 1)
            tries.append(attempt if isinstance(attempt, int) else 1)
        return max(tries, default=0)

    def has_records(self) -> bool:
        return self.records_dir.is_dir() and any(self.records_dir.glob("*.json"))

    def read_record(self, run_id: str) -> dict[str, Any] | None:
        """The run's record, None if it has none or the file is not a valid record of it
        (then it is reported, as :meth:`records` does)."""
        path = self.record_path(run_id)
        if not path.exists():
            return None
        record, why = _read_record_file(path, run_id)
        if why is not None:
            self._refuse(path, why)
        return record

    def records(self) -> list[dict[str, Any]]:
        """The valid records, by file name: records are the truth by name and content
        together. A file that is not a record of the run its name gives (a list, a stray
        `{}`, another run's id, NaN, invalid JSON) is reported with its path and left out,
        never merged; a study's start moves it to rejected/ (:meth:`prepare`)."""
        return list(self._records_read())

    def _records_read(self) -> Iterator[dict[str, Any]]:
        """:meth:`records`, one at a time."""
        if not self.records_dir.is_dir():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            record, why = _read_record_file(path, path.stem)
            if why is not None:
                self._refuse(path, why)
            else:
                yield record

    def _refuse(self, path: Path, why: str) -> None:
        if path not in self.rejected:
            self.rejected[path] = why
            self.notify(f"{path}: {why}; not counted as a run")

    def _set_aside_rejected(self) -> None:
        """Move what is not the store's own out of records/ and attempts/ (into rejected/,
        with a note saying why), so that no later step reads it as a run or a try."""
        for path in sorted(self.records_dir.glob("*.json")):
            _, why = _read_record_file(path, path.stem)
            if why is not None:
                self._set_aside(path, why)
        for path in sorted(self.attempts_dir.iterdir()):
            if path.name.startswith(".") and path.is_file():
                continue  # a temporary of an unfinished write: _remove_leftovers' own
            match = _ATTEMPT_NAME.fullmatch(path.name)
            if match is None:
                self._set_aside(path, "not an attempt's name (<run id>.<attempt>.json)")
                continue
            data, why = _read_json_object(path)
            if why is None and data.get("run_id") != match["rid"]:
                why = f"holds a try of {str(data.get('run_id'))[:200]!r}, not of its name's run"
            if why is not None:
                self._set_aside(path, why)

    def _set_aside(self, path: Path, why: str) -> None:
        """Move a refused file to rejected/<folder>/ with a note; never delete it."""
        self._refuse(path, why)
        folder = self.root / REJECTED / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / path.name
        for n in range(1, 10_000):
            if not dest.exists() and not dest.with_name(dest.name + ".why.txt").exists():
                break
            dest = folder / f"{path.name}.{n}"
        os.replace(path, dest)
        dest.with_name(dest.name + ".why.txt").write_text(
            f"{path}: {why}\nSet aside by the results store: it is not counted as a run "
            "(a planned run without a valid record runs again).\n", encoding="utf-8")

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

    def rebuild_csv(self) -> Path:
        """runs.csv rebuilt as :meth:`write_csv` does, but streaming: one pass over the
        records for the columns and the order, a second writes the lines, so only each
        run's sort key is held. Later records rebuild it in memory again."""
        with self._lock:
            keys: list[tuple[float, str, str]] = []
            columns: set[str] = set()
            for record in self._records_read():
                keys.append((_sort_number(record.get("block")), str(record.get("started_at")
                                                                    or ""), record["run_id"]))
                columns.update(_filled(_row(record)))
            keys.sort(key=lambda k: k[:2])
            header = _columns([dict.fromkeys(columns, 1)])
            with atomic_path(self.csv_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
                out.write(",".join(header) + "\n")
                for _, _, run_id in keys:  # checked by the first pass: read only
                    record, _ = _read_json_object(self.record_path(run_id))
                    out.write(_csv_lines(header, [_row(upgrade(record))]))
            self._rows = None
            self._header = header
        return self.csv_path

    def _update_csv(self, record: dict[str, Any]) -> None:
        if not self._sync_each:  # inside batch(): rebuilt once at its end
            self._batch_written = True
            return
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
        """The manifest, None without one; a broken one is refused (StoreError): it guards
        the records against runs of another protocol, so it is never silently replaced."""
        if not self.manifest_path.exists():
            return None
        data, why = _read_json_object(self.manifest_path)
        if why is not None:
            raise StoreError(f"{self.manifest_path}: {why}: it records which protocol made "
                             "the runs here; restore it, or move it away to start a new one "
                             "(the records are kept)")
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        with self._lock:
            write_json_atomic(self.manifest_path, manifest)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _read_json_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object from a file, or ({}, why not)."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return {}, f"cannot be read ({exc.strerror or exc})"
    except RecursionError:
        return {}, "not valid JSON (nested too deeply)"
    except ValueError as exc:  # UnicodeDecodeError too
        return {}, f"not valid JSON ({exc})"
    if not isinstance(data, dict):
        return {}, f"a JSON {type(data).__name__}, not an object"
    return data, None


def _read_record_file(path: Path, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the record, None) when the file holds a valid record (study.record.RunRecord) of
    the run `run_id`, its name's; else (None, why not)."""
    data, why = _read_json_object(path)
    if why is not None:
        return None, why
    try:
        record = upgrade(data)
        check(record)  # what RunRecord(data) checks, without a copy of a copy
    except RecordError as exc:
        return None, f"not a valid run record ({exc})"
    except RecursionError:
        return None, "not a valid run record (nested too deeply)"
    if record["run_id"] != run_id:
        return None, f"holds the record of {record['run_id'][:200]!r}, not of {run_id!r}"
    return record, None


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

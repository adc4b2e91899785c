"""The results store: one JSON record per run, runs.csv derived from them, the manifest.

Records are the truth and are written atomically; runs.csv is rebuilt from them at any time,
so a killed study loses at most the run in flight and never leaves a half-written row.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from protocols.cnn_protocol import write_json_atomic

# The columns of DESIGN.md, in its order; anything else a record carries follows them.
RUNNER_FIELDS = ["run_id", "study", "environment", "dataset", "block", "repetition", "status",
                 "error", "started_at", "wall_s"]
PROTOCOL_FIELDS = ["import_s", "load_s", "build_s", "train_s", "epoch_s", "first_epoch_s",
                   "train_nowarm_s", "eval_s", "total_s", "test_loss", "test_accuracy", "n_train",
                   "n_test", "epochs", "batch_size", "seed", "peak_rss_mb", "peak_gpu_mb"]
FINGERPRINT_FIELDS = ["python", "tensorflow", "keras", "os", "cpu_model", "cpu_count", "ram_gb",
                      "accelerator", "device_name", "host_id"]
EXTRA_FIELDS = ["warmup", "attempt", "runner", "model", "n_params"]
COLUMNS = RUNNER_FIELDS + PROTOCOL_FIELDS + FINGERPRINT_FIELDS + EXTRA_FIELDS
STATUSES = ("ok", "failed", "timeout", "oom")
MIN_FREE_MB = 50


class StoreError(RuntimeError):
    """The results folder cannot take the study's records."""


def default_results_dir(study_name: str) -> Path:
    return Path("data") / "results" / study_name


class ResultsStore:
    """data/results/<study>/: records/, attempts/, notebooks/, logs/, runs.csv, manifest.json."""

    def __init__(self, root: Path):
        # Absolute, because kernels run in their own working folder and write records here.
        self.root = Path(root).absolute()
        self.records_dir = self.root / "records"
        self.attempts_dir = self.root / "attempts"
        self.notebooks_dir = self.root / "notebooks"
        self.logs_dir = self.root / "logs"
        self.work_dir = self.root / ".work"
        self.csv_path = self.root / "runs.csv"
        self.manifest_path = self.root / "manifest.json"

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
        free_mb = shutil.disk_usage(self.root).free / 2**20
        if free_mb < MIN_FREE_MB:
            raise StoreError(f"results folder {self.root} has only {free_mb:.0f} MB free; "
                             f"at least {MIN_FREE_MB} MB are needed for records and notebooks")

    def record_path(self, run_id: str) -> Path:
        return self.records_dir / f"{run_id}.json"

    def notebook_path(self, run_id: str) -> Path:
        return self.notebooks_dir / f"{run_id}.ipynb"

    def log_path(self, run_id: str) -> Path:
        return self.logs_dir / f"{run_id}.log"

    def write_record(self, record: dict[str, Any]) -> None:
        """Keep the newest attempt under records/ and any earlier one under attempts/."""
        current = self.record_path(record["run_id"])
        if current.exists():
            old = json.loads(current.read_text(encoding="utf-8"))
            self.attempts_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.attempts_dir / f"{old['run_id']}.{old.get('attempt', 1)}.json",
                              old)
        write_json_atomic(current, record)

    def write_attempt(self, record: dict[str, Any]) -> None:
        """A failed try that will be retried: kept for the record, never counted as a run."""
        write_json_atomic(self.attempts_dir / f"{record['run_id']}.{record['attempt']}.json",
                          record)

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
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as exc:
                raise StoreError(f"unreadable record {path}: {exc}") from exc
        return out

    def statuses(self) -> dict[str, str]:
        return {r["run_id"]: r.get("status", "failed") for r in self.records()}

    def frame(self, records: list[dict[str, Any]] | None = None) -> pd.DataFrame:
        rows = []
        for rec in self.records() if records is None else records:
            row = dict(rec)
            if isinstance(row.get("epoch_s"), list):
                row["epoch_s"] = json.dumps(row["epoch_s"])
            rows.append(row)
        frame = pd.DataFrame(rows)
        extra = sorted(c for c in frame.columns if c not in COLUMNS)
        frame = frame.reindex(columns=COLUMNS + extra)
        if not frame.empty:
            frame = frame.sort_values(["block", "started_at"], kind="stable")
        return frame

    def write_csv(self) -> Path:
        """Rebuild runs.csv from the records (atomically, like everything else here)."""
        tmp = self.root / f".runs.csv.{uuid.uuid4().hex}"
        self.frame().to_csv(tmp, index=False)
        tmp.replace(self.csv_path)
        return self.csv_path

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

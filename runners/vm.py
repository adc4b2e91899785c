"""Runs inside a remote VM (a Colab session, an exported notebook): the local runner, there.

A VM gets the toolkit, the protocol notebook, the folder datasets and the study (as JSON) in
one staged folder; here they become a Study again, with paths inside that folder, and the
repetitions run through :class:`runners.local.LocalRunner` exactly as on the researcher's
machine: a fresh kernel per repetition, the same timeout, memory sampling and records.
The protocol's fingerprint is then the VM's own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from rich.console import Console

from cloudbench.data.atomic import atomic_path
from cloudbench.runners.attempts import run_with_retries
from cloudbench.runners.local import LocalRunner
from cloudbench.runners.staging import (
    EXPORT_FILE,
    FILES_DIR,
    NOTEBOOK_DIR,
    VM_PACKAGES,
    Stage,
    build_stage,
    dataset_dir,
)
from cloudbench.study.files import ProtocolFile
from cloudbench.study.plan import RunJob, plan
from cloudbench.study.record import FINAL_STATUSES
from cloudbench.study.spec import Analysis, Dataset, Environment, Price, Study, Sweep
from cloudbench.study.store import ResultsStore

STUDY_FILE = "study.json"
#: Inside a run's result zip: what the notebook wrote, kept (study.layout.ARTIFACTS).
ARTIFACTS_MEMBER = "artifacts"
#: Beside record.json in a run's zip: what the record does not say (whether a failure was
#: the infrastructure's, so that the controller retries it).
OUTCOME_MEMBER = "outcome.json"
#: What the VM must have besides the toolkit (Colab ships all but papermill).
VM_MODULES = ("papermill", "nbclient", "ipykernel", "tensorflow", "psutil", "pandas", "rich")


def study_to_dict(study: Study) -> dict[str, Any]:
    """The study as JSON, with paths as they will be inside the staged folder."""
    data = dataclasses.asdict(study)
    data["path"] = study.path.name
    data["notebook"] = f"{NOTEBOOK_DIR}/{study.notebook.name}"
    for raw, ds in zip(data["datasets"], study.datasets, strict=True):
        raw["path"] = dataset_dir(ds) if ds.path is not None else None
    data["files"] = [{"name": f.name, "path": f"{FILES_DIR}/{f.name}", "size": f.size}
                     for f in study.files]
    return json.loads(json.dumps(data))


def study_from_dict(data: dict[str, Any], root: Path) -> Study:
    """Inverse of study_to_dict: a Study whose files are under `root`."""
    raw = dict(data)
    raw["path"] = root / STUDY_FILE
    raw["notebook"] = root / raw["notebook"]
    raw["datasets"] = tuple(
        Dataset(**{**d, "path": root / d["path"] if d["path"] else None,
                   "size": tuple(d["size"]) if d["size"] else None}) for d in raw["datasets"])
    raw["environments"] = tuple(
        Environment(**{**e, "price": Price(**e["price"]) if e.get("price") else None,
                       "require_device": tuple(e.get("require_device", ()))})
        for e in raw["environments"])
    raw["files"] = tuple(ProtocolFile(f["name"], root / f["path"], f["size"])
                         for f in raw.get("files", ()))
    raw["files_left_out"] = tuple(raw.get("files_left_out", ()))
    raw["analysis"] = Analysis(**{**raw["analysis"],
                                  "metrics": tuple(raw["analysis"]["metrics"])})
    sweep = raw.get("sweep") or {}
    raw["sweep"] = Sweep(parameters={k: tuple(v) for k, v in sweep.get("parameters", {}).items()},
                         exclude=tuple(sweep.get("exclude", ())))
    return Study(**raw)


def build_vm_stage(study: Study, extra: dict[str, bytes] | None = None) -> Stage:
    """Everything a VM needs to run the study's repetitions with the local runner."""
    files = {STUDY_FILE: json.dumps(study_to_dict(study), indent=1, sort_keys=True).encode(),
             f"{NOTEBOOK_DIR}/{study.notebook.name}": study.notebook.read_bytes(),
             **(extra or {})}
    return build_stage(study, VM_PACKAGES, files)


def load_staged(root: str | Path) -> Study:
    root = Path(root).resolve()
    return study_from_dict(json.loads((root / STUDY_FILE).read_text(encoding="utf-8")), root)


def check_vm() -> None:
    """Name what is missing in the VM before a run fails in a less obvious way."""
    missing = [m for m in VM_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"the VM lacks {', '.join(missing)}; install with pip first")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_job(root: str | Path, job: dict[str, Any], attempt: int, out: str | Path) -> str:
    """One repetition (the Colab runner's unit); returns a zip of record, notebook and log."""
    check_vm()
    study = load_staged(root)
    run = RunJob(**job)
    out = Path(out).resolve()  # the kernel runs in another folder: no relative paths
    store = ResultsStore(out / "runs" / study.name)
    store.prepare()
    env = study.environment(run.environment)
    outcome = LocalRunner(study, env, store.runner_paths(env)).run(run, attempt)
    result = out / "out" / f"{run.run_id}.{attempt}.zip"
    result.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(result, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("record.json", json.dumps(outcome.record.to_dict(), indent=1))
        zf.writestr(OUTCOME_MEMBER, json.dumps({"infrastructure": outcome.infrastructure}))
        for name, path in (("notebook.ipynb", store.notebook_path(run.run_id)),
                           ("run.log", store.log_path(run.run_id))):
            if path.exists():
                zf.write(path, name)
        kept = store.runner_paths(env).run(run.run_id, attempt).artifacts
        if kept is not None and kept.is_dir():
            for path in sorted(kept.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{ARTIFACTS_MEMBER}/{path.relative_to(kept).as_posix()}")
    return os.path.relpath(result)


def run_environment(root: str | Path, environment: str, repetitions: int | None,
                    results_dir: str | Path, archive_dir: str | Path = ".") -> str:
    """All repetitions of one environment (the exported notebook's job); returns the archive.

    Runs already ok in results_dir are kept, so running the notebook again resumes.
    """
    check_vm()
    root = Path(root).resolve()
    study = load_staged(root)
    export = json.loads((root / EXPORT_FILE).read_text(encoding="utf-8"))
    store = ResultsStore(Path(results_dir).resolve())
    store.prepare()
    console = Console()
    env = study.environment(environment)
    runner = LocalRunner(study, env, store.runner_paths(env))
    jobs = [j for j in plan(study, repetitions) if j.environment == environment]
    done = store.statuses()
    for k, job in enumerate(jobs, 1):
        if done.get(job.run_id) in FINAL_STATUSES:
            continue
        record = run_with_retries(
            runner, job, store, study.retries,
            lambda r: console.print(f"retrying {r['run_id']} after: {r['error']}", markup=False))
        console.print(f"[{k}/{len(jobs)}] {record['run_id']}: {record['status']}"
                      + (f" ({record['error']})" if record.get("error") else
                         f", train {record.get('train_s', 0):.2f} s"), highlight=False,
                      markup=False)
    return pack_archive(store, export, [j.run_id for j in jobs], Path(archive_dir))


def pack_archive(store: ResultsStore, export: dict[str, Any], run_ids: list[str],
                 archive_dir: Path) -> str:
    """Records, earlier attempts, executed notebooks and logs, with a manifest of hashes."""
    files: dict[str, bytes] = {}
    for rid in run_ids:
        for path in (store.record_path(rid), store.notebook_path(rid), store.log_path(rid),
                     *sorted(store.attempts_dir.glob(f"{rid}.*.json"))):
            if path.is_file():
                files[f"{path.parent.name}/{path.name}"] = path.read_bytes()
    records = [json.loads(files[f"records/{r}.json"]) for r in run_ids
               if f"records/{r}.json" in files]
    manifest = {**export, "run_ids": [r["run_id"] for r in records],
                "statuses": {r["run_id"]: r["status"] for r in records},
                "files": {name: _sha256(data) for name, data in sorted(files.items())},
                "packed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = archive_dir / f"{export['study']}-{export['environment']}-{stamp}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in files.items():
            zf.writestr(name, data)
    return str(archive)

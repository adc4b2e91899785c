"""Executes a study's plan: resumable, interleaved, one record per run, with progress.

Resuming is by construction: a run is done when its record says ok, so running the same
study again runs only what is missing (or failed) and never duplicates a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from runners.base import Runner, make_runner
from study.plan import RunJob, block_jobs, plan
from study.spec import PROJECT_ROOT, Study
from study.store import ResultsStore, StoreError, default_results_dir

STOP_METRIC = "train_s"


@dataclass
class StudyResult:
    store: ResultsStore
    executed: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    stopping: dict[str, Any] | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.executed if r["status"] != "ok"]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_manifest(study: Study) -> dict[str, Any]:
    """Provenance: what produced these runs, so the paper can say it and a reader check it."""
    try:
        version = metadata.version("cloudbench-study")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git("rev-parse", "HEAD")
    return {
        "study": study.name, "toolkit_version": version, "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain")) if commit else None,
        "notebook": study.notebook.name, "notebook_sha256": _sha256(study.notebook),
        "parameters": study.parameters, "study_file": study.path.name,
        "study_sha256": study.file_sha256(), "seed": study.seed, "order": study.order,
        "repetitions": study.repetitions, "warmup": study.warmup,
        "environments": [{"name": e.name, "runner": e.runner, "accelerator": e.accelerator,
                          "env": e.env, "parameters": e.parameters, "gpu": e.gpu, "tpu": e.tpu}
                         for e in study.environments],
        "datasets": [d.protocol_config() for d in study.datasets],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _check_manifest(store: ResultsStore, study: Study) -> dict[str, Any]:
    """Refuse to mix runs of two different protocols under one study name."""
    fresh = build_manifest(study)
    old = store.read_manifest()
    if old is not None and store.has_records():
        for key, what in (("notebook_sha256", "the protocol notebook"),
                          ("parameters", "the protocol parameters")):
            if old.get(key) != fresh[key]:
                raise StoreError(
                    f"{store.root}: {what} changed since this study's first runs "
                    f"({key}: {json.dumps(old.get(key))} then, {json.dumps(fresh[key])} now); "
                    "give the study a new name or --output, or remove the old results")
        fresh["created_at"] = old.get("created_at", fresh["created_at"])
        fresh["stopping"] = old.get("stopping")
    return fresh


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False)


def _describe(record: dict[str, Any]) -> str:
    if record["status"] == "ok":
        return (f"[green]ok[/] {record['run_id']}  train {record.get('train_s', 0):.2f} s  "
                f"accuracy {record.get('test_accuracy', 0):.3f}")
    return f"[red]{record['status']}[/] {record['run_id']}: {record.get('error')}"


class Executor:
    """Runs jobs block by block, opening each runner's block before its first run there."""

    def __init__(self, study: Study, store: ResultsStore, console: Console):
        self.study, self.store, self.console = study, store, console
        self.runners: dict[str, Runner] = {e.name: make_runner(study, e, store)
                                           for e in study.environments}

    def check(self) -> None:
        for runner in self.runners.values():
            runner.check()

    def run_one(self, runner: Runner, job: RunJob) -> dict[str, Any]:
        """One run, with retries of infrastructure errors; every try is kept.

        Attempts are numbered across invocations, so a rerun never overwrites an old try.
        """
        first = self.store.last_attempt(job.run_id) + 1
        for attempt in range(first, first + self.study.retries + 1):
            record = runner.run(job, attempt)
            retry = record.pop("infrastructure", False) and attempt < first + self.study.retries
            if not retry:
                break
            self.store.write_attempt(record)
            self.console.print(f"[yellow]retrying[/] {job.run_id} after: {record['error']}")
        self.store.write_record(record)
        self.store.write_csv()
        return record

    def run(self, jobs: Iterable[RunJob], progress: Progress, task: Any) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        opened: list[Runner] = []
        current_block: int | None = None
        try:
            for job in jobs:
                if job.block != current_block:
                    self._close(opened)
                    current_block = job.block
                runner = self.runners[job.environment]
                if runner not in opened:
                    runner.open_block(job.block)
                    opened.append(runner)
                progress.update(task, description=job.run_id)
                record = self.run_one(runner, job)
                progress.console.print(_describe(record))
                progress.advance(task)
                done.append(record)
        finally:
            self._close(opened)
        return done

    @staticmethod
    def _close(opened: list[Runner]) -> None:
        while opened:
            opened.pop().close_block()


def _stopping_state(study: Study, store: ResultsStore, block: int) -> dict[str, Any] | None:
    """The "auto" rule: stop when every ratio-of-medians interval is narrow enough.

    Only blocks up to `block` count, so a resumed study stops where it first stopped.
    """
    from analysis.power import ratio_halfwidth

    frame = store.frame()
    frame = frame[(frame["status"] == "ok") & (frame["warmup"] != True)  # noqa: E712
                  & (frame["block"] <= block)]
    widths = {}
    envs = [e.name for e in study.environments]
    for ds in study.datasets:
        sub = frame[frame["dataset"] == ds.name]
        for i, a in enumerate(envs):
            for b in envs[i + 1:]:
                xa = sub.loc[sub["environment"] == a, STOP_METRIC].dropna().to_numpy(float)
                xb = sub.loc[sub["environment"] == b, STOP_METRIC].dropna().to_numpy(float)
                if len(xa) < 2 or len(xb) < 2:
                    return None
                widths[f"{ds.name}: {a} vs {b}"] = ratio_halfwidth(xa, xb)
    if not widths:
        return None
    worst = max(widths, key=widths.get)
    met = widths[worst] <= study.target_halfwidth
    if not met and block < study.max_repetitions:
        return None
    reason = (f"every 95 % interval of the ratio of median {STOP_METRIC} was within "
              f"±{study.target_halfwidth:.1%} (widest: {worst}, ±{widths[worst]:.1%})"
              if met else f"the maximum of {study.max_repetitions} repetitions was reached; "
              f"the widest interval ({worst}) was still ±{widths[worst]:.1%}, "
              f"above the target ±{study.target_halfwidth:.1%}")
    return {"rule": "ratio_ci_halfwidth", "metric": STOP_METRIC,
            "target_halfwidth": study.target_halfwidth, "repetitions": block,
            "met": met, "halfwidths": widths, "reason": reason}


def run_study(study: Study, output: Path | None = None, repetitions: int | None = None,
              console: Console | None = None) -> StudyResult:
    """Run what is missing of the study; return the records this call produced."""
    console = console or Console()
    store = ResultsStore(output or default_results_dir(study.name))
    store.prepare()
    manifest = _check_manifest(store, study)
    store.write_manifest(manifest)
    executor = Executor(study, store, console)
    executor.check()

    statuses = store.statuses()
    jobs = plan(study, repetitions)
    pending = [j for j in jobs if statuses.get(j.run_id) != "ok"]
    result = StudyResult(store, skipped=len(jobs) - len(pending))
    if result.skipped:
        console.print(f"{result.skipped} of {len(jobs)} runs already done in {store.root}; "
                      f"running the {len(pending)} missing")
    auto = study.repetitions == "auto" and repetitions is None
    with _progress(console) as progress:
        task = progress.add_task(study.name, total=len(pending))
        result.executed += executor.run(pending, progress, task)
        block = study.planned_repetitions
        while auto:
            result.stopping = _stopping_state(study, store, block)
            if result.stopping:
                break
            block += 1
            extra = [j for j in block_jobs(study, block) if statuses.get(j.run_id) != "ok"]
            progress.update(task, total=(progress.tasks[0].total or 0) + len(extra))
            result.executed += executor.run(extra, progress, task)
    if result.stopping:
        manifest["stopping"] = result.stopping
        console.print(f"stopped after {result.stopping['repetitions']} repetitions: "
                      f"{result.stopping['reason']}")
    manifest["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    store.write_manifest(manifest)
    store.write_csv()
    return result

"""Executes a study's plan: resumable, interleaved, one record per run, with progress.

Each machine (study.spec.Environment.machine) runs its environments one run at a time, in
the plan's interleaved order restricted to them; different machines run at the same time,
one thread each, so a study of a PC, a Colab VM and a lab server takes about as long as its
slowest machine rather than the sum. Threads only wait here: the runs compute in child
processes or on the other machines.

The scheduler owns the results store and its lock; runners never see it. It hands each
runner one environment's pending runs of a block at once (``Runner.run_batch``) and pulls
the results in the plan's order: a runner that runs one at a time runs each when its turn
comes, exactly as a loop over the plan would; an engine that takes a batch (a pipeline)
runs the whole batch at its first turn. The scheduler writes every record, retries the
infrastructure's failures (runners.attempts) and applies what a runner amends at the end of
a block (Colab's compute units).

Resuming is by construction: a run is done when its record says ok (or oom: running out of
memory is the configuration's result, not an accident to retry), so running the same study
again runs only what is missing (or failed) and never duplicates a run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cloudbench.runners.attempts import first_attempt, settle
from cloudbench.runners.base import Runner, RunResult, Try, make_runner
from cloudbench.study.manifest import check_manifest
from cloudbench.study.plan import RunJob, block_jobs, plan
from cloudbench.study.record import FINAL_STATUSES, RunRecord
from cloudbench.study.spec import Study
from cloudbench.study.store import ResultsStore, default_results_dir

#: The rule of `repetitions = "auto"`: given the store and the last block run, None to go
#: on, or a description of why the study stops (see analysis.stopping).
StopRule = Callable[[ResultsStore, int], dict[str, Any] | None]


@dataclass
class StudyResult:
    store: ResultsStore
    executed: list[RunRecord] = field(default_factory=list)
    skipped: int = 0
    stopping: dict[str, Any] | None = None

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.executed if r["status"] != "ok"]


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False,
                    # Once a second, not rich's ten: nothing in this process should compete
                    # with the run being timed for the CPU.
                    refresh_per_second=1)


def _describe(record: RunRecord) -> str:
    if record["status"] == "oom":
        return (f"[yellow]oom[/] {record['run_id']}: {escape(str(record.get('error')))} "
                "(a result: the configuration does not fit)")
    if record["status"] == "ok":
        return (f"[green]ok[/] {record['run_id']}  train {record.get('train_s', 0):.2f} s  "
                f"accuracy {record.get('test_accuracy', 0):.3f}")
    return f"[red]{record['status']}[/] {record['run_id']}: {escape(str(record.get('error')))}"


class Executor:
    """Runs jobs block by block, opening each runner's block before its first run there;
    machine by machine, the machines at the same time."""

    def __init__(self, study: Study, store: ResultsStore, console: Console):
        self.study, self.store, self.console = study, store, console
        self.runners: dict[str, Runner] = {
            e.name: make_runner(study, e, store.runner_paths(e)) for e in study.environments}
        self.machine_of = {e.name: e.machine for e in study.environments}
        self.stopping = threading.Event()  # set on Ctrl-C: every machine stops

    def check(self) -> None:
        for runner in self.runners.values():
            runner.check()

    def _retrying(self, record: RunRecord) -> None:
        self.console.print(f"[yellow]retrying[/] {record['run_id']} after: "
                           f"{escape(str(record['error']))}")

    def run(self, jobs: Iterable[RunJob], progress: Progress, task: Any) -> list[RunRecord]:
        """One machine's jobs in the plan's order. Each environment's jobs of a block go to
        its runner as one batch, at the first of them; their results are taken one by one
        as their turns come, so a runner of one run at a time keeps the plan's order."""
        jobs = list(jobs)
        batches: dict[tuple[int, str], list[RunJob]] = {}
        for job in jobs:
            batches.setdefault((job.block, job.environment), []).append(job)
        done: list[RunRecord] = []
        opened: list[Runner] = []
        streams: dict[str, tuple[Iterator[RunResult], dict[str, int]]] = {}
        current_block: int | None = None
        many = len(set(self.machine_of.values())) > 1
        try:
            for job in jobs:
                if self.stopping.is_set():
                    break
                if job.block != current_block:
                    self._close(opened, streams)
                    current_block = job.block
                runner = self.runners[job.environment]
                if runner not in opened:
                    runner.open_block(job.block)
                    opened.append(runner)
                progress.update(task, description=f"{self.machine_of[job.environment]}: "
                                f"{job.run_id}" if many else job.run_id)
                if job.environment not in streams:
                    batch = [Try(j, first_attempt(self.store, j))
                             for j in batches[(job.block, job.environment)]]
                    streams[job.environment] = (iter(runner.run_batch(batch)),
                                                {t.job.run_id: t.attempt for t in batch})
                stream, attempts = streams[job.environment]
                result = next(stream, None)
                if result is None or result.record["run_id"] != job.run_id:
                    got = "no result" if result is None else result.record["run_id"]
                    raise RuntimeError(f"the runner of {job.environment!r} gave {got} for "
                                       f"{job.run_id}: run_batch yields one result per try, "
                                       "in their order")
                record = settle(runner, job, result, attempts[job.run_id], self.store,
                                self.study.retries, self._retrying)
                progress.console.print(_describe(record))
                progress.advance(task)
                done.append(record)
        finally:
            self._close(opened, streams)
        return done

    def _close(self, opened: list[Runner],
               streams: dict[str, tuple[Iterator[RunResult], dict[str, int]]]) -> None:
        """End the block: its batches (a batch left unfinished by a stop is closed), then
        each runner's block, whose amendments go into the store under its lock."""
        while streams:
            _, (stream, _) = streams.popitem()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        while opened:
            amendments = opened.pop().close_block()
            if amendments:
                self.store.amend(amendments)

    def run_machines(self, jobs: list[RunJob], progress: Progress,
                     tasks: dict[str, Any]) -> list[RunRecord]:
        """Each machine's jobs in plan order, the machines concurrently (one thread each).

        One machine: in this thread, exactly as a sequential study. Ctrl-C stops every
        machine: the runs in flight are interrupted and each machine closes its block
        (stopping its sessions) before the interrupt goes on.
        """
        by_machine: dict[str, list[RunJob]] = {}
        for job in jobs:
            by_machine.setdefault(self.machine_of[job.environment], []).append(job)
        if len(by_machine) <= 1:
            [(machine, mine)] = by_machine.items() or [("", [])]
            return self.run(mine, progress, tasks.get(machine, next(iter(tasks.values()))))
        done: dict[str, list[RunRecord]] = {}
        errors: list[BaseException] = []

        def work(machine: str, mine: list[RunJob]) -> None:
            try:
                done[machine] = self.run(mine, progress, tasks[machine])
            except BaseException as exc:  # re-raised in the main thread
                errors.append(exc)
                self.stopping.set()

        threads = [threading.Thread(target=work, args=item, name=f"machine {item[0]}",
                                    daemon=True) for item in by_machine.items()]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
        except BaseException:
            self.stopping.set()
            for runner in self.runners.values():
                runner.interrupt()
            for thread in threads:
                thread.join(timeout=60)
            raise
        if errors:
            raise errors[0]
        return [r for machine in by_machine for r in done.get(machine, [])]


def run_study(study: Study, output: Path | None = None, repetitions: int | None = None,
              console: Console | None = None, stop_rule: StopRule | None = None
              ) -> StudyResult:
    """Run what is missing of the study; return the records this call produced.

    A study with `repetitions = "auto"` needs `stop_rule` (the command passes the
    analysis's rule; the scheduler itself knows no statistics).
    """
    console = console or Console()
    auto = study.repetitions == "auto" and repetitions is None
    if auto and stop_rule is None:
        raise ValueError(f"{study.path}: repetitions = \"auto\" needs a stopping rule")
    store = ResultsStore(output or default_results_dir(study.name))
    executor = Executor(study, store, console)
    executor.check()  # a missing client or token is refused before anything is written
    store.prepare()
    manifest = check_manifest(store, study)
    store.write_manifest(manifest)
    store.write_csv()  # mends a table a killed study left behind

    statuses = store.statuses()
    jobs = plan(study, repetitions)
    pending = [j for j in jobs if statuses.get(j.run_id) not in FINAL_STATUSES]
    result = StudyResult(store, skipped=len(jobs) - len(pending))
    if result.skipped:
        console.print(f"{result.skipped} of {len(jobs)} runs already done in "
                      f"{escape(str(store.root))}; "
                      f"running the {len(pending)} missing")
    machines = list(dict.fromkeys(e.machine for e in study.environments))
    with _progress(console) as progress:
        tasks = {m: progress.add_task(
            study.name if len(machines) == 1 else m,
            total=sum(executor.machine_of[j.environment] == m for j in pending))
            for m in machines}
        result.executed += executor.run_machines(pending, progress, tasks)
        block = study.planned_repetitions
        while auto:
            assert stop_rule is not None
            result.stopping = stop_rule(store, block)
            if result.stopping:
                break
            block += 1
            extra = [j for j in block_jobs(study, block)
                     if statuses.get(j.run_id) not in FINAL_STATUSES]
            for machine, task in tasks.items():
                added = sum(executor.machine_of[j.environment] == machine for j in extra)
                progress.update(task, total=(progress.tasks[task].total or 0) + added)
            result.executed += executor.run_machines(extra, progress, tasks)
    if result.stopping:
        manifest["stopping"] = result.stopping
        console.print(f"stopped after {result.stopping['repetitions']} repetitions: "
                      f"{escape(result.stopping['reason'])}")
    manifest["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    store.write_manifest(manifest)
    return result

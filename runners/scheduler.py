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
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
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

from cloudbench.data.atomic import write_json_atomic
from cloudbench.runners.attempts import first_attempt, settle
from cloudbench.runners.base import Runner, RunResult, Try, make_runner
from cloudbench.study.lock import StudyLock
from cloudbench.study.lock import describe as describe_holder
from cloudbench.study.manifest import check_manifest
from cloudbench.study.plan import RunJob, block_jobs, plan
from cloudbench.study.record import FINAL_STATUSES, RunRecord
from cloudbench.study.schedule import Slot, timetable
from cloudbench.study.spec import SpecError, Study
from cloudbench.study.store import ResultsStore, StoreError, default_results_dir

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


def _describe(record: RunRecord, metrics: tuple[str, ...] = ()) -> str:
    """One line per run: its status and, for an ok run, the study's metrics (its
    [analysis] metrics, else its training time and accuracy, where the run has them)."""
    if record["status"] == "oom":
        return (f"[yellow]oom[/] {record['run_id']}: {escape(str(record.get('error')))} "
                "(a result: the configuration does not fit)")
    if record["status"] == "ok":
        shown = [f"{escape(m)} {_number(record[m])}" for m in
                 (metrics or ("train_s", "total_s", "test_accuracy"))
                 if isinstance(record.get(m), int | float) and not isinstance(record[m], bool)]
        if not metrics and "train_s" in record:
            shown = [x for x in shown if not x.startswith("total_s")]
        return f"[green]ok[/] {record['run_id']}  " + "  ".join(shown[:4])
    return f"[red]{record['status']}[/] {record['run_id']}: {escape(str(record.get('error')))}"


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


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
        wrong_device: set[str] = set()
        many = len(set(self.machine_of.values())) > 1
        try:
            for job in jobs:
                if self.stopping.is_set():
                    break
                if job.block != current_block:
                    self._close(opened, streams)
                    current_block = job.block
                    wrong_device.clear()
                runner = self.runners[job.environment]
                if job.environment in wrong_device:
                    continue  # the session got other hardware: its runs wait for the next
                if runner not in opened:
                    runner.session = f"{job.environment}.b{job.block}.{uuid.uuid4().hex[:8]}"
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
                progress.console.print(_describe(record, self.study.analysis.metrics))
                progress.advance(task)
                done.append(record)
                if record["status"] == "wrong_device":
                    wrong_device.add(job.environment)
                    self._end_stream(streams, job.environment)
        finally:
            self._close(opened, streams)
        return done

    @staticmethod
    def _end_stream(streams: dict[str, tuple[Iterator[RunResult], dict[str, int]]],
                    environment: str) -> None:
        stream, _ = streams.pop(environment, (None, None))
        close = getattr(stream, "close", None)
        if close is not None:
            close()

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


#: The clock and the sleep of a scheduled study (tests pass their own: nothing sleeps).
Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], None]
SCHEDULE_FILE = "schedule.json"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timetable_of(study: Study, store: ResultsStore, now: dt.datetime,
                 blocks: int) -> list[Slot]:
    """The study's slots, anchored at its `start` or at its first scheduled call (kept in
    the results folder, so every later call sees the same timetable)."""
    assert study.schedule is not None
    path = store.root / SCHEDULE_FILE
    anchor = None
    try:
        anchor = dt.datetime.fromisoformat(json.loads(path.read_text(encoding="utf-8"))[
            "anchor"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if anchor is None or anchor.tzinfo is None:
        anchor = now
        write_json_atomic(path, {"anchor": anchor.isoformat(timespec="seconds"),
                                 "seed": study.seed})
    return timetable(study.schedule, blocks, study.seed, anchor)


def run_study(study: Study, output: Path | None = None, repetitions: int | None = None,
              console: Console | None = None, stop_rule: StopRule | None = None,
              wait_lock_s: float | None = None, due: bool = False, wait: bool = False,
              clock: Clock = _utc_now, sleep: Sleep = time.sleep) -> StudyResult:
    """Run what is missing of the study; return the records this call produced.

    One call at a time per results folder (study.lock): a second refuses, naming the
    first, or waits up to `wait_lock_s`. A study with a [schedule] runs a block only once
    its slot has come: `due` runs the blocks due now and returns (what a timer calls),
    `wait` sleeps until each slot; without either, a scheduled study runs as one that has
    none. A study with `repetitions = "auto"` needs `stop_rule` (the command passes the
    analysis's rule; the scheduler itself knows no statistics).
    """
    console = console or Console()
    auto = study.repetitions == "auto" and repetitions is None
    if auto and stop_rule is None:
        raise ValueError(f"{study.path}: repetitions = \"auto\" needs a stopping rule")
    if (due or wait) and study.schedule is None:
        raise SpecError(study.path, "schedule", "--due and --wait need a [schedule] table in "
                        "the study file")
    store = ResultsStore(output or default_results_dir(study.name))
    executor = Executor(study, store, console)
    executor.check()  # a missing client or token is refused before anything is written
    lock = StudyLock(store.root)
    try:
        lock.acquire(wait_lock_s, on_wait=lambda holder: console.print(
            f"waiting for the study run that holds {escape(str(store.root))} "
            f"({escape(describe_holder(holder))})"))
    except OSError as exc:
        raise StoreError(f"results folder {store.root} is not writable: "
                         f"{exc.strerror or exc}") from exc
    try:
        if lock.took_over:
            console.print(f"[yellow]note[/]: took over the lock of a study run that ended "
                          f"without releasing it ({escape(describe_holder(lock.took_over))})")
        return _run_locked(study, store, executor, console, repetitions, auto, stop_rule,
                           due, wait, clock, sleep)
    finally:
        lock.release()


def _run_locked(study: Study, store: ResultsStore, executor: Executor, console: Console,
                repetitions: int | None, auto: bool, stop_rule: StopRule | None, due: bool,
                wait: bool, clock: Clock, sleep: Sleep) -> StudyResult:
    store.prepare()
    old = store.read_manifest()
    manifest = check_manifest(store, study)
    store.write_csv()  # mends a table a killed study left behind (writes only a change)

    statuses = store.statuses()
    jobs = plan(study, repetitions)
    slots: dict[int, Slot] = {}
    if due or wait:
        blocks = max((j.block for j in jobs), default=0)
        slots = {s.block: s for s in timetable_of(study, store, clock(), blocks)}
        jobs = [replace(j, planned_at=slots[j.block].at.isoformat(timespec="seconds"))
                if j.block in slots else j for j in jobs]
    pending = [j for j in jobs if statuses.get(j.run_id) not in FINAL_STATUSES]
    result = StudyResult(store, skipped=len(jobs) - len(pending))
    if not pending and not auto:
        if old is None or _without_times(old) != _without_times(manifest):
            store.write_manifest({**manifest, "updated_at": _stamp()})
        console.print(f"all {len(jobs)} planned runs are done in {escape(str(store.root))}")
        return result
    store.write_manifest(manifest)
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
        if slots:
            result.executed += _run_slots(executor, pending, slots, progress, tasks, wait,
                                          clock, sleep)
        else:
            result.executed += executor.run_machines(pending, progress, tasks)
        block = study.planned_repetitions
        while auto and not slots:
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
    manifest["updated_at"] = _stamp()
    store.write_manifest(manifest)
    return result


def _run_slots(executor: Executor, pending: list[RunJob], slots: dict[int, Slot],
               progress: Progress, tasks: dict[str, Any], wait: bool, clock: Clock,
               sleep: Sleep) -> list[RunRecord]:
    """The blocks whose slot has come, in order; with `wait`, sleep until each next one."""
    done: list[RunRecord] = []
    remaining = sorted({j.block for j in pending})
    while remaining:
        now = clock()
        ready = [b for b in remaining if b not in slots or slots[b].at <= now]
        if ready:
            done += executor.run_machines([j for j in pending if j.block in ready],
                                          progress, tasks)
            remaining = [b for b in remaining if b not in ready]
            continue
        nxt = slots[remaining[0]]
        if not wait:
            progress.console.print(f"next block ({nxt.block}) is due at "
                                   f"{nxt.at.isoformat(timespec='minutes')}; nothing more to "
                                   "run now")
            break
        for task in tasks.values():
            progress.update(task, description=f"waiting for block {nxt.block} at "
                            f"{nxt.at.isoformat(timespec='minutes')}")
        sleep(max(1.0, min((nxt.at - now).total_seconds(), 300.0)))
    return done


def _without_times(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items()
            if k not in ("updated_at", "created_at") and v is not None}


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

"""The runner contract: what every runner is, declares and shares.

A runner is one module with one class, registered by one entry point (see
docs/runners.md). It declares the study-file keys it takes (``options``) and checks them
(``validate``) before anything runs. Running is papermill's engine template: the base
class's :meth:`Runner.run` is final; it builds the record, times and bills the try, and
turns any exception into a failed record. A subclass implements one hook,
:meth:`Runner.execute`, which returns a typed :class:`Outcome`. An engine that takes a
batch (a pipeline, a cluster job) overrides :meth:`Runner.run_batch` instead, and builds
its records with :meth:`Runner.result`.

A runner never reads or writes the results store: the scheduler owns it and its lock. A
runner gets :class:`study.layout.RunnerPaths` (where it may write), returns results, and
at the end of a block may return amendments that the scheduler applies through the store.
Infrastructure errors (a kernel that would not start, a lost connection, a refused quota)
are flagged ``infrastructure`` so that :mod:`runners.attempts` tries again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import shutil
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, NamedTuple, final

from cloudbench.runners import phases
from cloudbench.study.layout import RunnerPaths, RunPaths
from cloudbench.study.notebook import Protocol
from cloudbench.study.notebook import inspect as inspect_notebook
from cloudbench.study.plan import RunJob
from cloudbench.study.record import RECORD_FORMAT_VERSION, STATUSES, RecordError, RunRecord
from cloudbench.study.registry import Option, load_runner
from cloudbench.study.spec import Environment, Study


def utc_now() -> str:
    """Milliseconds, so that the records show which runs overlapped in time."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


#: The machine of every environment whose kernels run here (study.spec.Environment.machine).
LOCAL_MACHINE = "this-machine"
TPU_TRIM_MULTIPLE = 128  # TPUs want both sets in multiples of 128, as the Colab tutorial


def run_parameters(study: Study, env: Environment, job: RunJob, record_path: str,
                   dataset_path: str | None = None,
                   declared: Collection[str] | None = None) -> dict[str, Any]:
    """The notebook's parameters for one run: study, sweep cell, environment, the runner's.

    A TPU environment trims the sets to multiples of 128 unless the study says otherwise.
    Of the runner's own (record_path, seed, dataset, accelerator, backend), a notebook gets
    those its `parameters` cell declares (`declared`; all when None): a researcher's
    notebook is never handed variables it did not ask for.
    """
    defaults = {"trim_multiple": TPU_TRIM_MULTIPLE} if env.accelerator == "tpu" else {}
    runner = {"record_path": record_path, "seed": job.seed,
              "dataset": study.dataset(job.dataset).protocol_config(dataset_path),
              "accelerator": env.accelerator, "backend": env.backend}
    if declared is not None:
        runner = {k: v for k, v in runner.items() if k in declared}
        defaults = {k: v for k, v in defaults.items() if k in declared}
    return {**defaults, **study.parameters, **job.parameters, **env.parameters, **runner}


def base_record(study: Study, env: Environment, job: RunJob, attempt: int,
                started_at: str | None = None) -> dict[str, Any]:
    """The runner's fields of a record (study.record.RunnerFields and the bookkeeping)."""
    return {"run_id": job.run_id, "study": study.name, "environment": env.name,
            "dataset": job.dataset, "block": job.block, "repetition": job.repetition,
            "seed": job.seed, "warmup": job.warmup, "attempt": attempt, "runner": env.runner,
            "status": "failed", "error": None, "started_at": started_at or utc_now(),
            "wall_s": None, "backend": env.backend, "configuration": job.configuration or None,
            "machine": env.machine,
            **job.parameters,
            "format_version": RECORD_FORMAT_VERSION}


@dataclass(frozen=True)
class Outcome:
    """What one try gave, as the runner's hook says it: typed, no control keys in a dict.

    ``infrastructure``: the failure is the infrastructure's (no machine, a lost
    connection), so the try is repeated. ``cell``: papermill's index of the failing cell,
    which the base class turns into "cell 5 (phase:train, `...`)" from the executed
    notebook. ``fields``: the protocol's measurements, the fingerprint and any extra record
    fields; they never replace the runner's own fields (study.record.RunnerFields...).
    ``wall_s``: the runner's wall time of the run; None: the base class's time of the hook.
    """

    status: str
    error: str | None = None
    infrastructure: bool = False
    cell: int | None = None
    wall_s: float | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"an outcome's status is one of {', '.join(STATUSES)}, "
                             f"not {self.status!r}")

    @classmethod
    def failure(cls, error: str, *, infrastructure: bool = False, status: str = "failed",
                wall_s: float | None = None) -> Outcome:
        return cls(status=status, error=error, infrastructure=infrastructure, wall_s=wall_s)

    def replace(self, **changes: Any) -> Outcome:
        return dataclasses.replace(self, **changes)


class Try(NamedTuple):
    """One try of one run: the job and the attempt number it runs as (numbered by the
    scheduler across invocations, so a rerun never overwrites an old try)."""

    job: RunJob
    attempt: int


@dataclass(frozen=True)
class RunResult:
    """A try's record, and whether its failure was the infrastructure's (then it is
    retried); what the scheduler stores."""

    record: RunRecord
    infrastructure: bool = False


#: What close_block gives back: run id -> fields to add to its stored record.
Amendments = Mapping[str, Mapping[str, Any]]


def exception_outcome(exc: BaseException) -> Outcome:
    """Any exception of a runner's hook: an infrastructure failure with its message."""
    message = str(exc)
    name = type(exc).__name__
    return Outcome.failure(f"{name}: {message}" if message else name, infrastructure=True)


class Runner:
    """One kind of environment. Blocks let a runner keep a session open across a block."""

    #: The study-file keys this runner takes beyond study.spec.ENVIRONMENT_KEYS.
    options: ClassVar[tuple[Option, ...]] = ()
    #: True when the runner's kernel reads the local disk (protocol helpers, folder datasets).
    local_files: ClassVar[bool] = True
    #: True when the runs compute on this machine (then they share it: see default_machine).
    runs_here: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``run`` and ``result`` are the template: a runner that overrode them could lose a
        record to an exception or bill differently, so a subclass that tries is refused."""
        super().__init_subclass__(**kwargs)
        for name in ("run", "result"):
            if name in vars(cls):
                raise TypeError(f"{cls.__name__}.{name} overrides the final Runner.{name}: "
                                "implement execute (or run_batch, for an engine that takes "
                                "a batch)")

    @classmethod
    def default_machine(cls, environment: Environment) -> str:
        """The machine an environment runs on when the study file does not say: a runner
        whose kernels run here shares this machine; any other is a machine of its own."""
        return LOCAL_MACHINE if cls.runs_here else environment.name

    @classmethod
    def validate(cls, environment: Environment) -> None:
        """Check the environment's keys together (raise study.registry.OptionError).

        Types, defaults and choices of ``options`` are checked already; this is for rules
        that involve several keys or the values' form. Nothing here may need the network.
        """

    #: The id of the block's session, set by the scheduler before open_block: every run of
    #: one environment in one block shares it (one Colab VM, one SLURM job...).
    session: str | None = None

    def __init__(self, study: Study, environment: Environment, paths: RunnerPaths):
        self.study, self.env, self.paths = study, environment, paths

    @property
    def key(self) -> str:
        """The environment's place in the study file, as errors name it: environments[2]."""
        return f"environments[{self.study.environments.index(self.env)}]"

    @cached_property
    def protocol(self) -> Protocol:
        """The study's notebook as a protocol: its parameters, phases and metrics cell."""
        return inspect_notebook(self.study.notebook)

    def check(self) -> None:
        """Fail before the first run when the runner cannot work at all (missing client...)."""

    def open_block(self, block: int) -> None:
        """Called before the first run of this environment in a block."""

    def close_block(self) -> Amendments:
        """Called after the block, whatever happened in it. Returns fields to add to the
        block's stored records (run id -> fields), which the scheduler applies through
        the store: a figure known only at the block's end (Colab's compute units)."""
        return {}

    def interrupt(self) -> None:
        """Stop the run in flight now (Ctrl-C while machines run concurrently): called from
        another thread; the run returns or raises soon after, and close_block follows."""

    @property
    def timeout_s(self) -> float:
        return self.env.timeout_s or self.study.timeout_s

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        """The hook: run one try and say what happened. ``paths.work`` is a fresh folder
        (removed afterwards); the executed notebook goes to ``paths.notebook``, the run's
        log to ``paths.log``. An exception is a failed try of the infrastructure."""
        raise NotImplementedError

    @final
    def run(self, job: RunJob, attempt: int) -> RunResult:
        """One try, never raising for a run that went wrong (Ctrl-C and exit do raise): the
        record with the hook's outcome, timed and billed around the hook."""
        paths = self.paths.run(job.run_id, attempt)
        started_at = utc_now()
        start = time.perf_counter()
        shutil.rmtree(paths.work, ignore_errors=True)
        try:
            paths.work.mkdir(parents=True)
            outcome = self.execute(job, attempt, paths)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except OSError as exc:
            outcome = exception_outcome(exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                outcome = outcome.replace(error=f"{outcome.error} (writing under "
                                                f"{paths.work.parent.parent})")
        except BaseException as exc:  # noqa: BLE001 - a record, whatever the runner raised
            outcome = exception_outcome(exc)
        finally:
            shutil.rmtree(paths.work, ignore_errors=True)
        return self.result(job, attempt, outcome, started_at, time.perf_counter() - start,
                           paths)

    def run_batch(self, tries: Iterable[Try]) -> Iterator[RunResult]:
        """One result per try, in their order, each as soon as it is known. The tries are
        one environment's runs of one block. By default one at a time, lazily (a
        scheduler that interleaves environments pulls each result when its turn comes);
        an engine that takes a batch overrides this and builds each result with
        :meth:`result`."""
        for one in tries:
            yield self.run(one.job, one.attempt)

    @final
    def result(self, job: RunJob, attempt: int, outcome: Outcome, started_at: str,
               seconds: float, paths: RunPaths | None = None) -> RunResult:
        """The record of a try: the runner's fields, the outcome's fields, the billed time.

        A record that breaks the schema (a notebook's ``train_s: "fast"``) is a failed
        run naming the field, with none of the outcome's fields: never a crash.
        """
        base = {**base_record(self.study, self.env, job, attempt, started_at),
                **self._when(job, started_at)}
        outcome = self._check_device(outcome)
        error = phases.plain(outcome.error) if outcome.error is not None else None
        if outcome.cell is not None and error is not None:
            where = self._failed_cell(paths or self.paths.run(job.run_id, attempt),
                                      outcome.cell)
            error = (f"{where}: {error}" if where else error) + phases.hint(error)
        wall = outcome.wall_s if outcome.wall_s is not None else round(seconds, 4)
        fields = {k: v for k, v in outcome.fields.items() if k not in base}
        bill = self._bill(seconds)
        try:
            record = RunRecord({**base, **fields, "status": outcome.status, "error": error,
                                "wall_s": wall, **bill})
        except RecordError as exc:
            return RunResult(RunRecord({**base, "error": f"the run's record is invalid: {exc}",
                                        "wall_s": _number_or_none(wall), **bill}))
        return RunResult(record, outcome.infrastructure and outcome.status != "ok")

    def _when(self, job: RunJob, started_at: str) -> dict[str, Any]:
        """The session, the slot and the local time of a try: when and where it ran."""
        offset = dt.datetime.now().astimezone().utcoffset()
        out: dict[str, Any] = {"session": self.session,
                               "local_offset_min": round(offset.total_seconds() / 60)
                               if offset is not None else 0}
        if job.planned_at:
            late = (dt.datetime.fromisoformat(started_at)
                    - dt.datetime.fromisoformat(job.planned_at)).total_seconds()
            out.update(planned_at=job.planned_at, late_s=round(max(0.0, late), 3))
        return out

    def _check_device(self, outcome: Outcome) -> Outcome:
        """A run on other hardware than require_device says is no run of this environment:
        wrong_device (not ok, not analysed; the scheduler stops the session's other runs
        and the next slot tries again)."""
        wanted = self.env.require_device
        if not wanted or outcome.status != "ok":
            return outcome
        got = str(outcome.fields.get("device_name") or "")
        if any(w.lower() in got.lower() for w in wanted):
            return outcome
        return outcome.replace(status="wrong_device", error=(
            f"the session got {got or 'an unnamed device'}, not {' or '.join(wanted)} "
            "(require_device); its runs are tried again in the next session"),
            fields={**outcome.fields, "required_device": ", ".join(wanted)})

    def _bill(self, seconds: float) -> dict[str, Any]:
        """The billed time, measured around the runner's whole try (a session's start and
        staging included, for the try that opened it), and its cost at the price."""
        price = self.env.price
        return {"finished_at": utc_now(), "billed_s": round(seconds, 4),
                "cost": round(price.cost(seconds), 6) if price is not None else None,
                "currency": price.currency if price is not None else None}

    @staticmethod
    def _failed_cell(paths: RunPaths, cell: int) -> str:
        try:
            return phases.failed_cell(json.loads(paths.notebook.read_text(encoding="utf-8")),
                                      cell)
        except (OSError, ValueError):
            return ""

class BatchRunner(Runner):
    """A runner whose engine takes a batch (a cluster job, a kernel version): it implements
    :meth:`Runner.run_batch`, and a run alone is a batch of one."""

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        [result] = list(self.run_batch([Try(job, attempt)]))
        record = result.record
        return Outcome(record["status"], record.get("error"), result.infrastructure,
                       wall_s=record.get("wall_s"),
                       fields={k: v for k, v in record.items()
                               if k not in ("status", "error", "wall_s")})


def make_runner(study: Study, environment: Environment, paths: RunnerPaths) -> Runner:
    """The registered runner of the environment (study.registry), ready for its first block."""
    return load_runner(environment.runner)(study, environment, paths)


def _number_or_none(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) \
        and 0 <= value < float("inf") else None

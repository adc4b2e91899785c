"""The runner contract: what every runner is, declares and shares.

A runner is one module with one class, registered by one entry point (see
docs/runners.md). It declares the study-file keys it takes (``options``) and checks them
(``validate``) before anything runs; it runs one job at a time and never raises for a run
that went wrong: it returns a record whose status says what happened, so the scheduler can
store it and go on. Infrastructure errors (a kernel that would not start, a lost
connection, a refused quota) are flagged ``infrastructure`` so that
:func:`runners.attempts.run_with_retries` tries again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from cloudbench.study.notebook import Protocol
from cloudbench.study.notebook import inspect as inspect_notebook
from cloudbench.study.plan import RunJob
from cloudbench.study.record import RECORD_FORMAT_VERSION
from cloudbench.study.registry import Option, load_runner
from cloudbench.study.spec import Environment, Study
from cloudbench.study.store import ResultsStore


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


def base_record(study: Study, env: Environment, job: RunJob, attempt: int) -> dict[str, Any]:
    return {"run_id": job.run_id, "study": study.name, "environment": env.name,
            "dataset": job.dataset, "block": job.block, "repetition": job.repetition,
            "seed": job.seed, "warmup": job.warmup, "attempt": attempt, "runner": env.runner,
            "status": "failed", "error": None, "started_at": utc_now(), "wall_s": None,
            "backend": env.backend, "configuration": job.configuration or None,
            "machine": env.machine,
            **job.parameters,
            "format_version": RECORD_FORMAT_VERSION}


class Runner:
    """One kind of environment. Blocks let a runner keep a session open across a block."""

    #: The study-file keys this runner takes beyond study.spec.ENVIRONMENT_KEYS.
    options: ClassVar[tuple[Option, ...]] = ()
    #: True when the runner's kernel reads the local disk (protocol helpers, folder datasets).
    local_files: ClassVar[bool] = True
    #: True when the runs compute on this machine (then they share it: see default_machine).
    runs_here: ClassVar[bool] = True

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

    def __init__(self, study: Study, environment: Environment, store: ResultsStore):
        self.study, self.env, self.store = study, environment, store

    @cached_property
    def protocol(self) -> Protocol:
        """The study's notebook as a protocol: its parameters, phases and metrics cell."""
        return inspect_notebook(self.study.notebook)

    def check(self) -> None:
        """Fail before the first run when the runner cannot work at all (missing client...)."""

    def open_block(self, block: int) -> None:
        """Called before the first run of this environment in a block."""

    def close_block(self) -> None:
        """Called after the block, whatever happened in it."""

    def interrupt(self) -> None:
        """Stop the run in flight now (Ctrl-C while machines run concurrently): called from
        another thread; the run returns or raises soon after, and close_block follows."""

    @property
    def timeout_s(self) -> float:
        return self.env.timeout_s or self.study.timeout_s

    def run(self, job: RunJob, attempt: int) -> dict[str, Any]:
        """Execute one run and return its full record (never raise for a failed run)."""
        raise NotImplementedError

    def notebook_path(self, job: RunJob) -> Path:
        return self.store.notebook_path(job.run_id)


def make_runner(study: Study, environment: Environment, store: ResultsStore) -> Runner:
    """The registered runner of the environment (study.registry), ready for its first block."""
    return load_runner(environment.runner)(study, environment, store)

"""One run, tried again after infrastructure errors: the loop the scheduler and a VM share.

The scheduler's side of the contract (it owns the results store): every try is kept
(attempts/), attempts are numbered across invocations so that a rerun never overwrites an
old try, and the last try becomes the run's record. A retry goes through the runner's
``run_batch`` as a batch of one, so an engine that takes batches runs it as it runs any.
"""

from __future__ import annotations

from collections.abc import Callable

from cloudbench.runners.base import Runner, RunResult, Try
from cloudbench.study.plan import RunJob
from cloudbench.study.record import RunRecord
from cloudbench.study.store import ResultsStore

OnRetry = Callable[[RunRecord], None]


def first_attempt(store: ResultsStore, job: RunJob) -> int:
    """The number of the next try of a run: after every try the store has kept."""
    return store.last_attempt(job.run_id) + 1


def settle(runner: Runner, job: RunJob, result: RunResult, attempt: int,
           store: ResultsStore, retries: int, on_retry: OnRetry | None = None) -> RunRecord:
    """Given the result of try `attempt`, retry while the failure is the infrastructure's
    (up to `retries` times after the first try `attempt`), keep each failed try under
    attempts/, and write the final record (runs.csv too). Returns it."""
    last = attempt + retries
    while result.infrastructure and attempt < last:
        store.write_attempt(result.record)
        if on_retry is not None:
            on_retry(result.record)
        attempt += 1
        [result] = runner.run_batch([Try(job, attempt)])
    store.write_record(result.record)
    return result.record


def run_with_retries(runner: Runner, job: RunJob, store: ResultsStore, retries: int,
                     on_retry: OnRetry | None = None) -> RunRecord:
    """Run `job`, retrying up to `retries` times while the failure is infrastructure's.

    Writes the final record to the store (runs.csv too) and returns it.
    """
    attempt = first_attempt(store, job)
    [result] = runner.run_batch([Try(job, attempt)])
    return settle(runner, job, result, attempt, store, retries, on_retry)

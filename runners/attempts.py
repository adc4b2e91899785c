"""One run, tried again after infrastructure errors: the loop the scheduler and a VM share.

Every try is kept (attempts/), attempts are numbered across invocations so that a rerun
never overwrites an old try, and the last try becomes the run's record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runners.base import Runner
from study.plan import RunJob
from study.store import ResultsStore


def run_with_retries(runner: Runner, job: RunJob, store: ResultsStore, retries: int,
                     on_retry: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Run `job`, retrying up to `retries` times while the failure is infrastructure's.

    Writes the final record to the store (runs.csv too) and returns it.
    """
    first = store.last_attempt(job.run_id) + 1
    for attempt in range(first, first + retries + 1):
        record = runner.run(job, attempt)
        retry = record.pop("infrastructure", False) and attempt < first + retries
        if not retry:
            break
        store.write_attempt(record)
        if on_retry is not None:
            on_retry(record)
    store.write_record(record)
    return record

"""One run, tried again after infrastructure errors: the loop the scheduler and a VM share.

Every try is kept (attempts/), attempts are numbered across invocations so that a rerun
never overwrites an old try, and the last try becomes the run's record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cloudbench.runners.base import Runner, utc_now
from cloudbench.study.plan import RunJob
from cloudbench.study.store import ResultsStore


def bill(record: dict[str, Any], runner: Runner, seconds: float) -> None:
    """The run's billed time, measured here around the runner's whole run (a session's
    start and staging included, for the run that opened it), and its cost at the
    environment's price."""
    price = runner.env.price
    record["finished_at"] = utc_now()
    record["billed_s"] = round(seconds, 4)
    record["cost"] = round(price.cost(seconds), 6) if price is not None else None
    record["currency"] = price.currency if price is not None else None


def run_with_retries(runner: Runner, job: RunJob, store: ResultsStore, retries: int,
                     on_retry: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Run `job`, retrying up to `retries` times while the failure is infrastructure's.

    Writes the final record to the store (runs.csv too) and returns it.
    """
    first = store.last_attempt(job.run_id) + 1
    for attempt in range(first, first + retries + 1):
        start = time.perf_counter()
        record = runner.run(job, attempt)
        bill(record, runner, time.perf_counter() - start)
        retry = record.pop("infrastructure", False) and attempt < first + retries
        if not retry:
            break
        store.write_attempt(record)
        if on_retry is not None:
            on_retry(record)
    store.write_record(record)
    return record

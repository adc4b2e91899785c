"""The run plan: which runs a study holds and in which order they execute.

Interleaved randomised blocks (each block runs every environment x dataset once, in an order
drawn from the study seed) keep slow drift on a machine (thermal throttling, background
jobs, a neighbour on a shared host) from favouring whichever environment ran first.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from study.spec import Study

SEP = "+"  # cannot occur in environment or dataset names, so run ids are unambiguous


@dataclass(frozen=True)
class RunJob:
    run_id: str
    environment: str
    dataset: str
    block: int  # 0 holds the warm-up runs; measured blocks count from 1
    repetition: int  # 1-based within environment x dataset; warm-ups count separately
    seed: int
    warmup: bool = False


def run_id(environment: str, dataset: str, repetition: int, warmup: bool = False) -> str:
    return SEP.join((environment, dataset, f"{'w' if warmup else 'r'}{repetition:03d}"))


def block_order(study: Study, block: int) -> list[tuple[str, str]]:
    """The environment x dataset order of one block: a permutation fixed by (seed, block)."""
    cells = list(itertools.product([e.name for e in study.environments],
                                   [d.name for d in study.datasets]))
    if study.order == "interleaved":
        random.Random(f"{study.seed}:{block}").shuffle(cells)
    return cells


def block_jobs(study: Study, block: int) -> list[RunJob]:
    """The runs of one measured block, in execution order.

    The protocol seed depends on the repetition only, so repetition k sees the same data
    split and initial weights in every environment: the environments are the only factor.
    """
    return [RunJob(run_id(env, ds, block), env, ds, block, block, study.seed + block - 1)
            for env, ds in block_order(study, block)]


def warmup_jobs(study: Study) -> list[RunJob]:
    """Optional warm-up runs (block 0): stored and flagged, left out of the analysis."""
    return [RunJob(run_id(env, ds, k, warmup=True), env, ds, 0, k, study.seed, warmup=True)
            for k in range(1, study.warmup + 1) for env, ds in block_order(study, 0)]


def plan(study: Study, repetitions: int | None = None) -> list[RunJob]:
    """Every run of the study in execution order.

    "sequential" order runs each environment x dataset to completion before the next; it is
    offered for comparison with manual practice, and the paper says which order was used.
    """
    total = repetitions or study.planned_repetitions
    jobs = warmup_jobs(study) + [j for b in range(1, total + 1) for j in block_jobs(study, b)]
    if study.order == "sequential":
        jobs.sort(key=lambda j: (not j.warmup, _cell_index(study, j), j.repetition))
    return jobs


def _cell_index(study: Study, job: RunJob) -> int:
    envs = [e.name for e in study.environments]
    dss = [d.name for d in study.datasets]
    return envs.index(job.environment) * len(dss) + dss.index(job.dataset)

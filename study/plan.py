"""The run plan: which runs a study holds and in which order they execute.

Interleaved randomised blocks (each block runs every environment x dataset x configuration
of the sweep once, in an order drawn from the study seed) keep slow drift on a machine
(thermal throttling, background jobs, a neighbour on a shared host) from favouring whichever
environment ran first.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from cloudbench.study.spec import Study

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
    configuration: str = ""  # the sweep's cell (study.record.configuration_id); "" without
    parameters: dict[str, Any] = field(default_factory=dict)  # that cell's protocol values
    planned_at: str | None = None  # the block's slot when the study has a [schedule]


#: One cell of the design: environment, dataset, configuration id.
Cell = tuple[str, str, str]


def run_id(environment: str, dataset: str, repetition: int, warmup: bool = False,
           configuration: str = "") -> str:
    """``env+dataset[+configuration]+r001``: a study without a sweep keeps its old ids."""
    parts = (environment, dataset, configuration) if configuration else (environment, dataset)
    return SEP.join((*parts, f"{'w' if warmup else 'r'}{repetition:03d}"))


def cells(study: Study) -> list[Cell]:
    """Every environment x dataset x configuration, in the study file's order."""
    return list(itertools.product([e.name for e in study.environments],
                                  [d.name for d in study.datasets],
                                  [c.id for c in study.configurations]))


def block_order(study: Study, block: int) -> list[Cell]:
    """The cells' order in one block: a permutation fixed by (seed, block).

    Without a sweep the cells and the draw are those of earlier versions, so a study
    started before sweeps existed resumes in the same order.
    """
    order = cells(study)
    if study.order == "interleaved":
        if study.sweep.parameters:
            random.Random(f"{study.seed}:{block}").shuffle(order)
        else:  # the draw of (environment, dataset) pairs, as before
            pairs = [(env, ds) for env, ds, _ in order]
            random.Random(f"{study.seed}:{block}").shuffle(pairs)
            order = [(env, ds, "") for env, ds in pairs]
    return order


def _job(study: Study, cell: Cell, block: int, repetition: int, seed: int,
         warmup: bool = False) -> RunJob:
    env, ds, config = cell
    return RunJob(run_id(env, ds, repetition, warmup, config), env, ds, block, repetition, seed,
                  warmup=warmup, configuration=config,
                  parameters=dict(study.configuration(config).parameters))


def block_jobs(study: Study, block: int) -> list[RunJob]:
    """The runs of one measured block, in execution order.

    The protocol seed depends on the repetition only, so repetition k sees the same data
    split and initial weights in every environment: the environments are the only factor.
    """
    return [_job(study, cell, block, block, study.seed + block - 1)
            for cell in block_order(study, block)]


def warmup_jobs(study: Study) -> list[RunJob]:
    """Optional warm-up runs (block 0): stored and flagged, left out of the analysis."""
    return [_job(study, cell, 0, k, study.seed, warmup=True)
            for k in range(1, study.warmup + 1) for cell in block_order(study, 0)]


def plan(study: Study, repetitions: int | None = None) -> list[RunJob]:
    """Every run of the study in execution order.

    "sequential" order runs each environment x dataset to completion before the next; it is
    offered for comparison with manual practice, and the paper says which order was used.
    """
    total = repetitions or study.planned_repetitions
    jobs = warmup_jobs(study) + [j for b in range(1, total + 1) for j in block_jobs(study, b)]
    if study.order == "sequential":
        index = {cell: i for i, cell in enumerate(cells(study))}
        jobs.sort(key=lambda j: (not j.warmup, index[j.environment, j.dataset, j.configuration],
                                 j.repetition))
    return jobs

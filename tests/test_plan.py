"""The run plan: interleaved randomised blocks drawn from the seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cloudbench.study.plan import plan
from cloudbench.study.spec import load_study

from conftest import PROTOCOL, write_study


def _study(tmp_path: Path, order: str = "interleaved", seed: int = 200, warmup: int = 0):
    envs = "".join(f'[[environments]]\nname = "e{i}"\n' for i in range(3))
    dss = "".join(f'[[datasets]]\nname = "d{i}"\nimages = 30\n' for i in range(2))
    return load_study(write_study(tmp_path / f"{order}{seed}.toml", f"""
[study]
name = "p"
repetitions = 5
seed = {seed}
order = "{order}"
warmup = {warmup}
[protocol]
notebook = "{PROTOCOL}"
{dss}{envs}"""))


def test_each_block_runs_every_cell_once(tmp_path: Path) -> None:
    jobs = plan(_study(tmp_path))
    assert len(jobs) == 5 * 3 * 2
    assert len({j.run_id for j in jobs}) == len(jobs)
    for block in range(1, 6):
        cells = [(j.environment, j.dataset) for j in jobs if j.block == block]
        assert len(cells) == 6 and len(set(cells)) == 6
    # blocks run one after the other: interleaved, never one environment's runs in a row
    assert [j.block for j in jobs] == sorted(j.block for j in jobs)


def test_order_is_drawn_from_the_seed(tmp_path: Path) -> None:
    first = [j.run_id for j in plan(_study(tmp_path, seed=200))]
    again = [j.run_id for j in plan(_study(tmp_path, seed=200))]
    other = [j.run_id for j in plan(_study(tmp_path, seed=201))]
    assert first == again and first != other
    per_block = {tuple((j.environment, j.dataset) for j in plan(_study(tmp_path)) if j.block == b)
                 for b in range(1, 6)}
    assert len(per_block) > 1, "every block in the same order is not randomised"


def test_seed_is_shared_across_environments_per_repetition(tmp_path: Path) -> None:
    jobs = plan(_study(tmp_path, seed=10))
    assert {j.seed for j in jobs if j.repetition == 3} == {12}


def test_sequential_order(tmp_path: Path) -> None:
    jobs = plan(_study(tmp_path, order="sequential"))
    cells = [(j.environment, j.dataset) for j in jobs]
    runs = [k for i, k in enumerate(cells) if i == 0 or cells[i - 1] != k]
    assert len(runs) == 6  # each cell's repetitions in one stretch


def test_warmup_runs_come_first_and_are_flagged(tmp_path: Path) -> None:
    jobs = plan(_study(tmp_path, warmup=1))
    assert all(j.warmup and j.block == 0 for j in jobs[:6])
    assert not any(j.warmup for j in jobs[6:])
    assert Counter(j.warmup for j in jobs)[True] == 6

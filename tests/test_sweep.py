"""Sweeps: protocol parameters crossed with environments x datasets, run for real.

The plan covers every cell once per block, exclusions remove exactly their cells, the ids
are stable, a killed sweep resumes per cell, status and validate count cells, and a
configuration that runs out of memory is recorded as `oom` while the sweep goes on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from cloudbench.cli.main import main
from cloudbench.runners.scheduler import run_study
from cloudbench.study.plan import cells, plan, run_id
from cloudbench.study.record import configuration_id, parse_configuration
from cloudbench.study.spec import SpecError, load_study

from conftest import QUICK_BODY, QUICK_PARAMETERS, write_quick_notebook, write_study

# The quick notebook with two sweepable parameters and a memory hog: `hog_mb` megabytes
# held while the run sleeps, so the runner's sampler sees them.
SWEEP_PARAMETERS = QUICK_PARAMETERS + 'batch_size = 32\nmodel = "fnn"\nhog_mb = 0\n'
SWEEP_BODY = """\
import numpy as np
hog = np.ones(hog_mb * 2**20 // 8) if hog_mb else None
""" + QUICK_BODY.replace("time.sleep(sleep_s)", "time.sleep(sleep_s + (0.6 if hog_mb else 0))")


@pytest.fixture
def sweep_study(tmp_path: Path):
    notebook = write_quick_notebook(tmp_path / "sweep.ipynb", SWEEP_BODY, SWEEP_PARAMETERS)

    def make(sweep: str, repetitions: int = 2, environments: str = "", extra: str = "") -> Path:
        envs = environments or """
            [[environments]]
            name = "a"
            [[environments]]
            name = "b"
            backend = "jax"
        """
        return write_study(tmp_path / "sweep.toml", f"""
            [study]
            name = "sweep"
            repetitions = {repetitions}
            seed = 11
            timeout_s = 120
            {extra}
            [protocol]
            notebook = "{notebook}"
            [[datasets]]
            name = "shapes"
            images = 60
            {envs}
            [sweep]
            {sweep}
        """)

    return make


def test_the_plan_covers_every_cell_of_every_block(sweep_study) -> None:
    study = load_study(sweep_study('batch_size = [32, 64]\nmodel = ["fnn", "lstm", "cnn"]\n'
                                   'exclude = [{ model = "lstm", batch_size = 64 }]',
                                   repetitions=3))
    configs = [c.id for c in study.configurations]
    assert configs == ["batch_size=32,model=fnn", "batch_size=32,model=lstm",
                       "batch_size=32,model=cnn", "batch_size=64,model=fnn",
                       "batch_size=64,model=cnn"]
    assert len(cells(study)) == 2 * 1 * 5
    jobs = plan(study)
    assert len(jobs) == 3 * 10 and len({j.run_id for j in jobs}) == 30
    for block in (1, 2, 3):
        in_block = [(j.environment, j.dataset, j.configuration) for j in jobs if j.block == block]
        assert sorted(in_block) == sorted(cells(study))  # every cell once per block
    orders = {tuple(j.run_id.split("+r")[0] for j in jobs if j.block == b) for b in (1, 2, 3)}
    assert len(orders) > 1  # each block has its own random order
    job = next(j for j in jobs if j.configuration == "batch_size=64,model=cnn")
    assert job.parameters == {"batch_size": 64, "model": "cnn"}
    assert job.run_id == run_id(job.environment, "shapes", job.repetition,
                                configuration="batch_size=64,model=cnn")
    assert not any("lstm" in j.configuration and "64" in j.configuration for j in jobs)


def test_configuration_ids_are_stable_and_readable() -> None:
    assert configuration_id({"model": "fnn", "batch_size": 32}) == "batch_size=32,model=fnn"
    assert configuration_id({"lr": 0.001, "bn": True}) == "bn=true,lr=0.001"
    assert parse_configuration("batch_size=32,model=fnn") == {"batch_size": "32",
                                                              "model": "fnn"}
    assert parse_configuration("") == {}


def test_a_study_without_a_sweep_keeps_its_run_ids_and_order(sweep_study, tmp_path) -> None:
    study = load_study(sweep_study("").replace(tmp_path / "plain.toml"))
    assert [c.id for c in study.configurations] == [""]
    jobs = plan(study)
    assert jobs[0].run_id.count("+") == 2 and jobs[0].parameters == {}
    # the order drawn before sweeps existed: (environment, dataset) pairs shuffled per block
    import random
    pairs = [("a", "shapes"), ("b", "shapes")]
    random.Random(f"{study.seed}:1").shuffle(pairs)
    assert [(j.environment, j.dataset) for j in jobs if j.block == 1] == pairs


@pytest.mark.parametrize(("sweep", "key", "message"), [
    ("batch_size = []", "sweep.batch_size", "non-empty list"),
    ("epochs_x = [1, 2]", "sweep.epochs_x", "not a parameter"),
    ("seed = [1, 2]", "sweep.seed", "reserved"),
    ("batch_size = [32, 32]", "sweep.batch_size", "listed twice"),
    ('model = ["a,b"]', "sweep.model[0]", "levels are numbers"),
    ('model = ["fnn"]\nexclude = [{ model = "lstm" }]', "sweep.exclude[0].model",
     "not a level"),
    ('model = ["fnn"]\nexclude = [{ depth = 2 }]', "sweep.exclude[0].depth", "unknown key"),
    ('model = ["fnn"]\nexclude = [{ model = "fnn" }]', "sweep.exclude", "every combination"),
])
def test_bad_sweeps_are_refused_with_the_key(sweep_study, sweep, key, message) -> None:
    with pytest.raises(SpecError) as err:
        load_study(sweep_study(sweep))
    assert err.value.key == key and message in str(err.value)


def test_a_swept_parameter_set_elsewhere_is_refused(sweep_study) -> None:
    envs = """
        [[environments]]
        name = "a"
        parameters = { batch_size = 16 }
    """
    with pytest.raises(SpecError) as err:
        load_study(sweep_study("batch_size = [32, 64]", environments=envs))
    assert err.value.key == "environments[0].parameters.batch_size"


def test_backend_key(sweep_study) -> None:
    study = load_study(sweep_study("batch_size = [32]"))
    assert [e.backend for e in study.environments] == ["tensorflow", "jax"]
    bad = """
        [[environments]]
        name = "a"
        backend = "theano"
    """
    with pytest.raises(SpecError, match="theano"):
        load_study(sweep_study("batch_size = [32]", environments=bad))
    clash = """
        [[environments]]
        name = "a"
        backend = "jax"
        env = { KERAS_BACKEND = "torch" }
    """
    with pytest.raises(SpecError) as err:
        load_study(sweep_study("batch_size = [32]", environments=clash))
    assert err.value.key == "environments[0].env.KERAS_BACKEND"


def test_a_sweep_runs_resumes_per_cell_and_reports_per_cell(sweep_study, tmp_path,
                                                             capsys) -> None:
    spec = sweep_study('batch_size = [32, 64]\nmodel = ["fnn", "lstm"]\n'
                       'exclude = [{ model = "lstm", batch_size = 64 }]')
    out = tmp_path / "out"
    assert main(["validate", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "3 configurations" in text and "12 runs planned" in text
    study = load_study(spec)
    first = run_study(study, output=out, repetitions=1)
    assert len(first.executed) == 6 and not first.failed
    runs = pd.read_csv(out / "runs.csv")
    assert {"configuration", "batch_size", "model", "backend"} <= set(runs.columns)
    assert sorted(runs["configuration"]) == sorted(
        ["batch_size=32,model=fnn", "batch_size=32,model=lstm", "batch_size=64,model=fnn"] * 2)
    assert dict(zip(runs["environment"], runs["backend"], strict=True)) == {
        "a": "tensorflow", "b": "jax"}
    row = runs[runs["configuration"] == "batch_size=64,model=fnn"].iloc[0]
    assert row["batch_size"] == 64 and row["model"] == "fnn"
    second = run_study(study, output=out)  # resume: only block 2's six runs
    assert second.skipped == 6 and len(second.executed) == 6
    assert Counter(r["configuration"] for r in second.executed) == Counter(
        {"batch_size=32,model=fnn": 2, "batch_size=32,model=lstm": 2,
         "batch_size=64,model=fnn": 2})
    assert main(["status", str(spec), "--output", str(out)]) == 0
    status = capsys.readouterr().out
    assert "configuration" in status and "batch_size=32,model=lstm" in status


def test_the_kernel_gets_the_backend_and_the_cell_values(tmp_path) -> None:
    body = """
import json, os
record = {"train_s": 0.1, "total_s": 0.1, "seen": f"{os.environ.get('KERAS_BACKEND')}/"
          f"{backend}/{batch_size}"}
json.dump(record, open(record_path, "w"))
"""
    notebook = write_quick_notebook(tmp_path / "seen.ipynb", body,
                                    QUICK_PARAMETERS + 'backend = "none"\nbatch_size = 1\n')
    spec = write_study(tmp_path / "seen.toml", f"""
        [study]
        name = "seen"
        repetitions = 1
        [protocol]
        notebook = "{notebook}"
        [[datasets]]
        name = "shapes"
        images = 60
        [[environments]]
        name = "t"
        backend = "torch"
        [sweep]
        batch_size = [8]
    """)
    [record] = run_study(load_study(spec), output=tmp_path / "out").executed
    assert record["status"] == "ok", record["error"]
    assert record["seen"] == "torch/torch/8"


def test_out_of_memory_is_a_result_and_the_sweep_goes_on(sweep_study, tmp_path) -> None:
    """The 1500 MB configuration outgrows the environment's 700 MB: `oom` with the memory
    it reached; the small one runs; resuming does not rerun the oom cell as if lost."""
    envs = """
        [[environments]]
        name = "small"
        memory_limit_mb = 700
    """
    spec = sweep_study("hog_mb = [0, 1500]", repetitions=1, environments=envs)
    out = tmp_path / "out"
    result = run_study(load_study(spec), output=out)
    by_config = {r["configuration"]: r for r in result.executed}
    assert by_config["hog_mb=0"]["status"] == "ok"
    oom = by_config["hog_mb=1500"]
    assert oom["status"] == "oom" and "700" in oom["error"]
    assert oom["peak_rss_mb"] > 700
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["status"]) == ["ok", "oom"]
    assert run_study(load_study(spec), output=out).executed == []  # oom is final


def test_memory_limit_belongs_to_the_local_runner(sweep_study) -> None:
    envs = """
        [[environments]]
        name = "small"
        memory_limit_mb = 10
    """
    with pytest.raises(SpecError) as err:
        load_study(sweep_study("hog_mb = [0]", environments=envs))
    assert err.value.key == "environments[0].memory_limit_mb"

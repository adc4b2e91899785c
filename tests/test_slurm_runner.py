"""runners/slurm.py against a real single-node SLURM cluster (tests/slurm_support.py).

The node's Python is this one: `setup` activates the test environment (sys.executable's
venv), and the toolkit reaches the node staged through the shared folder, not through the
checkout (the quick protocol records the path of the helpers it imported). Each end a
block's job can meet is provoked for real: completed (a study with a local environment
beside, to the paper), over its time limit (60-90 s: the one slow test), cancelled while a
run is in flight (by scancel, and by Ctrl-C through interrupt), a failing node
preparation, a job array. The study-file checks need no cluster but `sinfo`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from remote_support import records, run, write_study
from slurm_support import SLURM_MARKS, SlurmCluster, slurm, slurm_cluster  # noqa: F401

from cloudbench.runners.base import Try, make_runner
from cloudbench.runners.slurm import SlurmRunner, node_hash, time_limit_s
from cloudbench.study.plan import plan
from cloudbench.study.spec import SpecError, load_study
from cloudbench.study.store import ResultsStore

pytestmark = SLURM_MARKS
VENV = Path(sys.executable).parent


def slurm_env(cluster: SlurmCluster, **extra: object) -> dict[str, object]:
    """A slurm environment on the test cluster whose node runs this machine's venv."""
    return {"name": "hpc", "runner": "slurm", "shared": str(cluster.shared),
            "partition": cluster.partition, "memory": 1500, "cpus": 1,
            "setup": [f"source {VENV}/activate"], **extra}


@pytest.fixture
def on_cluster(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm


def runner_of(spec: Path, out: Path, env: str = "hpc") -> tuple[SlurmRunner, list[Try]]:
    """The environment's runner and all its tries as one batch (a block's, with more runs)."""
    study = load_study(spec)
    store = ResultsStore(out)
    store.prepare()
    environment = study.environment(env)
    runner = make_runner(study, environment, store.runner_paths(environment))
    assert isinstance(runner, SlurmRunner)
    runner.check()
    jobs = [j for j in plan(study) if j.environment == env]
    return runner, [Try(j, 1) for j in jobs]


def shared_left(cluster: SlurmCluster) -> list[str]:
    return sorted(str(p.relative_to(cluster.shared)) for p in cluster.shared.rglob("*"))


# -- no cluster ------------------------------------------------------------------------------


def test_time_limits_and_node_hash() -> None:
    assert [time_limit_s(v) for v in (90, "5", "1:30", "1:00:00", "2-00:00:00", "1-2")] == \
        [90, 300, 90, 3600, 172800, 93600]
    assert node_hash("node01") == node_hash("node01") != node_hash("node02")
    assert "node01" not in node_hash("node01") and len(node_hash("node01")) == 12


@pytest.mark.parametrize(("extra", "key", "words"), [
    ({"shared": "relative/folder"}, "shared", "absolute"),
    ({"gpus": 1, "gres": "gpu:1"}, "gres", "not both"),
    ({"gpus": "many"}, "gpus", "number of GPUs"),
    ({"time_limit": "soon"}, "time_limit", "SLURM's form"),
    ({"memory": "lots"}, "memory", "16G"),
    ({"setup": ["module load python", ""]}, "setup", "non-empty strings"),
    ({"partion": "gpu"}, "partion", "unknown key"),
])
def test_study_file_refuses_bad_keys_naming_them(tmp_path: Path, extra: dict[str, object],
                                                 key: str, words: str) -> None:
    env = {"name": "hpc", "runner": "slurm", "shared": str(tmp_path), **extra}
    spec = write_study(tmp_path / "study.toml", [env])
    with pytest.raises(SpecError, match=words) as info:
        load_study(spec)
    assert f"environments[0].{key}" in str(info.value)


def test_shared_key_is_required(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [{"name": "hpc", "runner": "slurm"}])
    with pytest.raises(SpecError, match=r"environments\[0\]\.shared"):
        load_study(spec)


# -- with the cluster ------------------------------------------------------------------------


def test_check_refuses_a_missing_shared_folder_and_an_unknown_partition(
        on_cluster: SlurmCluster, tmp_path: Path) -> None:
    spec = write_study(tmp_path / "a.toml", [slurm_env(on_cluster, shared=str(tmp_path / "no"))])
    with pytest.raises(SpecError, match=r"environments\[0\]\.shared: .*does not exist"):
        runner_of(spec, tmp_path / "out-a")
    spec = write_study(tmp_path / "b.toml", [slurm_env(on_cluster, partition="gpu-huge")])
    with pytest.raises(SpecError, match=r"environments\[0\]\.partition: no partition "
                       r"'gpu-huge'.*debug"):
        runner_of(spec, tmp_path / "out-b")


def test_local_and_slurm_environments_run_concurrently_to_the_paper(
        on_cluster: SlurmCluster, tmp_path: Path, quick_protocol: Path) -> None:
    from cloudbench.paper.build import build_paper

    spec = write_study(tmp_path / "study.toml", [
        {"name": "pc", "runner": "local"}, slurm_env(on_cluster)],
        name="hpcmix", repetitions=2, notebook=quick_protocol, parameters={"sleep_s": 1.0})
    out = tmp_path / "results"
    result = run(spec, out)

    assert len(result.executed) == 4 and not result.failed, [r["error"] for r in result.failed]
    got = records(out)
    hpc = [r for r in got.values() if r["environment"] == "hpc"]
    pc = [r for r in got.values() if r["environment"] == "pc"]
    assert {r["runner"] for r in hpc} == {"slurm"} and len(hpc) == 2
    for record in hpc:
        # the node's fingerprint: hashed, never its name; the job that ran it
        assert record["node_id"] == node_hash(on_cluster.node) != on_cluster.node
        assert record["node_gpu"] is None and str(record["slurm_job"]).isdigit()
        # the toolkit came staged through the shared folder, not from this checkout
        assert str(record["helpers"]).startswith(str(on_cluster.shared)), record["helpers"]
        assert (out / "notebooks" / f"{record['run_id']}.ipynb").is_file()
    # one job per block, its runs in the plan's order, run at the same time as the local ones
    assert len({r["slurm_job"] for r in hpc}) == 2
    overlap = [(a["run_id"], b["run_id"]) for a in hpc for b in pc
               if a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]]
    assert overlap, [(r["run_id"], r["started_at"], r["finished_at"]) for r in got.values()]
    assert on_cluster.jobs() == [] and shared_left(on_cluster) == []
    log = (out / "logs" / "hpc.slurm.log").read_text()
    assert "cloudbench: run" in log and "job " in log

    pdf = build_paper(out / "runs.csv", load_study(spec), tmp_path / "paper")
    assert pdf.is_file()
    analysis = json.loads((tmp_path / "paper" / "hpcmix" / "analysis.json").read_text())
    assert {(c["a"], c["b"]) for c in analysis["comparisons"]} == {("pc", "hpc")}


def test_failing_node_preparation_and_an_array(on_cluster: SlurmCluster, tmp_path: Path,
                                               quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [slurm_env(
        on_cluster, setup=[f"source {VENV}/activate", "test -d /no/such/module-tree"])],
        repetitions=2, notebook=quick_protocol)
    runner, tries = runner_of(spec, tmp_path / "out")
    results = list(runner.run_batch(tries))
    assert [r.record["status"] for r in results] == ["failed", "failed"]
    for result in results:
        error = result.record["error"]
        assert "did not run" in error and "before its first run" in error, error
        assert "FAILED" in error and "setup command failed (exit 1)" in error, error
        assert "test -d /no/such/module-tree" in error and result.infrastructure

    spec = write_study(tmp_path / "array.toml", [slurm_env(on_cluster, array=True)],
                       repetitions=2, notebook=quick_protocol, name="arr")
    runner, tries = runner_of(spec, tmp_path / "out-array")
    results = list(runner.run_batch(tries))
    assert [r.record["status"] for r in results] == ["ok", "ok"], \
        [r.record["error"] for r in results]
    jobs = [str(r.record["slurm_job"]) for r in results]
    assert jobs[0].endswith("_0") and jobs[1].endswith("_1") and \
        jobs[0].split("_")[0] == jobs[1].split("_")[0]
    assert on_cluster.jobs() == [] and shared_left(on_cluster) == []


def test_a_job_queued_past_max_pending_s_is_cancelled(on_cluster: SlurmCluster,
                                                      tmp_path: Path,
                                                      quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [slurm_env(
        on_cluster, max_pending_s=3, sbatch_args=["--begin=now+3600"])], notebook=quick_protocol)
    runner, tries = runner_of(spec, tmp_path / "out")
    [result] = list(runner.run_batch(tries))
    assert result.record["status"] == "failed" and result.infrastructure
    assert "cancelled: still queued after max_pending_s" in result.record["error"]
    assert on_cluster.jobs() == [] and shared_left(on_cluster) == []


def _wait_for(path_glob: str, root: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.rglob(path_glob))
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no {path_glob} under {root} after {timeout} s")


def test_a_job_cancelled_mid_block_and_an_interrupt(on_cluster: SlurmCluster, tmp_path: Path,
                                                    quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [slurm_env(on_cluster)], repetitions=2,
                       notebook=quick_protocol, parameters={"sleep_s": 60.0})
    # scancel by someone else while the first run is in flight
    runner, tries = runner_of(spec, tmp_path / "out")
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(r=list(runner.run_batch(tries))))
    thread.start()
    _wait_for("*.json.started", on_cluster.shared)  # the kernel is inside the cell
    [job] = on_cluster.jobs()
    on_cluster.run("scancel", job, check=True)
    thread.join(timeout=120)
    assert not thread.is_alive()
    first, second = box["r"]  # type: ignore[misc]
    assert first.record["status"] == "failed" and not first.infrastructure
    assert f"SLURM job {job} CANCELLED" in first.record["error"], first.record["error"]
    assert second.record["status"] == "failed" and second.infrastructure
    assert f"during {tries[0].job.run_id}" in second.record["error"]

    # Ctrl-C: interrupt() from another thread cancels the job; run_batch raises
    runner, tries = runner_of(spec, tmp_path / "out-2")
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            list(runner.run_batch(tries))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    thread = threading.Thread(target=pull)
    thread.start()
    _wait_for("*.json.started", on_cluster.shared)
    runner.interrupt()
    thread.join(timeout=120)
    assert not thread.is_alive() and [type(e) for e in errors] == [KeyboardInterrupt]
    assert on_cluster.jobs() == [] and shared_left(on_cluster) == []


def test_a_job_over_its_time_limit_is_a_timeout_record(on_cluster: SlurmCluster,
                                                       tmp_path: Path,
                                                       quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [slurm_env(on_cluster, time_limit=60)],
                       repetitions=2, retries=0, notebook=quick_protocol,
                       parameters={"sleep_s": 240.0})
    runner, tries = runner_of(spec, tmp_path / "out")  # both runs in one 1-minute job
    started = time.monotonic()
    first, second = list(runner.run_batch(tries))
    assert time.monotonic() - started < 150  # SLURM's end, not the 240 s run's
    assert first.record["status"] == "timeout" and not first.infrastructure
    assert "TIMEOUT: the job exceeded its time limit; reason TimeLimit" in \
        first.record["error"], first.record["error"]
    assert "DUE TO TIME LIMIT" in first.record["error"]  # slurmstepd's line, from job.err
    assert second.record["status"] == "failed" and second.infrastructure
    assert "did not run" in second.record["error"] and "TIMEOUT" in second.record["error"]
    assert on_cluster.jobs() == [] and shared_left(on_cluster) == []

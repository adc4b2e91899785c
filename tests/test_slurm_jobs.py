"""runners/slurm_jobs.py against a real single-node SLURM cluster (tests/slurm_support.py).

Each end a study's job can meet on SLURM is provoked for real and must come back as a
record's status with SLURM's reason: completed, over its time limit (about 60-90 s: a limit is
whole minutes and slurmctld checks limits every 30 s), cancelled while running, a failing
setup command, over its memory (jobacct_gather's OverMemoryKill), an array, a job SLURM no
longer knows, a controller that does not answer. The pure parts (options, classification)
are tested without a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_support import SLURM_MARKS, SlurmCluster, free_port, slurm_cluster  # noqa: F401

from cloudbench.runners.slurm_jobs import (
    JobSpec,
    JobState,
    JobWaitTimeout,
    SlurmClient,
    SlurmError,
    SlurmUnavailable,
    batch_script,
    classify,
    format_time_limit,
    parse_record,
    tail,
)

pytestmark = SLURM_MARKS


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:  # noqa: F811
    """The module's cluster, idle at the start of each test and emptied after it."""
    with slurm_cluster.fresh():
        yield slurm_cluster


@pytest.fixture
def client(slurm: SlurmCluster) -> SlurmClient:
    return SlurmClient(slurm.conf, command_timeout=15, query_timeout=30)


def spec(slurm: SlurmCluster, name: str, script: str, **options: object) -> JobSpec:
    """A small job on the test partition whose output and errors go to the shared folder."""
    options.setdefault("memory", 100)
    return JobSpec(script=script, name=name, partition=slurm.partition,
                   output=str(slurm.shared / f"{name}.out"),
                   error=str(slurm.shared / f"{name}.err"), **options)  # type: ignore[arg-type]


def wait_running(client: SlurmClient, job_id: str, timeout: float = 30) -> JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.state(job_id)
        if state.state == "RUNNING" or state.final:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not start in {timeout} s")


# -- with the cluster ------------------------------------------------------------------------


def test_completed_job_is_ok_and_writes_to_the_shared_folder(
        slurm: SlurmCluster, client: SlurmClient) -> None:
    record = slurm.shared / "record.json"
    job_id = client.submit(spec(slurm, "ok", batch_script(
        [f"echo '{{\"train_s\": 1.0}}' > {record}", "echo done"],
        setup=["cd \"$SLURM_SUBMIT_DIR\"", "test -d /tmp"]), time_limit=120, cpus=1))
    state = client.wait_one(job_id, timeout=60)
    result = classify(state, tail(slurm.shared / "ok.err"))
    assert (result.status, result.state, result.exit_code, result.error) == \
        ("ok", "COMPLETED", 0, None)
    assert state.source == "scontrol" and state.fields["TimeLimit"] == "00:02:00"
    assert record.read_text().strip() == '{"train_s": 1.0}'
    assert tail(slurm.shared / "ok.out") == "done"


def test_failing_setup_command_is_failed_with_the_error_file_tail(
        slurm: SlurmCluster, client: SlurmClient) -> None:
    job_id = client.submit(spec(slurm, "setup", batch_script(
        ["echo never-reached"], setup=["echo preparing", "pip-not-installed --version"])))
    state = client.wait_one(job_id, timeout=60)
    result = classify(state, tail(slurm.shared / "setup.err"))
    assert (result.status, result.state, result.reason, result.exit_code) == \
        ("failed", "FAILED", "NonZeroExitCode", 127)
    assert "setup command failed (exit 127): pip-not-installed --version" in result.error
    assert "command not found" in result.error
    assert "never-reached" not in (slurm.shared / "setup.out").read_text()


def test_cancelled_while_running_is_failed(slurm: SlurmCluster,
                                           client: SlurmClient) -> None:
    job_id = client.submit(spec(slurm, "cancel", "#!/bin/bash\necho started\nsleep 600\n"))
    assert wait_running(client, job_id).state == "RUNNING"
    start = time.monotonic()
    client.cancel(job_id)
    state = client.wait_one(job_id, timeout=30)
    assert time.monotonic() - start < 15
    result = classify(state, tail(slurm.shared / "cancel.err"))
    assert (result.status, result.state) == ("failed", "CANCELLED")
    assert "the job was cancelled" in result.error and "CANCELLED AT" in result.error
    client.cancel(job_id)  # cancelling an ended job is no error


def test_wait_has_a_deadline_and_then_the_caller_cancels(
        slurm: SlurmCluster, client: SlurmClient) -> None:
    job_id = client.submit(spec(slurm, "deadline", "#!/bin/bash\nsleep 600\n"))
    start = time.monotonic()
    with pytest.raises(JobWaitTimeout) as caught:
        client.wait(job_id, timeout=3)
    assert 3 <= time.monotonic() - start < 10
    assert caught.value.last is not None and caught.value.last.state in ("PENDING", "RUNNING")
    client.cancel(job_id)
    assert client.wait_one(job_id, timeout=30).state == "CANCELLED"


def test_memory_over_its_limit_is_oom(slurm: SlurmCluster,
                                      client: SlurmClient) -> None:
    """--mem is enforced by jobacct_gather/linux's OverMemoryKill (no cgroups here): SLURM
    22.05 then records FAILED with signal 9, and slurmstepd's message in the error file
    tells that it was the memory."""
    grow = ("python3 -c 'import time\nx = []\nfor _ in range(40):\n"
            "    x.append(bytearray(20 * 2**20)); time.sleep(0.05)\ntime.sleep(60)'")
    job_id = client.submit(spec(slurm, "oom", f"#!/bin/bash\n{grow}\n", memory=100))
    state = client.wait_one(job_id, timeout=60)
    assert (state.state, state.signal) == ("FAILED", 9)
    result = classify(state, tail(slurm.shared / "oom.err"))
    assert result.status == "oom"
    assert "exceeding its memory limit" in result.error
    assert "Exceeded job memory limit" in result.error


def test_array_job_reports_each_task(slurm: SlurmCluster,
                                     client: SlurmClient) -> None:
    script = batch_script([f"echo task $SLURM_ARRAY_TASK_ID > {slurm.shared}/task-"
                           "$SLURM_ARRAY_TASK_ID.txt",
                           'if [ "$SLURM_ARRAY_TASK_ID" = 2 ]; then exit 3; fi'])
    job = JobSpec(script=script, name="array", partition=slurm.partition, memory=50,
                  array="0-2", output=str(slurm.shared / "array-%A_%a.out"))
    job_id = client.submit(job)
    seen: list[set[str]] = []
    states = client.wait(job_id, timeout=60, on_poll=lambda s: seen.append(set(s)))
    assert set(states) == {f"{job_id}_{i}" for i in range(3)}
    results = {key: classify(s) for key, s in states.items()}
    assert [results[f"{job_id}_{i}"].status for i in range(3)] == ["ok", "ok", "failed"]
    assert results[f"{job_id}_2"].exit_code == 3
    assert all(not any("-" in key.rpartition("_")[2] for key in keys) for keys in seen)
    assert sorted(p.read_text() for p in slurm.shared.glob("task-*.txt")) == \
        ["task 0\n", "task 1\n", "task 2\n"]


def test_time_limit_is_timeout(slurm: SlurmCluster, client: SlurmClient) -> None:
    """The shortest limit SLURM has is one minute; slurmctld enforces it at its next 30-second
    check (OverTimeLimit=0, KillWait=1): 60-90 s in all."""
    job_id = client.submit(spec(slurm, "limit", "#!/bin/bash\necho started\nsleep 600\n",
                                time_limit=1))
    assert client.state(job_id).final is False
    start = time.monotonic()
    state = client.wait_one(job_id, timeout=150)
    elapsed = time.monotonic() - start
    result = classify(state, tail(slurm.shared / "limit.err"))
    assert (result.status, result.state, result.reason) == ("timeout", "TIMEOUT", "TimeLimit")
    assert "exceeded its time limit" in result.error and "DUE TO TIME LIMIT" in result.error
    assert 55 <= elapsed < 120, elapsed


def test_job_unknown_to_slurm_and_sacct_without_slurmdbd(client: SlurmClient) -> None:
    state = client.state("987654")
    assert (state.state, state.source, state.final) == ("UNKNOWN", "none", True)
    assert client._sacct_works is False  # "accounting storage is disabled": remembered
    assert "SLURM no longer knows the job" in classify(state).error


def test_refused_submission_says_why(slurm: SlurmCluster,
                                     client: SlurmClient) -> None:
    with pytest.raises(SlurmError, match="sbatch refused the job: .*(?i:partition)"):
        client.submit(JobSpec(script="#!/bin/bash\ntrue\n", partition="no-such-partition"))


def test_unreachable_controller_fails_within_the_deadline(slurm: SlurmCluster,
                                                          tmp_path: Path) -> None:
    text = slurm.conf.read_text()
    port = next(line for line in text.splitlines() if line.startswith("SlurmctldPort="))
    dead = tmp_path / "slurm.conf"
    dead.write_text(text.replace(port, f"SlurmctldPort={free_port()}"))
    client = SlurmClient(dead, command_timeout=3, query_timeout=6)
    start = time.monotonic()
    with pytest.raises(SlurmUnavailable, match="no answer from SLURM"):
        client.states("1")
    assert time.monotonic() - start < 15


# -- without a cluster -----------------------------------------------------------------------


def test_sbatch_options() -> None:
    job = JobSpec(script="", name="b", partition="gpu", time_limit=3725, cpus=4, memory=2048,
                  gpus=1, gres="gpu:a100:1", account="lab", qos="high", output="o", error="e",
                  array="0-9%2", workdir="/w", extra=("--exclusive",))
    assert job.sbatch_args() == [
        "--parsable", "--job-name=b", "--partition=gpu", "--cpus-per-task=4",
        "--gres=gpu:a100:1", "--account=lab", "--qos=high", "--output=o", "--error=e",
        "--array=0-9%2", "--chdir=/w", "--time=01:02:05", "--mem=2048M", "--gpus=1",
        "--exclusive"]
    assert JobSpec(script="", memory="4G").sbatch_args()[-1] == "--mem=4G"
    assert format_time_limit(2 * 86400 + 61) == "2-00:01:01"
    assert format_time_limit("30") == "30"
    with pytest.raises(ValueError):
        format_time_limit(0)


@pytest.mark.parametrize(("state", "reason", "status"), [
    ("COMPLETED", "None", "ok"), ("TIMEOUT", "TimeLimit", "timeout"),
    ("OUT_OF_MEMORY", "OutOfMemory", "oom"), ("FAILED", "NonZeroExitCode", "failed"),
    ("CANCELLED", "None", "failed"), ("NODE_FAIL", "NodeDown", "failed"),
    ("PREEMPTED", "None", "failed"), ("BOOT_FAIL", "None", "failed"),
    ("DEADLINE", "DeadLine", "failed")])
def test_classification_of_final_states(state: str, reason: str, status: str) -> None:
    fields = parse_record(f"JobId=7 JobName=x JobState={state} Reason={reason} "
                          "ExitCode=0:0 RunTime=00:00:01")
    code = 0 if state == "COMPLETED" else 1
    job = JobState("7", fields["JobState"], "" if reason == "None" else reason, code, 0)
    result = classify(job, "the tail")
    assert result.status == status
    if status == "ok":
        assert result.error is None
    else:
        assert result.error.startswith(f"SLURM job 7 {state}: ")
        assert result.error.endswith("\nthe tail")
        assert (reason in result.error) == (reason != "None")


def test_classify_refuses_a_job_that_has_not_ended() -> None:
    with pytest.raises(ValueError, match="has not ended"):
        classify(JobState("1", "RUNNING"))

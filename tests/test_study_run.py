"""Running studies for real: papermill, fresh kernels, failures, timeouts, resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from cloudbench.cli.main import main
from cloudbench.cli.run import EXIT_RUNS_NOT_OK, stop_rule
from cloudbench.runners.scheduler import run_study
from cloudbench.study.plan import plan
from cloudbench.study.spec import load_study
from cloudbench.study.store import COLUMNS, ResultsStore, StoreError

from conftest import PROTOCOL, write_study


@pytest.mark.slow
def test_protocol_notebook_produces_a_valid_record(tmp_path: Path) -> None:
    """End to end on the real protocol, locally: TensorFlow trains, the record is complete."""
    spec = write_study(tmp_path / "tiny.toml", f"""
[study]
name = "tiny"
repetitions = 1
[protocol]
notebook = "{PROTOCOL}"
[protocol.parameters]
model = "shapes_cnn"
epochs = 2
batch_size = 32
[[datasets]]
name = "shapes"
images = 300
[[environments]]
name = "pc"
env = {{ TF_NUM_INTRAOP_THREADS = "1" }}
""")
    result = run_study(load_study(spec), output=tmp_path / "out")
    [record] = result.executed
    assert record["status"] == "ok", record["error"]
    for key in COLUMNS[:-3]:
        assert key in record, key
    assert record["run_id"] == "pc+shapes+r001" and record["n_train"] == 200
    assert record["n_test"] == 100 and record["n_params"] == 779
    assert len(record["epoch_s"]) == 2 and record["first_epoch_s"] == record["epoch_s"][0]
    assert 0 < record["train_s"] < record["total_s"] < record["wall_s"]
    assert record["import_s"] > 0 and record["load_s"] > 0 and record["eval_s"] > 0
    assert 0 <= record["test_accuracy"] <= 1 and record["test_loss"] > 0
    assert record["peak_rss_mb"] > 100 and record["accelerator"] == "cpu"
    assert len(record["host_id"]) == 12 and record["tensorflow"]
    store = result.store
    assert store.notebook_path("pc+shapes+r001").exists()
    frame = pd.read_csv(store.csv_path)
    # The schema's columns this run filled, in the schema's order (a CPU run has no
    # peak_gpu_mb column: runs.csv carries only what some run filled).
    known = [c for c in frame.columns if c in COLUMNS]
    assert known == [c for c in COLUMNS if c in known] and len(frame) == 1
    assert {"train_s", "epoch_s", "host_id", "tensorflow", "peak_rss_mb"} <= set(known)
    assert json.loads(frame.loc[0, "epoch_s"]) == record["epoch_s"]
    manifest = json.loads(store.manifest_path.read_text())
    assert len(manifest["notebook_sha256"]) == 64 and manifest["parameters"]["epochs"] == 2


THREE = "".join(f"""
    [[environments]]
    name = "{e}"
    env = {{ MARKER = "from-{e}" }}
""" for e in "abc")


def test_environment_variables_reach_the_kernel_and_failures_do_not_stop(
        tmp_path: Path, quick_study) -> None:
    # The first run of the plan fails (the order is drawn from the study's seed alone).
    first = plan(load_study(quick_study(repetitions=1, environments=THREE)))[0]
    spec = quick_study(repetitions=1, environments=THREE,
                       parameters=f'fail_on = "{first.run_id}"')
    result = run_study(load_study(spec), output=tmp_path / "out")
    failed, *others = result.executed
    assert failed["run_id"] == first.run_id and len(others) == 2
    assert failed["status"] == "failed" and "deliberate failure" in failed["error"]
    assert failed["attempt"] == 1, "a failing cell is not an infrastructure error"
    # The runs after it ran, each with its own environment's variables.
    assert {r["environment"]: (r["status"], r["marker_env"]) for r in others} == {
        e: ("ok", f"from-{e}") for e in "abc" if e != first.environment}
    frame = pd.read_csv(result.store.csv_path)
    assert sorted(frame["status"]) == ["failed", "ok", "ok"]


def test_rerun_runs_only_what_is_missing(tmp_path: Path, quick_study) -> None:
    spec = quick_study(repetitions=1, parameters='fail_on = "b+shapes+r001"')
    first = run_study(load_study(spec), output=tmp_path / "out")
    assert sorted(r["run_id"] for r in first.executed) == ["a+shapes+r001", "b+shapes+r001"]
    again = run_study(load_study(spec), output=tmp_path / "out")
    assert [r["run_id"] for r in again.executed] == ["b+shapes+r001"], "only the failed run"
    assert again.skipped == 1
    more = run_study(load_study(spec), output=tmp_path / "out", repetitions=2)
    assert sorted(r["run_id"] for r in more.executed) == [
        "a+shapes+r002", "b+shapes+r001", "b+shapes+r002"]
    records = ResultsStore(tmp_path / "out").records()
    assert len(records) == 4 == len({r["run_id"] for r in records})
    # Every earlier try of the failing run is kept, none overwritten.
    tries = sorted((tmp_path / "out" / "attempts").glob("b+shapes+r001.*.json"))
    assert [json.loads(t.read_text())["attempt"] for t in tries] == [1, 2]


def _kernels(children: list[psutil.Process]) -> list[psutil.Process]:
    kernels = []
    for child in children:
        try:
            if "ipykernel_launcher" in " ".join(child.cmdline()):
                kernels.append(child)
        except psutil.NoSuchProcess:
            continue
    return kernels


def test_kill_minus_nine_then_resume_loses_and_doubles_nothing(
        tmp_path: Path, quick_study) -> None:
    spec = quick_study(repetitions=1, parameters="sleep_s = 1.0")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "cloudbench.cli.main", "run", str(spec),
                             "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill the study in the middle of a run: one run done, the second one's kernel busy.
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "the study ended first"
        children = psutil.Process(proc.pid).children(recursive=True)
        if list((out / "records").glob("*.json")) and _kernels(children):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in (out / "records").glob("*.json")}
    assert len(done_before) == 1
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"orphaned processes after kill -9: {alive}"

    result = run_study(load_study(spec), output=out)
    rerun = {r["run_id"] for r in result.executed}
    assert not rerun & done_before, "a completed run was run again"
    assert rerun == {"a+shapes+r001", "b+shapes+r001"} - done_before, "a run was lost"
    records = ResultsStore(out).records()
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert not [p for p in (out / "records").iterdir() if p.name.startswith(".")]
    frame = pd.read_csv(out / "runs.csv")
    assert len(frame) == 2 and frame["run_id"].is_unique


def test_timeout_is_enforced_by_the_runner(tmp_path: Path, quick_study) -> None:
    spec = quick_study(repetitions=1, parameters="sleep_s = 60.0",
                       extra="", environments='[[environments]]\nname = "slow"\ntimeout_s = 4\n')
    [record] = run_study(load_study(spec), output=tmp_path / "out").executed
    assert record["status"] == "timeout" and "timeout of 4 s" in record["error"]
    assert 4 <= record["wall_s"] < 30, "killed at the timeout, long before the 60 s sleep ends"


def test_dead_kernel_is_recorded(tmp_path: Path, quick_study, quick_notebook: Path) -> None:
    quick_notebook.write_text(quick_notebook.read_text().replace(
        "import json, os, time", "import json, os, time\\nos.kill(os.getpid(), 9)"))
    spec = quick_study(repetitions=1, environments='[[environments]]\nname = "x"\n')
    [record] = run_study(load_study(spec), output=tmp_path / "out").executed
    assert record["status"] == "failed" and "kernel died" in record["error"]


def test_infrastructure_errors_are_retried_and_each_try_kept(
        tmp_path: Path, quick_study, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that exists but dies at start (validate cannot tell): tried 1 + 2 times."""
    spec_dir = tmp_path / "share" / "kernels" / "broken"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"],
        "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    spec = quick_study(repetitions=1, extra="retries = 2",
                       environments='[[environments]]\nname = "x"\nkernel = "broken"\n')
    [record] = run_study(load_study(spec), output=tmp_path / "out").executed
    assert record["status"] == "failed" and record["attempt"] == 3
    assert "died" in record["error"].lower() or "kernel" in record["error"].lower()
    assert len(list((tmp_path / "out" / "attempts").glob("*.json"))) == 2


def test_unwritable_results_folder_stops_before_the_first_run(
        tmp_path: Path, quick_study) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="not writable"):
        run_study(load_study(quick_study()), output=blocker / "results")


def test_run_and_status_commands(tmp_path: Path, quick_study,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = quick_study(repetitions=5, parameters='fail_on = "b+shapes+r001"')
    out = tmp_path / "cli"
    # A planned run that is not ok: the command says so in its exit status.
    assert main(["run", str(spec), "--repetitions", "1", "--output", str(out)]) == EXIT_RUNS_NOT_OK
    assert sorted(pd.read_csv(out / "runs.csv")["status"]) == ["failed", "ok"]
    capsys.readouterr()
    assert main(["status", str(spec), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    # One row per environment x dataset: done, failed, pending of the study's 5 repetitions.
    rows = {tuple(cells) for line in text.splitlines()
            if (cells := re.findall(r"[\w+.-]+", line))[:2] in (["a", "shapes"], ["b", "shapes"])}
    assert rows == {("a", "shapes", "1", "0", "4"), ("b", "shapes", "0", "1", "4")}, text


def test_out_of_memory_is_recorded_as_oom(tmp_path: Path, quick_study,
                                          quick_notebook: Path) -> None:
    quick_notebook.write_text(quick_notebook.read_text().replace(
        "import json, os, time", "import json, os, time\\nraise MemoryError('cannot allocate')"))
    spec = quick_study(repetitions=1, environments='[[environments]]\nname = "x"\n')
    [record] = run_study(load_study(spec), output=tmp_path / "out").executed
    assert record["status"] == "oom" and "cannot allocate" in record["error"]
    assert record["peak_rss_mb"] > 10, "the sampled memory is kept for a failed run"


def test_aa_calibration(tmp_path: Path, quick_study) -> None:
    from cloudbench.cli.calibrate import run_calibration

    spec = quick_study(parameters="sleep_s = 0.05")
    summary = run_calibration(load_study(spec), "a", repetitions=3, output=tmp_path / "out")
    assert summary["arms"] == ["a-A", "a-B"]
    arms = pd.read_csv(tmp_path / "out" / "calibration" / "a" / "runs.csv")
    assert sorted(arms["environment"]) == ["a-A"] * 3 + ["a-B"] * 3  # environment b not run
    assert set(arms["marker_env"]) == {"from-a"}  # both arms are environment a
    entry = next(e for e in summary["entries"] if e["metric"] == "train_s")
    assert entry["n_a"] == entry["n_b"] == 3  # three is the least for a false-positive rate
    fp = entry["false_positive"]
    assert fp["splits"] == 1000 and fp["interval"] == "wilson" and fp["nominal"] == 0.05
    assert round(fp["ci_low"], 9) <= fp["rate"] <= fp["ci_high"]  # (at 0 hits, low is 2e-19)
    assert entry["noise_floor"] is not None and entry["noise_floor"] >= 0
    saved = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert saved == json.loads(json.dumps(summary, default=str))


def run_auto(spec: Path, out: Path):
    """An "auto" study with the stopping rule the `study` command gives it."""
    study = load_study(spec)
    return run_study(study, output=out, stop_rule=stop_rule(study))


# train_s fixed by the seed (conftest's fixed_train_s): 0.110, 0.115 and 0.120 s in
# repetitions 1 to 3 of both environments, so the stopping rule sees the same numbers on a
# loaded machine as on an idle one: a ratio interval of about +-4.5 %.
AUTO = 'fixed_train_s = 0.1'


@pytest.mark.parametrize(("target", "stopped_at", "met"), [(0.5, 2, True), (0.0001, 3, False)])
def test_auto_repetitions_stop_when_the_interval_is_narrow(
        tmp_path: Path, quick_study, target: float, stopped_at: int, met: bool) -> None:
    """Stop at the minimum when the interval is narrow, else go on to the maximum; a
    resumed study stops where it stopped, running nothing."""
    spec = quick_study(repetitions='"auto"', parameters=AUTO,
                       extra=f"min_repetitions = 2\nmax_repetitions = 3\n"
                             f"target_halfwidth = {target}")
    result = run_auto(spec, tmp_path / "out")
    assert result.stopping["repetitions"] == stopped_at and result.stopping["met"] is met
    assert len(result.executed) == 2 * stopped_at
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stopping"]["reason"] == result.stopping["reason"]
    assert ("within" if met else "maximum") in result.stopping["reason"]

    again = run_auto(spec, tmp_path / "out")
    assert again.executed == [] and again.stopping["repetitions"] == stopped_at
    assert again.stopping["halfwidths"] == result.stopping["halfwidths"]
    assert again.stopping["met"] is met


def test_relative_output_folder(tmp_path: Path, quick_study,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The default results folder is relative (data/results/<study>); kernels run elsewhere."""
    spec = quick_study(repetitions=1, environments='[[environments]]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    result = run_study(load_study(spec))
    assert [r["status"] for r in result.executed] == ["ok"]
    assert (tmp_path / "data" / "results" / "quick" / "runs.csv").exists()

"""runner = "colab": sessions per block through a stand-in `colab` client on a local folder."""

from __future__ import annotations

import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest
from remote_support import (  # noqa: F401 - pytest fixtures
    ColabStandIn,
    attempts,
    colab,
    records,
    run,
    write_study,
)

from cloudbench.protocols import cnn_protocol
from cloudbench.runners.base import TPU_TRIM_MULTIPLE, make_runner, run_parameters
from cloudbench.runners.colab import ColabRunner
from cloudbench.study.plan import plan
from cloudbench.study.spec import SpecError, load_study
from cloudbench.study.store import ResultsStore

STANDIN_PATH = Path(__file__).resolve().parent / "standin" / "colab"
COLAB = {"name": "vm", "runner": "colab"}
CHECK = ["version", "usage"]  # check(): the client's version, an authentication probe
SESSION = ["usage", "new", "upload", "install", "exec"]  # the last exec: the idle kernel
RUN = ["exec", "download"]
END = ["stop", "sessions", "usage"]  # stopped, confirmed gone, the block's units read


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ColabRunner, "backoff_s", 0.0)


def calls(standin: ColabStandIn) -> list[list[str]]:
    """The client's calls without the global options (the study's `--config`)."""
    return [c[2:] if c[:1] == ["--config"] else c for c in standin.calls()]


def verbs(standin: ColabStandIn) -> list[str]:
    return [c[0] for c in calls(standin)]


def sessions(standin: ColabStandIn) -> list[str]:
    return [c[2] for c in calls(standin) if c[0] == "new"]


def client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["colab", *args], capture_output=True, text=True, timeout=60)


def test_the_standin_behaves_like_the_real_client(colab: ColabStandIn, tmp_path: Path  # noqa: F811
                                                  ) -> None:
    """What google-colab-cli 0.7.5 was seen to do: one persistent kernel, no timeout kept,
    tracebacks in colour on stderr with exit 0, install exit 0 on failure, a stop that
    cannot find a session it has no local entry of."""
    probe, slow = tmp_path / "probe.py", tmp_path / "slow.py"
    probe.write_text("x = globals().get('x', 0) + 1\nprint('x', x)\nimport cloudbench.protocols\n")
    slow.write_text("import time\ntime.sleep(1.5)\nprint('done')\n")
    assert client("new", "-s", "probe").returncode == 0
    try:
        first, second = (client("exec", "-s", "probe", "-f", str(probe)) for _ in range(2))
        assert first.returncode == 0 and "x 1" in first.stdout and "x 2" in second.stdout
        assert "No module named 'cloudbench'" in first.stderr and "\x1b[" in first.stderr
        late = client("exec", "-s", "probe", "-f", str(slow), "--timeout", "0.2")
        assert late.returncode == 0 and "done" in late.stdout  # --timeout is not enforced
        (tmp_path / "req.txt").write_text("no-such-package==1\n")
        pip = client("install", "-s", "probe", "-r", str(tmp_path / "req.txt"))
        assert pip.returncode == 0 and "No matching distribution" in pip.stdout
        assert "probe" in client("sessions").stdout
        assert "balance" in client("usage").stdout
    finally:
        assert client("stop", "-s", "probe").returncode == 0
    gone = client("stop", "-s", "probe")
    assert gone.returncode == 1 and "Session 'probe' not found." in gone.stderr


def test_one_session_per_block_stopped_after_it(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                                quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [COLAB], name="blocks", repetitions=2,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert {k: r["status"] for k, r in recs.items()} == {
        "vm+shapes+r001": "ok", "vm+shapes+r002": "ok"}, [r["error"] for r in recs.values()]
    per_block = SESSION + RUN + END
    assert verbs(colab) == CHECK + per_block + per_block
    first, second = sessions(colab)
    assert first != second and "-b1-" in first and "-b2-" in second
    for rec, session in ((recs["vm+shapes+r001"], first), (recs["vm+shapes+r002"], second)):
        # The VM's own measurements, made with the helper code staged in that session's VM.
        staged = colab.root / "vms" / session / "content" / "cloudbench"
        assert Path(rec["helpers"]).is_relative_to(staged), rec["helpers"]
        assert rec["runner"] == "colab" and rec["host_id"] and rec["device_name"]
        assert rec["accelerator"] == "cpu" and rec["train_s"] > 0
        assert rec["n_train"] + rec["n_test"] == 150 and rec["block"] == rec["repetition"]
        assert rec["compute_units"] > 0 and rec["billed_s"] > 0  # `colab usage` around it
    assert (out / "notebooks" / "vm+shapes+r001.ipynb").exists()
    assert (out / "logs" / "vm+shapes+r001.log").exists()  # the VM's papermill log
    log = (out / "logs" / "vm.colab.log").read_text()
    assert log.count("$ colab new") == 2 and "\x1b[" not in log
    assert "compute_units" in (out / "runs.csv").read_text().splitlines()[0]
    assert (out / "runs.csv").read_text().count("\n") == 3
    # The study's own client state file, pinned install, the idle kernel shut down.
    assert all(c[:2] == ["--config", str(out / "colab" / "sessions.json")]
               for c in colab.calls() if c[0] not in ("version", "usage"))
    assert [c for c in calls(colab) if c[0] == "install"][0][-2] == "-r"
    assert "papermill==2.7.0" in (out / "logs" / "vm.colab-requirements.txt").read_text()
    assert "CLOUDBENCH-IDLE-KERNELS 1" in log


def test_no_state_leaks_between_repetitions_in_one_kernel(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two repetitions in one session (one block of two datasets): the exec kernel persists,
    but each driver runs in a child Python, so neither sees what the other imported."""
    from cloudbench.runners import colab as colab_module

    leak = ("import sys\nprint('LEAK-MODULES', sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('runners', 'study')))\n"
            "print('LEAK-GLOBALS', sorted(k for k in globals() if k.startswith('_cloudbench')))\n")
    monkeypatch.setattr(colab_module, "CHILD", leak + colab_module.CHILD)
    spec = write_study(tmp_path / "study.toml", [COLAB], name="fresh", notebook=quick_protocol,
                       dataset={"name": "shapes", "source": "shapes", "images": 150})
    text = spec.read_text() + ('\n[[datasets]]\nname = "more"\nsource = "shapes"\n'
                               'images = 150\n')
    spec.write_text(text)
    out = tmp_path / "results"
    run(spec, out)
    recs = records(out)
    assert [r["status"] for r in recs.values()] == ["ok", "ok"], [r["error"] for r in recs.values()]
    assert verbs(colab).count("new") == 1  # both repetitions in one kernel
    log = (out / "logs" / "vm.colab.log").read_text()
    assert log.count("LEAK-MODULES []") == 2, log
    # Only the wrapper's own function is left in the kernel, never the driver's state.
    assert log.count("LEAK-GLOBALS ['_cloudbench_child', '_cloudbench_idle_kernels']") == 1


@pytest.mark.slow
def test_the_real_protocol_runs_in_a_colab_vm(colab: ColabStandIn, tmp_path: Path) -> None:  # noqa: F811
    """End to end on the real protocol: TensorFlow trains in the VM, its record comes home."""
    spec = write_study(tmp_path / "study.toml", [COLAB], name="real")
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok", rec["error"]
    assert verbs(colab) == CHECK + SESSION + RUN + END
    assert rec["runner"] == "colab" and rec["tensorflow"] and rec["n_params"] == 779
    assert rec["host_id"] and rec["device_name"] and rec["accelerator"] == "cpu"
    assert 0 < rec["train_s"] < rec["total_s"] and 0 <= rec["test_accuracy"] <= 1
    assert rec["n_train"] + rec["n_test"] == 150 and len(rec["epoch_s"]) == 1
    notebook = (out / "notebooks" / "vm+shapes+r001.ipynb").read_text()
    assert "test accuracy" in notebook  # the executed protocol, as the VM ran it
    assert (out / "logs" / "vm+shapes+r001.log").exists()


def test_a_refused_session_is_retried_after_a_wait(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ColabRunner, "backoff_s", 0.5)
    colab.fail(REFUSE_NEW="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="quota", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["attempt"] == 2
    [failed] = attempts(out)
    assert failed["status"] == "failed" and "Allocation refused" in failed["error"]
    # The refused name is released all the same; the retry gets a session of its own.
    assert verbs(colab) == CHECK + ["usage", "new", "stop", "sessions"] + SESSION[1:] + RUN + END
    first, second = sessions(colab)
    assert first != second and rec["billed_s"] >= 0.5  # the back-off came before the retry


@pytest.mark.parametrize(("flag", "says"), [
    ("REJECT_NEW", "Backend rejected accelerator"),
    ("NO_AUTH", "No valid default credentials found")])
def test_a_permanent_refusal_stops_the_environment(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        flag: str, says: str) -> None:
    spec = write_study(tmp_path / "study.toml", [COLAB, {"name": "pc", "runner": "local"}],
                       name="rejected", repetitions=2, notebook=quick_protocol)
    colab.monkeypatch.setattr(ColabRunner, "check", lambda self: None)  # lost after it
    colab.fail(**{flag: "1"})
    run(spec, tmp_path / "results")
    recs = records(tmp_path / "results")
    assert recs["pc+shapes+r001"]["status"] == recs["pc+shapes+r002"]["status"] == "ok"
    first, second = recs["vm+shapes+r001"], recs["vm+shapes+r002"]
    assert first["status"] == second["status"] == "failed" and first["attempt"] == 1
    assert says in first["error"] and "not retried" in first["error"]
    assert second["error"].startswith("not run: Colab refused") and says in second["error"]
    assert verbs(colab).count("new") == 1 and attempts(tmp_path / "results") == []


def test_a_lost_session_is_stopped_and_the_run_retried_in_a_new_one(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path) -> None:  # noqa: F811
    colab.fail(DISCONNECT_EXEC="2", DISCONNECT_AFTER="0.5")  # lost while the driver runs
    spec = write_study(tmp_path / "study.toml", [COLAB], name="lost", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["attempt"] == 2
    [lost] = attempts(out)
    assert lost["status"] == "failed" and "session was lost" in lost["error"]
    assert "Connection was lost." in lost["error"] and "\u2502" not in lost["error"]
    first, second = sessions(colab)
    assert verbs(colab) == (CHECK + SESSION + ["exec", "stop", "sessions"] + SESSION[1:]
                             + RUN + END)
    assert first != second


def test_a_run_past_its_timeout_is_killed_by_the_runner(
        colab: ColabStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        quick_protocol: Path) -> None:
    """The client keeps no deadline (--timeout is ignored): the runner's own does."""
    monkeypatch.setattr(ColabRunner, "margin_s", 0.5)
    colab.fail(HANG_EXEC="2")  # the kernel dies and the client waits for ever
    spec = write_study(tmp_path / "study.toml", [COLAB], name="hung", retries=0, timeout_s=2,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "timeout" and "did not return within 3 s" in rec["error"]
    assert verbs(colab) == CHECK + SESSION + ["exec", "stop", "sessions", "usage"]
    assert "killed after 3 s" in (out / "logs" / "vm.colab.log").read_text()


def test_a_failed_stop_is_checked_and_warned_about(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path) -> None:  # noqa: F811
    colab.fail(STOP_FAILS="1,2")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="billed", notebook=quick_protocol)
    out = tmp_path / "results"
    with pytest.warns(UserWarning, match=r"may still be running \(and billed\): free it with "
                      r"`colab stop -s cb-vm-b1-"):
        run(spec, out)
    assert records(out)["vm+shapes+r001"]["status"] == "ok"
    assert verbs(colab)[-4:] == ["stop", "stop", "sessions", "usage"]
    [left] = colab.live_sessions()
    colab.monkeypatch.delenv("COLAB_STANDIN_STOP_FAILS")
    assert client("--config", str(out / "colab" / "sessions.json"), "stop", "-s",
                  left).returncode == 0


def test_an_orphan_of_a_timed_out_new_is_warned_about(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ColabRunner, "setup_timeout_s", 3.0)
    colab.fail(SLOW_NEW="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="orphan", retries=0,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    with pytest.warns(UserWarning, match="may still be running"):
        run(spec, out)
    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "timeout" and "did not return within 3 s" in rec["error"]
    [left] = colab.live_sessions()  # the server has it; the client's state does not
    runpy.run_path(str(STANDIN_PATH), run_name="standin")["destroy"](left)  # free it here


def test_the_study_goes_on_and_resumes(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                       quick_protocol: Path) -> None:
    colab.fail(REFUSE_NEW="1,2")  # both tries of the colab run are refused
    spec = write_study(tmp_path / "study.toml", [{"name": "pc", "runner": "local"}, COLAB],
                       name="resume", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)
    recs = records(out)
    assert recs["pc+shapes+r001"]["status"] == "ok"
    assert recs["vm+shapes+r001"]["status"] == "failed"
    assert "Colab did not give a CPU session" in recs["vm+shapes+r001"]["error"]
    local_started = recs["pc+shapes+r001"]["started_at"]

    colab.monkeypatch.delenv("COLAB_STANDIN_REFUSE_NEW")
    result = run(spec, out)
    assert [r["run_id"] for r in result.executed] == ["vm+shapes+r001"]
    recs = records(out)
    # Tries are numbered across invocations: 1 and 2 were the refused ones.
    assert recs["vm+shapes+r001"]["status"] == "ok" and recs["vm+shapes+r001"]["attempt"] == 3
    assert recs["pc+shapes+r001"]["started_at"] == local_started
    assert verbs(colab)[-10:] == SESSION + RUN + END


def test_a_gpu_environment_fails_its_run_here_with_a_clear_error(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path) -> None:  # noqa: F811
    """A failure of the protocol inside the VM (here: no GPU) is the run's, not retried.

    The quick protocol raises the real one's DeviceError for any accelerator; the real
    check_device's messages are checked below.
    """
    spec = write_study(tmp_path / "study.toml", [{**COLAB, "name": "t4", "gpu": "t4"}],
                       name="nogpu", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    new = next(c for c in colab.calls() if "new" in c)
    assert new[new.index("new") + 3:] == ["--gpu", "T4"]
    rec = records(out)["t4+shapes+r001"]
    assert rec["status"] == "failed" and rec["attempt"] == 1  # not an infrastructure error
    assert "DeviceError: this environment asks for a GPU" in rec["error"], rec["error"]
    assert attempts(out) == [] and verbs(colab) == CHECK + SESSION + RUN + END


def _stub_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorFlow as it answers on a machine with neither GPU nor TPU (without importing it)."""
    class OpError(Exception):
        pass

    def no_tpu(tpu: str = "") -> None:
        raise ValueError("Please provide a TPU Name to connect to.")

    tf = types.ModuleType("tensorflow")
    tf.test = types.SimpleNamespace(gpu_device_name=lambda: "")  # type: ignore[attr-defined]
    tf.errors = types.SimpleNamespace(OpError=OpError)  # type: ignore[attr-defined]
    tf.distribute = types.SimpleNamespace(  # type: ignore[attr-defined]
        cluster_resolver=types.SimpleNamespace(TPUClusterResolver=no_tpu),
        get_strategy=lambda: "default strategy")
    monkeypatch.setitem(sys.modules, "tensorflow", tf)


def test_the_protocol_refuses_a_missing_gpu_or_tpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real protocol's device check: never a silent fall-back to the CPU."""
    _stub_tensorflow(monkeypatch)
    assert cnn_protocol.check_device("cpu") == "default strategy"
    with pytest.raises(cnn_protocol.DeviceError, match=r"asks for a GPU, but TensorFlow finds "
                       r"none \(tf.test.gpu_device_name\(\) is empty\)"):
        cnn_protocol.check_device("gpu")
    with pytest.raises(cnn_protocol.DeviceError, match="asks for a TPU, but none was found: "
                       "Please provide a TPU Name"):
        cnn_protocol.check_device("tpu")
    sys.modules["tensorflow"].test.gpu_device_name = lambda: "/device:GPU:0"
    assert cnn_protocol.check_device("gpu") == "default strategy"  # a GPU that is there


def test_tpu_environments_trim_to_multiples_of_128(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [
        {**COLAB, "name": "v5", "tpu": "v5e1"},
        {**COLAB, "name": "v6", "tpu": "v6e1", "parameters": {"trim_multiple": 256}},
        {**COLAB, "name": "cpu"}])
    study = load_study(spec)
    job = plan(study)[0]
    trims = {e.name: run_parameters(study, e, job, "r.json").get("trim_multiple")
             for e in study.environments}
    assert trims == {"v5": TPU_TRIM_MULTIPLE, "v6": 256, "cpu": None}


def test_a_missing_client_fails_before_any_run(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = write_study(tmp_path / "study.toml", [COLAB])
    study = load_study(spec)
    env = study.environments[0]
    runner = make_runner(study, env, ResultsStore(tmp_path / "r").runner_paths(env))
    with pytest.raises(SpecError, match="uv tool install --python 3.12 'google-colab-cli"):
        runner.check()


def test_accelerators_as_the_client_spells_them(tmp_path: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [
        {**COLAB, "name": "g4", "gpu": "G4"}, {**COLAB, "name": "v5", "tpu": "V5E1"}])
    load_study(spec)  # any case, g4 included
    for key, value in (("gpu", "p100"), ("tpu", "v4")):
        bad = write_study(tmp_path / f"{key}.toml", [{**COLAB, key: value}])
        with pytest.raises(SpecError, match=f"{value}.*one of"):
            load_study(bad)


@pytest.mark.parametrize(("env", "says"), [
    ({"COLAB_STANDIN_VERSION": "colab-cli 0.9.1"}, "needs google-colab-cli 0.7.x"),
    ({"COLAB_STANDIN_NO_AUTH": "1"}, "authenticate the client")])
def test_check_refuses_another_version_or_no_credentials(
        colab: ColabStandIn, tmp_path: Path, env: dict[str, str],  # noqa: F811
        says: str) -> None:
    for name, value in env.items():
        colab.monkeypatch.setenv(name, value)
    study = load_study(write_study(tmp_path / "study.toml", [COLAB]))
    env = study.environments[0]
    runner = make_runner(study, env, ResultsStore(tmp_path / "r").runner_paths(env))
    with pytest.raises(SpecError, match=says) as info:
        runner.check()
    assert "uv tool install --python 3.12" in str(info.value) or "auth" in str(info.value)

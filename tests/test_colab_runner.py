"""runner = "colab": sessions per block through a stand-in `colab` client on a local folder."""

from __future__ import annotations

import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
from remote_support import (  # noqa: F401 - pytest fixtures
    ColabStandIn,
    attempts,
    colab,
    files_containing,
    records,
    run,
    write_study,
)

from cloudbench.protocols import cnn_protocol
from cloudbench.runners.base import TPU_TRIM_MULTIPLE, make_runner, run_parameters
from cloudbench.runners.colab import AUTH_FIX, ColabRunner, ColabSessionLeft, classify
from cloudbench.study.plan import plan
from cloudbench.study.spec import SpecError, load_study
from cloudbench.study.store import ResultsStore

COLAB = {"name": "vm", "runner": "colab"}
CHECK = ["version", "usage"]  # check(): the client's version, an authentication probe
# The balance, the endpoints before `new` (to tell its orphan), the VM, its staging, pip.
SESSION = ["usage", "sessions", "new", "upload", "exec"]
RUN = ["exec", "download"]
END = ["stop", "sessions", "usage"]  # stopped, confirmed gone, the block's units read


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No back-off; a HOME of the test's own, where the user's client files would be."""
    monkeypatch.setattr(ColabRunner, "backoff_s", 0.0)
    (tmp_path / "user").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


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
    """What google-colab-cli 0.7.5's source does: one persistent kernel; `--timeout` a
    deadline past which the wait loop spins; tracebacks in colour on stderr with exit 0;
    `install` exit 0 on failure without pip's output; tokens in transfer errors and in its
    own log; a stop that cannot find a session exits 0; an empty listing exits 0."""
    probe, slow = tmp_path / "probe.py", tmp_path / "slow.py"
    probe.write_text("x = globals().get('x', 0) + 1\nprint('x', x)\nimport cloudbench.protocols\n")
    slow.write_text("import time\ntime.sleep(1.5)\nprint('done')\n")
    banner = client("sessions")
    assert banner.returncode == 0 and "A new version of Colab CLI" in banner.stdout
    assert "[colab] No active sessions found on server." in banner.stdout
    assert client("new", "-s", "probe").returncode == 0
    try:
        first, second = (client("exec", "-s", "probe", "-f", str(probe)) for _ in range(2))
        assert first.returncode == 0 and "x 1" in first.stdout and "x 2" in second.stdout
        assert "No module named 'cloudbench'" in first.stderr and "\x1b[" in first.stderr
        late = client("exec", "-s", "probe", "-f", str(slow), "--timeout", "0.2")
        assert late.returncode == 0 and "done" in late.stdout  # after a spin at a full core
        assert '"verb": "exec"' in (colab.root / "spins.jsonl").read_text()
        (tmp_path / "req.txt").write_text("no-such-package==1\n")
        pip = client("install", "-s", "probe", "-r", str(tmp_path / "req.txt"))
        assert pip.returncode == 0 and "returned non-zero exit status 1" in pip.stderr
        assert "No matching distribution" not in pip.stdout + pip.stderr
        colab.fail(FORBID_UPLOAD="1")
        forbidden = client("upload", "-s", "probe", str(probe), "content/probe.py")
        assert forbidden.returncode == 1 and "[colab] Upload failed: 403 Client Error: " \
            "Forbidden for url: http://127.0.0.1:" in forbidden.stdout
        assert "&colab-runtime-proxy-token=ptok-standin-secret-" in forbidden.stdout
        missing = client("download", "-s", "probe", "content/nothing", str(tmp_path / "x"))
        assert missing.returncode == 1 and "[colab] Download failed: File or directory not " \
            "found: content/nothing" in missing.stdout
        assert re.search(r"^\[probe\] m-s-\w+ \| Hardware: CPU \| Shape: Standard \| "
                         r"Variant: DEFAULT$", client("sessions").stdout, re.MULTILINE)
        assert re.search(r"^Current balance: \d+\.\d\d compute units$",
                         client("usage").stdout, re.MULTILINE)
    finally:
        assert client("stop", "-s", "probe").returncode == 0
    gone = client("stop", "-s", "probe")
    assert gone.returncode == 0 and "[colab] Session 'probe' not found." in gone.stdout
    own = Path.home() / ".config" / "colab-cli"
    assert "Bearer ya29.standin-bearer" in (own / "colab.log").read_text()
    assert "import time" in (own / "history" / "probe.jsonl").read_text()


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
        # `colab usage` around the block: the account's balance, two decimals.
        assert rec["compute_units_account"] > 0 and rec["billed_s"] > 0
        assert rec["compute_units_other_sessions"] == 0
    assert (out / "notebooks" / "vm+shapes+r001.ipynb").exists()
    assert (out / "logs" / "vm+shapes+r001.log").exists()  # the VM's papermill log
    log = (out / "logs" / "vm.colab.log").read_text()
    assert log.count("$ colab new") == 2 and "\x1b[" not in log
    assert "compute_units_account" in (out / "runs.csv").read_text().splitlines()[0]
    assert (out / "runs.csv").read_text().count("\n") == 3
    # The study's own client state file; papermill pinned, installed with pip through exec.
    assert all(c[:2] == ["--config", str(out / "colab" / "sessions.json")]
               for c in colab.calls() if c[0] not in ("version", "usage"))
    assert "install" not in verbs(colab)
    assert "papermill==2.7.0" in (out / "logs" / "vm.colab-install.py").read_text()
    assert log.count("CLOUDBENCH-PIP-EXIT 0") == 2


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
    assert log.count("LEAK-GLOBALS ['_cloudbench_child', '_cloudbench_install']") == 1


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
    assert verbs(colab) == (CHECK + ["usage", "sessions", "new", "stop", "sessions"]
                            + SESSION[1:] + RUN + END)
    first, second = sessions(colab)
    assert first != second and rec["billed_s"] >= 0.5  # the back-off came before the retry


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("REJECT_NEW", "1", "[colab] Backend rejected accelerator 'T4'"),
    # `sessions` (before `new`) exits 0 with an empty listing: the failure is on stderr.
    ("NO_AUTH", "invalid", "No valid default credentials found"),
    ("NO_AUTH", "missing", "DefaultCredentialsError: Your default credentials were not found"),
    ("NO_AUTH", "oauth", "To authorize colab-cli")])
def test_a_permanent_refusal_stops_the_environment(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        flag: str, value: str, says: str) -> None:
    spec = write_study(tmp_path / "study.toml", [{**COLAB, "gpu": "t4"},
                                                 {"name": "pc", "runner": "local"}],
                       name="rejected", repetitions=2, notebook=quick_protocol)
    colab.monkeypatch.setattr(ColabRunner, "check", lambda self: None)  # lost after it
    colab.fail(**{flag: value})
    run(spec, tmp_path / "results")
    recs = records(tmp_path / "results")
    assert recs["pc+shapes+r001"]["status"] == recs["pc+shapes+r002"]["status"] == "ok"
    first, second = recs["vm+shapes+r001"], recs["vm+shapes+r002"]
    assert first["status"] == second["status"] == "failed" and first["attempt"] == 1
    assert says in first["error"] and "not retried" in first["error"]
    assert second["error"].startswith("not run: Colab refused") and says in second["error"]
    assert verbs(colab).count("new") == (flag == "REJECT_NEW")
    assert attempts(tmp_path / "results") == []
    if flag == "NO_AUTH":  # with the command that fixes it
        assert "gcloud auth application-default login --scopes=openid," in first["error"]


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
    # The client's own deadline lies beyond the runner's: it blocked, never spun a core.
    assert not (colab.root / "spins.jsonl").exists()
    execs = [c for c in calls(colab) if c[0] == "exec"]
    assert all(float(c[c.index("--timeout") + 1]) > 3 for c in execs)


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


def test_an_orphan_of_a_timed_out_new_is_found_and_stopped(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`colab sessions` lists the VM of a `new` that did not return as `[?] ENDPOINT`, and
    `colab stop -s NAME` cannot find it: the runner tells it by the endpoints listed before
    and after, and stops it through a state file naming that endpoint."""
    monkeypatch.setattr(ColabRunner, "setup_timeout_s", 3.0)
    colab.fail(SLOW_NEW="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="orphan", retries=0,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColabSessionLeft)
        run(spec, out)
    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "timeout" and "did not return within 3 s" in rec["error"]
    assert verbs(colab) == CHECK + ["usage", "sessions", "new", "stop", "sessions", "stop",
                                    "sessions", "usage"]
    adopted = [c for c in colab.calls() if "stop" in c][-1]
    assert adopted[:2] == ["--config", str(out / "colab" / f"{sessions(colab)[0]}.orphan.json")]
    assert colab.live_sessions() == [] and not list((out / "colab").glob("*.orphan.json*"))
    assert "did not return and left m-s-" in (out / "logs" / "vm.colab.log").read_text()


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
    ({"COLAB_STANDIN_NO_AUTH": "1"}, "authenticate the client once: `gcloud auth"),
    # `usage` turns the uncaught error into "[colab] Warning: failed to fetch ..." (exit 1).
    ({"COLAB_STANDIN_NO_AUTH": "missing"}, r"failed to fetch compute-unit info: Your "
     r"default credentials were not found.*gcloud auth application-default login")])
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


def test_no_token_or_client_history_is_kept(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                            quick_protocol: Path) -> None:
    """The client prints a transfer's URL with the runtime proxy token on a 403, logs the
    bearer token to its colab.log and every exec's code to its history, and checks for
    updates daily: none of it reaches the results, and the user's own HOME is untouched."""
    colab.fail(FORBID_UPLOAD="1", FORBID_DOWNLOAD="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="tokens", retries=2,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)
    assert records(out)["vm+shapes+r001"]["status"] == "ok"
    upload, download = attempts(out)
    assert "Upload failed: 403 Client Error: Forbidden for url: " in upload["error"]
    assert "Download failed: 403" in download["error"]
    for failed in (upload, download):
        assert "colab-runtime-proxy-token=***" in failed["error"]
    assert "colab-runtime-proxy-token=***" in (out / "logs" / "vm.colab.log").read_text()
    assert files_containing(out, "ptok-standin-secret-") == []
    assert files_containing(out, "ya29.standin-bearer") == []
    # The client's files live in the study's folder, its history and log gone after the block.
    home = out / "colab" / "home" / "vm" / ".config" / "colab-cli"
    assert sorted(p.name for p in home.iterdir()) == ["settings.json"]
    assert '"enable_update_check": false' in (home / "settings.json").read_text()
    assert not (tmp_path / "user" / ".config" / "colab-cli").exists()
    assert not (colab.root / "update-checks.jsonl").exists()
    assert "A new version of Colab CLI" not in (out / "logs" / "vm.colab.log").read_text()


def test_a_failed_pip_install_is_a_permanent_refusal(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`colab install` exits 0 and loses pip's output: the runner runs pip through `exec`."""
    monkeypatch.setattr(ColabRunner, "packages", ("papermill", "no-such-package"))
    spec = write_study(tmp_path / "study.toml", [COLAB], name="pip", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)
    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "failed" and "not retried" in rec["error"], rec["error"]
    assert "installing papermill, no-such-package in the VM failed (pip exited 1)" in rec["error"]
    assert "No matching distribution found for no-such-package" in rec["error"]
    assert "install" not in verbs(colab) and attempts(out) == []


def test_a_missing_result_file_is_not_a_lost_session(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path) -> None:  # noqa: F811
    colab.fail(MISSING_DOWNLOAD="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="missing", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)
    assert records(out)["vm+shapes+r001"]["status"] == "ok"
    [missing] = attempts(out)
    assert "downloading the run's results failed: the file is not in the VM: [colab] " \
        "Download failed: File or directory not found: content/" in missing["error"]
    assert "lost" not in missing["error"]


def test_a_lost_session_is_transient_and_retried_after_a_wait(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ColabRunner, "backoff_s", 0.5)
    colab.fail(LOSE_EXEC="2")  # the VM is gone when the driver's exec starts
    spec = write_study(tmp_path / "study.toml", [COLAB], name="gone", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)
    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["attempt"] == 2 and rec["billed_s"] >= 0.5
    [lost] = attempts(out)
    assert re.search(r"the Colab session was lost: \[colab\] Session 'cb-vm-b1-\w+' appears "
                     r"to be lost \(404/401\)\. Cleaning up\.", lost["error"]), lost["error"]


def test_the_client_messages_are_told_apart() -> None:
    assert classify("[colab] Session 'x' appears to be lost (404/401). Cleaning up.") == \
        "transient"
    assert classify("[colab] Session 'x' not found.") == "transient"
    assert classify("[colab] Download failed: File or directory not found: content/a") == \
        "failed"
    assert classify("google.auth.exceptions.DefaultCredentialsError: Your default "
                    "credentials were not found.") == "permanent"
    assert "gcloud auth application-default login --scopes=" in AUTH_FIX

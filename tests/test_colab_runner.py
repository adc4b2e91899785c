"""runner = "colab": sessions per block through a stand-in `colab` client on a local folder."""

from __future__ import annotations

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

from protocols import cnn_protocol
from runners.base import TPU_TRIM_MULTIPLE, make_runner, run_parameters
from runners.colab import ColabRunner
from study.plan import plan
from study.spec import SpecError, load_study
from study.store import ResultsStore

COLAB = {"name": "vm", "runner": "colab"}
SESSION = ["new", "upload", "install"]


def sessions(standin: ColabStandIn) -> list[str]:
    return [c[2] for c in standin.calls() if c[0] == "new"]


def test_the_vm_sees_only_what_was_staged(colab: ColabStandIn, tmp_path: Path) -> None:  # noqa: F811
    probe = tmp_path / "probe.py"
    probe.write_text("import protocols\n")
    subprocess.run(["colab", "new", "-s", "probe"], check=True, capture_output=True)
    try:
        out = subprocess.run(["colab", "exec", "-s", "probe", "-f", str(probe)],
                             capture_output=True, text=True)
    finally:
        subprocess.run(["colab", "stop", "-s", "probe"], check=True, capture_output=True)
    assert out.returncode == 0  # like the real client, whatever the code did
    assert "No module named 'protocols'" in out.stderr


def test_one_session_per_block_stopped_after_it(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                                quick_protocol: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [COLAB], name="blocks", repetitions=2,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert {k: r["status"] for k, r in recs.items()} == {
        "vm+shapes+r001": "ok", "vm+shapes+r002": "ok"}, [r["error"] for r in recs.values()]
    per_run = SESSION + ["exec", "download", "stop"]
    assert colab.verbs() == per_run + per_run
    first, second = sessions(colab)
    assert first != second and "-b1-" in first and "-b2-" in second
    for rec, session in ((recs["vm+shapes+r001"], first), (recs["vm+shapes+r002"], second)):
        # The VM's own measurements, made with the helper code staged in that session's VM.
        staged = colab.root / "vms" / session / "content" / "cloudbench"
        assert Path(rec["helpers"]).is_relative_to(staged), rec["helpers"]
        assert rec["runner"] == "colab" and rec["host_id"] and rec["device_name"]
        assert rec["accelerator"] == "cpu" and rec["train_s"] > 0
        assert rec["n_train"] + rec["n_test"] == 150 and rec["block"] == rec["repetition"]
    assert (out / "notebooks" / "vm+shapes+r001.ipynb").exists()
    assert (out / "logs" / "vm+shapes+r001.log").exists()  # the VM's papermill log
    assert (out / "logs" / "vm.colab.log").read_text().count("$ colab new") == 2
    assert (out / "runs.csv").read_text().count("\n") == 3


@pytest.mark.slow
def test_the_real_protocol_runs_in_a_colab_vm(colab: ColabStandIn, tmp_path: Path) -> None:  # noqa: F811
    """End to end on the real protocol: TensorFlow trains in the VM, its record comes home."""
    spec = write_study(tmp_path / "study.toml", [COLAB], name="real")
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok", rec["error"]
    assert colab.verbs() == SESSION + ["exec", "download", "stop"]
    assert rec["runner"] == "colab" and rec["tensorflow"] and rec["n_params"] == 779
    assert rec["host_id"] and rec["device_name"] and rec["accelerator"] == "cpu"
    assert 0 < rec["train_s"] < rec["total_s"] and 0 <= rec["test_accuracy"] <= 1
    assert rec["n_train"] + rec["n_test"] == 150 and len(rec["epoch_s"]) == 1
    notebook = (out / "notebooks" / "vm+shapes+r001.ipynb").read_text()
    assert "test accuracy" in notebook  # the executed protocol, as the VM ran it
    assert (out / "logs" / "vm+shapes+r001.log").exists()


def test_a_refused_session_is_retried(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                      quick_protocol: Path) -> None:
    colab.fail(REFUSE_NEW="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="quota", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["attempt"] == 2
    [failed] = attempts(out)
    assert failed["status"] == "failed" and "Allocation refused" in failed["error"]
    # The refused name is released all the same; the retry gets a session of its own.
    assert colab.verbs() == ["new", "stop"] + SESSION + ["exec", "download", "stop"]
    first, second = sessions(colab)
    assert colab.calls()[1] == ["stop", "-s", first] and first != second


def test_a_lost_session_is_stopped_and_the_run_retried_in_a_new_one(
        colab: ColabStandIn, tmp_path: Path, quick_protocol: Path) -> None:  # noqa: F811
    colab.fail(DISCONNECT_EXEC="1", DISCONNECT_AFTER="0.5")  # lost while the driver runs
    spec = write_study(tmp_path / "study.toml", [COLAB], name="lost", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "ok" and rec["attempt"] == 2
    [lost] = attempts(out)
    assert lost["status"] == "failed" and "session was lost" in lost["error"]
    first, second = sessions(colab)
    assert colab.verbs() == SESSION + ["exec", "stop"] + SESSION + ["exec", "download", "stop"]
    assert colab.calls()[4] == ["stop", "-s", first] and first != second


def test_client_timeouts_become_timeout_runs(colab: ColabStandIn, tmp_path: Path,  # noqa: F811
                                             quick_protocol: Path) -> None:
    colab.fail(TIMEOUT_EXEC="1,2")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="slow", notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "timeout" and rec["attempt"] == 2
    assert "timed out" in rec["error"] and "TimeoutError" in rec["error"]
    assert [a["status"] for a in attempts(out)] == ["timeout"]
    assert colab.verbs() == 2 * (SESSION + ["exec", "stop"])  # each try in its own session


def test_a_hung_client_is_killed_at_the_run_timeout(
        colab: ColabStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        quick_protocol: Path) -> None:
    monkeypatch.setattr(ColabRunner, "margin_s", 0.5)
    colab.fail(HANG_EXEC="1")
    spec = write_study(tmp_path / "study.toml", [COLAB], name="hung", retries=0, timeout_s=2,
                       notebook=quick_protocol)
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["vm+shapes+r001"]
    assert rec["status"] == "timeout" and "did not return within 3 s" in rec["error"]
    assert colab.verbs() == SESSION + ["exec", "stop"]


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

    colab.clear()
    result = run(spec, out)
    assert [r["run_id"] for r in result.executed] == ["vm+shapes+r001"]
    recs = records(out)
    # Tries are numbered across invocations: 1 and 2 were the refused ones.
    assert recs["vm+shapes+r001"]["status"] == "ok" and recs["vm+shapes+r001"]["attempt"] == 3
    assert recs["pc+shapes+r001"]["started_at"] == local_started
    assert colab.verbs()[-6:] == SESSION + ["exec", "download", "stop"]


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

    assert colab.calls()[0][3:] == ["--gpu", "T4"]
    rec = records(out)["t4+shapes+r001"]
    assert rec["status"] == "failed" and rec["attempt"] == 1  # not an infrastructure error
    assert "DeviceError: this environment asks for a GPU" in rec["error"], rec["error"]
    assert attempts(out) == [] and colab.verbs() == SESSION + ["exec", "download", "stop"]


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
    runner = make_runner(study, study.environments[0], ResultsStore(tmp_path / "r"))
    with pytest.raises(SpecError, match="google-colab-cli"):
        runner.check()

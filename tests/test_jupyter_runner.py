"""runner = "jupyter": a real kernel gateway with a token, kernels that cannot see this repo."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelClient
from remote_support import (  # noqa: F401 - pytest fixtures
    TOKEN_ENV,
    Gateway,
    files_containing,
    gateway,
    make_folder_dataset,
    records,
    run,
    write_study,
)

from cloudbench.cli.main import main
from cloudbench.runners import gateway as gateway_module
from cloudbench.runners.base import make_runner
from cloudbench.runners.gateway import (
    RemoteCodeError,
    StagedGatewayKernelManager,
    TokenGatewayKernelClient,
)
from cloudbench.runners.jupyter import SETTINGS_ENV, JupyterRunner
from cloudbench.runners.secrets import scrub, scrub_file
from cloudbench.runners.staging import KERNEL_PACKAGES, Stage, toolkit_files
from cloudbench.study.plan import plan
from cloudbench.study.spec import SpecError, load_study
from cloudbench.study.store import ResultsStore

#: Long enough for a loaded machine to start the remote kernel and reach the protocol's cell.
TIMEOUT_S = 8


def jupyter_env(server: Gateway, name: str = "lab") -> dict[str, object]:
    return {"name": name, "runner": "jupyter", "url": server.url, "token_env": TOKEN_ENV}


def in_kernel(server: Gateway, monkeypatch: pytest.MonkeyPatch, code: str,
              settings: dict[str, object] | None = None) -> tuple[str, dict]:
    """Run code in a fresh gateway kernel from this process; what it printed, what connected."""
    monkeypatch.setenv("JUPYTER_GATEWAY_URL", server.url)
    monkeypatch.setenv("JUPYTER_GATEWAY_AUTH_TOKEN", server.token)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(settings or {}))
    GatewayClient.clear_instance()

    async def session() -> tuple[str, dict]:
        km = StagedGatewayKernelManager(kernel_name="python3")
        await km.start_kernel()
        connected = {}
        try:
            for cls in (GatewayKernelClient, TokenGatewayKernelClient):
                kc = cls(kernel_id=km.kernel_id, parent=km)
                try:
                    await kc.start_channels()
                    kc.stop_channels()
                    connected[cls.__name__] = "connected"
                except Exception as exc:  # the stock client's 401
                    connected[cls.__name__] = str(exc)
            try:
                return await km.run_code(code), connected
            except RemoteCodeError as exc:
                return str(exc), connected
        finally:
            await km.shutdown_kernel(now=True)

    try:
        return asyncio.run(session())
    finally:
        GatewayClient.clear_instance()


def test_websocket_carries_the_token_and_kernels_cannot_see_the_repo(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    out, connected = in_kernel(gateway, monkeypatch, "import cloudbench.protocols")
    assert "401" in connected["GatewayKernelClient"]  # jupyter_server's own client
    assert connected["TokenGatewayKernelClient"] == "connected"
    assert "No module named 'cloudbench'" in out  # only staging can make it importable


def test_staging_in_pieces_makes_the_helper_code_importable(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(gateway_module, "CHUNK_BYTES", 2048)  # several pieces even for a small zip
    stage = Stage({**toolkit_files(KERNEL_PACKAGES), "probe.txt": tmp_path.name.encode()})
    archive = stage.write_zip(tmp_path / "stage.zip")
    assert archive.stat().st_size > 3 * 2048
    out, _ = in_kernel(gateway, monkeypatch, "import os, cloudbench.protocols.cnn_protocol as p\n"
                       "print(p.__file__, os.getcwd(), os.environ['PROBE_VAR'])", settings={
                           "stage_zip": str(archive), "stage_version": stage.version,
                           "study": "probe", "env": {"PROBE_VAR": "set"}})
    staged = gateway.remote_dir / "stage" / stage.version
    assert out.split() == [str(staged / "cloudbench" / "protocols" / "cnn_protocol.py"),
                           str(gateway.remote_dir), "set"]
    assert (staged / "probe.txt").read_text() == tmp_path.name


def test_runs_through_the_gateway_with_staged_code_and_data(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        quick_protocol: Path) -> None:
    monkeypatch.setenv(TOKEN_ENV, gateway.token)
    images = make_folder_dataset(tmp_path / "images")
    spec = write_study(tmp_path / "study.toml", [jupyter_env(gateway)], name="gw", repetitions=2,
                       dataset={"name": "tones", "source": "folder", "path": str(images),
                                "size": [20, 20]}, notebook=quick_protocol)
    out = tmp_path / "results"
    result = run(spec, out)

    recs = records(out)
    assert [r["status"] for r in recs.values()] == ["ok", "ok"], [r["error"] for r in recs.values()]
    first, second = recs["lab+tones+r001"], recs["lab+tones+r002"]
    assert first["runner"] == "jupyter" and first["n_train"] + first["n_test"] == 36
    assert first["n_classes"] == 3 and first["host_id"] and first["test_accuracy"] is not None
    assert (out / "notebooks" / "lab+tones+r001.ipynb").exists()
    assert len(result.executed) == 2 and (out / "runs.csv").read_text().count("\n") == 3

    # The helper code and the images were staged once, under one content-hashed version,
    # and the kernel imported the helpers from there (it cannot see this repository).
    [staged] = [v for v in (gateway.remote_dir / "stage").iterdir()
                if (v / "datasets" / "tones").is_dir()]
    helpers = staged / "cloudbench" / "protocols" / "cnn_protocol.py"
    assert first["helpers"] == second["helpers"] == str(helpers)
    assert len(list((staged / "datasets" / "tones").rglob("*.png"))) == 36
    complete = dt.datetime.fromtimestamp((staged / ".complete").stat().st_mtime, dt.UTC)
    assert complete < dt.datetime.fromisoformat(second["started_at"])
    assert list((gateway.remote_dir / "incoming").iterdir()) == []

    # The token reached no file: not job.json (deleted), records, notebooks, logs or CSV.
    assert files_containing(out, gateway.token) == []
    assert not list((out / ".work").glob("*/job.json"))


@pytest.mark.slow
def test_the_real_protocol_runs_through_the_gateway(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """End to end on the real protocol: TensorFlow trains in the remote kernel on staged images."""
    monkeypatch.setenv(TOKEN_ENV, gateway.token)
    images = make_folder_dataset(tmp_path / "images")
    spec = write_study(tmp_path / "study.toml", [jupyter_env(gateway)], name="gwreal",
                       dataset={"name": "tones", "source": "folder", "path": str(images),
                                "size": [20, 20]})
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["lab+tones+r001"]
    assert rec["status"] == "ok", rec["error"]
    assert rec["runner"] == "jupyter" and rec["n_train"] + rec["n_test"] == 36
    assert rec["tensorflow"] and rec["host_id"] and rec["n_params"] > 0
    assert 0 < rec["train_s"] < rec["total_s"] and 0 <= rec["test_accuracy"] <= 1
    assert "test accuracy" in (out / "notebooks" / "lab+tones+r001.ipynb").read_text()
    assert files_containing(out, gateway.token) == []
    assert gateway.kernels() == []


def test_a_wrong_token_is_a_clear_authentication_error(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str], quick_protocol: Path) -> None:
    wrong = "wrong-" + gateway.token[::-1]
    monkeypatch.setenv(TOKEN_ENV, wrong)
    spec = write_study(tmp_path / "study.toml", [jupyter_env(gateway)], name="badtoken",
                       notebook=quick_protocol)
    out = tmp_path / "results"

    # Before any run: the study stops with the reason.
    assert main(["run", str(spec), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "authentication failed" in err and TOKEN_ENV in err and wrong not in err
    assert not list((out / "records").glob("*.json"))

    # And a run that gets past the check (a token revoked mid-study) fails clearly, unretried.
    study = load_study(spec)
    store = ResultsStore(out)
    store.prepare()
    env = study.environments[0]
    result = make_runner(study, env, store.runner_paths(env)).run(plan(study)[0], 1)
    record = result.record.to_dict()
    assert record["status"] == "failed" and result.infrastructure is False
    assert record["error"].startswith("authentication failed") and TOKEN_ENV in record["error"]
    assert files_containing(out, wrong) == [] and wrong not in json.dumps(record)
    assert gateway.kernels() == []


def test_a_timed_out_run_stops_its_remote_kernel(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        quick_protocol: Path) -> None:
    monkeypatch.setenv(TOKEN_ENV, gateway.token)
    spec = write_study(tmp_path / "study.toml", [jupyter_env(gateway, "slowlab")], name="late",
                       retries=0, timeout_s=TIMEOUT_S, notebook=quick_protocol,
                       parameters={"sleep_s": 600.0})
    out = tmp_path / "results"
    run(spec, out)
    record = records(out)["slowlab+shapes+r001"]
    assert record["status"] == "timeout" and f"timeout of {TIMEOUT_S:g} s" in record["error"]
    # The kernel was inside the protocol's cell, busy, when the run was stopped ...
    started = gateway.remote_dir / "runs" / "late" / "slowlab+shapes+r001.1.json.started"
    assert started.exists(), "the run timed out before its kernel reached the protocol"
    assert gateway.kernels() == []  # ... and nobody is left computing on the server


def test_an_unset_token_variable_fails_fast(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    spec = write_study(tmp_path / "study.toml", [
        {"name": "lab", "runner": "jupyter", "url": "http://127.0.0.1:9", "token_env": TOKEN_ENV}])
    study = load_study(spec)
    env = study.environments[0]
    runner = make_runner(study, env, ResultsStore(tmp_path / "r").runner_paths(env))
    assert isinstance(runner, JupyterRunner)
    with pytest.raises(SpecError, match=f"environments\\[0\\].token_env: the variable {TOKEN_ENV}"):
        runner.check()


def test_scrubbing_keeps_notebooks_valid(tmp_path: Path) -> None:
    secret = "tok3n-value"
    assert scrub(f"HTTP 401 for {secret}", secret) == "HTTP 401 for ***"
    notebook = tmp_path / "x.ipynb"
    notebook.write_text(json.dumps({"cells": [{"outputs": [f"token={secret}"]}]}))
    log = tmp_path / "x.log"
    log.write_text(f"Authorization: token {secret}\n")
    for path in (notebook, log):
        scrub_file(path, secret)
        assert secret not in path.read_text()
    assert json.loads(notebook.read_text())["cells"][0]["outputs"] == ["token=***"]

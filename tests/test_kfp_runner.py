"""runner = "kfp": a block's runs as one Kubeflow pipeline; kfp.local for real, the rest stand-ins.

Host local runs for real: kfp.local's SubprocessRunner executes each task in a subprocess of
this Python, which unpacks the staged toolkit and runs the repetition with the local runner.
Kubeflow and Vertex AI cannot run here: their clients (kfp.Client, aiplatform.PipelineJob)
and their object stores are stand-ins that keep the calls, read the compiled pipeline as the
engine would and write each task's result where the engine's pipeline root would hold it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import secrets
import sys
import types
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

kfp = pytest.importorskip("kfp")
import kfp_server_api  # noqa: E402 - installed with kfp
import yaml  # noqa: E402 - installed with kfp
from remote_support import HIDE_REPO, attempts, records, run, write_study  # noqa: E402

from cloudbench.cli.main import main  # noqa: E402
from cloudbench.runners.base import LOCAL_MACHINE, Try, make_runner  # noqa: E402
from cloudbench.runners.kfp import KfpRunner  # noqa: E402
from cloudbench.study.layout import RunnerPaths  # noqa: E402
from cloudbench.study.plan import plan  # noqa: E402
from cloudbench.study.spec import SpecError, load_study  # noqa: E402
from cloudbench.study.store import ResultsStore  # noqa: E402

KFP = {"name": "kf", "runner": "kfp"}
PC = {"name": "pc", "runner": "local"}
TOKEN_ENV = "CLOUDBENCH_TEST_KFP_TOKEN"


def study(tmp_path: Path, environments: list[dict[str, Any]], notebook: Path, *,
          more_datasets: int = 0, **kwargs: Any) -> Path:
    """A tiny study on the quick protocol; `more_datasets` adds shapes sets to each block."""
    spec = write_study(tmp_path / "study.toml", environments, notebook=notebook,
                       dataset={"name": "shapes", "source": "shapes", "images": 60}, **kwargs)
    with open(spec, "a", encoding="utf-8") as fh:
        for k in range(more_datasets):
            fh.write(f'\n[[datasets]]\nname = "more{k}"\nsource = "shapes"\nimages = 60\n')
    return spec


def run_tasks(spec: dict[str, Any]) -> list[str]:
    """The compiled pipeline's run tasks, in the order their dependencies chain them."""
    tasks = spec["root"]["dag"]["tasks"]
    mine = [n for n, t in tasks.items() if t["componentRef"]["name"].startswith("comp-run")]
    return sorted(mine, key=lambda n: len(tasks[n].get("dependentTasks", [])))


def check_caching_off(spec: dict[str, Any]) -> None:
    for name, task in spec["root"]["dag"]["tasks"].items():
        assert task["cachingOptions"].get("enableCache", False) is False, name


# ------------------------------------------------------------------------------------------
# host local: kfp.local for real
# ------------------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a folder outside the checkout, so that nothing lands in the cwd unseen."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_a_study_runs_end_to_end_through_kfp_local(
        tmp_path: Path, quick_protocol: Path, elsewhere: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The tasks' Python cannot import the checkout: what they run arrived in the stage.
    monkeypatch.setenv("PYTHONPATH", str(HIDE_REPO))
    spec = study(tmp_path, [PC, KFP], quick_protocol, name="local", repetitions=2)
    assert load_study(spec).environment("kf").machine == LOCAL_MACHINE
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert {k: r["status"] for k, r in recs.items()} == dict.fromkeys(
        ["kf+shapes+r001", "kf+shapes+r002", "pc+shapes+r001", "pc+shapes+r002"], "ok"), \
        [r["error"] for r in recs.values()]
    scratch = out / ".work" / "kfp" / "scratch" / "stage"
    for rid in ("kf+shapes+r001", "kf+shapes+r002"):
        rec = recs[rid]
        assert rec["runner"] == "kfp" and rec["attempt"] == 1 and rec["machine"] == LOCAL_MACHINE
        assert Path(rec["helpers"]).is_relative_to(scratch), rec["helpers"]  # the staged code
        for key in ("python", "os", "cpu_model", "cpu_count", "ram_gb", "device_name",
                    "host_id"):
            assert rec[key], key
        assert rec["accelerator"] == "cpu" and rec["n_train"] + rec["n_test"] == 60
        assert rec["block"] == rec["repetition"] and rec["train_s"] > 0
        assert (out / "notebooks" / f"{rid}.ipynb").exists()
        assert (out / "logs" / f"{rid}.log").exists()
    csv = (out / "runs.csv").read_text()
    assert csv.count("\n") == 5 and csv.count(",kfp,") == 2
    log = (out / "logs" / "kf.kfp.log").read_text()
    assert log.count("(kfp.local)") == 2 and "finished with status" in log
    # kfp.local's outputs went under the results folder, and each block's were removed.
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in (out / ".work" / "kfp").iterdir()) == ["scratch"]


@pytest.mark.slow
def test_the_real_protocol_runs_in_a_kfp_local_task(tmp_path: Path, elsewhere: Path) -> None:
    spec = write_study(tmp_path / "study.toml", [KFP], name="real",
                       dataset={"name": "shapes", "source": "shapes", "images": 60})
    out = tmp_path / "results"
    run(spec, out)

    rec = records(out)["kf+shapes+r001"]
    assert rec["status"] == "ok", rec["error"]
    assert rec["runner"] == "kfp" and rec["tensorflow"] and rec["model"] == "shapes_cnn"
    assert rec["n_params"] > 0 and len(rec["epoch_s"]) == 1
    assert 0 < rec["train_s"] < rec["total_s"] and 0 <= rec["test_accuracy"] <= 1
    assert rec["host_id"] and rec["device_name"] and rec["accelerator"] == "cpu"
    assert "test accuracy" in (out / "notebooks" / "kf+shapes+r001.ipynb").read_text()


def test_a_run_failing_in_its_notebook_is_a_failed_record_not_retried(
        tmp_path: Path, quick_protocol: Path, elsewhere: Path) -> None:
    spec = study(tmp_path, [KFP], quick_protocol, name="fails", repetitions=2,
                 parameters={"fail_on": "kf+shapes+r001"})
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert recs["kf+shapes+r002"]["status"] == "ok"
    failed = recs["kf+shapes+r001"]
    assert failed["status"] == "failed" and failed["attempt"] == 1
    assert "deliberate failure for kf+shapes+r001" in failed["error"]
    assert attempts(out) == []  # the component did not crash: nothing to retry
    assert (out / "notebooks" / "kf+shapes+r001.ipynb").exists()


CRASH = """\
import os, sys

_once = os.environ.get("CB_TEST_EXIT_ONCE")
if _once and not os.path.exists(_once):  # the first Python to start dies (a lost pod)
    open(_once, "w").close()
    os._exit(3)


class _Lacks:  # an image without this package
    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("CB_TEST_LACKS"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, _Lacks())
"""


@pytest.fixture
def crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sitecustomize for the tasks' Python that makes their component crash."""
    folder = tmp_path / "crash"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(CRASH)
    monkeypatch.setenv("PYTHONPATH", str(folder))
    return folder


def test_a_crashing_component_is_retried_and_the_study_goes_on(
        tmp_path: Path, quick_protocol: Path, elsewhere: Path, crash: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_LACKS", "papermill")  # every try of the component raises
    spec = study(tmp_path, [PC, KFP], quick_protocol, name="crash", retries=1)
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert recs["pc+shapes+r001"]["status"] == "ok"
    rec = recs["kf+shapes+r001"]
    assert rec["status"] == "failed" and rec["attempt"] == 2
    assert "the pipeline task of kf+shapes+r001 failed" in rec["error"]
    assert "ModuleNotFoundError: No module named 'papermill'" in rec["error"], rec["error"]
    [first] = attempts(out)  # the infrastructure failure was tried again, once
    assert first["attempt"] == 1 and first["error"] == rec["error"]


def test_a_lost_task_fails_the_rest_of_its_block_which_a_rerun_completes(
        tmp_path: Path, quick_protocol: Path, elsewhere: Path, crash: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CB_TEST_EXIT_ONCE", str(crash / "crashed"))
    spec = study(tmp_path, [KFP], quick_protocol, name="lost", repetitions=2, retries=0,
                 more_datasets=1)
    out = tmp_path / "results"
    result = run(spec, out)

    first, second = [r["run_id"] for r in result.executed[:2]]  # block 1, in its order
    recs = records(out)
    assert recs[first]["status"] == "failed" and recs[second]["status"] == "failed"
    assert f"the pipeline task of {first} failed: no result came back" in recs[first]["error"]
    assert recs[second]["error"] == (f"the task did not run: the pipeline stopped when the "
                                     f"task of {first} failed")
    assert [recs[r]["status"] for r in recs if r.endswith("r002")] == ["ok", "ok"]

    again = run(spec, out)  # resumes: the two runs of block 1 in one pipeline
    assert sorted(r["run_id"] for r in again.executed) == sorted([first, second])
    recs = records(out)
    assert all(r["status"] == "ok" for r in recs.values())
    assert recs[first]["attempt"] == recs[second]["attempt"] == 2


# ------------------------------------------------------------------------------------------
# the compiled pipeline, and the study file's keys
# ------------------------------------------------------------------------------------------


def test_the_exported_pipeline_has_caching_off_and_the_gpu_on_every_task(
        tmp_path: Path, quick_protocol: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv(TOKEN_ENV, token)
    spec = study(tmp_path, [
        {**KFP, "name": "t4", "gpu": "t4", "cpu_limit": 4, "memory_limit": "16G"},
        {**KFP, "name": "cluster", "host": "kubeflow", "url": "https://kfp.example.org",
         "token_env": TOKEN_ENV, "pipeline_root": "minio://mlpipeline/v2/artifacts",
         "gpu": "t4", "accelerator_count": 2}, PC], quick_protocol, repetitions=3)
    out = tmp_path / "t4.yaml"
    assert main(["export", "kfp", str(spec), "--environment", "t4", "-o", str(out)]) == 0

    compiled = yaml.safe_load(out.read_text())
    check_caching_off(compiled)
    tasks = run_tasks(compiled)
    dag = compiled["root"]["dag"]["tasks"]
    assert [dag[n]["taskInfo"]["name"] for n in tasks] == [
        f"t4+shapes+r00{k}" for k in (1, 2, 3)]
    for previous, task in zip(tasks, tasks[1:], strict=False):  # chained in planned order
        assert previous in dag[task]["dependentTasks"]
    executors = compiled["deploymentSpec"]["executors"]
    for task in tasks:
        label = compiled["components"][dag[task]["componentRef"]["name"]]["executorLabel"]
        container = executors[label]["container"]
        resources = container["resources"]
        assert resources["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["resourceCpuLimit"] == "4" and resources["resourceMemoryLimit"] == "16G"
        assert "pip install" not in json.dumps(container["command"])  # this Python, as it is

    remote = tmp_path / "cluster.yaml"
    assert main(["export", "kfp", str(spec), "--environment", "cluster", "-o",
                 str(remote)]) == 0
    text = remote.read_text()
    assert token not in text and TOKEN_ENV not in text
    compiled = yaml.safe_load(text)
    check_caching_off(compiled)
    for executor in compiled["deploymentSpec"]["executors"].values():
        if "container" in executor:
            resources = executor["container"]["resources"]["accelerator"]
            assert resources["resourceType"] == "nvidia.com/gpu"
            assert resources["resourceCount"] == "2"
            assert "papermill" in json.dumps(executor["container"]["command"])

    assert main(["export", "kfp", str(spec), "--environment", "pc", "-o",
                 str(tmp_path / "pc.yaml")]) == 2


@pytest.mark.parametrize(("keys", "error"), [
    ({"url": "https://x.org"}, r"environments\[0\]\.url: only for host 'kubeflow'"),
    ({"host": "kubeflow", "pipeline_root": "gs://b/r"},
     r"environments\[0\]\.url: required with host"),
    ({"host": "kubeflow", "url": "ftp://x", "pipeline_root": "gs://b/r"},
     r"environments\[0\]\.url: expected http"),
    ({"host": "vertex", "project": "p", "region": "r", "pipeline_root": "s3://b/r"},
     r"environments\[0\]\.pipeline_root: expected a bucket URI \(gs://\)"),
    ({"host": "vertex", "project": "p", "pipeline_root": "gs://b/r"},
     r"environments\[0\]\.region: required"),
    ({"accelerator_type": "NVIDIA_L4"}, r"environments\[0\]\.accelerator_type: set gpu"),
    ({"gpu": "k80"}, r"environments\[0\]\.gpu: no accelerator type is known for 'k80'"),
    ({"tpu": "v5e1"}, r"environments\[0\]\.tpu: the kfp runner requests GPUs only"),
    ({"memory_limit": "lots"}, r"environments\[0\]\.memory_limit: expected a size"),
    ({"cpu_limit": "four"}, r"environments\[0\]\.cpu_limit: expected a number"),
    ({"image": "tensorflow/tensorflow:latest"}, r"environments\[0\]\.image: only for host"),
    ({"host": "cloud"}, r"environments\[0\]\.host: 'cloud' is not one of: local, kubeflow, vertex"),
])
def test_the_study_file_keys_are_checked(tmp_path: Path, quick_protocol: Path,
                                         keys: dict[str, Any], error: str) -> None:
    spec = study(tmp_path, [{**KFP, **keys}], quick_protocol)
    with pytest.raises(SpecError, match=error):
        load_study(spec)


def test_a_remote_host_is_a_machine_of_its_own(tmp_path: Path, quick_protocol: Path) -> None:
    spec = study(tmp_path, [KFP, {**KFP, "name": "vx", "host": "vertex", "project": "p",
                                  "region": "europe-west4", "pipeline_root": "gs://b/r"}],
                 quick_protocol)
    machines = {e.name: e.machine for e in load_study(spec).environments}
    assert machines == {"kf": LOCAL_MACHINE, "vx": "vx"}


def test_missing_clients_fail_before_any_run(tmp_path: Path, quick_protocol: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = study(tmp_path, [KFP, {**KFP, "name": "vx", "host": "vertex", "project": "p",
                                  "region": "r", "pipeline_root": "gs://b/r"}], quick_protocol)
    loaded = load_study(spec)
    store = ResultsStore(tmp_path / "r")
    real = importlib.util.find_spec
    missing: set[str] = {"kfp"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))
    env = loaded.environments[0]
    with pytest.raises(SpecError, match=r"pip install -e '\.\[kfp\]'"):
        make_runner(loaded, env, store.runner_paths(env)).check()
    missing = {"google.cloud.aiplatform"}
    env = loaded.environments[1]
    with pytest.raises(SpecError,
                       match=r"environments\[1\]\.host: .*pip install -e '\.\[vertex\]'"):
        make_runner(loaded, env, store.runner_paths(env)).check()


# ------------------------------------------------------------------------------------------
# Kubeflow and Vertex AI: stand-ins of the clients and of the pipeline root's storage
# ------------------------------------------------------------------------------------------


class Cloud:
    """The engine and its object store: runs a compiled pipeline by reading its YAML, as a
    pipeline engine would, and writes each task's result artifact under the run's root."""

    def __init__(self, study: str) -> None:
        self.study = study  # whose runs its records say they are
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.packages: list[str] = []  # the compiled YAML of every submitted pipeline
        self.fail: set[tuple[str, int]] = set()  # (run id, attempt) whose task fails

    def execute(self, package: str, arguments: dict[str, Any], root: str
                ) -> list[tuple[str, str, str]]:
        """(display name, state, error) of each run task."""
        text = Path(package).read_text()
        self.packages.append(text)
        spec = yaml.safe_load(text)
        assert arguments["stage_uri"] in self.objects, "the importer finds no stage"
        check_caching_off(spec)
        dag = spec["root"]["dag"]["tasks"]
        states, broken = [], False
        for name in run_tasks(spec):
            params = dag[name]["inputs"]["parameters"]
            job = json.loads(params["job"]["runtimeValue"]["constant"])
            attempt = int(params["attempt"]["runtimeValue"]["constant"])
            display = dag[name]["taskInfo"]["name"]
            if broken:
                states.append((display, "SKIPPED", ""))
            elif (job["run_id"], attempt) in self.fail:
                broken = True
                states.append((display, "FAILED", "The replica workerpool0-0 exited with a "
                               "non-zero status of 1"))
            else:
                uri = f"{root}/{spec['pipelineInfo']['name']}/{uuid.uuid4()}/{name}/result"
                self.objects[uri] = self.result(job, attempt)
                states.append((display, "SUCCEEDED", ""))
        return states

    def result(self, job: dict[str, Any], attempt: int) -> bytes:
        """What runners.vm.run_job packs: the record, the executed notebook, the log."""
        env, dataset, _ = job["run_id"].split("+")
        record = {"run_id": job["run_id"], "study": self.study, "environment": env,
                  "dataset": dataset, "block": job["block"], "repetition": job["repetition"],
                  "attempt": attempt, "status": "ok", "error": None, "train_s": 2.5,
                  "total_s": 3.0, "host_id": "stand-in", "device_name": "Tesla T4",
                  "format_version": 1}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr("record.json", json.dumps(record))
            zf.writestr("notebook.ipynb", "{}")
            zf.writestr("run.log", "ran in the stand-in\n")
        return buffer.getvalue()


def storage_module(cloud: Cloud) -> types.ModuleType:
    """google.cloud.storage, as much of it as the runner uses, on cloud.objects."""
    class Blob:
        def __init__(self, bucket: str, name: str):
            self.uri, self.name = f"gs://{bucket}/{name}", name

        def upload_from_filename(self, filename: str) -> None:
            cloud.objects[self.uri] = Path(filename).read_bytes()

        def download_to_filename(self, filename: str) -> None:
            Path(filename).write_bytes(cloud.objects[self.uri])

    class Client:
        def __init__(self, project: str | None = None):
            cloud.calls.append(("storage.Client", {"project": project}))

        def bucket(self, name: str) -> Any:
            return SimpleNamespace(blob=lambda key: Blob(name, key))

        def list_blobs(self, bucket: str, prefix: str = "") -> list[Blob]:
            start = f"gs://{bucket}/{prefix}"
            return [Blob(bucket, u[len(f"gs://{bucket}/"):]) for u in cloud.objects
                    if u.startswith(start)]

    module = types.ModuleType("google.cloud.storage")
    module.Client = Client  # type: ignore[attr-defined]
    return module


def boto3_module(cloud: Cloud) -> types.ModuleType:
    """boto3's S3 client (a MinIO behind AWS_ENDPOINT_URL), on cloud.objects."""
    def uri(bucket: str, key: str) -> str:
        return f"minio://{bucket}/{key}"

    class S3:
        def upload_file(self, filename: str, bucket: str, key: str) -> None:
            cloud.objects[uri(bucket, key)] = Path(filename).read_bytes()

        def download_file(self, bucket: str, key: str, filename: str) -> None:
            Path(filename).write_bytes(cloud.objects[uri(bucket, key)])

        def get_paginator(self, name: str) -> Any:
            assert name == "list_objects_v2"

            def paginate(Bucket: str, Prefix: str) -> list[dict[str, Any]]:  # noqa: N803
                keys = [u[len(uri(Bucket, "")):] for u in cloud.objects
                        if u.startswith(uri(Bucket, Prefix))]
                return [{"Contents": [{"Key": k} for k in keys]}] if keys else [{}]

            return SimpleNamespace(paginate=paginate)

    module = types.ModuleType("boto3")
    module.__spec__ = importlib.machinery.ModuleSpec("boto3", None)
    module.client = lambda service: S3()  # type: ignore[attr-defined]
    return module


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Cloud:
    import google.cloud

    cloud = Cloud(study="remote")
    storage = storage_module(cloud)
    monkeypatch.setitem(sys.modules, "google.cloud.storage", storage)
    monkeypatch.setattr(google.cloud, "storage", storage, raising=False)
    monkeypatch.setitem(sys.modules, "boto3", boto3_module(cloud))
    return cloud


def kfp_client(cloud: Cloud, refuse: str | None = None) -> type:
    """kfp.Client with its real signatures and return types, on the stand-in engine."""
    class Client:
        def __init__(self, host: str | None = None, client_id: str | None = None,
                     namespace: str = "kubeflow", existing_token: str | None = None,
                     **kwargs: Any):
            cloud.calls.append(("Client", {"host": host, "existing_token": existing_token,
                                           "namespace": namespace}))
            self.runs: dict[str, list[tuple[str, str, str]]] = {}

        def get_kfp_healthz(self) -> Any:
            return kfp_server_api.V2beta1GetHealthzResponse(multi_user=False)

        def create_run_from_pipeline_package(self, pipeline_file: str, arguments: Any = None,
                                             run_name: Any = None, experiment_name: Any = None,
                                             namespace: Any = None, pipeline_root: Any = None,
                                             enable_caching: Any = None, cache_key: Any = None,
                                             service_account: Any = None,
                                             experiment_id: Any = None) -> Any:
            cloud.calls.append(("create_run", {
                "run_name": run_name, "experiment_name": experiment_name,
                "pipeline_root": pipeline_root, "enable_caching": enable_caching,
                "arguments": arguments, "service_account": service_account}))
            if refuse:
                raise kfp_server_api.ApiException(status=403, reason=refuse)
            run_id = str(uuid.uuid4())
            self.runs[run_id] = cloud.execute(pipeline_file, arguments, pipeline_root)
            return SimpleNamespace(run_id=run_id)

        def wait_for_run_completion(self, run_id: str, timeout: int,
                                    sleep_duration: int = 5) -> Any:
            tasks = [kfp_server_api.V2beta1PipelineTaskDetail(
                display_name=name, state=state,
                error=kfp_server_api.GoogleRpcStatus(message=error) if error else None)
                for name, state, error in self.runs[run_id]]
            failed = any(state == "FAILED" for _, state, _ in self.runs[run_id])
            return kfp_server_api.V2beta1Run(
                run_id=run_id, state="FAILED" if failed else "SUCCEEDED",
                run_details=kfp_server_api.V2beta1RunDetails(task_details=tasks))

        def terminate_run(self, run_id: str) -> dict[str, Any]:
            cloud.calls.append(("terminate_run", {"run_id": run_id}))
            return {}

    return Client


KUBEFLOW = {"name": "kubeflow", "runner": "kfp", "host": "kubeflow",
            "url": "https://kfp.example.org/pipeline", "token_env": TOKEN_ENV,
            "pipeline_root": "minio://mlpipeline/v2/artifacts", "service_account": "runner"}


def test_kubeflow_runs_blocks_as_runs_with_the_token_and_caching_off(
        tmp_path: Path, quick_protocol: Path, cloud: Cloud,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setattr(kfp, "Client", kfp_client(cloud))
    cloud.study = "kubeflow"
    cloud.fail = {("kubeflow+shapes+r001", 1)}  # the first try's task fails on the cluster
    spec = study(tmp_path, [KUBEFLOW], quick_protocol, name="kubeflow", repetitions=2)
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert {k: (r["status"], r["attempt"]) for k, r in recs.items()} == {
        "kubeflow+shapes+r001": ("ok", 2), "kubeflow+shapes+r002": ("ok", 1)}
    rec = recs["kubeflow+shapes+r001"]
    assert rec["host_id"] == "stand-in" and rec["runner"] == "kfp" and rec["machine"] == "kubeflow"
    assert (out / "notebooks" / "kubeflow+shapes+r001.ipynb").exists()
    [lost] = attempts(out)
    assert lost["status"] == "failed"
    assert "task of kubeflow+shapes+r001 failed: The replica" in lost["error"], lost["error"]

    clients = [c for name, c in cloud.calls if name == "Client"]
    assert clients and all(c["host"] == KUBEFLOW["url"] and c["existing_token"] == token
                           for c in clients)
    runs = [c for name, c in cloud.calls if name == "create_run"]
    assert len(runs) == 3  # block 1, its retry, block 2
    base = "minio://mlpipeline/v2/artifacts/cloudbench/kubeflow"
    for submitted in runs:
        assert submitted["enable_caching"] is False and submitted["service_account"] == "runner"
        assert submitted["experiment_name"] == "cloudbench-kubeflow"
        assert submitted["pipeline_root"].startswith(f"{base}/cb-kubeflow-b")
        assert submitted["arguments"]["stage_uri"].startswith(f"{base}/stage/cloudbench-")
    # The token went to the client only: never to a file, a log or the pipeline.
    assert all(token not in text for text in cloud.packages)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and token.encode() in
                p.read_bytes()]
    assert "run " in (out / "logs" / "kubeflow.kfp.log").read_text()


def test_kubeflow_refusals_are_failed_runs_without_the_token(
        tmp_path: Path, quick_protocol: Path, cloud: Cloud,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_hex(16)
    spec = study(tmp_path, [KUBEFLOW], quick_protocol, name="kubeflow", retries=0)
    loaded = load_study(spec)
    env = loaded.environments[0]
    runner = make_runner(loaded, env, ResultsStore(tmp_path / "r").runner_paths(env))
    with pytest.raises(SpecError, match=f"the variable {TOKEN_ENV} is not set"):
        runner.check()

    monkeypatch.setenv(TOKEN_ENV, token)
    monkeypatch.setattr(kfp, "Client", kfp_client(cloud, refuse=f"bad token {token}"))
    out = tmp_path / "results"
    run(spec, out)
    rec = records(out)["kubeflow+shapes+r001"]
    assert rec["status"] == "failed" and rec["error"].startswith("the pipeline could not run")
    assert "bad token ***" in rec["error"] and token not in rec["error"]


def aiplatform_module(cloud: Cloud) -> types.ModuleType:
    """google.cloud.aiplatform.PipelineJob with its real signature, on the stand-in engine."""
    class PipelineJob:
        def __init__(self, display_name: str, template_path: str, job_id: Any = None,
                     pipeline_root: Any = None, parameter_values: Any = None,
                     input_artifacts: Any = None, enable_caching: Any = None,
                     encryption_spec_key_name: Any = None, labels: Any = None,
                     credentials: Any = None, project: Any = None, location: Any = None,
                     failure_policy: Any = None):
            cloud.calls.append(("PipelineJob", {
                "display_name": display_name, "template_path": template_path,
                "pipeline_root": pipeline_root, "parameter_values": parameter_values,
                "enable_caching": enable_caching, "project": project, "location": location}))
            self.template, self.root, self.values = template_path, pipeline_root, parameter_values
            self.state, self.task_details = None, []

        def run(self, service_account: Any = None, network: Any = None,
                reserved_ip_ranges: Any = None, sync: Any = True,
                create_request_timeout: Any = None,
                enable_preflight_validations: Any = False) -> None:
            cloud.calls.append(("run", {"service_account": service_account, "sync": sync}))
            states = cloud.execute(self.template, self.values, self.root)
            self.task_details = [SimpleNamespace(task_name=name, state=SimpleNamespace(
                name=state), error=SimpleNamespace(message=error)) for name, state, error in states]
            failed = any(state == "FAILED" for _, state, _ in states)
            self.state = "PIPELINE_STATE_FAILED" if failed else "PIPELINE_STATE_SUCCEEDED"
            if failed:
                raise RuntimeError("Job failed with:\ncode: 9")

        def cancel(self) -> None:
            cloud.calls.append(("cancel", {}))

    module = types.ModuleType("google.cloud.aiplatform")
    module.PipelineJob = PipelineJob  # type: ignore[attr-defined]
    return module


def test_vertex_submits_a_pipeline_job_per_block(tmp_path: Path, quick_protocol: Path,
                                                 cloud: Cloud,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    import google.cloud

    aiplatform = aiplatform_module(cloud)
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", aiplatform)
    monkeypatch.setattr(google.cloud, "aiplatform", aiplatform, raising=False)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (object(), "my-project"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        SimpleNamespace(name=name) if name == "google.cloud.aiplatform" else real(name, *a)))
    vertex = {"name": "vertex", "runner": "kfp", "host": "vertex", "project": "my-project",
              "region": "europe-west4", "pipeline_root": "gs://my-bucket/pipelines",
              "service_account": "runner@my-project.iam.gserviceaccount.com", "gpu": "l4",
              "memory_limit": "16G"}
    cloud.study = "vertex"
    spec = study(tmp_path, [vertex], quick_protocol, name="vertex", repetitions=2)
    out = tmp_path / "results"
    run(spec, out)

    recs = records(out)
    assert [(r["status"], r["attempt"], r["host_id"]) for r in recs.values()] == [
        ("ok", 1, "stand-in")] * 2
    jobs = [c for name, c in cloud.calls if name == "PipelineJob"]
    assert len(jobs) == 2
    for job in jobs:
        assert job["enable_caching"] is False
        assert (job["project"], job["location"]) == ("my-project", "europe-west4")
        assert job["pipeline_root"].startswith("gs://my-bucket/pipelines/cloudbench/vertex/cb-")
        assert job["parameter_values"]["stage_uri"].startswith(
            "gs://my-bucket/pipelines/cloudbench/vertex/stage/cloudbench-")
    assert [c["service_account"] for n, c in cloud.calls if n == "run"] == [
        vertex["service_account"]] * 2
    assert ("storage.Client", {"project": "my-project"}) in cloud.calls
    compiled = yaml.safe_load(cloud.packages[0])
    for executor in compiled["deploymentSpec"]["executors"].values():
        if "container" in executor:
            resources = executor["container"]["resources"]
            assert resources["accelerator"]["resourceType"] == "NVIDIA_L4"
            assert resources["resourceMemoryLimit"] == "16G"
            assert "tensorflow[and-cuda]" in json.dumps(executor["container"]["command"])


def test_a_record_of_another_study_is_refused(tmp_path: Path, quick_protocol: Path,
                                              cloud: Cloud,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, secrets.token_hex(16))
    monkeypatch.setattr(kfp, "Client", kfp_client(cloud))
    cloud.study = "other"
    spec = study(tmp_path, [KUBEFLOW], quick_protocol, name="kubeflow", retries=0)
    out = tmp_path / "results"
    run(spec, out)
    rec = records(out)["kubeflow+shapes+r001"]
    assert rec["status"] == "failed" and "a run of study 'other'" in rec["error"]


def test_the_runner_class_is_registered() -> None:
    from cloudbench.study.registry import load_runner

    assert load_runner("kfp") is KfpRunner


def test_run_batch_compiles_one_pipeline_of_exactly_the_tries_it_is_given(
        tmp_path: Path, quick_protocol: Path, cloud: Cloud,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No store, no plan: the runner compiles the tries it gets, in their order, as one
    pipeline, and yields their results in that order."""
    monkeypatch.setenv(TOKEN_ENV, secrets.token_hex(16))
    monkeypatch.setattr(kfp, "Client", kfp_client(cloud))
    cloud.study = "kubeflow"
    spec = study(tmp_path, [KUBEFLOW], quick_protocol, name="kubeflow", repetitions=2,
                 more_datasets=1)
    loaded = load_study(spec)
    env = loaded.environments[0]
    paths = RunnerPaths.under(tmp_path / "r", env.name, env.runner)
    for folder in (paths.work, paths.logs, paths.notebooks):
        folder.mkdir(parents=True)
    runner = make_runner(loaded, env, paths)
    first, second = [j for j in plan(loaded) if j.block == 1]
    runner.open_block(1)
    results = list(runner.run_batch([Try(second, 3), Try(first, 1)]))
    assert runner.close_block() == {}

    assert len([c for name, c in cloud.calls if name == "create_run"]) == 1
    compiled = yaml.safe_load(cloud.packages[0])
    dag = compiled["root"]["dag"]["tasks"]
    assert [dag[n]["taskInfo"]["name"] for n in run_tasks(compiled)] == [
        second.run_id, first.run_id]
    assert [(r.record["run_id"], r.record["attempt"], r.record["status"], r.infrastructure)
            for r in results] == [(second.run_id, 3, "ok", False), (first.run_id, 1, "ok", False)]
    assert all(r.record["billed_s"] >= 0 and r.record["host_id"] == "stand-in" for r in results)
    assert (tmp_path / "r" / "notebooks" / f"{first.run_id}.ipynb").exists()
    assert not (tmp_path / "r" / "records").exists()  # the store is the scheduler's

    alone = runner.run(first, 4)  # Runner.run: a pipeline of one
    assert (alone.record["status"], alone.record["attempt"]) == ("ok", 4)
    assert len([c for name, c in cloud.calls if name == "create_run"]) == 2


def test_one_pipeline_per_block_in_a_study(tmp_path: Path, quick_protocol: Path, cloud: Cloud,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, secrets.token_hex(16))
    monkeypatch.setattr(kfp, "Client", kfp_client(cloud))
    cloud.study = "kubeflow"
    spec = study(tmp_path, [KUBEFLOW, PC], quick_protocol, name="kubeflow", repetitions=2,
                 more_datasets=1)
    out = tmp_path / "results"
    run(spec, out)
    assert all(r["status"] == "ok" for r in records(out).values())
    compiled = [yaml.safe_load(p) for p in cloud.packages]
    blocks = [sorted(json.loads(c["root"]["dag"]["tasks"][n]["inputs"]["parameters"]["job"][
        "runtimeValue"]["constant"])["block"] for n in run_tasks(c)) for c in compiled]
    assert blocks == [[1, 1], [2, 2]]

"""The Kubeflow Pipelines runner: each block's runs of an environment as one KFP v2 pipeline.

An environment with `runner = "kfp"` runs its repetitions as pipeline tasks: the scheduler
hands the runner the environment's pending runs of a block, and the runner compiles them into
one pipeline (one component task per run, chained in the planned order, caching off on every
task so that identical repetitions are never served from a cache) and executes it on the
environment's `host`:

- "local": kfp.local's SubprocessRunner, this Python, no Docker and no cluster;
- "kubeflow": a Kubeflow Pipelines endpoint through `kfp.Client`;
- "vertex": Vertex AI Pipelines through `google.cloud.aiplatform.PipelineJob`.

Each task is one repetition exactly as on any other remote machine: the component unpacks
the staged toolkit, protocol notebook and folder datasets (runners.vm.build_vm_stage, one
hash-named zip that reaches it as an input artifact through `dsl.importer`) and runs the
repetition with the local runner (runners.vm.run_job: a fresh kernel, the study's timeout,
memory sampling, the record). The zip of record, executed notebook and log comes back as
the task's output artifact and is checked and merged as a session runner's result is
(runners.session). A run that fails inside the notebook is a normal failed record; a task
that crashed, or did not run because an earlier one failed, is an infrastructure failure,
which runners.attempts retries in a pipeline of its own.

The engine takes a batch, so the runner overrides ``run_batch`` (``execute``, one run alone,
is a pipeline of one): it compiles exactly the tries it is given, without reading the results
store or the plan.

Why the stage is an artifact and not a parameter: a task's inputs reach its container as one
command-line argument, and Linux refuses any single argument over 128 KiB; the toolkit alone
is about 80 KiB zipped (105 KiB as base64), so a parameter would break with the first
folder dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
import time
import types
import typing
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil

from cloudbench.runners.base import (
    LOCAL_MACHINE,
    Amendments,
    Outcome,
    RunResult,
    Try,
    exception_outcome,
    utc_now,
)
from cloudbench.runners.processes import kill_tree
from cloudbench.runners.secrets import scrub
from cloudbench.runners.session import SessionRunner, TransportError, read_result, tail
from cloudbench.runners.staging import UNPACK_SOURCE, Stage
from cloudbench.runners.vm import build_vm_stage
from cloudbench.study.layout import RunnerPaths, RunPaths, default_results_dir
from cloudbench.study.plan import RunJob, plan
from cloudbench.study.record import RecordError, upgrade
from cloudbench.study.registry import Option, OptionError
from cloudbench.study.spec import Environment, SpecError, Study

if typing.TYPE_CHECKING:  # the component's annotations, which kfp reads at run time
    from kfp.dsl import Artifact, Input, Output

HOSTS = ("local", "kubeflow", "vertex")
DEFAULT_IMAGE = "python:3.11"
#: Vertex AI's names of the GPUs a study file's `gpu` key names (also used by host local).
GPU_TYPES = {"t4": "NVIDIA_TESLA_T4", "l4": "NVIDIA_L4", "a100": "NVIDIA_TESLA_A100",
             "a100-80gb": "NVIDIA_A100_80GB", "h100": "NVIDIA_H100_80GB",
             "v100": "NVIDIA_TESLA_V100", "p100": "NVIDIA_TESLA_P100", "p4": "NVIDIA_TESLA_P4"}
#: On Kubernetes a GPU is a resource name; which model the node pools have is the cluster's.
KUBERNETES_GPU = "nvidia.com/gpu"
#: Installed in a remote task's image before it runs (python:3.11 has none of them).
BASE_PACKAGES = ("papermill", "ipykernel", "psutil", "pandas", "rich", "pillow")
STORAGE_SCHEMES = {"kubeflow": ("gs", "s3", "minio"), "vertex": ("gs",)}
#: The keys that only some hosts take (the others refuse them rather than ignore them).
HOST_KEYS = {"url": ("kubeflow",), "token_env": ("kubeflow",), "namespace": ("kubeflow",),
             "project": ("vertex",), "region": ("vertex",), "machine_type": ("vertex",),
             "pipeline_root": ("kubeflow", "vertex"), "service_account": ("kubeflow", "vertex"),
             "image": ("kubeflow", "vertex"), "packages": ("kubeflow", "vertex")}
RESULT = "result"  # the component's output artifact
CPU_RE = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
MEMORY_RE = re.compile(r"^\d+(\.\d+)?(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
INSTALL = {"kfp": "pip install -e '.[kfp]'", "vertex": "pip install -e '.[vertex]'"}


def run_repetition(stage: Input[Artifact], job: str, attempt: int, version: str,
                   scratch: str, unpack: str, result: Output[Artifact]) -> str:
    """One repetition in the task's container, with the toolkit's local runner.

    This function's source is the component: it runs where the pipeline engine puts it,
    with the standard library and kfp only until the stage is unpacked (`unpack` is the
    shared, standard-library unpacker of runners.staging, sent as text as to any new host).
    A run that fails inside the notebook is a record like any other; a failure of the
    machinery (a damaged stage, a missing package) raises, so the task fails where the
    engine shows it, after leaving its traceback in the output for hosts that keep it.
    """
    import json
    import os
    import shutil
    import sys
    import tempfile
    import traceback
    import zipfile

    run = json.loads(job)
    base = scratch or os.path.join(tempfile.gettempdir(), "cloudbench")
    try:
        os.makedirs(os.path.join(base, "stage"), exist_ok=True)
        helpers: dict = {}
        exec(unpack, helpers)  # the toolkit's own unpacker, as text (see the docstring)
        root = helpers["_cloudbench_unpack"](stage.path, os.path.join(base, "stage", version))
        if root not in sys.path:
            sys.path.insert(0, root)
        from cloudbench.runners.vm import run_job

        out = tempfile.mkdtemp(prefix=f"{run['run_id']}.{attempt}.", dir=base)
        try:
            packed = os.path.abspath(run_job(root, run, attempt, out))
            with zipfile.ZipFile(packed) as zf:
                status = json.loads(zf.read("record.json")).get("status")
            os.makedirs(os.path.dirname(result.path) or ".", exist_ok=True)
            shutil.copyfile(packed, result.path)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    except BaseException:
        try:
            os.makedirs(os.path.dirname(result.path) or ".", exist_ok=True)
            with zipfile.ZipFile(result.path, "w") as zf:
                zf.writestr("error.json", json.dumps({"run_id": run["run_id"],
                                                      "error": traceback.format_exc()}))
        except OSError:
            pass
        raise
    return f"{run['run_id']}: {status}"


def _name(text: str, limit: int = 100) -> str:
    """A pipeline or run name KFP accepts: lower case letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:limit]


def _split_uri(uri: str) -> tuple[str, str, str]:
    """gs://bucket/key -> ("gs", "bucket", "key")."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


class Storage:
    """Objects under the pipeline root (gs://, or s3:// and minio:// through boto3, which
    reads AWS_ENDPOINT_URL and the credentials from the environment): the stage goes up,
    the tasks' results come down. The clients are imported only when used."""

    def __init__(self, project: str | None = None):
        self.project = project
        self._clients: dict[str, Any] = {}

    def _client(self, scheme: str) -> Any:
        if scheme not in self._clients:
            if scheme == "gs":
                from google.cloud import storage

                self._clients[scheme] = storage.Client(project=self.project)
            else:
                import boto3

                self._clients[scheme] = boto3.client("s3")
        return self._clients[scheme]

    def upload(self, path: Path, uri: str) -> None:
        scheme, bucket, key = _split_uri(uri)
        client = self._client(scheme)
        if scheme == "gs":
            client.bucket(bucket).blob(key).upload_from_filename(str(path))
        else:
            client.upload_file(str(path), bucket, key)

    def list(self, prefix: str) -> list[str]:
        scheme, bucket, key = _split_uri(prefix.rstrip("/") + "/")
        client = self._client(scheme)
        if scheme == "gs":
            return [f"gs://{bucket}/{blob.name}" for blob in client.list_blobs(bucket, prefix=key)]
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        return [f"{scheme}://{bucket}/{obj['Key']}" for page in pages
                for obj in page.get("Contents", [])]

    def download(self, uri: str, path: Path) -> None:
        scheme, bucket, key = _split_uri(uri)
        client = self._client(scheme)
        if scheme == "gs":
            client.bucket(bucket).blob(key).download_to_filename(str(path))
        else:
            client.download_file(bucket, key, str(path))


@dataclass(frozen=True)
class TaskResult:
    """What came back from one task: its result zip, or why there is none."""

    result: Path | None
    error: str = ""
    status: str = "failed"


#: The tasks of a pipeline: each run and the attempt number it runs as.
Batch = list[Try]


class KfpRunner(SessionRunner):
    """One Kubeflow Pipelines pipeline per block: a task per run, executed on `host`."""

    options = (
        Option("host", str, "local", choices=HOSTS,
               doc="local (kfp.local, this Python), kubeflow (a KFP endpoint) or vertex"),
        Option("url", str, doc="kubeflow: the Kubeflow Pipelines endpoint, http(s)://"),
        Option("token_env", str, doc="kubeflow: the variable that holds the bearer token"),
        Option("namespace", str, doc="kubeflow: the user namespace of a multi-user install"),
        Option("project", str, doc="vertex: the Google Cloud project"),
        Option("region", str, doc="vertex: the region, e.g. us-central1"),
        Option("pipeline_root", str,
               doc="kubeflow (gs://, s3://, minio://) and vertex (gs://): where the stage "
                   "and the tasks' outputs are stored"),
        Option("service_account", str,
               doc="kubeflow: the Kubernetes service account; vertex: the Google one"),
        Option("machine_type", str, doc="vertex: the task's machine, e.g. n1-standard-4"),
        Option("cpu_limit", (str, int, float), doc="CPUs of a task: 4, 0.5 or 500m"),
        Option("memory_limit", str, doc="memory of a task, e.g. 16G"),
        Option("accelerator_type", str,
               doc="default from gpu: NVIDIA_TESLA_T4... (vertex, local), nvidia.com/gpu "
                   "(kubeflow)"),
        Option("accelerator_count", int, doc="GPUs per task (default 1 with a gpu)"),
        Option("image", str, doc=f"the component's base image (default {DEFAULT_IMAGE})"),
        Option("packages", list, doc="pip packages installed in a remote task first"),
    )
    setup_timeout_s = 1800.0  # a remote pipeline: scheduling, image pull, pip installs

    # -- the study file ---------------------------------------------------------------------

    @classmethod
    def default_machine(cls, environment: Environment) -> str:
        """Host local computes here (sharing this machine); a remote host is its own."""
        return LOCAL_MACHINE if environment.options.get("host") == "local" else environment.name

    @classmethod
    def validate(cls, environment: Environment) -> None:
        opts = environment.options
        host = opts["host"]
        for key, hosts in HOST_KEYS.items():
            if opts.get(key) is not None and host not in hosts:
                raise OptionError(key, f"only for host {' or '.join(map(repr, hosts))}; this "
                                  f"environment has host = {host!r}")
        required = {"kubeflow": ("url", "pipeline_root"),
                    "vertex": ("project", "region", "pipeline_root")}.get(host, ())
        for key in required:
            if not opts.get(key):
                raise OptionError(key, f"required with host = {host!r}")
        if host == "kubeflow" and not re.match(r"^https?://", opts["url"]):
            raise OptionError("url", f"expected http:// or https://, got {opts['url']!r}")
        if host in STORAGE_SCHEMES:
            root = opts["pipeline_root"]
            scheme, bucket, _ = _split_uri(root)
            if scheme not in STORAGE_SCHEMES[host] or "://" not in root or not bucket:
                schemes = ", ".join(f"{s}://" for s in STORAGE_SCHEMES[host])
                raise OptionError("pipeline_root", f"expected a bucket URI ({schemes}) for "
                                  f"host {host!r}, got {root!r}")
        if environment.tpu is not None:
            raise OptionError("tpu", "the kfp runner requests GPUs only; use gpu = ...")
        cpu = opts.get("cpu_limit")
        if cpu is not None and (isinstance(cpu, bool) or not CPU_RE.match(str(cpu))):
            raise OptionError("cpu_limit", f"expected a number of CPUs (4, 0.5) or "
                              f"millicores (500m), got {cpu!r}")
        memory = opts.get("memory_limit")
        if memory is not None and not MEMORY_RE.match(memory):
            raise OptionError("memory_limit", f"expected a size such as 16G, 512Mi, got "
                              f"{memory!r}")
        if opts.get("machine_type") is not None:
            for key in ("cpu_limit", "memory_limit"):
                if opts.get(key) is not None:
                    raise OptionError(key, "the machine_type sets the CPUs and the memory; "
                                      "give one or the other")
        if opts.get("accelerator_type") is not None and environment.gpu is None:
            raise OptionError("accelerator_type", "set gpu = ... as well: the protocol is "
                              "told to check the GPU it asks for")
        if (environment.gpu is not None and opts.get("accelerator_type") is None
                and host != "kubeflow" and environment.gpu not in GPU_TYPES):
            raise OptionError("gpu", f"no accelerator type is known for {environment.gpu!r} "
                              f"({', '.join(GPU_TYPES)}); set accelerator_type")
        count = opts.get("accelerator_count")
        if count is not None and (count < 1 or environment.gpu is None):
            raise OptionError("accelerator_count", "a number of GPUs (1 or more), with gpu = "
                              "...")
        packages = opts.get("packages")
        if packages is not None and not all(isinstance(p, str) and p for p in packages):
            raise OptionError("packages", "expected a list of pip requirements (strings)")

    # -- set-up -----------------------------------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.opts = self.env.options
        self.host: str = self.opts["host"]
        self._stage_uri = ""
        self._folders: list[Path] = []  # this block's pipeline folders, removed at its end
        self._active: Any = None  # the pipeline in flight (interrupt)
        self._interrupted = False

    @property
    def token(self) -> str | None:
        name = self.opts.get("token_env")
        return os.environ.get(name) if name else None

    @property
    def accelerator(self) -> tuple[str, int] | None:
        """The accelerator type and count each task asks for, if any."""
        if self.env.gpu is None:
            return None
        kind = self.opts.get("accelerator_type") or (
            KUBERNETES_GPU if self.host == "kubeflow" else GPU_TYPES[self.env.gpu])
        return kind, self.opts.get("accelerator_count") or 1

    @property
    def packages(self) -> list[str]:
        """What a remote task installs: the toolkit's needs and the backend's framework."""
        if self.opts.get("packages") is not None:
            return list(self.opts["packages"])
        gpu = self.env.gpu is not None
        framework = ["tensorflow[and-cuda]" if gpu else "tensorflow"]
        framework += {"jax": ["jax[cuda12]" if gpu else "jax"], "torch": ["torch"]}.get(
            self.env.backend, [])
        return [*BASE_PACKAGES, *framework]

    @property
    def scratch(self) -> str:
        """Where a task unpacks the stage and runs: under the results folder for host local
        (kfp.local's files included); a temporary folder of the container elsewhere."""
        return str(self.paths.work / "kfp" / "scratch") if self.host == "local" else ""

    def check(self) -> None:
        """Fail before the first run when a client or a credential is missing."""
        def refuse(key: str, message: str) -> SpecError:
            return SpecError(self.study.path, f"{self.key}.{key}", message)

        if importlib.util.find_spec("kfp") is None:
            raise refuse("runner", f"runner \"kfp\" needs the Kubeflow Pipelines SDK: "
                         f"{INSTALL['kfp']}")
        if self.host == "vertex":
            if importlib.util.find_spec("google.cloud.aiplatform") is None:
                raise refuse("host", f"host \"vertex\" needs google-cloud-aiplatform: "
                             f"{INSTALL['vertex']}")
            if (self.opts.get("machine_type") is not None
                    and importlib.util.find_spec("google_cloud_pipeline_components") is None):
                raise refuse("machine_type", "a machine_type on Vertex AI needs Google's "
                             "pipeline components: pip install google-cloud-pipeline-components")
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                google.auth.default()
            except DefaultCredentialsError as exc:
                raise refuse("host", "no Google Cloud credentials: run `gcloud auth "
                             f"application-default login` once ({exc})") from exc
        if self.host == "kubeflow":
            name = self.opts.get("token_env")
            if name and not self.token:
                raise refuse("token_env", f"the variable {name} is not set; export the "
                             "Kubeflow Pipelines token in it (it is never stored)")
            scheme = _split_uri(self.opts["pipeline_root"])[0]
            if scheme in ("s3", "minio") and importlib.util.find_spec("boto3") is None:
                raise refuse("pipeline_root", f"a {scheme}:// pipeline root is read with "
                             "boto3: pip install boto3")
            try:
                self._client().get_kfp_healthz()
            except Exception as exc:
                raise refuse("url", scrub(f"cannot reach Kubeflow Pipelines at "
                                          f"{self.opts['url']}: {exc}", self.token)) from exc

    def _client(self) -> Any:
        """A kfp.Client on the endpoint, with the token from its variable (never stored)."""
        import kfp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "works with KFP 2.0.0-beta.2+"
            return kfp.Client(host=self.opts["url"], existing_token=self.token,
                              namespace=self.opts.get("namespace") or "kubeflow")

    # -- the pipeline -----------------------------------------------------------------------

    def component(self) -> Any:
        """The component of one repetition, built for this environment's host."""
        from kfp import dsl

        func = types.FunctionType(run_repetition.__code__, run_repetition.__globals__,
                                  run_repetition.__name__)
        func.__doc__ = run_repetition.__doc__
        # The module's annotations are strings (postponed); kfp needs the objects.
        func.__annotations__ = typing.get_type_hints(run_repetition, vars(dsl),
                                                     include_extras=True)
        here = self.host == "local"  # this Python has everything; install nothing into it
        component = dsl.component(func, base_image=self.opts.get("image") or DEFAULT_IMAGE,
                                  packages_to_install=[] if here else self.packages,
                                  install_kfp_package=not here)
        if self.host == "vertex" and self.opts.get("machine_type"):
            from google_cloud_pipeline_components.v1.custom_job import (
                create_custom_training_job_from_component,
            )

            kind, count = self.accelerator or ("", 1)
            component = create_custom_training_job_from_component(
                component, machine_type=self.opts["machine_type"], accelerator_type=kind,
                accelerator_count=count, service_account=self.opts.get("service_account") or "")
        return component

    def _configure(self, task: Any) -> None:
        """Caching off, and the environment's resources, on one task."""
        task.set_caching_options(False)
        if self.host == "vertex" and self.opts.get("machine_type"):
            return  # the custom job's machine spec holds them
        if self.opts.get("cpu_limit") is not None:
            task.set_cpu_limit(str(self.opts["cpu_limit"]))
        if self.opts.get("memory_limit") is not None:
            task.set_memory_limit(self.opts["memory_limit"])
        if self.accelerator is not None:
            kind, count = self.accelerator
            task.set_accelerator_type(kind).set_accelerator_limit(count)

    def pipeline(self, batch: Batch) -> tuple[Any, dict[str, str]]:
        """The pipeline of these runs, chained in order; and its task names -> run ids."""
        from kfp import dsl

        component = self.component()
        version = self.stage.version
        tasks: dict[str, str] = {}

        def pipeline(stage_uri):  # annotated below, as kfp reads it
            stage = dsl.importer(artifact_uri=stage_uri, artifact_class=dsl.Artifact)
            stage.set_caching_options(False)
            previous = None
            for job, attempt in batch:
                task = component(stage=stage.output, job=json.dumps(dataclasses.asdict(job)),
                                 attempt=attempt, version=version, scratch=self.scratch,
                                 unpack=UNPACK_SOURCE)
                task.set_display_name(job.run_id)
                self._configure(task)
                if previous is not None:
                    task.after(previous)
                previous = task
                tasks[task.name] = job.run_id

        pipeline.__annotations__ = {"stage_uri": str}
        described = (f"Runs of environment {self.env.name!r} of study {self.study.name!r} "
                     "(cloudbench): one task per repetition, caching off.")
        func = dsl.pipeline(name=_name(f"cloudbench-{self.study.name}-{self.env.name}"),
                            description=described)(pipeline)
        return func, tasks

    def compile(self, batch: Batch, path: Path) -> dict[str, str]:
        """Write the pipeline of these runs as KFP's YAML; its task names -> run ids."""
        from kfp import compiler

        func, tasks = self.pipeline(batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(pipeline_func=func, package_path=str(path))
        return tasks

    # -- the scheduler's contract -------------------------------------------------------------

    def open_block(self, block: int) -> None:
        self.block = block

    def close_block(self) -> Amendments:
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
        self._folders.clear()
        return {}

    def interrupt(self) -> None:
        """Stop the pipeline in flight (Ctrl-C while other machines run)."""
        active = self._active
        if active is None:
            return
        self._interrupted = True
        with contextlib.suppress(Exception):
            if self.host == "kubeflow":
                active[0].terminate_run(active[1])
            elif self.host == "vertex":
                active.cancel()
            else:  # kfp.local's task process: the one whose arguments name our folder
                for proc in psutil.Process().children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if str(active) in " ".join(proc.cmdline()):
                            kill_tree(proc)

    def run_batch(self, tries: typing.Iterable[Try]) -> typing.Iterator[RunResult]:
        """ONE pipeline of exactly the tries given (one environment's runs of a block,
        or a retry), chained in their order; then each run's result, in that order.

        The pipeline's time is billed in equal shares to its runs. Any exception of the
        engine is every run's infrastructure failure; Ctrl-C stops the pipeline and raises.
        """
        batch = list(tries)
        if not batch:
            return
        started_at = utc_now()
        start = time.perf_counter()
        try:
            outcomes = self._pipeline(batch)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every run's failed record
            failed = exception_outcome(exc)
            failed = failed.replace(error=scrub(failed.error or "", self.token))
            outcomes = {one.job.run_id: failed for one in batch}
        share = (time.perf_counter() - start) / len(batch)
        for job, attempt in batch:
            yield self.result(job, attempt, outcomes[job.run_id], started_at, share)

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        """One run alone (``Runner.run``): a pipeline of one task."""
        return self._pipeline([Try(job, attempt)])[job.run_id]

    def _pipeline(self, batch: Batch) -> dict[str, Outcome]:
        """Compile and run the pipeline of the batch; each run's outcome."""
        label = _name(f"cb-{self.env.name}-b{self.block}-{uuid.uuid4().hex[:6]}", 60)
        folder = self.paths.work / "kfp" / label
        self._folders.append(folder)
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "results").mkdir(parents=True)
        host = {"local": self._run_local, "kubeflow": self._run_kubeflow,
                "vertex": self._run_vertex}[self.host]
        try:
            results = host(batch, folder, label)
        except TransportError as exc:
            results = {j.run_id: TaskResult(None, str(exc), exc.status) for j, _ in batch}
        except Exception as exc:  # the SDK or the service refused the pipeline
            message = scrub(f"the pipeline could not run: {type(exc).__name__}: {exc}",
                            self.token)
            results = {j.run_id: TaskResult(None, message) for j, _ in batch}
        finally:
            self._active = None
        if self._interrupted:
            self._interrupted = False
            raise KeyboardInterrupt
        return {job.run_id: self._outcome(job, attempt, results.get(job.run_id))
                for job, attempt in batch}

    def _outcome(self, job: RunJob, attempt: int, task: TaskResult | None) -> Outcome:
        """A task's result as the run's outcome (its notebook and log beside ours); a
        task without one is the infrastructure's failure, as is a damaged result."""
        try:
            if task is None:
                raise TransportError("the pipeline gave no outcome for this run")
            if task.result is None:
                raise TransportError(task.error, status=task.status)
            return read_result(task.result, job, self.paths.run(job.run_id, attempt),
                               self._check_record)
        except TransportError as exc:
            return Outcome.failure(scrub(str(exc), self.token), status=exc.status,
                                   infrastructure=True)

    # -- the hosts ----------------------------------------------------------------------------

    @cached_property
    def stage(self) -> Stage:
        """The toolkit, protocol notebook, folder datasets and study, once per study run."""
        return build_vm_stage(self.study)

    def _write_stage(self) -> Path:
        return self.stage.write_zip(self.paths.work / f"cloudbench-{self.stage.version}.zip")

    def _log(self, text: str) -> None:
        with open(self.paths.runner_log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] {scrub(text, self.token)}\n")

    def _run_local(self, batch: Batch, folder: Path, label: str) -> dict[str, TaskResult]:
        """kfp.local: each task a subprocess of this Python; its output in the kfp log."""
        from kfp import local

        func, tasks = self.pipeline(batch)
        outputs = folder / "outputs"
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs),
                   workspace_root=str(folder / "workspace"), raise_on_error=False)
        self._log(f"pipeline {label}: {', '.join(tasks.values())} (kfp.local)")
        self._active = folder
        with (open(self.paths.runner_log, "a", encoding="utf-8") as fh,
              contextlib.redirect_stdout(_ThisThread(fh, sys.stdout)),
              contextlib.redirect_stderr(_ThisThread(fh, sys.stderr)),
              warnings.catch_warnings()):
            # The display names (run ids) are for the remote engines' UIs.
            warnings.filterwarnings("ignore", "Task .* have no effect in the current local")
            func(stage_uri=str(self._write_stage()))
        found = self._read(sorted(outputs.glob(f"*/*/{RESULT}")), folder)
        return self._outcomes(batch, tasks, found, {})

    def _run_kubeflow(self, batch: Batch, folder: Path, label: str) -> dict[str, TaskResult]:
        """A run on the Kubeflow Pipelines endpoint; results from its pipeline root."""
        root, stage_uri = self._upload(label)
        package = folder / "pipeline.yaml"
        tasks = self.compile(batch, package)
        client = self._client()
        run = client.create_run_from_pipeline_package(
            str(package), arguments={"stage_uri": stage_uri}, run_name=label,
            experiment_name=_name(f"cloudbench-{self.study.name}"),
            namespace=self.opts.get("namespace"), pipeline_root=root, enable_caching=False,
            service_account=self.opts.get("service_account"))
        self._active = (client, run.run_id)
        self._log(f"pipeline {label}: run {run.run_id} on {self.opts['url']}, "
                  f"{', '.join(tasks.values())}")
        try:
            done = client.wait_for_run_completion(run.run_id, timeout=self._wait_s(batch))
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                client.terminate_run(run.run_id)
            raise TransportError(f"the Kubeflow run {run.run_id} did not finish within "
                                 f"{self._wait_s(batch):g} s; it was terminated",
                                 status="timeout") from exc
        except KeyboardInterrupt:  # the study stops: so does its run on the cluster
            with contextlib.suppress(Exception):
                client.terminate_run(run.run_id)
            raise
        details = getattr(done, "run_details", None)
        states = {}
        for task in getattr(details, "task_details", None) or []:
            error = getattr(getattr(task, "error", None), "message", None) or ""
            states[task.display_name] = (str(task.state or ""), error)
        self._log(f"pipeline {label}: {done.state}; "
                  + "; ".join(f"{k} {s}" for k, (s, _) in states.items()))
        return self._outcomes(batch, tasks, self._collect(root, folder), states)

    def _run_vertex(self, batch: Batch, folder: Path, label: str) -> dict[str, TaskResult]:
        """A Vertex AI PipelineJob (caching off); results from its pipeline root."""
        from google.cloud import aiplatform

        root, stage_uri = self._upload(label)
        package = folder / "pipeline.yaml"
        tasks = self.compile(batch, package)
        job = aiplatform.PipelineJob(
            display_name=label, template_path=str(package), pipeline_root=root,
            parameter_values={"stage_uri": stage_uri}, enable_caching=False,
            project=self.opts["project"], location=self.opts["region"])
        self._active = job
        self._log(f"pipeline {label}: Vertex AI in {self.opts['project']}/"
                  f"{self.opts['region']}, {', '.join(tasks.values())}")
        try:
            job.run(service_account=self.opts.get("service_account"), sync=True)
        except KeyboardInterrupt:  # the study stops: so does its job
            with contextlib.suppress(Exception):
                job.cancel()
            raise
        except Exception as exc:  # a failed job raises; its tasks say which run failed
            failure = f"{type(exc).__name__}: {exc}"
            self._log(f"pipeline {label}: {failure}")
        else:
            failure = ""
        try:
            details = list(job.task_details or [])
        except Exception as exc:  # no job was created: the refusal is the reason
            raise TransportError(f"the Vertex AI pipeline job did not run: {failure or exc}"
                                 ) from exc
        states = {}
        for task in details:
            state = getattr(task.state, "name", str(task.state))
            states[task.task_name] = (state, getattr(task.error, "message", "") or "")
        self._log(f"pipeline {label}: {job.state}; "
                  + "; ".join(f"{k} {s}" for k, (s, _) in states.items()))
        return self._outcomes(batch, tasks, self._collect(root, folder), states)

    def _wait_s(self, batch: Batch) -> float:
        return self.setup_timeout_s + len(batch) * (self.timeout_s + self.margin_s)

    def _upload(self, label: str) -> tuple[str, str]:
        """This pipeline's own root under pipeline_root, and the stage's URI (uploaded once)."""
        base = f"{self.opts['pipeline_root'].rstrip('/')}/cloudbench/{self.study.name}"
        if not self._stage_uri:
            stage = self._write_stage()
            uri = f"{base}/stage/{stage.name}"
            self._storage().upload(stage, uri)
            self._stage_uri = uri
        return f"{base}/{label}", self._stage_uri

    def _storage(self) -> Storage:
        return Storage(self.opts.get("project"))

    def _collect(self, root: str, folder: Path) -> dict[str, Path]:
        """The result artifacts under a remote pipeline's root, downloaded and read."""
        storage = self._storage()
        paths = []
        for k, uri in enumerate(u for u in storage.list(root) if u.endswith(f"/{RESULT}")):
            path = folder / "downloads" / f"{k}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            storage.download(uri, path)
            paths.append(path)
        return self._read(paths, folder)

    @staticmethod
    def _read(paths: typing.Iterable[Path], folder: Path) -> dict[str, Path]:
        """Result zips by the run they hold (a task's name is the engine's business)."""
        found: dict[str, Path] = {}
        for path in paths:
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
                    member = "record.json" if "record.json" in names else "error.json"
                    run_id = json.loads(zf.read(member))["run_id"]
            except (zipfile.BadZipFile, KeyError, ValueError, OSError):
                continue  # a damaged result is a missing one: the run's error says so
            kept = folder / "results" / f"{run_id}.zip"
            shutil.copyfile(path, kept)
            found[run_id] = kept
        return found

    def _outcomes(self, batch: Batch, tasks: dict[str, str], found: dict[str, Path],
                  states: dict[str, tuple[str, str]]) -> dict[str, TaskResult]:
        """Each run's result, or why it has none: its task crashed, failed or never ran."""
        by_run = {run_id: states.get(name) or states.get(run_id)
                  for name, run_id in tasks.items()}
        outcomes: dict[str, TaskResult] = {}
        failed: str | None = None
        for job, _ in batch:
            path = found.get(job.run_id)
            state, error = by_run.get(job.run_id) or ("", "")
            if path is not None and _has_record(path):
                outcomes[job.run_id] = TaskResult(path)
                continue
            if path is not None:  # the component's own traceback (kept by host local)
                error = tail(json.loads(_member(path, "error.json"))["error"])
            if state.upper() == "SUCCEEDED":
                message = (f"the task of {job.run_id} succeeded, but its result was not found "
                           "in the pipeline root")
            elif failed is not None and not error:
                message = (f"the task did not run: the pipeline stopped when the task of "
                           f"{failed} failed")
            else:
                message = (f"the pipeline task of {job.run_id} {state.lower() or 'failed'}: "
                           f"{error or 'no result came back; see logs/' + self.env.name}"
                           + ("" if error else ".kfp.log"))
                failed = failed or job.run_id
            outcomes[job.run_id] = TaskResult(None, message)
        return outcomes

    def _check_record(self, record: dict[str, Any]) -> None:
        """The checks that `study import` makes of a record made elsewhere: study,
        environment, a format this toolkit reads (the fields are checked with the record)."""
        if record.get("study") != self.study.name or record.get("environment") != self.env.name:
            raise TransportError(f"the task returned a run of study {record.get('study')!r}, "
                                 f"environment {record.get('environment')!r}, not of "
                                 f"{self.study.name!r}, {self.env.name!r}")
        try:
            upgrade(record)
        except RecordError as exc:
            raise TransportError(f"the task's record: {exc}") from exc


class _ThisThread:
    """sys.stdout (or stderr) while kfp.local runs a pipeline in this thread: what this
    thread prints (the tasks' output, kfp's log) goes to the log; what other threads print
    (the progress bar, other machines' runs) goes where it went."""

    def __init__(self, log: typing.TextIO, other: typing.TextIO):
        self.log, self.other, self.thread = log, other, threading.get_ident()

    def write(self, text: str) -> int:
        return (self.log if threading.get_ident() == self.thread else self.other).write(text)

    def flush(self) -> None:
        self.log.flush()
        self.other.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno...: the terminal's
        return getattr(self.other, name)


def _member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def _has_record(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return "record.json" in zf.namelist()


def export_kfp(study: Study, env_name: str, output: Path,
               repetitions: int | None = None) -> Path:
    """Write the compiled pipeline of an environment's whole plan, for review (no token)."""
    env = study.environment(env_name)
    if env.runner != "kfp":
        raise SpecError(study.path, f"environments[{study.environments.index(env)}].runner",
                        f"`study export kfp` takes a kfp environment; {env.name!r} has "
                        f"runner = {env.runner!r}")
    if importlib.util.find_spec("kfp") is None:
        raise SpecError(study.path, "", f"`study export kfp` needs the Kubeflow Pipelines "
                        f"SDK: {INSTALL['kfp']}")
    paths = RunnerPaths.under(default_results_dir(study.name), env.name, env.runner)
    runner = KfpRunner(study, env, paths)
    batch = [Try(job, 1) for job in plan(study, repetitions) if job.environment == env.name]
    runner.compile(batch, output)
    return output

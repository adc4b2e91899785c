"""The Kaggle runner: each block's runs of an environment as one Kaggle kernel version.

An environment with ``runner = "kaggle"`` runs through the official client's Python API
(``kaggle`` 2.2.5; docs/kaggle-client.md has the facts this module relies on, with the
client's file and function names):

1. the staged toolkit, protocol notebook, folder datasets and study (runners.vm's stage, one
   hash-named zip) go up as a new version of a PRIVATE Kaggle dataset
   (``dataset_create_new`` the first time, then ``dataset_create_version``), and the runner
   polls ``dataset_status`` until it is ``ready``;
2. the weekly accelerator quota is read (``quota_view``) and the hours left are logged and
   written into the block's records (``kaggle_gpu_quota_left_h``, ``kaggle_tpu_quota_left_h``);
   none left of the environment's accelerator refuses the block;
3. a pushed kernel takes no parameters, so the runner pushes a DRIVER notebook with the
   block's tries written into it (``kernels_push``: kernel-metadata.json with ``id``,
   ``title``, ``code_file``, ``language``, ``kernel_type`` = notebook, ``is_private``,
   ``enable_gpu``/``enable_tpu``, ``enable_internet``, ``docker_image_pinning_type`` =
   original, ``dataset_sources``; the accelerator as ``acc``, the block's budget as its
   session ``timeout``). On the VM the driver finds the stage under ``../input``, runs each
   try in a fresh child Python with the local runner (a fresh kernel, the study's timeout,
   the record) and packs ONE results archive into /kaggle/working (runners.vm.pack_archive);
4. the runner polls ``kernels_status`` (QUEUED, RUNNING, COMPLETE, ERROR...) with back-off,
   downloads the version's output (``kernels_output``) and imports the archive with
   ``study import`` itself (runners.bundle.import_archive: every check of a foreign archive)
   into a scratch folder: the records reach the scheduler as results, never the results
   store directly.

The client retries nothing for ``kernels_*``: every call here backs off on 429 (honouring
Retry-After) and on connection errors. A version the server ends in ERROR (a failed
notebook, no quota) fails each of its runs as the infrastructure's failure with Kaggle's
message, so the scheduler retries them in a version of their own. Client 2.2.5 cannot cancel
a running version: Ctrl-C stops the polling, and every version is pushed with the block's
budget as its session timeout, so none runs on past it.

Credentials (KAGGLE_API_TOKEN, ~/.kaggle/access_token, kaggle.json in KAGGLE_CONFIG_DIR or
~/.kaggle, KAGGLE_USERNAME/KAGGLE_KEY) stay with the client: nothing the runner writes (the
pushed folders, the log, the records, error messages) holds them (runners.secrets scrubs
every text). Missing ones are refused in ``check`` before anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email.utils
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from cloudbench.errors import InfrastructureError
from cloudbench.runners.base import (
    BatchRunner,
    Outcome,
    RunResult,
    Try,
    exception_outcome,
    utc_now,
)
from cloudbench.runners.secrets import redact, scrub
from cloudbench.runners.staging import UNPACK_SOURCE, Stage
from cloudbench.runners.vm import build_vm_stage
from cloudbench.study import layout
from cloudbench.study.plan import RunJob
from cloudbench.study.registry import Option, OptionError
from cloudbench.study.spec import Environment, SpecError

#: Kaggle's accelerator names (kernels_push's `acc`, the notebook editor's machine shapes),
#: as Kaggle spells them; docs/remote.md lists them. TPU names start with "Tpu".
ACCELERATORS = ("NvidiaTeslaP100", "NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaL4",
                "NvidiaTeslaA100", "NvidiaH100", "TpuV5E8", "TpuV6E8")
#: The study's gpu/tpu key -> Kaggle's name, when `accelerator` is not given.
DEFAULT_ACCELERATOR = {"p100": "NvidiaTeslaP100", "t4": "NvidiaTeslaT4", "l4": "NvidiaL4",
                       "a100": "NvidiaTeslaA100", "h100": "NvidiaH100", "v5e-8": "TpuV5E8",
                       "v5e8": "TpuV5E8", "v6e-8": "TpuV6E8", "v6e8": "TpuV6E8"}
CREDENTIAL_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_KEY")
CREDENTIALS_HELP = ("give the Kaggle client credentials in one of its ways: KAGGLE_API_TOKEN "
                    "(the token from kaggle.com/settings/api, or a file holding it), "
                    "~/.kaggle/access_token, kaggle.json in KAGGLE_CONFIG_DIR or ~/.kaggle, "
                    "or KAGGLE_USERNAME and KAGGLE_KEY (see docs/remote.md)")
INSTALL_HINT = "pip install -e '.[kaggle]' (kaggle>=2.2.5,<3)"
LICENCE = "CC0-1.0"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{4,49}$")
#: Kernel states (KernelWorkerStatus names) after which a version does not change.
ENDED = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
RETRY_STATUSES = (429, 500, 502, 503, 504)

# The pushed notebook's one cell: the stage from ../input, each try in a child Python, one
# archive into the working folder. The tries are written in: a kernel takes no parameters.
DRIVER = '''# cloudbench: block {block} of environment {environment!r} (from runners/kaggle.py)
{unpack}

def _cloudbench_block():
    import glob, json, os, sys, tempfile
    archive = {archive!r}
    found = sorted(glob.glob(os.path.join("..", "input", "**", archive), recursive=True)
                   + glob.glob(os.path.join("/kaggle/input", "**", archive), recursive=True))
    if not found:
        raise RuntimeError("the staged toolkit " + archive + " is not among the inputs")
    root = _cloudbench_unpack(found[0], os.path.join(tempfile.gettempdir(),
                                                     archive[:-len(".zip")]))
    if root not in sys.path:
        sys.path.insert(0, root)
    from cloudbench.runners.kaggle import run_block
    print("cloudbench: archive", run_block(root, json.loads({tries!r}), os.getcwd()),
          flush=True)


_cloudbench_block()
'''

# One try in a child Python of the VM: a crash of the toolkit (or of the Python) costs that
# run, not the block.
CHILD = """import sys
sys.path.insert(0, sys.argv[1])
from cloudbench.runners.kaggle import run_one
run_one(*sys.argv[1:])
"""


class KaggleError(InfrastructureError, RuntimeError):
    """The Kaggle service or client refused or failed: every run of the block fails with it."""


# -- the VM's side ----------------------------------------------------------------------------


class RunsFolder:
    """The VM's results folder by study.layout's names: what vm.pack_archive reads of a
    store (records, attempts, notebooks, logs), without the store, which only the
    scheduler's side holds."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.attempts_dir = self.root / layout.ATTEMPTS
        for name in (layout.RECORDS, layout.ATTEMPTS, layout.NOTEBOOKS, layout.LOGS,
                     layout.WORK):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def record_path(self, run_id: str) -> Path:
        return self.root / layout.RECORDS / f"{run_id}.json"

    def notebook_path(self, run_id: str) -> Path:
        return layout.notebook_file(self.root / layout.NOTEBOOKS, run_id)

    def log_path(self, run_id: str) -> Path:
        return layout.log_file(self.root / layout.LOGS, run_id)


def run_one(root: str, job: str, attempt: str, results: str) -> None:
    """One try with the local runner (a fresh kernel), its record into the VM's folder."""
    from cloudbench.runners.local import LocalRunner
    from cloudbench.runners.vm import load_staged

    study = load_staged(root)
    run = RunJob(**json.loads(job))
    folder = RunsFolder(Path(results))
    env = study.environment(run.environment)
    paths = layout.RunnerPaths.under(folder.root, env.name, env.runner)
    result = LocalRunner(study, env, paths).run(run, int(attempt))
    folder.record_path(run.run_id).write_text(json.dumps(result.record.to_dict(), indent=1),
                                              encoding="utf-8")
    if result.infrastructure:
        (folder.root / f"{run.run_id}.infrastructure").write_text("")


def run_block(root: str, block: dict[str, Any], working: str) -> str:
    """The block's tries one after another, each in a child Python; one archive of their
    records, notebooks and logs into `working` (what the kernel version outputs)."""
    from cloudbench.runners.vm import pack_archive

    tries: list[dict[str, Any]] = block["tries"]
    folder = RunsFolder(Path(tempfile.mkdtemp(prefix="cloudbench-results-")))
    infrastructure = []
    for k, one in enumerate(tries, 1):
        job = one["job"]
        print(f"cloudbench: [{k}/{len(tries)}] {job['run_id']}", flush=True)
        proc = subprocess.run([sys.executable, "-c", CHILD, root, json.dumps(job),
                               str(one["attempt"]), str(folder.root)], check=False)
        if proc.returncode != 0 or (folder.root / f"{job['run_id']}.infrastructure").exists():
            infrastructure.append(job["run_id"])
    export = {**block["export"], "infrastructure": infrastructure}
    return pack_archive(folder, export,  # type: ignore[arg-type] - the store's layout
                        [one["job"]["run_id"] for one in tries], Path(working))


# -- the controller's side --------------------------------------------------------------------


def _status_code(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def retry_after_s(exc: BaseException) -> float | None:
    """A 429's Retry-After: seconds, or an HTTP date (None when absent or unreadable)."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    return None


def _transient(exc: BaseException) -> bool:
    """A rate limit, a server error or a lost connection: worth another try."""
    code = _status_code(exc)
    if code is not None:
        return code in RETRY_STATUSES
    return type(exc).__name__ in ("ConnectionError", "Timeout", "ReadTimeout",
                                  "ConnectTimeout", "ChunkedEncodingError")


def _slug(text: str, limit: int = 50) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug if len(slug) >= 6 else (slug + "-cloudbench")[:limit]


def quota_hours_left(quota: Any) -> float | None:
    """The hours left of one accelerator's weekly quota, in whatever form the service gives
    it: a number of hours, or fields such as used/total (hours or seconds)."""
    if quota is None or isinstance(quota, bool):
        return None
    if isinstance(quota, int | float):
        return float(quota)
    values = quota if isinstance(quota, dict) else {
        k: getattr(quota, k) for k in dir(quota) if not k.startswith("_")
        and isinstance(getattr(quota, k, None), int | float)}

    def find(*words: str) -> float | None:
        for key, value in values.items():
            if any(w in key.lower() for w in words) and isinstance(value, int | float) \
                    and not isinstance(value, bool):
                return value / 3600 if "second" in key.lower() else float(value)
        return None

    left = find("remaining", "left", "available")
    if left is not None:
        return left
    used, total = find("used"), find("total", "limit", "allowed", "max")
    return None if used is None or total is None else total - used


class KaggleRunner(BatchRunner):
    """One Kaggle kernel version per block, through the official client's Python API."""

    options = (
        Option("accelerator", str, choices=ACCELERATORS,
               doc="Kaggle's accelerator name (NvidiaTeslaT4, TpuV5E8...); default from gpu "
                   "or tpu"),
        Option("owner", str, doc="the Kaggle user or organisation that owns the kernel and "
                                 "dataset (default: the authenticated user)"),
        Option("kernel", str, doc="the kernel's slug (default cb-<study>-<environment>)"),
        Option("dataset", str, doc="the private dataset's slug (default "
                                   "cb-<study>-<environment>-stage)"),
        Option("internet", bool, False, doc="enable_internet of the kernel: off unless the "
                                            "protocol downloads something"),
        Option("private", bool, True, doc="is_private of the kernel (the dataset is private)"),
        Option("max_queue_s", (int, float), 3600.0,
               doc="how long a version may stay queued before the block is given up"),
    )
    local_files = False
    runs_here = False
    margin_s = 120.0  # per run beyond its timeout: a child Python, a kernel's start
    setup_s = 600.0  # per version: the VM's start, the dataset's mount, the unpacking
    poll_first_s, poll_max_s = 2.0, 30.0
    retry_first_s, retry_max_s, retries = 0.5, 60.0, 10  # the client's with_retry, for kernels_*
    dataset_wait_s = 600.0

    # -- the study file -----------------------------------------------------------------------

    @classmethod
    def accelerator_of(cls, environment: Environment) -> str | None:
        named = environment.options.get("accelerator")
        if named is not None:
            return named
        wanted = environment.gpu or environment.tpu
        return DEFAULT_ACCELERATOR.get(wanted.lower()) if wanted else None

    @classmethod
    def validate(cls, environment: Environment) -> None:
        opts = environment.options
        named = opts.get("accelerator")
        if named is None and (environment.gpu or environment.tpu):
            key = "gpu" if environment.gpu else "tpu"
            if cls.accelerator_of(environment) is None:
                raise OptionError(key, f"no Kaggle accelerator is known for "
                                  f"{environment.gpu or environment.tpu!r}; set accelerator "
                                  f"to one of {', '.join(ACCELERATORS)}")
        if named is not None:
            tpu = named.startswith("Tpu")
            if tpu and environment.tpu is None or not tpu and environment.gpu is None:
                kind = "tpu" if tpu else "gpu"
                raise OptionError("accelerator", f"{named} is a {kind.upper()}: set {kind} = "
                                  f"\"...\" too, so that the protocol checks it got one")
        for key in ("kernel", "dataset"):
            slug = opts.get(key)
            if slug is not None and not SLUG_RE.match(slug):
                raise OptionError(key, f"expected a slug of 5-50 lowercase letters, digits "
                                  f"and '-', got {slug!r}")
        owner = opts.get("owner")
        if owner is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", owner):
            raise OptionError("owner", f"expected a Kaggle user name, got {owner!r}")
        if opts["max_queue_s"] <= 0:
            raise OptionError("max_queue_s", "expected a positive number of seconds")

    # -- set-up -------------------------------------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.opts = self.env.options
        self.block = 0
        self._dataset_version = ""  # the stage version whose dataset is ready
        self._interrupted = False
        self.sleep: Callable[[float], None] = time.sleep  # tests shorten the waits

    def _refuse(self, key: str, message: str) -> SpecError:
        return SpecError(self.study.path, f"{self.key}.{key}", self._clean(message))

    @cached_property
    def api(self) -> Any:
        """An authenticated KaggleApi (KaggleError naming the credentials when none)."""
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints its help
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            try:
                api.authenticate()
            except SystemExit as exc:
                raise KaggleError(f"no Kaggle credentials: {CREDENTIALS_HELP}") from exc
        return api

    @property
    def secrets(self) -> list[str]:
        """What must never be written: the credentials the client holds or could read."""
        found = [os.environ.get(v, "") for v in CREDENTIAL_VARIABLES]
        with contextlib.suppress(Exception):
            values = self.__dict__["api"].config_values
            found += [str(values.get(k) or "") for k in ("key", "token")]
        return [s for s in dict.fromkeys(found) if len(s) >= 4]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = scrub(text, secret)
        return redact(text)

    def check(self) -> None:
        """The client is installed and has credentials, and the owner is known."""
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its import authenticates and
                import kaggle  # noqa: F401 - prints the help when it cannot
        except ImportError as exc:
            raise self._refuse("runner", f"runner \"kaggle\" needs the Kaggle client: "
                               f"{INSTALL_HINT}") from exc
        except SystemExit:  # an old client exits on import without credentials
            pass
        try:
            _ = self.api
        except KaggleError as exc:
            raise self._refuse("runner", str(exc)) from exc
        if not self.owner:
            raise self._refuse("owner", "the client does not say which user it is "
                               "authenticated as; set owner = \"<your Kaggle user name>\"")

    @property
    def owner(self) -> str:
        return self.opts.get("owner") or str(self.api.get_config_value("username") or "")

    @property
    def kernel_ref(self) -> str:
        slug = self.opts.get("kernel") or _slug(f"cb-{self.study.name}-{self.env.name}")
        return f"{self.owner}/{slug}"

    @property
    def dataset_ref(self) -> str:
        slug = self.opts.get("dataset") or _slug(
            f"cb-{self.study.name}-{self.env.name}"[:44] + "-stage")
        return f"{self.owner}/{slug}"

    @cached_property
    def stage(self) -> Stage:
        """The toolkit, protocol notebook, folder datasets and study, once per study run."""
        return build_vm_stage(self.study)

    def export(self, batch: list[Try]) -> dict[str, Any]:
        """The archive's manifest (what `study import` checks), with repetitions that plan
        every run of the batch."""
        from cloudbench.runners.bundle import export_manifest

        reps = self.study.max_repetitions if self.study.repetitions == "auto" \
            else self.study.planned_repetitions
        return export_manifest(self.study, self.env,
                               max([reps, *(t.job.repetition for t in batch)]))

    def open_block(self, block: int) -> None:
        self.block = block

    def interrupt(self) -> None:
        """Ctrl-C: stop polling (client 2.2.5 cannot cancel a version; its session timeout
        ends it)."""
        self._interrupted = True

    def _log(self, text: str) -> None:
        self.paths.runner_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.paths.runner_log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] {self._clean(text)}\n")

    # -- calls with back-off ------------------------------------------------------------------

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """One API call, retried with back-off on 429 (Retry-After honoured), server errors
        and lost connections, as the client's with_retry does for the calls it wraps."""
        delay = self.retry_first_s
        for attempt in range(1, self.retries + 1):
            if self._interrupted:
                raise KeyboardInterrupt
            try:
                return getattr(self.api, name)(*args, **kwargs)
            except Exception as exc:
                if not _transient(exc) or attempt == self.retries:
                    raise
                wait = retry_after_s(exc)
                wait = min(self.retry_max_s, delay if wait is None else max(wait, delay))
                self._log(f"{name}: {_status_code(exc) or type(exc).__name__}; again in "
                          f"{wait:.1f} s (try {attempt} of {self.retries})")
                self.sleep(wait)
                delay = min(self.retry_max_s, delay * 1.7)
        raise AssertionError("unreachable")

    # -- a block ------------------------------------------------------------------------------

    def run_batch(self, tries: Iterable[Try]) -> Iterator[RunResult]:
        """ONE kernel version of exactly the tries given; their results in their order once
        the version has ended. Any failure of the service is every try's infrastructure
        failure (scrubbed of credentials); Ctrl-C stops the polling and raises."""
        batch = list(tries)
        if not batch:
            return
        self._interrupted = False
        started_at, start = utc_now(), time.perf_counter()
        folder = self.paths.work / "kaggle" / f"b{self.block}-{uuid.uuid4().hex[:6]}"
        try:
            outcomes = self._block(batch, folder)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every run's failed record
            failed = exception_outcome(exc)
            self._log(f"block {self.block}: {failed.error}")
            failed = failed.replace(error=self._clean(failed.error or ""))
            outcomes = {one.job.run_id: failed for one in batch}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        share = (time.perf_counter() - start) / len(batch)
        for job, attempt in batch:
            yield self.result(job, attempt, outcomes[job.run_id], started_at, share)

    def _block(self, batch: list[Try], folder: Path) -> dict[str, Outcome]:
        folder.mkdir(parents=True)
        gpu, tpu = self._quota()
        fields: dict[str, Any] = {"kaggle_gpu_quota_left_h": gpu, "kaggle_tpu_quota_left_h": tpu}
        accelerator = self.accelerator_of(self.env)
        if accelerator is not None:
            kind = "TPU" if accelerator.startswith("Tpu") else "GPU"
            left = tpu if kind == "TPU" else gpu
            if left is not None and left <= 0:
                raise KaggleError(f"no Kaggle {kind} quota left this week ({left:g} h)")
        self._upload_stage(folder)
        ref, version = self._push(batch, folder)
        status, message = self._wait(ref, version, len(batch))
        fields["kaggle_kernel"] = f"{ref}/{version}"
        output = folder / "output"
        files: list[str] = []
        with contextlib.suppress(Exception):
            files, _ = self.call("kernels_output", f"{ref}/{version}", path=str(output),
                                 force=True, quiet=True)
        for log in [Path(f) for f in files if f.endswith(".log")]:
            with contextlib.suppress(OSError):
                self._log(f"version {version} log:\n{_log_text(log)}")
        archives = sorted(Path(f) for f in files if f.endswith(".zip"))
        if status != "COMPLETE" or not archives:
            why = message or ("its notebook failed; see logs/"
                              f"{self.env.name}.kaggle.log" if status == "ERROR" else "")
            error = (f"Kaggle kernel version {ref}/{version} ended {status}"
                     + (f": {why}" if why else "")
                     + ("" if archives or status != "COMPLETE" else ": no results archive"))
            failed = Outcome.failure(self._clean(error), infrastructure=True)
            return {t.job.run_id: failed.replace(fields=fields) for t in batch}
        return self._import(batch, archives[-1], folder, fields)

    def _quota(self) -> tuple[float | None, float | None]:
        """The weekly quota, read before every block: logged, and the GPU and TPU hours
        left (None when unknown)."""
        try:
            quota = self.call("quota_view")
        except Exception as exc:  # the quota is information; its absence stops nothing
            self._log(f"quota_view failed: {type(exc).__name__}: {exc}")
            return None, None
        gpu, tpu = quota_hours_left(getattr(quota, "gpu_quota", None)), \
            quota_hours_left(getattr(quota, "tpu_quota", None))
        refresh = getattr(quota, "quota_refresh_time", None)
        self._log(f"block {self.block}: weekly quota left: GPU "
                  f"{'unknown' if gpu is None else f'{gpu:.1f} h'}, TPU "
                  f"{'unknown' if tpu is None else f'{tpu:.1f} h'}"
                  + (f"; refreshes {refresh}" if refresh else ""))
        return gpu, tpu

    def _upload_stage(self, folder: Path) -> None:
        """The stage as a private dataset version (once per stage), then wait until ready."""
        if self._dataset_version == self.stage.version:
            return
        data = folder / "dataset"
        data.mkdir()
        self.stage.write_zip(data / self.archive_name)
        ref = self.dataset_ref
        title = f"cloudbench {self.study.name} {self.env.name}"[:50]
        title = title if len(title) >= 6 else "cloudbench stage"
        (data / "dataset-metadata.json").write_text(json.dumps(
            {"id": ref, "title": title, "licenses": [{"name": LICENCE}]}), encoding="utf-8")
        exists = True
        try:
            self.call("dataset_status", ref)
        except Exception as exc:
            if _status_code(exc) != 404:
                raise
            exists = False
        if exists:
            response = self.call("dataset_create_version", str(data),
                                 f"cloudbench stage {self.stage.version}", quiet=True,
                                 dir_mode="skip")
        else:
            response = self.call("dataset_create_new", str(data), public=False, quiet=True,
                                 dir_mode="skip")
        if getattr(response, "error", None):
            raise KaggleError(f"Kaggle refused the dataset {ref}: {response.error}")
        self._log(f"dataset {ref}: {'new version' if exists else 'created'} with "
                  f"{self.archive_name}")
        deadline = time.monotonic() + self.dataset_wait_s
        delay = self.poll_first_s
        while True:
            status = str(self.call("dataset_status", ref)).lower()
            if status == "ready":
                break
            if status in ("failed", "error") or time.monotonic() > deadline:
                raise KaggleError(f"the dataset {ref} is {status}, not ready")
            self.sleep(delay)
            delay = min(self.poll_max_s, delay * 1.5)
        self._dataset_version = self.stage.version

    @property
    def archive_name(self) -> str:
        return f"cloudbench-{self.stage.version}.zip"

    def _budget_s(self, runs: int) -> int:
        return int(self.setup_s + runs * (self.timeout_s + self.margin_s))

    def _push(self, batch: list[Try], folder: Path) -> tuple[str, int]:
        """The driver notebook with the block's tries, pushed as a new kernel version."""
        import nbformat
        from nbformat.v4 import new_code_cell, new_notebook

        kernel = folder / "kernel"
        kernel.mkdir()
        tries = json.dumps({"export": self.export(batch),
                            "tries": [{"job": dataclasses.asdict(j), "attempt": a}
                                      for j, a in batch]})
        cell = new_code_cell(DRIVER.format(block=self.block, environment=self.env.name,
                                           unpack=UNPACK_SOURCE.strip(),
                                           archive=self.archive_name, tries=tries))
        notebook = new_notebook(cells=[cell], metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3",
                           "language": "python"}})
        nbformat.write(notebook, kernel / "driver.ipynb")
        accelerator = self.accelerator_of(self.env)
        ref = self.kernel_ref
        title = ref.split("/")[1].replace("-", " ")
        metadata = {
            "id": ref, "title": title, "code_file": "driver.ipynb", "language": "python",
            "kernel_type": "notebook", "is_private": bool(self.opts["private"]),
            "enable_gpu": accelerator is not None and not accelerator.startswith("Tpu"),
            "enable_tpu": accelerator is not None and accelerator.startswith("Tpu"),
            "enable_internet": bool(self.opts["internet"]),
            "docker_image_pinning_type": "original",
            "dataset_sources": [self.dataset_ref], "competition_sources": [],
            "kernel_sources": [], "model_sources": []}
        if accelerator is not None:
            metadata["machine_shape"] = accelerator
        (kernel / "kernel-metadata.json").write_text(json.dumps(metadata, indent=1),
                                                     encoding="utf-8")
        response = self.call("kernels_push", str(kernel), timeout=str(self._budget_s(
            len(batch))), acc=accelerator)
        error = getattr(response, "error", None)
        invalid = list(getattr(response, "invalid_dataset_sources", None) or [])
        if error or invalid:
            raise KaggleError(f"Kaggle refused the kernel version of {ref}: "
                              f"{error or 'invalid dataset sources ' + ', '.join(invalid)}")
        version = int(getattr(response, "version_number", 0) or 0)
        if version < 1:
            raise KaggleError(f"kernels_push of {ref} gave no version number")
        self._log(f"block {self.block}: {ref} version {version} pushed with "
                  f"{', '.join(t.job.run_id for t in batch)}"
                  + (f" on {accelerator}" if accelerator else ""))
        return ref, version

    def _wait(self, ref: str, version: int, runs: int) -> tuple[str, str]:
        """Poll the version's status with back-off until it ends; (status, message)."""
        kernel = f"{ref}/{version}"
        queued_until = time.monotonic() + self.opts["max_queue_s"]
        running_until: float | None = None
        delay, last = self.poll_first_s, ""
        while True:
            if self._interrupted:
                self._log(f"{kernel}: interrupted; the version ends at its session timeout")
                raise KeyboardInterrupt
            response = self.call("kernels_status", kernel)
            status = getattr(response.status, "name", str(response.status)).upper()
            message = str(getattr(response, "failure_message", "") or "")
            if status != last:
                self._log(f"{kernel}: {status}" + (f" ({message})" if message else ""))
                last = status
            if status in ENDED:
                return status, message
            now = time.monotonic()
            if status == "RUNNING" and running_until is None:
                running_until = now + self._budget_s(runs) + 120.0
            if (running_until is None and now > queued_until) or \
                    (running_until is not None and now > running_until):
                what = "queued longer than max_queue_s" if running_until is None else \
                    "still running past its session timeout"
                raise KaggleError(f"Kaggle kernel version {kernel} {what} ({status})")
            self.sleep(delay)
            delay = min(self.poll_max_s, delay * 1.5)

    def _import(self, batch: list[Try], archive: Path, folder: Path,
                fields: dict[str, Any]) -> dict[str, Outcome]:
        """The archive through `study import` itself (runners.bundle.import_archive: every
        check of a foreign archive), into a scratch folder, never the results store; then
        each run's record as its outcome, its notebook and log beside ours."""
        from cloudbench.runners.bundle import ArchiveError, import_archive, read_archive

        scratch = folder / "imported"
        try:
            manifest, _ = read_archive(archive)
            import_archive(archive, scratch, self.study.path)
        except (ArchiveError, SpecError) as exc:
            failed = Outcome.failure(self._clean(f"the version's results were refused: {exc}"),
                                     infrastructure=True).replace(fields=fields)
            return {t.job.run_id: failed for t in batch}
        infrastructure = set(manifest.get("infrastructure") or ())
        outcomes: dict[str, Outcome] = {}
        for job, attempt in batch:
            try:
                data = json.loads((scratch / layout.RECORDS / f"{job.run_id}.json"
                                   ).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if data.get("attempt") != attempt:
                outcomes[job.run_id] = Outcome.failure(
                    f"the Kaggle version's archive has no record of {job.run_id} (try "
                    f"{attempt})", infrastructure=True).replace(fields=fields)
                continue
            paths = self.paths.run(job.run_id, attempt)
            notebook = layout.notebook_file(scratch / layout.NOTEBOOKS, job.run_id)
            if notebook.is_file():
                paths.notebook.parent.mkdir(parents=True, exist_ok=True)
                paths.notebook.write_text(self._clean(notebook.read_text(
                    encoding="utf-8", errors="replace")), encoding="utf-8")
            log = layout.log_file(scratch / layout.LOGS, job.run_id)
            if log.is_file():
                paths.log.parent.mkdir(parents=True, exist_ok=True)
                with open(paths.log, "a", encoding="utf-8") as fh:
                    fh.write(self._clean(log.read_text(encoding="utf-8", errors="replace")))
            error, wall = data.get("error"), data.get("wall_s")
            outcomes[job.run_id] = Outcome(
                data["status"], None if error is None else self._clean(str(error)),
                infrastructure=job.run_id in infrastructure,
                wall_s=wall if isinstance(wall, int | float) and not isinstance(wall, bool)
                else None,
                fields={**{k: v for k, v in data.items()
                           if k not in ("status", "error", "wall_s")}, **fields})
        return outcomes


def _log_text(path: Path, lines: int = 40) -> str:
    """The last lines of a version's log (Kaggle's JSON list of stream entries, or text)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        text = "".join(entry.get("data", "") for entry in json.loads(text))
    return "\n".join(text.rstrip().splitlines()[-lines:])

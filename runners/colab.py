"""The Colab runner: each block's repetitions in a fresh Colab VM, through Google's `colab` client.

Sessions map to blocks: the first run of a block creates a session with the environment's
accelerator, stages the toolkit, the protocol and the folder datasets (one hash-named zip)
and installs papermill; every run of the block then executes one repetition inside that VM
with the local runner (a fresh kernel per repetition, as on this machine) and downloads its
record, executed notebook and log; the block's end stops the session whatever happened.
A fresh VM per block samples Colab's hardware and neighbours as often as the study samples
everything else, instead of timing every repetition on one machine (pseudo-replication).

Client syntax (google-colab-cli 0.7): `colab new -s NAME [--gpu T4|--tpu v5e1]`,
`colab upload -s NAME LOCAL REMOTE`, `colab install -s NAME PKG...`,
`colab exec -s NAME -f FILE --timeout S`, `colab download -s NAME REMOTE LOCAL`,
`colab stop -s NAME`. Remote paths are relative to the VM's `/`; `exec` runs in `/content`.
`exec` exits 0 even when the code raised, so the driver prints a result line to look for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from runners.base import Runner, base_record, utc_now
from runners.staging import UNPACK_SOURCE
from runners.vm import build_vm_stage
from study.plan import RunJob
from study.spec import SpecError

#: Extra global options for the client, e.g. "--auth=adc" or "--config /path/sessions.json".
OPTIONS_ENV = "STUDY_COLAB_OPTIONS"
#: The Jupyter-contents path of `exec`'s working folder (/content) in the VM.
REMOTE_HOME = "content"
RESULT_TAG = "CLOUDBENCH-RESULT "
LOST_MARKERS = ("lost", "404", "401", "not found", "Connection", "WebSocket")

DRIVER = '''# cloudbench: one repetition in this Colab VM (from runners/colab.py, run by colab exec)
{unpack}

def _cloudbench_run():
    import json, sys
    root = _cloudbench_unpack({archive!r}, {dest!r})
    if root not in sys.path:
        sys.path.insert(0, root)
    from runners.vm import run_job
    result = run_job(root, json.loads({job!r}), {attempt!r}, "cloudbench")
    print({tag!r} + json.dumps({{"path": result}}), flush=True)


_cloudbench_run()
'''


class ColabError(RuntimeError):
    """The session, the client or the VM failed: the run is an infrastructure failure."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


def _tail(proc: subprocess.CompletedProcess[str] | subprocess.TimeoutExpired, lines: int = 6
          ) -> str:
    """The last lines the client printed, for an error message."""
    text = "\n".join(str(getattr(proc, s) or "") for s in ("stdout", "stderr")).strip()
    kept = [line for line in text.splitlines()  # a traceback's last line says what happened
            if line.strip() and not line.startswith((" ", "Traceback"))]
    return " | ".join(kept[-lines:]) or "no output"


class ColabRunner(Runner):
    """One Colab session per block; each repetition runs in it with the local runner."""

    local_files = False
    executable = "colab"
    packages: tuple[str, ...] = ("papermill",)
    setup_timeout_s = 900.0  # allocating a VM, uploading, installing
    margin_s = 300.0  # what a run may take beyond its own timeout (staging, transfers)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.session: str | None = None
        self.block = 0
        self._stage_zip: Path | None = None
        self._stage_version = ""

    @property
    def key(self) -> str:
        return f"environments[{self.study.environments.index(self.env)}]"

    @property
    def client_log(self) -> Path:
        return self.store.logs_dir / f"{self.env.name}.colab.log"

    def check(self) -> None:
        if not shutil.which(self.executable):
            raise SpecError(self.study.path, f"{self.key}.runner",
                            "runner \"colab\" needs Google's `colab` client on PATH: "
                            "pip install google-colab-cli (Python 3.12+), then authenticate "
                            "once (see docs/remote.md), or export the environment as a "
                            "notebook with `study export colab`")

    def open_block(self, block: int) -> None:
        self.block = block  # the session itself starts with the block's first run

    def close_block(self) -> None:
        self._stop()

    # -- one run ----------------------------------------------------------------------------

    def run(self, job: RunJob, attempt: int) -> dict[str, Any]:
        record = base_record(self.study, self.env, job, attempt)
        start = time.perf_counter()
        work = self.store.work_dir / f"{job.run_id}.{attempt}.colab"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            if self.session is None:
                self._start()
            record = self._ingest(self._execute(job, attempt, work), job, record)
        except ColabError as exc:
            record.update(status=exc.status, error=str(exc), infrastructure=True,
                          wall_s=round(time.perf_counter() - start, 4))
            self._stop()  # a session that failed once is not trusted with the next run
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return record

    def _start(self) -> None:
        """A new session with the environment's accelerator, staged and ready for papermill."""
        self._stage()
        name = f"cb-{re.sub(r'[^A-Za-z0-9-]', '-', self.env.name)}-b{self.block}-" \
               f"{uuid.uuid4().hex[:6]}"
        accelerator = (["--gpu", self.env.gpu.upper()] if self.env.gpu else
                       ["--tpu", self.env.tpu] if self.env.tpu else [])
        self.session = name  # set first: a `new` that timed out may still have made one
        self._client(["new", "-s", name, *accelerator], self.setup_timeout_s,
                     f"Colab did not give a {self.env.accelerator.upper()} session "
                     "(quota, capacity or authentication)")
        assert self._stage_zip is not None
        self._client(["upload", "-s", name, str(self._stage_zip),
                      f"{REMOTE_HOME}/{self._stage_zip.name}"], self.setup_timeout_s,
                     "uploading the protocol, helper code and datasets failed")
        self._client(["install", "-s", name, *self.packages], self.setup_timeout_s,
                     f"installing {', '.join(self.packages)} in the VM failed")

    def _stage(self) -> None:
        if self._stage_zip is None:
            stage = build_vm_stage(self.study)
            self._stage_version = stage.version
            self._stage_zip = stage.write_zip(
                self.store.work_dir / f"cloudbench-{stage.version}.zip")

    def _execute(self, job: RunJob, attempt: int, work: Path) -> Path:
        """Run the repetition in the VM; download the zip of its record, notebook and log."""
        assert self.session is not None and self._stage_zip is not None
        driver = work / "driver.py"
        driver.write_text(DRIVER.format(
            unpack=UNPACK_SOURCE.strip(), archive=self._stage_zip.name,
            dest=f"cloudbench/{self._stage_version}", job=json.dumps(dataclasses.asdict(job)),
            attempt=attempt, tag=RESULT_TAG), encoding="utf-8")
        proc = self._client(
            ["exec", "-s", self.session, "-f", str(driver), "--timeout",
             f"{self.timeout_s + self.margin_s:g}"], self.timeout_s + 2 * self.margin_s,
            "the run in the VM failed")
        results = [line[len(RESULT_TAG):] for line in proc.stdout.splitlines()
                   if line.startswith(RESULT_TAG)]
        if not results:
            raise ColabError(f"the driver in the VM did not finish: {_tail(proc)}")
        remote = json.loads(results[-1])["path"]
        local = work / "result.zip"
        self._client(["download", "-s", self.session, f"{REMOTE_HOME}/{remote}", str(local)],
                     self.setup_timeout_s, "downloading the run's results failed")
        if not local.is_file():
            raise ColabError("the client reported a download but wrote no file")
        return local

    def _ingest(self, result: Path, job: RunJob, base: dict[str, Any]) -> dict[str, Any]:
        """The VM's record (its fingerprint included); its notebook and log beside ours."""
        try:
            with zipfile.ZipFile(result) as zf:
                record = json.loads(zf.read("record.json"))
                names = set(zf.namelist())
                notebook = zf.read("notebook.ipynb") if "notebook.ipynb" in names else None
                log = zf.read("run.log") if "run.log" in names else b""
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise ColabError(f"the run's results came back damaged: {exc}") from exc
        if record.get("run_id") != job.run_id:
            raise ColabError(f"the VM returned the record of {record.get('run_id')!r}, "
                             f"not of {job.run_id!r}")
        if notebook is not None:
            tmp = self.notebook_path(job).with_suffix(".ipynb.tmp")
            tmp.write_bytes(notebook)
            tmp.replace(self.notebook_path(job))
        with open(self.store.log_path(job.run_id), "ab") as fh:
            fh.write(log)
        return {**base, **record, "runner": self.env.runner}

    def _stop(self) -> None:
        """Stop the session (whatever state it is in) and forget it."""
        name, self.session = self.session, None
        if name is None:
            return
        try:
            self._client(["stop", "-s", name], 120.0, "stopping the session failed")
        except ColabError:
            pass  # noted in the client log; a session the backend already dropped is fine

    # -- the client -------------------------------------------------------------------------

    def _client(self, args: list[str], timeout: float, what: str
                ) -> subprocess.CompletedProcess[str]:
        """Run one client command, log what it said, and raise ColabError when it failed."""
        command = [self.executable, *shlex.split(os.environ.get(OPTIONS_ENV, "")), *args]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            self._log(args, exc, f"timed out after {timeout:g} s")
            raise ColabError(f"{what}: `colab {args[0]}` did not return within {timeout:g} s",
                             status="timeout") from exc
        except OSError as exc:
            raise ColabError(f"{what}: cannot run the colab client: {exc}") from exc
        self._log(args, proc, f"exit {proc.returncode}")
        if proc.returncode != 0:
            tail = _tail(proc)
            if "Timeout" in tail:
                raise ColabError(f"{what}: the client timed out waiting for the VM: {tail}",
                                 status="timeout")
            if args[0] == "exec" and any(m in tail for m in LOST_MARKERS):
                raise ColabError(f"the Colab session was lost during the run: {tail}")
            raise ColabError(f"{what}: {tail}")
        return proc

    def _log(self, args: list[str], proc: Any, outcome: str) -> None:
        with open(self.client_log, "a", encoding="utf-8") as fh:
            fh.write(f"[{utc_now()}] $ colab {shlex.join(args)}  ({outcome})\n")
            for stream in ("stdout", "stderr"):
                text = getattr(proc, stream, None) or ""
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                if text.strip():
                    fh.write(text if text.endswith("\n") else text + "\n")

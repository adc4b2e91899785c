"""Remote-session runners: a machine per block, reached through a transport.

A session runner (Colab today; a Kaggle kernel, a SLURM job or an SSH host tomorrow) gets a
fresh machine for each block, stages the toolkit, the protocol and the folder datasets on
it (one hash-named zip), and runs every repetition of the block there with the local runner
(runners.vm): a fresh kernel per repetition, the same timeout, memory sampling and record
as on this machine. What differs between such runners is only how files and commands reach
the machine: a :class:`Transport`. Everything else (staging, the driver, the record coming
back, failures as records) is here, once.

A fresh machine per block samples the provider's hardware and neighbours as often as the
study samples everything else, instead of timing every repetition on one machine.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cloudbench.data.atomic import write_bytes_atomic
from cloudbench.errors import InfrastructureError
from cloudbench.runners.base import Amendments, Outcome, Runner
from cloudbench.runners.staging import UNPACK_SOURCE
from cloudbench.runners.vm import ARTIFACTS_MEMBER, OUTCOME_MEMBER, build_vm_stage
from cloudbench.study.layout import RunPaths
from cloudbench.study.plan import RunJob
from cloudbench.study.record import STATUSES, RecordError, parse_object

RESULT_TAG = "CLOUDBENCH-RESULT "

DRIVER = '''# cloudbench: one repetition on this machine (from runners/session.py)
{unpack}

def _cloudbench_run():
    import json, sys
    root = _cloudbench_unpack({archive!r}, {dest!r})
    if root not in sys.path:
        sys.path.insert(0, root)
    from cloudbench.runners.vm import run_job
    result = run_job(root, json.loads({job!r}), {attempt!r}, "cloudbench")
    print({tag!r} + json.dumps({{"path": result}}), flush=True)


_cloudbench_run()
'''


def tail(text: str, lines: int = 6) -> str:
    """The last lines of what a command printed, for an error message (a traceback's last
    line says what happened; its indented frames do not)."""
    kept = [line for line in text.splitlines()
            if line.strip() and not line.startswith((" ", "Traceback"))]
    return " | ".join(kept[-lines:]) or "no output"


class TransportError(InfrastructureError, RuntimeError):
    """The session, the client or the machine failed: an infrastructure failure of the run."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    """How files and commands reach one remote machine. Paths on it are relative to the
    folder where `exec` runs scripts. Every method raises TransportError on failure."""

    def start(self, label: str) -> None:
        """Get a fresh machine (with the environment's accelerator) for this block."""

    def upload(self, local: Path, remote: str) -> None: ...

    def install(self, packages: tuple[str, ...]) -> None: ...

    def exec(self, script: Path, timeout: float) -> str:
        """Run a Python script there; what it printed."""

    def download(self, remote: str, local: Path) -> None: ...

    def stop(self) -> None:
        """Give the machine back, whatever state it is in; never raises."""


class SessionRunner(Runner):
    """One session per block; each repetition runs in it with the local runner."""

    local_files = False
    runs_here = False
    packages: tuple[str, ...] = ("papermill",)  # installed on the machine before the runs
    margin_s = 300.0  # what a run may take beyond its own timeout (staging, transfers)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.transport: Transport | None = None  # set while a session is open
        self.block = 0
        self._stage_zip: Path | None = None
        self._stage_version = ""

    def make_transport(self) -> Transport:
        """A transport for a new session of this environment."""
        raise NotImplementedError

    def open_block(self, block: int) -> None:
        self.block = block  # the session itself starts with the block's first run

    def close_block(self) -> Amendments:
        self._stop()
        return {}

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        start = time.perf_counter()
        try:
            if self.transport is None:
                self._start()
            return read_result(self._execute(job, attempt, paths.work), job, paths)
        except TransportError as exc:
            self._stop()  # a session that failed once is not trusted with the next run
            return Outcome.failure(str(exc), status=exc.status, infrastructure=True,
                                   wall_s=round(time.perf_counter() - start, 4))

    def _start(self) -> None:
        """A new session, staged and ready for papermill."""
        if self._stage_zip is None:
            stage = build_vm_stage(self.study)
            self._stage_version = stage.version
            self._stage_zip = stage.write_zip(
                self.paths.work / f"cloudbench-{stage.version}.zip")
        label = f"cb-{re.sub(r'[^A-Za-z0-9-]', '-', self.env.name)}-b{self.block}-" \
                f"{uuid.uuid4().hex[:6]}"
        self.transport = self.make_transport()  # set first: a start that timed out may
        self.transport.start(label)             # still have made a session to stop
        self.transport.upload(self._stage_zip, self._stage_zip.name)
        self.transport.install(self.packages)

    def _execute(self, job: RunJob, attempt: int, work: Path) -> Path:
        """Run the repetition there; download the zip of its record, notebook and log."""
        assert self.transport is not None and self._stage_zip is not None
        driver = work / "driver.py"
        driver.write_text(DRIVER.format(
            unpack=UNPACK_SOURCE.strip(), archive=self._stage_zip.name,
            dest=f"cloudbench/{self._stage_version}", job=json.dumps(dataclasses.asdict(job)),
            attempt=attempt, tag=RESULT_TAG), encoding="utf-8")
        printed = self.transport.exec(driver, self.timeout_s + self.margin_s)
        results = [line[len(RESULT_TAG):] for line in printed.splitlines()
                   if line.startswith(RESULT_TAG)]
        if not results:
            raise TransportError(f"the driver did not finish: {tail(printed)}")
        local = work / "result.zip"
        self.transport.download(json.loads(results[-1])["path"], local)
        if not local.is_file():
            raise TransportError("the transport reported a download but wrote no file")
        return local

    def _stop(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.stop()


def _extract_artifacts(zf: zipfile.ZipFile, paths: RunPaths) -> None:
    """What the notebook wrote on the machine, kept beside ours (safe names only)."""
    if paths.artifacts is None:
        return
    prefix = f"{ARTIFACTS_MEMBER}/"
    members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
    shutil.rmtree(paths.artifacts, ignore_errors=True)
    for member in members:
        parts = member.filename[len(prefix):].split("/")
        if not parts or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
            raise TransportError(f"unsafe name in the run's results: {member.filename!r}")
        target = paths.artifacts.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)


def read_result(result: Path, job: RunJob, paths: RunPaths,
                check: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """A remote machine's result (runners.vm.run_job's zip) as the try's outcome: its
    record's status, error, wall time and fields (the VM's fingerprint included); its
    notebook and log beside ours. A damaged result, or the record of another run, is the
    infrastructure's failure (TransportError); `check` may refuse more."""
    try:
        with zipfile.ZipFile(result) as zf:
            names = set(zf.namelist())
            record = parse_object(zf.read("record.json"), "the machine's record")
            flags = (parse_object(zf.read(OUTCOME_MEMBER), "the machine's outcome")
                     if OUTCOME_MEMBER in names else {})
            notebook = zf.read("notebook.ipynb") if "notebook.ipynb" in names else None
            log = zf.read("run.log") if "run.log" in names else b""
            _extract_artifacts(zf, paths)
    except (zipfile.BadZipFile, KeyError, OSError, RecordError) as exc:
        raise TransportError(f"the run's results came back damaged: {exc}") from exc
    if record.get("run_id") != job.run_id:
        raise TransportError(f"the machine returned the record of "
                             f"{record.get('run_id')!r}, not of {job.run_id!r}")
    if check is not None:
        check(record)
    status = record.get("status")
    if status not in STATUSES:
        raise TransportError(f"the machine's record has status {status!r}")
    if notebook is not None:
        write_bytes_atomic(paths.notebook, notebook)
    with open(paths.log, "ab") as fh:
        fh.write(log)
    error, wall = record.get("error"), record.get("wall_s")
    return Outcome(status, error if error is None else str(error),
                   infrastructure=flags.get("infrastructure") is True,
                   wall_s=wall if isinstance(wall, int | float) and not isinstance(wall, bool)
                   else None,
                   fields={k: v for k, v in record.items()
                           if k not in ("status", "error", "wall_s")})

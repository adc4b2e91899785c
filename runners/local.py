"""The local runner: each repetition in a fresh kernel on this machine, through papermill.

papermill runs in a child process (runners.execute) so that the runner can enforce the
whole run's timeout, kill the kernel's process tree and sample its memory while it runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from cloudbench.data.atomic import write_text_atomic
from cloudbench.runners import phases
from cloudbench.runners.base import Outcome, Runner, run_parameters
from cloudbench.runners.processes import (
    RUN_MARK,
    TreeMemory,
    adopt_orphans,
    kill_leftovers,
    kill_tree,
)
from cloudbench.study.layout import RunPaths
from cloudbench.study.notebook import DEFAULT_KERNEL
from cloudbench.study.plan import RunJob
from cloudbench.study.record import RecordError, parse_object
from cloudbench.study.registry import Option, OptionError
from cloudbench.study.spec import IMPORT_ROOT, Environment

SAMPLE_INTERVAL_S = 0.1
#: Out-of-memory errors by name: Python's, TensorFlow's, torch's (torch.OutOfMemoryError).
OOM_NAMES = ("MemoryError", "ResourceExhaustedError", "OutOfMemoryError")
#: ... and by message: JAX/XLA raise XlaRuntimeError "RESOURCE_EXHAUSTED: Out of memory".
OOM_MESSAGES = ("RESOURCE_EXHAUSTED", "out of memory", "CUDA out of memory")


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file under `folder` (relative name) with its size and modification time."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            out[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


def _oom_kills() -> int | None:
    """The cgroup's count of OOM kills, to tell an out-of-memory death from another."""
    try:
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class LocalRunner(Runner):
    """papermill on a kernel of this machine, with the environment's variables."""

    kernel_manager_class: str | None = None
    options = (
        Option("memory_limit_mb", (int, float),
               doc="the kernel's memory ceiling: a run whose process tree grows past it is "
                   "stopped and recorded as oom, as on a machine with that much memory"),
    )

    @classmethod
    def validate(cls, environment: Environment) -> None:
        limit = environment.options.get("memory_limit_mb")
        if limit is not None and limit < 64:
            raise OptionError("memory_limit_mb", f"must be at least 64 (MB), got {limit}")

    # The run in flight, for interrupt(): a child process, or a runners.inprocess run.
    _proc: subprocess.Popen[bytes] | None = None
    _inprocess: Any = None
    _interrupted = False

    def interrupt(self) -> None:
        proc, here = self._proc, self._inprocess
        if proc is not None or here is not None:
            self._interrupted = True
        if proc is not None:
            kill_tree(proc)
        if here is not None:
            here.kill(grace_s=0)

    @property
    def memory_limit_mb(self) -> float | None:
        return self.env.options.get("memory_limit_mb")

    def kernel_env(self, mark: str | None = None) -> dict[str, str]:
        """The child's (and so the kernel's) environment: ours, the study's, import paths,
        and the Keras backend, set before anything in the kernel imports Keras. The
        kernel's interpreter's folder comes first on PATH, so `!pip install` in a cell
        installs where the kernel imports from (as `%pip` does)."""
        env = {**os.environ, **self.env.env}
        paths = [str(IMPORT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        searched = [str(Path(sys.executable).parent)] + env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in searched if p))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["KERAS_BACKEND"] = self.env.backend
        if mark is not None:
            env[RUN_MARK] = mark
        return env

    def parameters(self, job: RunJob, record_path: Path) -> dict[str, Any]:
        return run_parameters(self.study, self.env, job, str(record_path),
                              declared=self.protocol.parameters)

    @property
    def on_colab(self) -> bool:
        """Whether the kernel is a Colab VM's: cells tagged colab-only run there alone."""
        return self.env.runner == "colab"

    def input_notebook(self, work: Path) -> Path:
        """What papermill executes: a copy of the study's notebook, made to run anywhere.

        Cells tagged `skip` (and `colab-only`, off Colab) become raw cells, which no kernel
        runs and which keep the cells' numbers; a notebook that names no kernel or language
        (as Colab saves them) gets Python's; a tagged notebook gets the toolkit's
        fingerprint cell at the end (runners.phases; not timed).
        """
        nb = json.loads(self.study.notebook.read_text(encoding="utf-8"))
        for index in self.protocol.dropped_cells(self.on_colab):
            cell = nb["cells"][index]
            cell["cell_type"] = "raw"
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        metadata = nb.setdefault("metadata", {})
        if not (metadata.get("kernelspec") or {}).get("name"):
            metadata["kernelspec"] = {"name": DEFAULT_KERNEL, "display_name": "Python 3",
                                      "language": "python"}
        if not (metadata.get("language_info") or {}).get("name"):
            metadata["language_info"] = {"name": self.protocol.language}
        if not self.protocol.writes_record:
            nb["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [],
                                "id": phases.FINGERPRINT_CELL_ID,
                                "metadata": {"tags": [phases.FINGERPRINT_TAG]},
                                "source": phases.fingerprint_cell_source(
                                    self.protocol.metric_names)})
        copy = work / self.study.notebook.name
        write_text_atomic(copy, json.dumps(nb))
        return copy

    def stage_home(self, paths: RunPaths) -> dict[str, tuple[int, int]]:
        """The notebook's working folder with its files beside it (copies: a notebook that
        writes to one changes no original). Returns what was staged, to tell afterwards
        what the run wrote."""
        home = paths.home
        home.mkdir(parents=True, exist_ok=True)
        for item in self.study.files:
            target = home / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item.path, target)
        return _snapshot(home)

    def keep_artifacts(self, paths: RunPaths, staged: dict[str, tuple[int, int]],
                       folder: Path | None = None, left: list[str] | None = None
                       ) -> dict[str, Any]:
        """Keep what the run wrote in its working folder (new or changed files; `folder`:
        where a remote kernel's were brought back to) under artifacts/<run_id>/, up to the
        study's keep_artifacts bytes; what does not fit is named in NOT-KEPT.txt there and
        counted in the record, never dropped silently."""
        folder = folder or paths.home
        if paths.artifacts is None:
            return {}
        shutil.rmtree(paths.artifacts, ignore_errors=True)  # an earlier try's
        written = sorted(name for name, stamp in _snapshot(folder).items()
                         if staged.get(name) != stamp) if folder.is_dir() else []
        left = list(left or [])
        if not written and not left:
            return {"artifacts": 0}
        kept, total = 0, 0
        for name in written:
            source = folder / name
            size = source.stat().st_size
            if total + size > self.study.keep_artifacts:
                left.append(f"{name} ({size} bytes)")
                continue
            target = paths.artifacts / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            kept, total = kept + 1, total + size
        if left:
            paths.artifacts.mkdir(parents=True, exist_ok=True)
            (paths.artifacts / "NOT-KEPT.txt").write_text(
                f"Over keep_artifacts = {self.study.keep_artifacts} bytes, not kept:\n"
                + "\n".join(left) + "\n", encoding="utf-8")
        return {"artifacts": kept, "artifacts_bytes": total, "artifacts_not_kept": len(left)}

    def execute(self, job: RunJob, attempt: int, paths: RunPaths) -> Outcome:
        work = paths.work
        protocol_record = work / "record.json"
        executed = work / "executed.ipynb"
        staged = self.stage_home(paths)
        spec = {"input": str(self.input_notebook(work)), "output": str(executed),
                "parameters": self.parameters(job, protocol_record),
                "kernel": self.env.kernel or self.study.kernel, "cwd": str(paths.home),
                "report": str(work / "report.json"),
                "kernel_manager_class": self.kernel_manager_class}
        write_text_atomic(work / "job.json", json.dumps(spec))
        adopt_orphans()
        outcome, sampled_mb = self._execute(work, paths)
        left = kill_leftovers(self._mark(paths))
        measured: dict[str, Any] = {}
        if outcome.status == "ok":
            try:
                measured = self._measured(protocol_record, executed)
            except RecordError as exc:
                outcome = outcome.replace(status="failed", error=str(exc))
        # The kernel's own peak misses its children; the sampler misses short spikes.
        # Kept for failed runs too: that is where an out-of-memory run shows itself.
        own = measured.get("peak_rss_mb")
        own = own if isinstance(own, int | float) and math.isfinite(own) else 0.0
        peak = max(sampled_mb, own)
        if executed.exists() and executed.stat().st_size > 0:  # a full disk writes 0 bytes
            os.replace(executed, paths.notebook)
        artifacts = self.keep_artifacts(paths, staged)
        return outcome.replace(fields={**measured, **artifacts, "leftover_processes": left,
                                       "peak_rss_mb": round(peak, 1) if peak else None})

    @staticmethod
    def _mark(paths: RunPaths) -> str:
        """The run's mark on its processes (RUN_MARK): its work folder, unique per try."""
        return str(paths.work)

    def _measured(self, protocol_record: Path, executed: Path) -> dict[str, Any]:
        """The protocol's measurements: the record the notebook wrote (the built-in way),
        else the phases, metrics and fingerprint read from the executed notebook. What is
        not even an object of fields raises RecordError here; the fields themselves are
        checked with the whole record (study.record.RunRecord), as an imported one is."""
        if self.protocol.writes_record:
            if not protocol_record.exists():
                raise RecordError("the notebook finished without writing its record "
                                  f"to {protocol_record}")
            return parse_object(protocol_record.read_bytes(), "the protocol's record")
        return phases.record(json.loads(executed.read_text(encoding="utf-8")),
                             assigned=bool(self.protocol.metric_names))

    def _execute(self, work: Path, paths: RunPaths) -> tuple[Outcome, float]:
        """Execute the notebook, sample the kernel's memory, enforce the timeout and the
        memory ceiling. Returns the outcome and the sampled peak (MB).

        A local kernel runs from this process (runners.inprocess: papermill imported once
        per study); a kernel on a server goes through a child process (runners.execute),
        whose gateway settings are its own environment's.
        """
        if self.kernel_manager_class is None:
            return self._execute_here(work, paths)
        return self._execute_child(work, paths)

    def _execute_here(self, work: Path, paths: RunPaths) -> tuple[Outcome, float]:
        from cloudbench.runners import inprocess

        inprocess.prepare()
        job = json.loads((work / "job.json").read_text(encoding="utf-8"))
        oom_before = _oom_kills()
        start = time.perf_counter()
        run = inprocess.InProcessRun(job, self.kernel_env(self._mark(paths)), paths.home,
                                     paths.log, work)
        self._inprocess = run
        try:
            peak, stop = self._watch(lambda: run.alive(SAMPLE_INTERVAL_S),
                                     TreeMemory(run.kernel), start)
        except BaseException:
            run.kill()  # Ctrl-C or a kill of the study: leave no kernel behind
            raise
        finally:
            self._inprocess = None
        if stop or self._interrupted:
            run.kill()
        wall = round(time.perf_counter() - start, 4)
        if self._interrupted:
            self._interrupted = False
            raise KeyboardInterrupt
        if stop == "limit":
            return self._over_limit(wall, peak), peak
        return self._outcome(run.report(), paths, None, stop == "timeout", oom_before,
                             wall), peak

    def _watch(self, running: Callable[[], bool], memory_mb: Callable[[], float],
               start: float) -> tuple[float, str | None]:
        """Sample the kernel's memory while the run goes on (`running` waits up to a sample
        interval for it to end): the peak, and "timeout" or "limit" when the run must be
        stopped for its whole-run timeout or the environment's memory ceiling."""
        peak, limit = 0.0, self.memory_limit_mb
        while running():
            peak = max(peak, memory_mb())
            if time.perf_counter() - start > self.timeout_s:
                return peak, "timeout"
            if limit is not None and peak > limit:
                return peak, "limit"
        return peak, None

    def _over_limit(self, wall_s: float, peak: float) -> Outcome:
        return Outcome("oom", f"out of memory: the kernel reached {peak:.0f} MB, over the "
                              f"environment's memory_limit_mb of {self.memory_limit_mb:g}",
                       wall_s=wall_s)

    def _execute_child(self, work: Path, paths: RunPaths) -> tuple[Outcome, float]:
        """Run papermill in a child process; sample the kernel's memory there."""
        log = open(paths.log, "ab")  # noqa: SIM115
        oom_before = _oom_kills()
        start = time.perf_counter()
        # The child arranges its own death with ours (runners.execute); no preexec_fn,
        # which is unsafe while other threads (rich's progress refresh) run.
        proc = subprocess.Popen([sys.executable, "-m", "cloudbench.runners.execute",
                                 str(work / "job.json"), str(os.getpid())],
                                env=self.kernel_env(self._mark(paths)), stdout=log,
                                stderr=log,
                                start_new_session=True)
        self._proc = proc
        def running() -> bool:
            try:
                proc.wait(SAMPLE_INTERVAL_S)
                return False
            except subprocess.TimeoutExpired:
                return True

        try:
            parent = psutil.Process(proc.pid)
            peak, stop = self._watch(running, TreeMemory(lambda: parent, include_root=False),
                                     start)
            if stop:
                kill_tree(proc)
        except BaseException:
            kill_tree(proc)  # Ctrl-C or a kill of the study: leave no orphan kernel behind
            raise
        finally:
            proc.wait()
            self._proc = None
            log.close()
        if self._interrupted:  # as Ctrl-C in a sequential study: the run in flight is lost
            self._interrupted = False
            raise KeyboardInterrupt
        wall = round(time.perf_counter() - start, 4)
        if stop == "limit":
            return self._over_limit(wall, peak), peak
        report_path = work / "report.json"
        report = (json.loads(report_path.read_text(encoding="utf-8"))
                  if report_path.exists() else None)
        return self._outcome(report, paths, proc.returncode, stop == "timeout", oom_before,
                             wall), peak

    def _outcome(self, report: dict[str, Any] | None, paths: RunPaths,
                 returncode: int | None, timed_out: bool, oom_before: int | None,
                 wall_s: float) -> Outcome:
        """Classify the run: ok, failed (infrastructure or not), timeout or oom."""
        if timed_out:
            return Outcome("timeout", f"the run exceeded its timeout of {self.timeout_s:g} s",
                           wall_s=wall_s)
        if report is None:
            how = (f"the papermill process exited with code {returncode}"
                   if returncode is not None else "papermill did not come back")
            return Outcome("failed", f"{how} without a report; see {paths.log}",
                           infrastructure=True, wall_s=wall_s)
        if report["ok"]:
            return Outcome("ok", wall_s=wall_s)
        error = f"{report.get('ename')}: {report.get('evalue')}".strip()
        oom_after = _oom_kills()
        evalue = str(report.get("evalue") or "")
        oom = report.get("ename") in OOM_NAMES or any(m in evalue for m in OOM_MESSAGES) or (
            report["kind"] == "dead_kernel" and oom_before is not None
            and oom_after is not None and oom_after > oom_before)
        if oom:
            return Outcome("oom", f"out of memory: {error}", wall_s=wall_s)
        if report["kind"] == "timeout":
            return Outcome("timeout", error, wall_s=wall_s)
        if report["kind"] == "dead_kernel":
            error = f"the kernel died: {error}"
        return Outcome("failed", error, cell=report.get("cell_index"), wall_s=wall_s,
                       infrastructure=report["kind"] == "infrastructure")

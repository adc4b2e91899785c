"""papermill in the study's own process, each run still in a fresh kernel process.

A child Python per run paid Python's start and papermill's imports (about 1.5 s) before the
kernel even started; here they are paid once per study. What the child gave is kept:

- the kernel's environment, working folder and output (to the run's log) are the run's,
  set on a kernel manager made for that run (:func:`kernel_manager_for`), so runs of
  machines running at the same time never share process-wide state (no chdir, no
  os.environ change);
- the kernel dies with the study, kill -9 included: it asks Linux for SIGKILL when the
  thread that started it ends (PR_SET_PDEATHSIG, set inside the kernel before ipykernel
  starts), and that thread lives exactly as long as the run;
- the runner keeps the whole-run timeout and the memory ceiling by watching the kernel's
  process tree (:class:`InProcessRun`) and killing it, which ends the execution with a dead
  kernel; everything else is classified as before (runners.execute).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

import psutil
from jupyter_client.manager import AsyncKernelManager

from cloudbench.runners.execute import execute
from cloudbench.runners.processes import kill_tree

#: Set PR_SET_PDEATHSIG (1) to SIGKILL (9) and stop if the parent is gone already, then run
#: the kernel's own module as `python -m` would. One Python, no extra exec.
_KERNEL_PREAMBLE = (
    "import ctypes, os, runpy, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
    "if os.getppid() != int(os.environ.get('CLOUDBENCH_PARENT_PID', os.getppid())):\n"
    "    os._exit(1)\n"
    "module = sys.argv.pop(1)\n"
    "sys.argv[0] = module\n"
    "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
)


class RunKernelManager(AsyncKernelManager):
    """A kernel manager for one run: its environment, folder, log and a pid for the watcher.

    Subclassed per run (:func:`kernel_manager_for`), since papermill takes a class.
    """

    run_env: dict[str, str] = {}
    run_cwd: str | None = None
    run_scratch: str | None = None  # the run's own folder, apart from the notebook's home
    run_log: str | None = None
    started: threading.Event
    pid: list[int]

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        if len(cmd) >= 3 and cmd[1] == "-m":  # python -m ipykernel_launcher -f ...
            return [cmd[0], "-c", _KERNEL_PREAMBLE, *cmd[2:]]
        return cmd  # another kind of kernel: it still exits when its parent does

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        kw["env"] = {**self.run_env, "CLOUDBENCH_PARENT_PID": str(os.getpid())}
        if self.run_cwd:
            kw["cwd"] = self.run_cwd
            # In the run's folder, not /tmp: it holds the kernel's key, and the folder goes
            # with the run (or, after a kill, when the study starts again).
            self.connection_file = os.path.join(self.run_scratch or self.run_cwd,
                                                "kernel-connection.json")
        log: IO[bytes] | None = open(self.run_log, "ab") if self.run_log else None  # noqa: SIM115
        if log is not None:
            kw["stdout"] = kw["stderr"] = log
        try:
            await super().start_kernel(**kw)
        finally:
            if log is not None:
                log.close()  # the kernel holds its own copy of the descriptor
        if self.provisioner is not None and getattr(self.provisioner, "pid", None):
            self.pid.append(int(self.provisioner.pid))
        self.started.set()


def kernel_manager_for(env: dict[str, str], cwd: Path, log: Path,
                       scratch: Path | None = None) -> type[RunKernelManager]:
    return type("RunKernelManagerOfRun", (RunKernelManager,), {
        "run_env": dict(env), "run_cwd": str(cwd), "run_log": str(log),
        "run_scratch": str(scratch) if scratch else None,
        "started": threading.Event(), "pid": []})


class InProcessRun:
    """One notebook executing in a worker thread of this process, watched from the caller.

    The caller polls :meth:`alive`, reads :meth:`kernel` for memory sampling, calls
    :meth:`kill` on a timeout, a memory ceiling or an interrupt, and finally :meth:`report`.
    """

    def __init__(self, job: dict[str, Any], env: dict[str, str], cwd: Path, log: Path,
                 scratch: Path | None = None):
        self.manager = kernel_manager_for(env, cwd, log, scratch)
        job = {**job, "kernel_manager_class": self.manager}
        job.pop("cwd", None)  # papermill would chdir the whole process
        self._report: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                        name=f"papermill {Path(job['output']).parent.name}")
        self._thread.start()

    def _work(self, job: dict[str, Any]) -> None:
        try:
            self._report = execute(job)
        except BaseException as exc:  # never lose the run's outcome to the thread
            self._report = {"ok": False, "kind": "infrastructure",
                            "ename": type(exc).__name__, "evalue": str(exc)}

    def alive(self, wait_s: float) -> bool:
        self._thread.join(wait_s)
        return self._thread.is_alive()

    def kernel(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.manager.pid[0]) if self.manager.pid else None
        except psutil.NoSuchProcess:
            return None

    def kill(self, grace_s: float = 30.0) -> None:
        """Kill the kernel's process tree; the execution then ends with a dead kernel."""
        kill_tree(self.kernel())
        self._thread.join(grace_s)

    def report(self) -> dict[str, Any] | None:
        """What papermill reported; None while it runs or if it never came back."""
        return None if self._thread.is_alive() else self._report


@functools.cache
def prepare() -> None:
    """Import papermill's stack once per process, before the first run is timed (and
    without its slow optional imports, study.imports); later calls do nothing."""
    from cloudbench.study.imports import skip_slow_optional_imports

    skip_slow_optional_imports()
    import papermill  # noqa: F401

    logging.getLogger("papermill").setLevel(logging.ERROR)  # a run's story is in its log


__all__ = ["InProcessRun", "kernel_manager_for", "prepare"]
